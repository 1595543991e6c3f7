//! `lock` and `elect`, over the client's Mutex and Election recipes (the same keys as
//! etcdctl, so the two exclude each other).

use futures::StreamExt;
use oxcd_api::etcdserverpb::RangeRequest;
use oxcd_client::recipes::{Election, Mutex, Session};

use crate::cli::{ElectArgs, LockArgs};
use crate::context::{emit, Ctx};
use crate::exit::{code, error_text, CmdResult, Exit};

/// Waits for SIGINT or SIGTERM.
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn failed(err: oxcd_client::Error) -> Exit {
    Exit::new(code::ERROR, error_text(&err))
}

pub async fn lock(ctx: &Ctx, a: LockArgs) -> CmdResult {
    let Some(name) = a.args.first() else {
        return Err(Exit::new(
            code::BAD_ARGS,
            "lock takes a lock name argument and an optional command to execute",
        ));
    };
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let session = Session::new(&client, a.ttl).await.map_err(failed)?;
    let mut mutex = Mutex::new(&session, name);
    tokio::select! {
        locked = mutex.lock() => locked.map_err(failed)?,
        _ = interrupted() => return Err(Exit::new(code::ERROR, "context canceled")),
    }
    if a.args.len() > 1 {
        let revision = mutex.header().map_or(0, |h| h.revision);
        let status = std::process::Command::new(&a.args[1])
            .args(&a.args[2..])
            .env(
                "ETCD_LOCK_KEY",
                String::from_utf8_lossy(mutex.key()).as_ref(),
            )
            .env("ETCD_LOCK_REV", revision.to_string())
            .status();
        let unlocked = mutex.unlock().await;
        return match status {
            Ok(s) if s.success() => unlocked.map_err(failed),
            Ok(s) => Err(Exit::new(
                code::ERROR,
                format!("exit status {}", s.code().unwrap_or(-1)),
            )),
            Err(e) => Err(Exit::new(code::ERROR, e.to_string())),
        };
    }
    let held = client
        .kv()
        .range(RangeRequest {
            key: mutex.key().to_vec(),
            ..Default::default()
        })
        .await
        .map_err(failed)?;
    if held.kvs.is_empty() {
        return Err(Exit::new(code::ERROR, "lock lost on init"));
    }
    emit(printer.get(&held))?;
    let key = mutex.key().to_vec();
    tokio::select! {
        _ = interrupted() => {
            drop(mutex);
            client.kv().delete_range(oxcd_api::etcdserverpb::DeleteRangeRequest { key, ..Default::default() }).await.map_err(failed)?;
            Ok(())
        }
        _ = session.done() => Err(Exit::new(code::ERROR, "session expired")),
    }
}

pub async fn elect(ctx: &Ctx, a: ElectArgs) -> CmdResult {
    let (name, proposal) = match a.args.as_slice() {
        [name] => (name.clone(), None),
        [name, proposal] => (name.clone(), Some(proposal.clone())),
        _ => {
            return Err(Exit::new(
                code::BAD_ARGS,
                "elect takes one election name argument and an optional proposal argument",
            ))
        }
    };
    if proposal.is_none() && !a.listen {
        return Err(Exit::new(
            code::BAD_ARGS,
            "no proposal argument but -l not set",
        ));
    }
    if proposal.is_some() && a.listen {
        return Err(Exit::new(code::BAD_ARGS, "proposal given but -l is set"));
    }
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let session = Session::new(&client, 0).await.map_err(failed)?;
    let mut election = Election::new(&session, &name);
    let Some(proposal) = proposal else {
        let mut leaders = Box::pin(election.observe());
        loop {
            tokio::select! {
                next = leaders.next() => match next {
                    Some(Ok(leader)) => emit(printer.get(&leader))?,
                    _ => return Err(Exit::new(code::ERROR, "elect: observer lost")),
                },
                _ = interrupted() => return Ok(()),
            }
        }
    };
    tokio::select! {
        won = election.campaign(proposal) => won.map_err(failed)?,
        _ = interrupted() => return Err(Exit::new(code::ERROR, "context canceled")),
    }
    let key = election.key().map(<[u8]>::to_vec).unwrap_or_default();
    let mine = client
        .kv()
        .range(RangeRequest {
            key,
            ..Default::default()
        })
        .await
        .map_err(failed)?;
    emit(printer.get(&mine))?;
    tokio::select! {
        _ = interrupted() => election.resign().await.map_err(failed),
        _ = session.done() => Err(Exit::new(code::ERROR, "elect: session expired")),
    }
}
