//! `lease grant|revoke|timetolive|list|keep-alive`.

use crate::cli::LeaseCommand;
use crate::context::{emit, Ctx};
use crate::exit::{code, CmdResult, Exit};
use crate::go;
use crate::output::Format;

fn lease_id(arg: &str) -> Result<i64, Exit> {
    go::parse_int(arg, 16).map_err(|e| {
        Exit::new(
            code::BAD_ARGS,
            format!("bad lease ID arg ({e}), expecting ID in Hex"),
        )
    })
}

fn one_arg(args: &[String], message: &str) -> Result<String, Exit> {
    match args {
        [arg] => Ok(arg.clone()),
        _ => Err(Exit::new(code::BAD_ARGS, message)),
    }
}

pub async fn lease(ctx: &Ctx, command: LeaseCommand) -> CmdResult {
    match command {
        LeaseCommand::Grant(a) => {
            let ttl = one_arg(&a.args, "lease grant command needs TTL argument")?;
            let ttl = go::parse_int(&ttl, 10)
                .map_err(|e| Exit::new(code::BAD_ARGS, format!("bad TTL ({e})")))?;
            let printer = ctx.printer()?;
            let client = ctx.client().await?;
            let response = ctx
                .request(client.lease().grant(ttl, 0))
                .await
                .map_err(|e| wrap(e, "failed to grant lease"))?;
            emit(printer.grant(&response))
        }
        LeaseCommand::Revoke(a) => {
            let id = lease_id(&one_arg(&a.args, "lease revoke command needs 1 argument")?)?;
            let printer = ctx.printer()?;
            let client = ctx.client().await?;
            let response = ctx
                .request(client.lease().revoke(id))
                .await
                .map_err(|e| wrap(e, "failed to revoke lease"))?;
            emit(printer.revoke(id, &response))
        }
        LeaseCommand::Timetolive { keys, args } => {
            let id = lease_id(&one_arg(
                &args,
                "lease timetolive command needs lease ID as argument",
            )?)?;
            let printer = ctx.printer()?;
            let client = ctx.client().await?;
            let response = ctx
                .request_with(code::BAD_CONNECTION, client.lease().time_to_live(id, keys))
                .await?;
            emit(printer.time_to_live(&response, keys))
        }
        LeaseCommand::List(_) => {
            let printer = ctx.printer()?;
            let client = ctx.client().await?;
            let response = ctx
                .request_with(code::BAD_CONNECTION, client.lease().leases())
                .await?;
            emit(printer.leases(&response))
        }
        LeaseCommand::KeepAlive { once, args } => {
            let id = lease_id(&one_arg(
                &args,
                "lease keep-alive command needs lease ID as argument",
            )?)?;
            let printer = ctx.printer()?;
            let client = ctx.client().await?;
            if once {
                let response = ctx
                    .request_with(code::BAD_CONNECTION, client.lease().keep_alive_once(id))
                    .await?;
                if response.ttl <= 0 {
                    return Err(Exit::new(
                        code::BAD_CONNECTION,
                        "etcdserver: requested lease not found",
                    ));
                }
                return emit(printer.keep_alive(&response));
            }
            let mut keep_alive = client.lease().keep_alive(id);
            while let Some(Ok(response)) = keep_alive.next().await {
                emit(printer.keep_alive(&response))?;
            }
            if printer.format == Format::Simple {
                println!("lease {id:016x} expired or revoked.");
            }
            Ok(())
        }
    }
}

/// etcdctl wraps some lease errors: `failed to grant lease (etcdserver: ...)`.
fn wrap(exit: Exit, what: &str) -> Exit {
    match exit.message {
        Some(message) => Exit::new(exit.code, format!("{what} ({message})")),
        None => exit,
    }
}
