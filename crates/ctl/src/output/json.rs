//! `-w json`: what Go's `encoding/json` makes of etcd's gogoproto structs: fields in
//! declaration order, the proto name in the json tag, zero values left out (`omitempty`),
//! bytes in base64, enums as numbers.

use oxcd_api::etcdserverpb::response_op::Response;
use oxcd_api::etcdserverpb::*;
use oxcd_api::mvccpb::{Event, KeyValue};

use crate::go;

/// A JSON object being written, field by field.
#[derive(Default)]
pub struct Obj(Vec<String>);

impl Obj {
    pub fn new() -> Obj {
        Obj::default()
    }

    /// A field always written, with its value already JSON.
    pub fn raw(mut self, name: &str, value: String) -> Obj {
        self.0.push(format!("{}:{value}", go::json_string(name)));
        self
    }

    pub fn int(self, name: &str, value: impl Into<i128>) -> Obj {
        self.raw(name, value.into().to_string())
    }

    /// An integer left out when zero.
    pub fn int_omit(self, name: &str, value: impl Into<i128>) -> Obj {
        let value = value.into();
        if value == 0 {
            return self;
        }
        self.int(name, value)
    }

    pub fn bool(self, name: &str, value: bool) -> Obj {
        self.raw(name, value.to_string())
    }

    pub fn bool_omit(self, name: &str, value: bool) -> Obj {
        if value {
            self.bool(name, value)
        } else {
            self
        }
    }

    pub fn str(self, name: &str, value: &str) -> Obj {
        self.raw(name, go::json_string(value))
    }

    pub fn str_omit(self, name: &str, value: &str) -> Obj {
        if value.is_empty() {
            self
        } else {
            self.str(name, value)
        }
    }

    pub fn bytes_omit(self, name: &str, value: &[u8]) -> Obj {
        if value.is_empty() {
            self
        } else {
            self.raw(name, go::json_string(&go::base64(value)))
        }
    }

    pub fn obj_omit(self, name: &str, value: Option<String>) -> Obj {
        match value {
            Some(value) => self.raw(name, value),
            None => self,
        }
    }

    /// A slice left out when empty.
    pub fn list_omit(self, name: &str, items: Vec<String>) -> Obj {
        if items.is_empty() {
            self
        } else {
            self.raw(name, list(items))
        }
    }

    /// A slice written `null` when nil (Go's encoding of a nil slice without omitempty).
    pub fn list_or_null(self, name: &str, items: Vec<String>) -> Obj {
        if items.is_empty() {
            self.raw(name, "null".into())
        } else {
            self.raw(name, list(items))
        }
    }

    pub fn end(self) -> String {
        format!("{{{}}}", self.0.join(","))
    }
}

pub fn list(items: Vec<String>) -> String {
    format!("[{}]", items.join(","))
}

pub fn strings(items: &[String]) -> Vec<String> {
    items.iter().map(|s| go::json_string(s)).collect()
}

pub fn header_fields(h: &ResponseHeader) -> Obj {
    Obj::new()
        .int_omit("cluster_id", h.cluster_id)
        .int_omit("member_id", h.member_id)
        .int_omit("revision", h.revision)
        .int_omit("raft_term", h.raft_term)
}

pub fn header(h: &Option<ResponseHeader>) -> Option<String> {
    h.as_ref().map(|h| header_fields(h).end())
}

pub fn kv(kv: &KeyValue) -> String {
    Obj::new()
        .bytes_omit("key", &kv.key)
        .int_omit("create_revision", kv.create_revision)
        .int_omit("mod_revision", kv.mod_revision)
        .int_omit("version", kv.version)
        .bytes_omit("value", &kv.value)
        .int_omit("lease", kv.lease)
        .end()
}

fn kvs(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter().map(kv).collect()
}

pub fn event(e: &Event) -> String {
    Obj::new()
        .int_omit("type", e.r#type)
        .obj_omit("kv", e.kv.as_ref().map(kv))
        .obj_omit("prev_kv", e.prev_kv.as_ref().map(kv))
        .end()
}

pub fn range(r: &RangeResponse) -> String {
    Obj::new()
        .obj_omit("header", header(&r.header))
        .list_omit("kvs", kvs(&r.kvs))
        .bool_omit("more", r.more)
        .int_omit("count", r.count)
        .end()
}

pub fn put(r: &PutResponse) -> String {
    Obj::new()
        .obj_omit("header", header(&r.header))
        .obj_omit("prev_kv", r.prev_kv.as_ref().map(kv))
        .end()
}

pub fn delete(r: &DeleteRangeResponse) -> String {
    Obj::new()
        .obj_omit("header", header(&r.header))
        .int_omit("deleted", r.deleted)
        .list_omit("prev_kvs", kvs(&r.prev_kvs))
        .end()
}

pub fn txn(r: &TxnResponse) -> String {
    let responses = r
        .responses
        .iter()
        .map(|op| {
            let inner = match &op.response {
                Some(Response::ResponseRange(x)) => Obj::new().raw("ResponseRange", range(x)),
                Some(Response::ResponsePut(x)) => Obj::new().raw("ResponsePut", put(x)),
                Some(Response::ResponseDeleteRange(x)) => {
                    Obj::new().raw("ResponseDeleteRange", delete(x))
                }
                Some(Response::ResponseTxn(x)) => Obj::new().raw("ResponseTxn", txn(x)),
                None => return Obj::new().end(),
            };
            Obj::new().raw("Response", inner.end()).end()
        })
        .collect();
    Obj::new()
        .obj_omit("header", header(&r.header))
        .bool_omit("succeeded", r.succeeded)
        .list_omit("responses", responses)
        .end()
}

/// clientv3's `WatchResponse`: Go field names, no omitempty.
pub fn watch(r: &WatchResponse) -> String {
    Obj::new()
        .raw("Header", header_fields(&r.header.unwrap_or_default()).end())
        .list_or_null("Events", r.events.iter().map(event).collect())
        .int("CompactRevision", r.compact_revision)
        .bool("Canceled", r.canceled)
        .bool("Created", r.created)
        .end()
}

pub fn member(m: &Member) -> String {
    Obj::new()
        .int_omit("ID", m.id)
        .str_omit("name", &m.name)
        .list_omit("peerURLs", strings(&m.peer_ur_ls))
        .list_omit("clientURLs", strings(&m.client_ur_ls))
        .bool_omit("isLearner", m.is_learner)
        .end()
}

pub fn members(members: &[Member]) -> Vec<String> {
    members.iter().map(member).collect()
}

pub fn status(s: &StatusResponse) -> String {
    Obj::new()
        .obj_omit("header", header(&s.header))
        .str_omit("version", &s.version)
        .int_omit("dbSize", s.db_size)
        .int_omit("leader", s.leader)
        .int_omit("raftIndex", s.raft_index)
        .int_omit("raftTerm", s.raft_term)
        .int_omit("raftAppliedIndex", s.raft_applied_index)
        .list_omit("errors", strings(&s.errors))
        .int_omit("dbSizeInUse", s.db_size_in_use)
        .bool_omit("isLearner", s.is_learner)
        .end()
}

pub fn hash_kv(h: &HashKvResponse) -> String {
    Obj::new()
        .obj_omit("header", header(&h.header))
        .int_omit("hash", h.hash)
        .int_omit("compact_revision", h.compact_revision)
        .end()
}

/// A response with only a header (most auth and membership answers).
pub fn header_only(h: &Option<ResponseHeader>) -> String {
    Obj::new().obj_omit("header", header(h)).end()
}

pub fn lease_granted(r: &LeaseGrantResponse) -> String {
    header_fields(&r.header.unwrap_or_default())
        .int("ID", r.id)
        .int("TTL", r.ttl)
        .str("Error", &r.error)
        .end()
}

pub fn keep_alive(r: &LeaseKeepAliveResponse) -> String {
    header_fields(&r.header.unwrap_or_default())
        .int("ID", r.id)
        .int("TTL", r.ttl)
        .end()
}

pub fn time_to_live(r: &LeaseTimeToLiveResponse) -> String {
    let keys: Vec<String> = r
        .keys
        .iter()
        .map(|k| go::json_string(&go::base64(k)))
        .collect();
    header_fields(&r.header.unwrap_or_default())
        .int("id", r.id)
        .int("ttl", r.ttl)
        .int("granted-ttl", r.granted_ttl)
        .list_or_null("keys", keys)
        .end()
}

pub fn leases(r: &LeaseLeasesResponse) -> String {
    let leases = r
        .leases
        .iter()
        .map(|l| Obj::new().int("id", l.id).end())
        .collect();
    header_fields(&r.header.unwrap_or_default())
        .raw("leases", list(leases))
        .end()
}

pub fn member_add(r: &MemberAddResponse) -> String {
    Obj::new()
        .obj_omit("header", header(&r.header))
        .obj_omit("member", r.member.as_ref().map(member))
        .list_omit("members", members(&r.members))
        .end()
}

/// A membership answer: the header and the members after the change (or the list).
pub fn member_list(h: &Option<ResponseHeader>, list: &[Member]) -> String {
    Obj::new()
        .obj_omit("header", header(h))
        .list_omit("members", members(list))
        .end()
}

pub fn endpoint_health(health: &[super::Health]) -> String {
    let items = health
        .iter()
        .map(|h| {
            Obj::new()
                .str("endpoint", &h.endpoint)
                .bool("health", h.health)
                .str("took", &h.took)
                .str_omit("error", &h.error)
                .end()
        })
        .collect();
    list(items)
}

pub fn endpoint_status(statuses: &[(String, StatusResponse)]) -> String {
    let items = statuses
        .iter()
        .map(|(ep, s)| {
            Obj::new()
                .str("Endpoint", ep)
                .raw("Status", status(s))
                .end()
        })
        .collect();
    list(items)
}

pub fn endpoint_hash_kv(hashes: &[(String, HashKvResponse)]) -> String {
    let items = hashes
        .iter()
        .map(|(ep, h)| {
            Obj::new()
                .str("Endpoint", ep)
                .raw("HashKV", hash_kv(h))
                .end()
        })
        .collect();
    list(items)
}

pub fn db_status(st: &oxcd_storage::SnapshotStatus) -> String {
    Obj::new()
        .int("hash", st.hash)
        .int("revision", st.revision)
        .int("totalKey", st.total_key)
        .int("totalSize", st.total_size)
        .end()
}

pub fn alarm(r: &AlarmResponse) -> String {
    let alarms = r
        .alarms
        .iter()
        .map(|a| {
            Obj::new()
                .int_omit("memberID", a.member_id)
                .int_omit("alarm", a.alarm)
                .end()
        })
        .collect();
    Obj::new()
        .obj_omit("header", header(&r.header))
        .list_omit("alarms", alarms)
        .end()
}

pub fn role(r: &AuthRoleGetResponse) -> String {
    let perms = r
        .perm
        .iter()
        .map(|p| {
            Obj::new()
                .int_omit("permType", p.perm_type)
                .bytes_omit("key", &p.key)
                .bytes_omit("range_end", &p.range_end)
                .end()
        })
        .collect();
    Obj::new()
        .obj_omit("header", header(&r.header))
        .list_omit("perm", perms)
        .end()
}

/// `user list` / `role list` (`field`: "users", "roles"), and `user get`'s roles.
pub fn names(h: &Option<ResponseHeader>, field: &str, names: &[String]) -> String {
    Obj::new()
        .obj_omit("header", header(h))
        .list_omit(field, strings(names))
        .end()
}
