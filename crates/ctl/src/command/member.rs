//! `member add|remove|update|list|promote`.

use oxcd_api::etcdserverpb::*;

use crate::cli::MemberCommand;
use crate::context::{emit, Ctx};
use crate::exit::{code, CmdResult, Exit};
use crate::go;
use crate::output::Format;

fn member_id(args: &[String]) -> Result<u64, Exit> {
    let Some(arg) = args.first() else {
        return Err(Exit::new(code::BAD_ARGS, "member ID is not provided"));
    };
    go::parse_uint(arg, 16).map_err(|e| {
        Exit::new(
            code::BAD_ARGS,
            format!("bad member ID arg ({e}), expecting ID in Hex"),
        )
    })
}

pub async fn member(ctx: &Ctx, command: MemberCommand) -> CmdResult {
    match command {
        MemberCommand::Add {
            peer_urls,
            learner,
            args,
        } => {
            let Some(name) = args.first().cloned() else {
                return Err(Exit::new(code::BAD_ARGS, "member name not provided"));
            };
            if args.len() > 1 {
                let mut message = String::from("too many arguments");
                for arg in &args {
                    if arg.to_lowercase().starts_with("http") {
                        message.push_str(&format!(", did you mean --peer-urls={arg}"));
                    }
                }
                return Err(Exit::new(code::BAD_ARGS, message));
            }
            if peer_urls.is_empty() {
                return Err(Exit::new(code::BAD_ARGS, "member peer urls not provided"));
            }
            let printer = ctx.printer()?;
            let client = ctx.client().await?;
            let request = MemberAddRequest {
                peer_ur_ls: peer_urls.split(',').map(str::to_owned).collect(),
                is_learner: learner,
            };
            let response = ctx.request(client.cluster().member_add(request)).await?;
            emit(printer.member_add(&response))?;
            if printer.format == Format::Simple {
                print_member_env(&name, &peer_urls, &response);
            }
            Ok(())
        }
        MemberCommand::Remove(a) => {
            let id = member_id(&a.args)?;
            let printer = ctx.printer()?;
            let client = ctx.client().await?;
            let r = ctx
                .request(client.cluster().member_remove(MemberRemoveRequest { id }))
                .await?;
            emit(printer.member_change("removed from", id, &r.header, &r.members, &r))
        }
        MemberCommand::Update { peer_urls, args } => {
            let id = member_id(&args)?;
            if peer_urls.is_empty() {
                return Err(Exit::new(code::BAD_ARGS, "member peer urls not provided"));
            }
            let printer = ctx.printer()?;
            let client = ctx.client().await?;
            let request = MemberUpdateRequest {
                id,
                peer_ur_ls: peer_urls.split(',').map(str::to_owned).collect(),
            };
            let r = ctx.request(client.cluster().member_update(request)).await?;
            emit(printer.member_change("updated in", id, &r.header, &r.members, &r))
        }
        MemberCommand::List(_) => {
            let printer = ctx.printer()?;
            let client = ctx.client().await?;
            let r = ctx
                .request(client.cluster().member_list(MemberListRequest {
                    linearizable: false,
                }))
                .await?;
            emit(printer.member_list(&r))
        }
        MemberCommand::Promote(a) => {
            let id = member_id(&a.args)?;
            let printer = ctx.printer()?;
            let client = ctx.client().await?;
            let r = ctx
                .request(client.cluster().member_promote(MemberPromoteRequest { id }))
                .await?;
            emit(printer.member_change("promoted in", id, &r.header, &r.members, &r))
        }
    }
}

/// The `ETCD_*` lines `member add` prints for starting the new member.
fn print_member_env(name: &str, peer_urls: &str, r: &MemberAddResponse) {
    let new_id = r.member.as_ref().map_or(0, |m| m.id);
    let mut conf = Vec::new();
    for m in &r.members {
        for url in &m.peer_ur_ls {
            let member_name = if m.id == new_id {
                name
            } else {
                m.name.as_str()
            };
            conf.push(format!("{member_name}={url}"));
        }
    }
    println!();
    println!("ETCD_NAME={}", go::quote(name.as_bytes()));
    println!(
        "ETCD_INITIAL_CLUSTER={}",
        go::quote(conf.join(",").as_bytes())
    );
    println!(
        "ETCD_INITIAL_ADVERTISE_PEER_URLS={}",
        go::quote(peer_urls.as_bytes())
    );
    println!("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
}
