//! `snapshot save`, `snapshot status` and `snapshot restore`, as etcdctl 3.4's.
//!
//! `status` reads the file with the storage crate's snapshot reader and `restore` is
//! oxcdutl's own code (the `oxcd_utl` library): neither has a second implementation here.

use std::io::{IsTerminal, Write};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use oxcd_server::config::{LogLevel, LoggerKind};
use oxcd_storage::{bbolt, BackupError};
use oxcd_utl::RestoreConfig;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

use crate::cli::{PositionalArgs, SnapshotCommand, SnapshotRestoreArgs};
use crate::context::{emit, Ctx};
use crate::exit::{code, CmdResult, Exit};
use crate::go;
use crate::retry_log;

pub async fn snapshot(ctx: &Ctx, command: SnapshotCommand) -> CmdResult {
    let a = match command {
        SnapshotCommand::Save(a) => a,
        SnapshotCommand::Status(a) => return snapshot_status(ctx, &a),
        SnapshotCommand::Restore(a) => return snapshot_restore(a).await,
    };
    let [path] = a.args.as_slice() else {
        return Err(Exit::new(
            code::BAD_ARGS,
            "snapshot save expects one argument",
        ));
    };
    let [ep] = ctx.flags.endpoints.as_slice() else {
        return Err(Exit::new(
            code::INTERRUPTED,
            format!(
                "snapshot must be requested to one selected node, not multiple [{}]",
                ctx.flags.endpoints.join(" ")
            ),
        ));
    };
    ctx.printer()?;
    let client = ctx.client().await?;
    let interrupted = |e: String| Exit::new(code::INTERRUPTED, e);
    let partial = format!("{path}.part");
    let mut file = std::fs::File::create(&partial)
        .map_err(|e| interrupted(format!("could not open {partial} ({e})")))?;
    let quoted = |s: &str| go::json_string(s);
    retry_log::info(
        "snapshot/v3_snapshot.go:119",
        "created temporary db file",
        &[("path", quoted(&partial))],
        true,
    );
    let started = std::time::Instant::now();
    let mut stream = client
        .maintenance()
        .snapshot_at(ep)
        .await
        .map_err(|e| Exit::request(code::INTERRUPTED, &e))?;
    retry_log::info(
        "clientv3/maintenance.go:200",
        "opened snapshot stream; downloading",
        &[],
        false,
    );
    retry_log::info(
        "snapshot/v3_snapshot.go:127",
        "fetching snapshot",
        &[("endpoint", quoted(ep))],
        true,
    );
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {bytes} of {total_bytes} ({bytes_per_sec})")
                .expect("valid template"),
        );
        bar
    });
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Exit::request(code::INTERRUPTED, &e))?;
        file.write_all(&chunk.blob)
            .map_err(|e| interrupted(e.to_string()))?;
        received += chunk.blob.len() as u64;
        if let Some(bar) = &bar {
            bar.set_length(received + chunk.remaining_bytes);
            bar.set_position(received);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    retry_log::info(
        "clientv3/maintenance.go:208",
        "completed snapshot read; closing",
        &[],
        false,
    );
    file.sync_all().map_err(|e| interrupted(e.to_string()))?;
    retry_log::info(
        "snapshot/v3_snapshot.go:142",
        "fetched snapshot",
        &[
            ("endpoint", quoted(ep)),
            ("size", quoted(&go::human_bytes(received))),
            ("took", format!("{:.9}", started.elapsed().as_secs_f64())),
        ],
        true,
    );
    std::fs::rename(&partial, path).map_err(|e| interrupted(e.to_string()))?;
    retry_log::info(
        "snapshot/v3_snapshot.go:152",
        "saved",
        &[("path", quoted(path))],
        true,
    );
    println!("Snapshot saved at {path}");
    Ok(())
}

/// `snapshot status FILE`: the hash, revision, key count and size of an etcd-format
/// snapshot file, read by the storage crate's snapshot reader (oxcdutl's too).
fn snapshot_status(ctx: &Ctx, a: &PositionalArgs) -> CmdResult {
    let [path] = a.args.as_slice() else {
        return Err(Exit::new(
            code::BAD_ARGS,
            "snapshot status requires exactly one argument",
        ));
    };
    let printer = ctx.printer()?;
    let failed = |e: String| Exit::new(code::ERROR, e);
    let meta = std::fs::metadata(path)
        .map_err(|e| failed(format!("stat {path}: {}", crate::http::os_error_text(&e))))?;
    if meta.is_dir() {
        return Err(failed(format!("open {path}: is a directory")));
    }
    let status = oxcd_storage::SnapshotFile::open(std::path::Path::new(path), true)
        .and_then(|file| file.status())
        .map_err(|e| match e {
            // bbolt's words for a file that is not a (whole) database.
            BackupError::Bbolt(bbolt::Error::Invalid(_)) => failed("invalid database".into()),
            e => failed(e.to_string()),
        })?;
    emit(printer.db_status(&status))
}

/// `snapshot restore FILE`: a new member's data dir, built by oxcdutl's restore; its steps
/// are logged on stderr as zap JSON lines, as etcdctl's are.
async fn snapshot_restore(a: SnapshotRestoreArgs) -> CmdResult {
    let [path] = a.args.as_slice() else {
        return Err(Exit::new(
            code::BAD_ARGS,
            "snapshot restore requires exactly one argument",
        ));
    };
    let given = |dir: String| (!dir.is_empty()).then(|| dir.into());
    let cfg = RestoreConfig {
        file: path.into(),
        data_dir: given(a.data_dir),
        wal_dir: given(a.wal_dir),
        name: a.name,
        initial_cluster: a.initial_cluster,
        initial_cluster_token: a.initial_cluster_token,
        initial_advertise_peer_urls: a.initial_advertise_peer_urls,
        skip_hash_check: a.skip_hash_check,
        bump_revision: 0,
        mark_compacted: false,
    };
    let restored = tokio::task::spawn_blocking(move || {
        // etcdctl shows the restore's own steps: no progress lines (a terminal still gets
        // the bar) and none of the bootstrap's inner steps.
        let quiet = Targets::new()
            .with_target("oxcd_utl", LevelFilter::INFO)
            .with_target("oxcd_utl::progress", LevelFilter::OFF);
        let log = oxcd_server::logging::layer(LoggerKind::Zap, LogLevel::Info, std::io::stderr);
        let logger = tracing_subscriber::registry().with(log.with_filter(quiet));
        tracing::subscriber::with_default(logger, || oxcd_utl::restore(&cfg))
    })
    .await
    .map_err(|e| Exit::new(code::ERROR, e.to_string()))?;
    restored.map_err(|e| Exit::new(code::ERROR, e))
}
