//! `get`, `put`, `del`: etcdctl's argument rules, shared with `txn`'s operation lines.

use std::io::Read;

use oxcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use oxcd_api::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};
use oxcd_client::prefix_end;

use crate::cli::{DelArgs, GetArgs, PutArgs};
use crate::context::{emit, Ctx};
use crate::exit::{code, CmdResult, Exit};
use crate::go;

fn bad_args(message: impl Into<String>) -> Exit {
    Exit::new(code::BAD_ARGS, message)
}

const PREFIX_AND_FROM_KEY: &str =
    "`--prefix` and `--from-key` cannot be set at the same time, choose one";
const TOO_MANY_WITH_PREFIX: &str =
    "too many arguments, only accept one argument when `--prefix` or `--from-key` is set";

/// Key and range end of `key [range_end]` with `--prefix` / `--from-key`.
fn key_range(key: &str, end: Option<&str>, prefix: bool, from_key: bool) -> (Vec<u8>, Vec<u8>) {
    let mut key = key.as_bytes().to_vec();
    let mut range_end = end.map(|e| e.as_bytes().to_vec()).unwrap_or_default();
    if prefix {
        if key.is_empty() {
            key = vec![0];
            range_end = vec![0];
        } else {
            range_end = prefix_end(&key);
        }
    }
    if from_key {
        if key.is_empty() {
            key = vec![0];
        }
        range_end = vec![0];
    }
    (key, range_end)
}

/// The request of `get ARGS`.
pub fn get_request(a: &GetArgs) -> Result<RangeRequest, Exit> {
    if a.args.is_empty() {
        return Err(bad_args(
            "get command needs one argument as key and an optional argument as range_end",
        ));
    }
    if a.prefix && a.from_key {
        return Err(bad_args(PREFIX_AND_FROM_KEY));
    }
    let serializable = match a.consistency.as_str() {
        "s" => true,
        "l" => false,
        other => {
            return Err(Exit::new(
                code::BAD_FEATURE,
                format!("unknown consistency flag {}", go::quote(other.as_bytes())),
            ))
        }
    };
    if a.args.len() > 1 && (a.prefix || a.from_key) {
        return Err(bad_args(TOO_MANY_WITH_PREFIX));
    }
    let order = match a.order.to_uppercase().as_str() {
        "ASCEND" => SortOrder::Ascend,
        "DESCEND" => SortOrder::Descend,
        "" => SortOrder::None,
        _ => {
            return Err(Exit::new(
                code::BAD_FEATURE,
                format!("bad sort order {}", a.order),
            ))
        }
    };
    let target = match a.sort_by.to_uppercase().as_str() {
        "CREATE" => SortTarget::Create,
        "KEY" | "" => SortTarget::Key,
        "MODIFY" => SortTarget::Mod,
        "VALUE" => SortTarget::Value,
        "VERSION" => SortTarget::Version,
        _ => {
            return Err(Exit::new(
                code::BAD_FEATURE,
                format!("bad sort target {}", a.sort_by),
            ))
        }
    };
    // clientv3 drops an ascending order by key: the server returns keys in that order.
    let order = if target == SortTarget::Key && order == SortOrder::Ascend {
        SortOrder::None
    } else {
        order
    };
    let (key, range_end) = key_range(
        &a.args[0],
        a.args.get(1).map(String::as_str),
        a.prefix,
        a.from_key,
    );
    Ok(RangeRequest {
        key,
        range_end,
        limit: a.limit,
        revision: a.rev.max(0),
        sort_order: order as i32,
        sort_target: target as i32,
        serializable,
        keys_only: a.keys_only,
        ..Default::default()
    })
}

/// The request of `put ARGS`; the value may come from stdin (`stdin` reads it).
pub fn put_request(
    a: &PutArgs,
    stdin: impl FnOnce() -> Option<String>,
) -> Result<PutRequest, Exit> {
    let needs = "put command needs 1 argument and input from stdin or 2 arguments";
    let Some(key) = a.args.first() else {
        return Err(bad_args(needs));
    };
    if a.ignore_value && a.args.len() > 1 {
        return Err(bad_args(
            "put command needs only 1 argument when 'ignore-value' is set",
        ));
    }
    let value = if a.ignore_value {
        String::new()
    } else if let Some(value) = a.args.get(1) {
        value.clone()
    } else {
        stdin()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad_args(needs))?
    };
    let lease = go::parse_int(&a.lease, 16)
        .map_err(|e| bad_args(format!("bad lease ID ({e}), expecting ID in Hex")))?;
    Ok(PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.into_bytes(),
        lease,
        prev_kv: a.prev_kv,
        ignore_value: a.ignore_value,
        ignore_lease: a.ignore_lease,
    })
}

/// The request of `del ARGS`.
pub fn del_request(a: &DelArgs) -> Result<DeleteRangeRequest, Exit> {
    if a.args.is_empty() || a.args.len() > 2 {
        return Err(bad_args(
            "del command needs one argument as key and an optional argument as range_end",
        ));
    }
    if a.prefix && a.from_key {
        return Err(bad_args(PREFIX_AND_FROM_KEY));
    }
    if a.args.len() > 1 && (a.prefix || a.from_key) {
        return Err(bad_args(TOO_MANY_WITH_PREFIX));
    }
    let (key, range_end) = key_range(
        &a.args[0],
        a.args.get(1).map(String::as_str),
        a.prefix,
        a.from_key,
    );
    Ok(DeleteRangeRequest {
        key,
        range_end,
        prev_kv: a.prev_kv,
    })
}

pub async fn get(ctx: &Ctx, a: GetArgs) -> CmdResult {
    let request = get_request(&a)?;
    let mut printer = ctx.printer()?;
    let client = ctx.client().await?;
    let response = ctx.request(client.kv().range(request)).await?;
    if a.print_value_only {
        if printer.format != crate::output::Format::Simple {
            return Err(bad_args(
                "print-value-only is only for `--write-out=simple`",
            ));
        }
        printer.value_only = true;
    }
    emit(printer.get(&response))
}

pub async fn put(ctx: &Ctx, a: PutArgs) -> CmdResult {
    let request = put_request(&a, read_stdin)?;
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let response = ctx.request(client.kv().put(request)).await?;
    emit(printer.put(&response))
}

pub async fn del(ctx: &Ctx, a: DelArgs) -> CmdResult {
    let request = del_request(&a)?;
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let response = ctx.request(client.kv().delete_range(request)).await?;
    emit(printer.del(&response))
}

fn read_stdin() -> Option<String> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).ok()?;
    Some(text)
}
