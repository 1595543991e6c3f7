//! `-w fields`: one `"Name" : value` line per field, as etcdctl's fields printer.

use std::fmt::Write;

use oxcd_api::etcdserverpb::response_op::Response;
use oxcd_api::etcdserverpb::*;
use oxcd_api::mvccpb::KeyValue;

use crate::go::quote;

pub fn header(out: &mut String, h: &Option<ResponseHeader>) {
    let h = (*h).unwrap_or_default();
    let _ = writeln!(out, "\"ClusterID\" : {}", h.cluster_id);
    let _ = writeln!(out, "\"MemberID\" : {}", h.member_id);
    let _ = writeln!(out, "\"Revision\" : {}", h.revision);
    let _ = writeln!(out, "\"RaftTerm\" : {}", h.raft_term);
}

pub fn kv(out: &mut String, prefix: &str, kv: &KeyValue) {
    let _ = writeln!(out, "\"{prefix}Key\" : {}", quote(&kv.key));
    let _ = writeln!(out, "\"{prefix}CreateRevision\" : {}", kv.create_revision);
    let _ = writeln!(out, "\"{prefix}ModRevision\" : {}", kv.mod_revision);
    let _ = writeln!(out, "\"{prefix}Version\" : {}", kv.version);
    let _ = writeln!(out, "\"{prefix}Value\" : {}", quote(&kv.value));
    let _ = writeln!(out, "\"{prefix}Lease\" : {}", kv.lease);
}

pub fn range(out: &mut String, r: &RangeResponse) {
    header(out, &r.header);
    for x in &r.kvs {
        kv(out, "", x);
    }
    let _ = writeln!(out, "\"More\" : {}", r.more);
    let _ = writeln!(out, "\"Count\" : {}", r.count);
}

pub fn put(out: &mut String, r: &PutResponse) {
    header(out, &r.header);
    if let Some(prev) = &r.prev_kv {
        kv(out, "Prev", prev);
    }
}

pub fn delete(out: &mut String, r: &DeleteRangeResponse) {
    header(out, &r.header);
    let _ = writeln!(out, "\"Deleted\" : {}", r.deleted);
    for x in &r.prev_kvs {
        kv(out, "Prev", x);
    }
}

pub fn txn(out: &mut String, r: &TxnResponse) {
    header(out, &r.header);
    let _ = writeln!(out, "\"Succeeded\" : {}", r.succeeded);
    for op in &r.responses {
        match &op.response {
            Some(Response::ResponseRange(x)) => range(out, x),
            Some(Response::ResponsePut(x)) => put(out, x),
            Some(Response::ResponseDeleteRange(x)) => delete(out, x),
            Some(Response::ResponseTxn(_)) | None => {
                let _ = writeln!(out, "\"Unknown\" : \"{:?}\"", op.response);
            }
        }
    }
}

pub fn watch(out: &mut String, r: &WatchResponse) {
    header(out, &r.header);
    for e in &r.events {
        let _ = writeln!(out, "\"Type\" : {}", super::event_type(e.r#type));
        if let Some(prev) = &e.prev_kv {
            kv(out, "Prev", prev);
        }
        if let Some(x) = &e.kv {
            kv(out, "", x);
        }
    }
}

pub fn member_list(out: &mut String, r: &MemberListResponse) {
    header(out, &r.header);
    for m in &r.members {
        let _ = writeln!(out, "\"ID\" : {}", m.id);
        let _ = writeln!(out, "\"Name\" : {}", quote(m.name.as_bytes()));
        for u in &m.peer_ur_ls {
            let _ = writeln!(out, "\"PeerURL\" : {}", quote(u.as_bytes()));
        }
        for u in &m.client_ur_ls {
            let _ = writeln!(out, "\"ClientURL\" : {}", quote(u.as_bytes()));
        }
        let _ = writeln!(out, "\"IsLearner\" : {}", m.is_learner);
        out.push('\n');
    }
}

pub fn endpoint_status(out: &mut String, list: &[(String, StatusResponse)]) {
    for (ep, s) in list {
        header(out, &s.header);
        let _ = writeln!(out, "\"Version\" : {}", quote(s.version.as_bytes()));
        let _ = writeln!(out, "\"DBSize\" : {}", s.db_size);
        let _ = writeln!(out, "\"Leader\" : {}", s.leader);
        let _ = writeln!(out, "\"IsLearner\" : {}", s.is_learner);
        let _ = writeln!(out, "\"RaftIndex\" : {}", s.raft_index);
        let _ = writeln!(out, "\"RaftTerm\" : {}", s.raft_term);
        let _ = writeln!(out, "\"RaftAppliedIndex\" : {}", s.raft_applied_index);
        let _ = writeln!(out, "\"Errors\" : [{}]", s.errors.join(" "));
        let _ = writeln!(out, "\"Endpoint\" : {}", quote(ep.as_bytes()));
        out.push('\n');
    }
}

pub fn endpoint_hash_kv(out: &mut String, list: &[(String, HashKvResponse)]) {
    for (ep, h) in list {
        header(out, &h.header);
        let _ = writeln!(out, "\"Endpoint\" : {}", quote(ep.as_bytes()));
        let _ = writeln!(out, "\"Hash\" : {}", h.hash);
        out.push('\n');
    }
}

pub fn alarm(out: &mut String, r: &AlarmResponse) {
    header(out, &r.header);
    for a in &r.alarms {
        let _ = writeln!(out, "\"MemberID\" : {}", a.member_id);
        let _ = writeln!(out, "\"AlarmType\" : {}", super::alarm_name(a.alarm));
        out.push('\n');
    }
}

/// A lease grant or keep-alive answer.
pub fn lease(out: &mut String, h: &Option<ResponseHeader>, id: i64, ttl: i64) {
    header(out, h);
    let _ = writeln!(out, "\"ID\" : {id}\n\"TTL\" : {ttl}");
}

pub fn time_to_live(out: &mut String, r: &LeaseTimeToLiveResponse) {
    header(out, &r.header);
    let _ = writeln!(
        out,
        "\"ID\" : {}\n\"TTL\" : {}\n\"GrantedTTL\" : {}",
        r.id, r.ttl, r.granted_ttl
    );
    for k in &r.keys {
        let _ = writeln!(out, "\"Key\" : {}", quote(k));
    }
}

pub fn leases(out: &mut String, r: &LeaseLeasesResponse) {
    header(out, &r.header);
    for l in &r.leases {
        let _ = writeln!(out, "\"ID\" : {}", l.id);
    }
}

pub fn endpoint_health(out: &mut String, list: &[super::Health]) {
    for h in list {
        let _ = writeln!(out, "\"Endpoint\" : {}", quote(h.endpoint.as_bytes()));
        let _ = writeln!(out, "\"Health\" : {}", h.health);
        let _ = writeln!(out, "\"Took\" : {}", h.took);
        let _ = writeln!(out, "\"Error\" : {}", h.error);
        out.push('\n');
    }
}

pub fn db_status(out: &mut String, st: &oxcd_storage::SnapshotStatus) {
    let _ = writeln!(
        out,
        "\"Hash\" : {}\n\"Revision\" : {}\n\"Keys\" : {}\n\"Size\" : {}",
        st.hash, st.revision, st.total_key, st.total_size
    );
}

pub fn role(out: &mut String, r: &AuthRoleGetResponse) {
    header(out, &r.header);
    for p in &r.perm {
        let name = ["READ", "WRITE", "READWRITE"]
            .get(p.perm_type as usize)
            .copied()
            .unwrap_or("UNKNOWN");
        let _ = writeln!(out, "\"PermType\" :  {name}");
        let _ = writeln!(out, "\"Key\" : {}", quote(&p.key));
        let _ = writeln!(out, "\"RangeEnd\" : {}", quote(&p.range_end));
    }
}

/// `role list` (etcdctl's fields printer has no form for `user list`).
pub fn roles(out: &mut String, h: &Option<ResponseHeader>, names: &[String]) {
    header(out, h);
    out.push_str("\"Roles\" :");
    for n in names {
        out.push(' ');
        out.push_str(&quote(n.as_bytes()));
    }
    out.push('\n');
}
