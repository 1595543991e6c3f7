//! `compaction`, `defrag`, `alarm`, `move-leader`, `snapshot save` and `snapshot status`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use oxcd_api::etcdserverpb::alarm_request::AlarmAction;
use oxcd_api::etcdserverpb::{AlarmRequest, AlarmResponse, CompactionRequest, MoveLeaderRequest};
use oxcd_storage::{bbolt, BackupError};

use super::endpoint::endpoints;
use crate::cli::{AlarmCommand, CompactionArgs, DefragArgs, PositionalArgs, SnapshotCommand};
use crate::context::{emit, Ctx};
use crate::exit::{code, CmdResult, Exit};
use crate::go;
use crate::retry_log;

pub async fn compaction(ctx: &Ctx, a: CompactionArgs) -> CmdResult {
    let [rev] = a.args.as_slice() else {
        return Err(Exit::new(
            code::BAD_ARGS,
            "compaction command needs 1 argument",
        ));
    };
    let revision = go::parse_int(rev, 10).map_err(|e| Exit::new(code::ERROR, e))?;
    ctx.printer()?;
    let client = ctx.client().await?;
    let request = CompactionRequest {
        revision,
        physical: a.physical,
    };
    ctx.request(client.kv().compact(request)).await?;
    println!("compacted revision {revision}");
    Ok(())
}

/// A spinner on stderr while `what` runs, only when stderr is a terminal.
fn spinner(what: String) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner().with_message(what);
    bar.enable_steady_tick(Duration::from_millis(100));
    Some(bar)
}

pub async fn defrag(ctx: &Ctx, a: DefragArgs) -> CmdResult {
    if let Some(dir) = a.data_dir.filter(|d| !d.is_empty()) {
        eprintln!("Failed to defragment etcd data[{dir}] (offline defragmentation is `oxcdutl defrag --data-dir {dir}`)");
        return Err(Exit::silent(code::ERROR));
    }
    ctx.printer()?;
    let mut failures = 0;
    for ep in endpoints(ctx, a.cluster).await? {
        let client = ctx.client_on(std::slice::from_ref(&ep)).await?;
        let bar = spinner(format!("defragmenting {ep}"));
        let result = ctx.request(client.maintenance().defragment_at(&ep)).await;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        match result {
            Ok(_) => println!("Finished defragmenting etcd member[{ep}]"),
            Err(e) => {
                eprintln!(
                    "Failed to defragment etcd member[{ep}] ({})",
                    e.message.unwrap_or_default()
                );
                failures += 1;
            }
        }
    }
    if failures > 0 {
        return Err(Exit::silent(code::ERROR));
    }
    Ok(())
}

pub async fn alarm(ctx: &Ctx, command: AlarmCommand) -> CmdResult {
    let (args, disarm) = match &command {
        AlarmCommand::Disarm(a) => (&a.args, true),
        AlarmCommand::List(a) => (&a.args, false),
    };
    if !args.is_empty() {
        let verb = if disarm { "disarm" } else { "list" };
        return Err(Exit::new(
            code::BAD_ARGS,
            format!("alarm {verb} command accepts no arguments"),
        ));
    }
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let list = AlarmRequest {
        action: AlarmAction::Get as i32,
        member_id: 0,
        alarm: 0,
    };
    let listed = ctx.request(client.maintenance().alarm(list)).await?;
    if !disarm {
        return emit(printer.alarm(&listed));
    }
    // As clientv3: disarm each alarm in turn; the answer lists what was disarmed.
    let mut disarmed = AlarmResponse::default();
    for alarm in listed.alarms {
        let request = AlarmRequest {
            action: AlarmAction::Deactivate as i32,
            member_id: alarm.member_id,
            alarm: alarm.alarm,
        };
        let response = ctx.request(client.maintenance().alarm(request)).await?;
        disarmed.alarms.extend(response.alarms);
    }
    emit(printer.alarm(&disarmed))
}

pub async fn move_leader(ctx: &Ctx, a: PositionalArgs) -> CmdResult {
    let [target] = a.args.as_slice() else {
        return Err(Exit::new(
            code::BAD_ARGS,
            "move-leader command needs 1 argument",
        ));
    };
    let target = go::parse_uint(target, 16).map_err(|e| Exit::new(code::BAD_ARGS, e))?;
    let printer = ctx.printer()?;
    for ep in &ctx.flags.endpoints {
        let client = ctx.client_on(std::slice::from_ref(ep)).await?;
        let status = ctx.request(client.maintenance().status_at(ep)).await?;
        let member = status.header.as_ref().map_or(0, |h| h.member_id);
        if member == status.leader {
            let request = MoveLeaderRequest { target_id: target };
            let response = ctx
                .request(client.maintenance().move_leader(request))
                .await?;
            return emit(printer.move_leader(status.leader, target, &response));
        }
    }
    Err(Exit::new(
        code::BAD_ARGS,
        format!(
            "no leader endpoint given at [{}]",
            ctx.flags.endpoints.join(" ")
        ),
    ))
}

pub async fn snapshot(ctx: &Ctx, command: SnapshotCommand) -> CmdResult {
    let a = match command {
        SnapshotCommand::Save(a) => a,
        SnapshotCommand::Status(a) => return snapshot_status(ctx, &a),
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
