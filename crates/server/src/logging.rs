//! Log output in etcd's two formats, on `tracing`.
//!
//! - `--logger=zap` (the default): one JSON object per line, keys in zap's order —
//!   `level`, `ts` (UTC, millisecond ISO-8601), `caller` (`dir/file.rs:line`), `msg`,
//!   then the fields of the enclosing spans (outermost first) and of the event. Field
//!   names are used as written, so events use etcd's kebab-case keys
//!   (`tracing::info!("local-member-id" = %id, ...)`).
//! - `--logger=capnslog`: etcd's older text lines,
//!   `2026-11-21 17:00:00.000000 I | raft: msg key=value`.
//!
//! `--log-level` sets the threshold; at `debug`, chatty transport crates (h2, hyper,
//! tower, tonic, rustls) stay at `info`. Output goes to stderr.

use std::fmt::{self, Write as _};
use std::io;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::{LogLevel, LoggerKind, ServerConfig};

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// A global subscriber was installed before.
    #[error("logging already initialised: {0}")]
    AlreadyInitialized(String),
}

/// Crates whose debug output would drown ours.
const NOISY_TARGETS: &[&str] = &[
    "h2",
    "hyper",
    "hyper_util",
    "tower",
    "tonic",
    "rustls",
    "tokio_util",
];

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    }
}

fn targets(level: LogLevel) -> Targets {
    let max = level_filter(level);
    let mut t = Targets::new().with_default(max);
    if max > LevelFilter::INFO {
        for target in NOISY_TARGETS {
            t = t.with_target(*target, LevelFilter::INFO);
        }
    }
    t
}

/// A formatting layer writing to `writer` in the chosen format, filtered by `level`.
pub fn layer<S, W>(
    logger: LoggerKind,
    level: LogLevel,
    writer: W,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false);
    match logger {
        LoggerKind::Zap => base
            .fmt_fields(JsonFields::new())
            .event_format(ZapFormat)
            .with_filter(targets(level))
            .boxed(),
        LoggerKind::Capnslog => base
            .event_format(CapnslogFormat)
            .with_filter(targets(level))
            .boxed(),
    }
}

/// Installs the global subscriber for `cfg` (format, level, stderr). Call once, early.
pub fn init(cfg: &ServerConfig) -> Result<(), LoggingError> {
    tracing_subscriber::registry()
        .with(layer(cfg.logger, cfg.log_level, io::stderr))
        .try_init()
        .map_err(|e| LoggingError::AlreadyInitialized(e.to_string()))
}

/// Logs the warnings gathered while reading the configuration; call after [`init`].
pub fn log_config_warnings(cfg: &ServerConfig) {
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    if !cfg.unimplemented_flags.is_empty() {
        tracing::warn!(
            flags = %cfg.unimplemented_flags.join(","),
            "flag not implemented yet, ignored"
        );
    }
    if let Some(path) = &cfg.config_file {
        tracing::info!(
            path = %path.display(),
            "loaded server configuration, other configuration command line flags and environment variables will be ignored if provided"
        );
    }
}

/// Collects an event's fields in order, the message apart.
#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(String, Value)>,
}

impl Fields {
    fn push(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
        } else {
            self.fields.push((field.name().to_string(), value));
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, Value::String(value.to_string()));
    }
}

/// zap's caller: the file's parent directory and name, with the line.
fn caller(meta: &tracing::Metadata<'_>) -> String {
    let file = meta.file().unwrap_or("?");
    let mut parts = file.rsplit(['/', '\\']);
    let name = parts.next().unwrap_or(file);
    let short = match parts.next() {
        Some(dir) => format!("{dir}/{name}"),
        None => name.to_string(),
    };
    match meta.line() {
        Some(line) => format!("{short}:{line}"),
        None => short,
    }
}

fn zap_level(level: &Level) -> &'static str {
    match *level {
        Level::TRACE | Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

fn json_str(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// zap's JSON lines.
struct ZapFormat;

impl<S, N> FormatEvent<S, N> for ZapFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let now = time::OffsetDateTime::now_utc();
        let mut line = String::with_capacity(256);
        write!(
            line,
            "{{\"level\":\"{}\",\"ts\":\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z\",\"caller\":{},\"msg\":{}",
            zap_level(meta.level()),
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.millisecond(),
            json_str(&caller(meta)),
            json_str(&fields.message),
        )?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                let Some(formatted) = ext.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<Value>(formatted)
                {
                    for (k, v) in map {
                        write!(line, ",{}:{}", json_str(&k), v)?;
                    }
                }
            }
        }
        for (k, v) in &fields.fields {
            write!(line, ",{}:{}", json_str(k), v)?;
        }
        line.push_str("}\n");
        w.write_str(&line)
    }
}

/// capnslog's text lines: time, level letter, package, message, then key=value pairs.
struct CapnslogFormat;

impl<S, N> FormatEvent<S, N> for CapnslogFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let now = time::OffsetDateTime::now_utc();
        let letter = match *meta.level() {
            Level::TRACE | Level::DEBUG => 'D',
            Level::INFO => 'I',
            Level::WARN => 'W',
            Level::ERROR => 'E',
        };
        let mut segments = meta.target().split("::");
        let first = segments.next().unwrap_or("");
        let package = segments.next().unwrap_or(first);
        let mut line = format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06} {letter} | {package}: {}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.microsecond(),
            fields.message,
        );
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(formatted) = ext.get::<FormattedFields<N>>() {
                    if !formatted.is_empty() {
                        write!(line, " {}", formatted.as_str())?;
                    }
                }
            }
        }
        for (k, v) in &fields.fields {
            match v {
                Value::String(s) => write!(line, " {k}={s}")?,
                other => write!(line, " {k}={other}")?,
            }
        }
        line.push('\n');
        w.write_str(&line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    fn capture(logger: LoggerKind, level: LogLevel, f: impl FnOnce()) -> String {
        let buf = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(layer(logger, level, buf.clone()));
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn zap_lines_are_json_in_zaps_key_order() {
        let out = capture(LoggerKind::Zap, LogLevel::Info, || {
            let span = tracing::info_span!("member", "local-member-id" = "8e9e05c52164694d");
            let _g = span.enter();
            tracing::info!("took" = 5u64, "expected-duration" = "1s", "slow fdatasync");
            tracing::debug!("not shown at info");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let line = lines[0];
        assert!(line.starts_with("{\"level\":\"info\",\"ts\":\""), "{line}");
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["msg"], "slow fdatasync");
        assert_eq!(v["took"], 5);
        assert_eq!(v["expected-duration"], "1s");
        assert_eq!(v["local-member-id"], "8e9e05c52164694d");
        assert!(
            v["caller"].as_str().unwrap().starts_with("src/logging.rs:"),
            "{}",
            v["caller"]
        );
        let ts = v["ts"].as_str().unwrap();
        assert_eq!(ts.len(), "2026-11-21T17:00:00.000Z".len(), "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
        let order: Vec<usize> = [
            "\"level\"",
            "\"ts\"",
            "\"caller\"",
            "\"msg\"",
            "\"local-member-id\"",
            "\"took\"",
        ]
        .iter()
        .map(|k| line.find(k).unwrap())
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{line}");
    }

    #[test]
    fn levels_filter() {
        let out = capture(LoggerKind::Zap, LogLevel::Warn, || {
            tracing::info!("quiet");
            tracing::warn!("loud");
            tracing::error!(error = %io::Error::other("boom"), "louder");
        });
        assert!(!out.contains("quiet"));
        assert!(out.contains("\"level\":\"warn\""));
        assert!(out.contains("\"error\":\"boom\""));
        let out = capture(LoggerKind::Zap, LogLevel::Debug, || {
            tracing::debug!("shown")
        });
        assert!(out.contains("\"level\":\"debug\""));
    }

    #[test]
    fn capnslog_lines() {
        let out = capture(LoggerKind::Capnslog, LogLevel::Info, || {
            tracing::warn!(path = "/x", "created cert file");
        });
        let line = out.trim_end();
        // "2026-11-21 17:00:00.000000 W | logging: created cert file path=/x"
        assert_eq!(&line[4..5], "-");
        assert_eq!(&line[10..11], " ");
        assert!(
            line[26..].starts_with(" W | logging: created cert file path=/x"),
            "{line}"
        );
    }

    #[test]
    fn config_warnings_are_logged() {
        let argv = ["oxcd", "--max-wals=3"];
        let env = [("ETCD_BOGUS".to_string(), "1".to_string())];
        let cfg = match crate::config::parse_from(argv, env).unwrap() {
            crate::config::Invocation::Serve(c) => c,
            other => panic!("{other:?}"),
        };
        let out = capture(LoggerKind::Zap, LogLevel::Info, || {
            log_config_warnings(&cfg)
        });
        assert!(
            out.contains("unrecognized environment variable ETCD_BOGUS=1"),
            "{out}"
        );
        assert!(
            out.contains("\"msg\":\"flag not implemented yet, ignored\",\"flags\":\"--max-wals\""),
            "{out}"
        );
    }
}
