//! `watch`: one watch from the arguments (or `ETCDCTL_WATCH_KEY`), or many from stdin with
//! `-i`; each event printed, and optionally handed to a command after `--`.

use std::io::BufRead;

use oxcd_api::etcdserverpb::{WatchCreateRequest, WatchResponse};
use oxcd_client::{prefix_end, Client};

use super::txn::argify;
use crate::cli::WatchArgs;
use crate::context::{emit, Ctx};
use crate::exit::{code, CmdResult, Exit};
use crate::go;
use crate::output::Printer;

const BAD_ARGS_NUM: &str = "bad number of arguments";
const BAD_ARGS_SEPARATOR: &str = "bad number of arguments (found separator --, but no commands)";
const BAD_ARGS_ENV: &str = "bad number of arguments (found conflicting environment key)";

/// What to watch: key, optional range end, options.
struct Target {
    key: String,
    range_end: Option<String>,
    prefix: bool,
    rev: i64,
    prev_kv: bool,
}

pub async fn watch(ctx: &Ctx, a: WatchArgs) -> CmdResult {
    let env_key = std::env::var("ETCDCTL_WATCH_KEY").unwrap_or_default();
    let env_range = std::env::var("ETCDCTL_WATCH_RANGE_END").unwrap_or_default();
    if env_key.is_empty() && !env_range.is_empty() {
        return Err(Exit::new(
            code::BAD_ARGS,
            format!(
                "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={}",
                go::quote(env_range.as_bytes())
            ),
        ));
    }
    if a.interactive {
        return interactive(ctx, &env_key, &env_range).await;
    }
    // clap hands everything after `--` on as arguments too; find the command part.
    let raw: Vec<String> = std::env::args().collect();
    let separator = raw.iter().position(|arg| arg == "--");
    let exec: Vec<String> = separator.map(|i| raw[i + 1..].to_vec()).unwrap_or_default();
    if separator.is_some() && exec.is_empty() {
        return Err(Exit::new(code::BAD_ARGS, BAD_ARGS_SEPARATOR));
    }
    let mut args = a.args.clone();
    args.truncate(args.len() - exec.len().min(args.len()));
    if args.is_empty() && env_key.is_empty() {
        return Err(Exit::new(code::BAD_ARGS, BAD_ARGS_NUM));
    }
    if !args.is_empty() && !env_key.is_empty() {
        return Err(Exit::new(code::BAD_ARGS, BAD_ARGS_ENV));
    }
    if !env_key.is_empty() {
        args = vec![env_key];
        if !env_range.is_empty() {
            args.push(env_range);
        }
    }
    let target =
        target(&args, a.prefix, a.rev, a.prev_kv).map_err(|e| Exit::new(code::BAD_ARGS, e))?;
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    print_watch(&client, &printer, &target, &exec).await?;
    Err(Exit::new(
        code::INTERRUPTED,
        "watch is canceled by the server",
    ))
}

fn target(args: &[String], prefix: bool, rev: i64, prev_kv: bool) -> Result<Target, String> {
    let Some(key) = args.first() else {
        return Err(BAD_ARGS_NUM.into());
    };
    if args.len() == 2 && prefix {
        return Err("`range_end` and `--prefix` are mutually exclusive".into());
    }
    Ok(Target {
        key: key.clone(),
        range_end: args.get(1).cloned(),
        prefix,
        rev,
        prev_kv,
    })
}

/// Prints every response of one watch until it ends.
async fn print_watch(client: &Client, printer: &Printer, t: &Target, exec: &[String]) -> CmdResult {
    let key = t.key.as_bytes().to_vec();
    let range_end = if t.prefix {
        if key.is_empty() {
            vec![0]
        } else {
            prefix_end(&key)
        }
    } else {
        t.range_end
            .clone()
            .map(String::into_bytes)
            .unwrap_or_default()
    };
    let request = WatchCreateRequest {
        key: if t.prefix && key.is_empty() {
            vec![0]
        } else {
            key
        },
        range_end,
        start_revision: t.rev,
        prev_kv: t.prev_kv,
        ..Default::default()
    };
    let mut stream = client
        .watch()
        .watch(request)
        .await
        .map_err(|e| Exit::request(code::ERROR, &e))?;
    while let Some(response) = stream.message().await {
        let Ok(response) = response else { break };
        if response.created && !response.canceled {
            // clientv3 keeps the `created` answer to itself.
            continue;
        }
        if response.canceled {
            eprintln!("watch was canceled ({})", cancel_text(&response));
        }
        if is_progress_notify(&response) {
            println!(
                "progress notify: {}",
                response.header.as_ref().map_or(0, |h| h.revision)
            );
        }
        emit(printer.watch(&response))?;
        if !exec.is_empty() {
            run_for_events(&response, exec)?;
        }
        if response.canceled {
            break;
        }
    }
    Ok(())
}

fn is_progress_notify(r: &WatchResponse) -> bool {
    r.events.is_empty()
        && !r.canceled
        && !r.created
        && r.compact_revision == 0
        && r.header.as_ref().is_some_and(|h| h.revision != 0)
}

/// clientv3's `WatchResponse.Err()` text.
fn cancel_text(r: &WatchResponse) -> String {
    if r.compact_revision != 0 {
        return "etcdserver: mvcc: required revision has been compacted".into();
    }
    if r.cancel_reason.is_empty() {
        return "etcdserver: mvcc: required revision is a future revision".into();
    }
    if oxcd_api::EtcdError::from_message(&r.cancel_reason).is_some() {
        r.cancel_reason.clone()
    } else {
        format!(
            "rpc error: code = FailedPrecondition desc = {}",
            r.cancel_reason
        )
    }
}

/// Runs the command after `--` once per event, with the event in its environment.
fn run_for_events(r: &WatchResponse, exec: &[String]) -> CmdResult {
    let revision = r.header.as_ref().map_or(0, |h| h.revision);
    for event in &r.events {
        let kv = event.kv.clone().unwrap_or_default();
        let status = std::process::Command::new(&exec[0])
            .args(&exec[1..])
            .env("ETCD_WATCH_REVISION", revision.to_string())
            .env(
                "ETCD_WATCH_EVENT_TYPE",
                go::quote(crate::output::event_type(event.r#type).as_bytes()),
            )
            .env("ETCD_WATCH_KEY", go::quote(&kv.key))
            .env("ETCD_WATCH_VALUE", go::quote(&kv.value))
            .status();
        let failed = match status {
            Ok(s) if s.success() => None,
            Ok(s) => Some(format!("exit status {}", s.code().unwrap_or(-1))),
            Err(e) => Some(e.to_string()),
        };
        if let Some(err) = failed {
            let quoted: Vec<String> = exec.iter().map(|a| go::quote(a.as_bytes())).collect();
            eprintln!("command [{}] error ({err})", quoted.join(" "));
            return Err(Exit::silent(code::ERROR));
        }
    }
    Ok(())
}

/// `watch -i`: `watch [options] key [range_end]` and `progress` lines from stdin.
async fn interactive(ctx: &Ctx, env_key: &str, env_range: &str) -> CmdResult {
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = lines.recv().await {
        let args = argify(&line);
        let Some(verb) = args.first() else {
            eprintln!("Invalid command: {line} (watch and progress supported)");
            continue;
        };
        match verb.as_str() {
            "watch" => {
                if args.len() < 2 && env_key.is_empty() {
                    eprintln!("Invalid command {line} (command type or key is not provided)");
                    continue;
                }
                let parsed = match parse_interactive(&args[1..], env_key, env_range) {
                    Ok(parsed) => parsed,
                    Err(e) => return Err(Exit::new(code::BAD_ARGS, e)),
                };
                let client = client.clone();
                tokio::spawn(async move {
                    let (target, exec) = parsed;
                    let _ = print_watch(&client, &printer, &target, &exec).await;
                });
            }
            "progress" => {
                // Progress requests need a shared watch stream; each watch here has its own.
                eprintln!("Invalid command {line} (progress is not supported by oxcdctl)");
            }
            _ => eprintln!("Invalid command {line} (only support watch)"),
        }
    }
    Err(Exit::new(
        code::INVALID_INPUT,
        "Error reading watch request line: EOF",
    ))
}

fn parse_interactive(
    args: &[String],
    env_key: &str,
    env_range: &str,
) -> Result<(Target, Vec<String>), String> {
    let (mut prefix, mut rev, mut prev_kv) = (false, 0, false);
    let mut positional = Vec::new();
    let mut exec = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--" => {
                exec = iter.by_ref().cloned().collect();
                if exec.is_empty() {
                    return Err(BAD_ARGS_SEPARATOR.into());
                }
            }
            "--prefix" => prefix = true,
            "--prev-kv" => prev_kv = true,
            "--rev" => {
                let value = iter.next().ok_or("flag needs an argument: --rev")?;
                rev = go::parse_int(value, 10)?;
            }
            other if other.starts_with("--rev=") => rev = go::parse_int(&other[6..], 10)?,
            other => positional.push(other.to_owned()),
        }
    }
    if exec.is_empty() && env_key.is_empty() && positional.is_empty() {
        return Err(BAD_ARGS_NUM.into());
    }
    if exec.is_empty() && !positional.is_empty() && !env_key.is_empty() {
        return Err(BAD_ARGS_ENV.into());
    }
    if !env_key.is_empty() {
        let mut with_env = vec![env_key.to_owned()];
        if !env_range.is_empty() {
            with_env.push(env_range.to_owned());
        }
        with_env.extend(positional);
        positional = with_env;
    }
    Ok((target(&positional, prefix, rev, prev_kv)?, exec))
}
