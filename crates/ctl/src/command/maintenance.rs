//! `compaction`, `defrag`, `alarm` and `move-leader`.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::ProgressBar;
use oxcd_api::etcdserverpb::alarm_request::AlarmAction;
use oxcd_api::etcdserverpb::{AlarmRequest, AlarmResponse, CompactionRequest, MoveLeaderRequest};

use super::endpoint::endpoints;
use crate::cli::{AlarmCommand, CompactionArgs, DefragArgs, PositionalArgs};
use crate::context::{emit, Ctx};
use crate::exit::{code, CmdResult, Exit};
use crate::go;

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
