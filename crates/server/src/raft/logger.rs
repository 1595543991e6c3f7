//! raft-rs logs through `slog`; this drain forwards its records to `tracing`, so raft's lines
//! come out in the same structured stream as ours.

use std::fmt::Write as _;

use slog::{Drain, Level, OwnedKVList, Record, KV};

/// A `slog` drain that re-emits every record as a `tracing` event.
pub struct TracingDrain;

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut fields = FieldWriter(String::new());
        let _ = record.kv().serialize(record, &mut fields);
        let _ = values.serialize(record, &mut fields);
        let msg = record.msg().to_string();
        let fields = fields.0;
        match record.level() {
            Level::Critical | Level::Error => {
                tracing::error!(target: "raft", raft = %fields, "{msg}")
            }
            Level::Warning => tracing::warn!(target: "raft", raft = %fields, "{msg}"),
            Level::Info => tracing::info!(target: "raft", raft = %fields, "{msg}"),
            Level::Debug => tracing::debug!(target: "raft", raft = %fields, "{msg}"),
            Level::Trace => tracing::trace!(target: "raft", raft = %fields, "{msg}"),
        }
        Ok(())
    }
}

/// Collects slog key-values as `key=value` pairs.
struct FieldWriter(String);

impl slog::Serializer for FieldWriter {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments<'_>) -> slog::Result {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = write!(self.0, "{key}={val}");
        Ok(())
    }
}

/// The root logger handed to raft-rs.
pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(TracingDrain.fuse(), slog::o!())
}
