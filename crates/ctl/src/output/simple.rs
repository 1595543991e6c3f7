//! `-w simple`, etcdctl's default: the lines a person reads (`OK`, keys and values, `lease
//! ... granted`, comma-separated rows).

use std::fmt::Write;

use oxcd_api::authpb::Permission;
use oxcd_api::etcdserverpb::response_op::Response;
use oxcd_api::etcdserverpb::*;
use oxcd_api::mvccpb::KeyValue;

use super::{alarm_name, event_type, Health};

/// How keys and values print.
#[derive(Clone, Copy, Debug)]
pub struct KvStyle {
    /// `--hex`: every byte as `\xNN`.
    pub hex: bool,
    /// `get --print-value-only`.
    pub value_only: bool,
}

pub fn kv(out: &mut String, style: KvStyle, kv: &KeyValue) {
    let text = |bytes: &[u8]| {
        if style.hex {
            bytes.iter().map(|b| format!("\\x{b:02x}")).collect()
        } else {
            String::from_utf8_lossy(bytes).into_owned()
        }
    };
    if !style.value_only {
        out.push_str(&text(&kv.key));
        out.push('\n');
    }
    out.push_str(&text(&kv.value));
    out.push('\n');
}

pub fn range(out: &mut String, style: KvStyle, r: &RangeResponse) {
    for x in &r.kvs {
        kv(out, style, x);
    }
}

pub fn put(out: &mut String, style: KvStyle, r: &PutResponse) {
    out.push_str("OK\n");
    if let Some(prev) = &r.prev_kv {
        kv(out, style, prev);
    }
}

pub fn delete(out: &mut String, style: KvStyle, r: &DeleteRangeResponse) {
    let _ = writeln!(out, "{}", r.deleted);
    for x in &r.prev_kvs {
        kv(out, style, x);
    }
}

pub fn txn(out: &mut String, style: KvStyle, r: &TxnResponse) {
    out.push_str(if r.succeeded {
        "SUCCESS\n"
    } else {
        "FAILURE\n"
    });
    for op in &r.responses {
        out.push('\n');
        match &op.response {
            Some(Response::ResponseRange(x)) => range(out, style, x),
            Some(Response::ResponsePut(x)) => put(out, style, x),
            Some(Response::ResponseDeleteRange(x)) => delete(out, style, x),
            other => {
                let _ = writeln!(out, "unexpected response {other:?}");
            }
        }
    }
}

pub fn watch(out: &mut String, style: KvStyle, r: &WatchResponse) {
    for e in &r.events {
        let _ = writeln!(out, "{}", event_type(e.r#type));
        if let Some(prev) = &e.prev_kv {
            kv(out, style, prev);
        }
        if let Some(x) = &e.kv {
            kv(out, style, x);
        }
    }
}

pub fn lease_granted(out: &mut String, r: &LeaseGrantResponse) {
    let _ = writeln!(out, "lease {:016x} granted with TTL({}s)", r.id, r.ttl);
}

pub fn lease_revoked(out: &mut String, id: i64) {
    let _ = writeln!(out, "lease {id:016x} revoked");
}

pub fn keep_alive(out: &mut String, r: &LeaseKeepAliveResponse) {
    let _ = writeln!(out, "lease {:016x} keepalived with TTL({})", r.id, r.ttl);
}

pub fn time_to_live(out: &mut String, r: &LeaseTimeToLiveResponse, keys: bool) {
    if r.granted_ttl == 0 && r.ttl == -1 {
        let _ = writeln!(out, "lease {:016x} already expired", r.id);
        return;
    }
    let _ = write!(
        out,
        "lease {:016x} granted with TTL({}s), remaining({}s)",
        r.id, r.granted_ttl, r.ttl
    );
    if keys {
        let names: Vec<String> = r
            .keys
            .iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        let _ = write!(out, ", attached keys([{}])", names.join(" "));
    }
    out.push('\n');
}

pub fn leases(out: &mut String, r: &LeaseLeasesResponse) {
    let _ = writeln!(out, "found {} leases", r.leases.len());
    for l in &r.leases {
        let _ = writeln!(out, "{:016x}", l.id);
    }
}

/// `Member <id> added to cluster <id>` and the like (`verb`: "added to", "removed from").
pub fn member_changed(out: &mut String, verb: &str, id: u64, header: &Option<ResponseHeader>) {
    let cluster = header.as_ref().map_or(0, |h| h.cluster_id);
    let _ = writeln!(out, "Member {id:16x} {verb} cluster {cluster:16x}");
}

/// Rows shared with the table format, comma-separated.
pub fn rows(out: &mut String, rows: &[Vec<String>]) {
    for row in rows {
        out.push_str(&row.join(", "));
        out.push('\n');
    }
}

/// `endpoint health`'s lines, which etcdctl writes to stderr.
pub fn endpoint_health(out: &mut String, list: &[Health]) {
    for h in list {
        if h.error.is_empty() {
            let _ = writeln!(
                out,
                "{} is healthy: successfully committed proposal: took = {}",
                h.endpoint, h.took
            );
        } else {
            let _ = writeln!(
                out,
                "{} is unhealthy: failed to commit proposal: {}",
                h.endpoint, h.error
            );
        }
    }
}

pub fn move_leader(out: &mut String, leader: u64, target: u64) {
    let _ = writeln!(out, "Leadership transferred from {leader:x} to {target:x}");
}

pub fn alarm(out: &mut String, r: &AlarmResponse) {
    for a in &r.alarms {
        if a.member_id != 0 {
            let _ = write!(out, "memberID:{} ", a.member_id);
        }
        if a.alarm != 0 {
            let _ = write!(out, "alarm:{} ", alarm_name(a.alarm));
        }
        out.push('\n');
    }
}

pub fn role(out: &mut String, role: &str, r: &AuthRoleGetResponse) {
    let _ = writeln!(out, "Role {role}");
    // READ = 0, WRITE = 1, READWRITE = 2.
    out.push_str("KV Read:\n");
    for p in r
        .perm
        .iter()
        .filter(|p| p.perm_type == 0 || p.perm_type == 2)
    {
        permission(out, p);
    }
    out.push_str("KV Write:\n");
    for p in r
        .perm
        .iter()
        .filter(|p| p.perm_type == 1 || p.perm_type == 2)
    {
        permission(out, p);
    }
}

fn permission(out: &mut String, p: &Permission) {
    let key = String::from_utf8_lossy(&p.key);
    if p.range_end.is_empty() {
        let _ = writeln!(out, "\t{key}");
        return;
    }
    let end = String::from_utf8_lossy(&p.range_end);
    if p.range_end == [0] {
        let _ = write!(out, "\t[{key}, <open ended>");
    } else {
        let _ = write!(out, "\t[{key}, {end})");
    }
    if oxcd_client::prefix_end(&p.key) == p.range_end {
        let _ = write!(out, " (prefix {key})");
    }
    out.push('\n');
}

/// `user list` / `role list`: one name a line.
pub fn names(out: &mut String, names: &[String]) {
    for n in names {
        let _ = writeln!(out, "{n}");
    }
}

pub fn user(out: &mut String, user: &str, r: &AuthUserGetResponse) {
    let _ = write!(out, "User: {user}\nRoles:");
    for role in &r.roles {
        out.push(' ');
        out.push_str(role);
    }
    out.push('\n');
}
