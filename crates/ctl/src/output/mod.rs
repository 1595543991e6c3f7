//! etcdctl's output formats, one module each: [`simple`], [`json`], [`fields`], [`table`];
//! protobuf is the response message's wire bytes.
//!
//! Each response has one method on [`Printer`]: the table of which writer of each format
//! renders it, and where etcdctl refuses a format (`Error: table not supported as output
//! format`, exit 4).

mod fields;
mod json;
mod simple;
mod table;

use simple::KvStyle;

use oxcd_api::etcdserverpb::*;
use prost::Message;

use crate::exit::{code, Exit};
use crate::go;

/// The output formats of `-w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Simple,
    Json,
    Fields,
    Table,
    Protobuf,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Simple => "simple",
            Format::Json => "json",
            Format::Fields => "fields",
            Format::Table => "table",
            Format::Protobuf => "protobuf",
        }
    }
}

/// The outcome of rendering: bytes for stdout, or etcdctl's refusal.
pub type Rendered = Result<Vec<u8>, Exit>;

/// One endpoint's health, as `endpoint health` reports it.
#[derive(Clone, Debug)]
pub struct Health {
    pub endpoint: String,
    pub health: bool,
    pub took: String,
    pub error: String,
}

/// Renders responses in one format.
#[derive(Clone, Copy, Debug)]
pub struct Printer {
    pub format: Format,
    /// `--hex`: keys and values as `\x..` escapes (simple format).
    pub hex: bool,
    /// `get --print-value-only`.
    pub value_only: bool,
}

fn text(s: String) -> Rendered {
    Ok(s.into_bytes())
}

/// What a format writer appends to.
fn written(write: impl FnOnce(&mut String)) -> String {
    let mut s = String::new();
    write(&mut s);
    s
}

impl Printer {
    /// The printer for `-w NAME`, or `None` for an unknown format.
    pub fn new(name: &str, hex: bool) -> Option<Printer> {
        let format = match name {
            "simple" => Format::Simple,
            "json" => Format::Json,
            "fields" => Format::Fields,
            "table" => Format::Table,
            "protobuf" => Format::Protobuf,
            _ => return None,
        };
        Some(Printer {
            format,
            hex,
            value_only: false,
        })
    }

    fn unsupported(&self) -> Exit {
        Exit::new(
            code::BAD_FEATURE,
            format!("{} not supported as output format", self.format.name()),
        )
    }

    fn style(&self) -> KvStyle {
        KvStyle {
            hex: self.hex,
            value_only: self.value_only,
        }
    }

    /// Renders an RPC response in the formats every RPC shares (json, protobuf); simple
    /// and fields come from the callers; table is refused.
    fn rpc<M: Message>(
        &self,
        m: &M,
        json: impl FnOnce() -> String,
        simple: impl FnOnce(&mut String),
        fields: impl FnOnce(&mut String),
    ) -> Rendered {
        match self.format {
            Format::Simple => text(written(simple)),
            Format::Json => text(json() + "\n"),
            Format::Fields => text(written(fields)),
            Format::Protobuf => Ok(m.encode_to_vec()),
            Format::Table => Err(self.unsupported()),
        }
    }

    /// clientv3's lease answers embed the response header, whose `Marshal` Go promotes: in
    /// protobuf they print the header alone. Table is refused.
    fn lease(
        &self,
        header: &Option<ResponseHeader>,
        json: impl FnOnce() -> String,
        simple: impl FnOnce(&mut String),
        fields: impl FnOnce(&mut String),
    ) -> Rendered {
        self.rpc(&header.unwrap_or_default(), json, simple, fields)
    }

    /// Answers that are rows in simple and table form and that have no protobuf form.
    fn rows(
        &self,
        columns: &[&str],
        rows: &[Vec<String>],
        json: impl FnOnce() -> String,
        fields: impl FnOnce(&mut String),
    ) -> Rendered {
        match self.format {
            Format::Simple => text(written(|s| simple::rows(s, rows))),
            Format::Table => text(table::render(columns, rows)),
            Format::Json => text(json() + "\n"),
            Format::Fields => text(written(fields)),
            Format::Protobuf => Err(self.unsupported()),
        }
    }

    /// etcdctl's fields printer has no form for some answers and refuses them.
    fn refuse_fields(&self) -> Result<(), Exit> {
        if self.format == Format::Fields {
            Err(self.unsupported())
        } else {
            Ok(())
        }
    }

    pub fn get(&self, r: &RangeResponse) -> Rendered {
        let style = self.style();
        self.rpc(
            r,
            || json::range(r),
            |s| simple::range(s, style, r),
            |s| fields::range(s, r),
        )
    }

    pub fn put(&self, r: &PutResponse) -> Rendered {
        let style = self.style();
        self.rpc(
            r,
            || json::put(r),
            |s| simple::put(s, style, r),
            |s| fields::put(s, r),
        )
    }

    pub fn del(&self, r: &DeleteRangeResponse) -> Rendered {
        let style = self.style();
        self.rpc(
            r,
            || json::delete(r),
            |s| simple::delete(s, style, r),
            |s| fields::delete(s, r),
        )
    }

    pub fn txn(&self, r: &TxnResponse) -> Rendered {
        let style = self.style();
        self.rpc(
            r,
            || json::txn(r),
            |s| simple::txn(s, style, r),
            |s| fields::txn(s, r),
        )
    }

    pub fn watch(&self, r: &WatchResponse) -> Rendered {
        // The protobuf form carries only what clientv3's WatchResponse keeps.
        let wire = WatchResponse {
            header: Some(r.header.unwrap_or_default()),
            events: r.events.clone(),
            compact_revision: r.compact_revision,
            canceled: r.canceled,
            created: r.created,
            ..Default::default()
        };
        let style = self.style();
        self.rpc(
            &wire,
            || json::watch(r),
            |s| simple::watch(s, style, r),
            |s| fields::watch(s, r),
        )
    }

    pub fn grant(&self, r: &LeaseGrantResponse) -> Rendered {
        self.lease(
            &r.header,
            || json::lease_granted(r),
            |s| simple::lease_granted(s, r),
            |s| fields::lease(s, &r.header, r.id, r.ttl),
        )
    }

    pub fn revoke(&self, id: i64, r: &LeaseRevokeResponse) -> Rendered {
        self.rpc(
            r,
            || json::header_only(&r.header),
            |s| simple::lease_revoked(s, id),
            |s| fields::header(s, &r.header),
        )
    }

    pub fn keep_alive(&self, r: &LeaseKeepAliveResponse) -> Rendered {
        self.lease(
            &r.header,
            || json::keep_alive(r),
            |s| simple::keep_alive(s, r),
            |s| fields::lease(s, &r.header, r.id, r.ttl),
        )
    }

    pub fn time_to_live(&self, r: &LeaseTimeToLiveResponse, keys: bool) -> Rendered {
        self.lease(
            &r.header,
            || json::time_to_live(r),
            |s| simple::time_to_live(s, r, keys),
            |s| fields::time_to_live(s, r),
        )
    }

    pub fn leases(&self, r: &LeaseLeasesResponse) -> Rendered {
        self.lease(
            &r.header,
            || json::leases(r),
            |s| simple::leases(s, r),
            |s| fields::leases(s, r),
        )
    }

    pub fn member_add(&self, r: &MemberAddResponse) -> Rendered {
        let id = r.member.as_ref().map_or(0, |m| m.id);
        self.refuse_fields()?;
        self.rpc(
            r,
            || json::member_add(r),
            |s| simple::member_changed(s, "added to", id, &r.header),
            |_| {},
        )
    }

    pub fn member_change(
        &self,
        verb: &str,
        id: u64,
        header: &Option<ResponseHeader>,
        members: &[Member],
        m: &impl Message,
    ) -> Rendered {
        self.refuse_fields()?;
        self.rpc(
            m,
            || json::member_list(header, members),
            |s| simple::member_changed(s, verb, id, header),
            |_| {},
        )
    }

    pub fn member_list(&self, r: &MemberListResponse) -> Rendered {
        let rows = member_rows(r);
        let json = || json::member_list(&r.header, &r.members);
        match self.format {
            Format::Protobuf => Ok(r.encode_to_vec()),
            _ => self.rows(
                &[
                    "ID",
                    "Status",
                    "Name",
                    "Peer Addrs",
                    "Client Addrs",
                    "Is Learner",
                ],
                &rows,
                json,
                |s| fields::member_list(s, r),
            ),
        }
    }

    /// `endpoint health`; the simple form goes to stderr, so it is returned apart.
    pub fn endpoint_health(&self, list: &[Health]) -> Result<(Vec<u8>, String), Exit> {
        if self.format == Format::Simple {
            return Ok((Vec::new(), written(|s| simple::endpoint_health(s, list))));
        }
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|h| {
                vec![
                    h.endpoint.clone(),
                    h.health.to_string(),
                    h.took.clone(),
                    h.error.clone(),
                ]
            })
            .collect();
        let out = self.rows(
            &["endpoint", "health", "took", "error"],
            &rows,
            || json::endpoint_health(list),
            |s| fields::endpoint_health(s, list),
        )?;
        Ok((out, String::new()))
    }

    pub fn endpoint_status(&self, list: &[(String, StatusResponse)]) -> Rendered {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|(ep, s)| {
                let member = s.header.as_ref().map_or(0, |h| h.member_id);
                vec![
                    ep.clone(),
                    format!("{member:x}"),
                    s.version.clone(),
                    go::human_bytes(s.db_size as u64),
                    (s.leader == member).to_string(),
                    s.is_learner.to_string(),
                    s.raft_term.to_string(),
                    s.raft_index.to_string(),
                    s.raft_applied_index.to_string(),
                    s.errors.join(", "),
                ]
            })
            .collect();
        self.rows(
            &[
                "endpoint",
                "ID",
                "version",
                "db size",
                "is leader",
                "is learner",
                "raft term",
                "raft index",
                "raft applied index",
                "errors",
            ],
            &rows,
            || json::endpoint_status(list),
            |s| fields::endpoint_status(s, list),
        )
    }

    /// `snapshot status`: etcd's `snapshot.Status`.
    pub fn db_status(&self, st: &oxcd_storage::SnapshotStatus) -> Rendered {
        let row = vec![
            format!("{:x}", st.hash),
            st.revision.to_string(),
            st.total_key.to_string(),
            go::human_bytes(st.total_size),
        ];
        self.rows(
            &["hash", "revision", "total keys", "total size"],
            &[row],
            || json::db_status(st),
            |s| fields::db_status(s, st),
        )
    }

    pub fn endpoint_hash_kv(&self, list: &[(String, HashKvResponse)]) -> Rendered {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|(ep, h)| vec![ep.clone(), h.hash.to_string()])
            .collect();
        self.rows(
            &["endpoint", "hash"],
            &rows,
            || json::endpoint_hash_kv(list),
            |s| fields::endpoint_hash_kv(s, list),
        )
    }

    pub fn move_leader(&self, leader: u64, target: u64, r: &MoveLeaderResponse) -> Rendered {
        self.refuse_fields()?;
        self.rpc(
            r,
            || json::header_only(&r.header),
            |s| simple::move_leader(s, leader, target),
            |_| {},
        )
    }

    pub fn alarm(&self, r: &AlarmResponse) -> Rendered {
        self.rpc(
            r,
            || json::alarm(r),
            |s| simple::alarm(s, r),
            |s| fields::alarm(s, r),
        )
    }

    /// An auth answer: the simple line, or the header in the other formats.
    pub fn auth(
        &self,
        simple: String,
        header: &Option<ResponseHeader>,
        m: &impl Message,
    ) -> Rendered {
        self.rpc(
            m,
            || json::header_only(header),
            |s| s.push_str(&simple),
            |s| fields::header(s, header),
        )
    }

    pub fn role_get(&self, role: &str, r: &AuthRoleGetResponse) -> Rendered {
        self.rpc(
            r,
            || json::role(r),
            |s| simple::role(s, role, r),
            |s| fields::role(s, r),
        )
    }

    /// `role list` / `user list`: one name per line, or `"Roles" : "a" "b"` in fields
    /// (etcdctl's fields printer refuses `user list`).
    pub fn names(
        &self,
        field: &str,
        json_field: &str,
        names: &[String],
        header: &Option<ResponseHeader>,
        m: &impl Message,
    ) -> Rendered {
        if field != "Roles" {
            self.refuse_fields()?;
        }
        self.rpc(
            m,
            || json::names(header, json_field, names),
            |s| simple::names(s, names),
            |s| fields::roles(s, header, names),
        )
    }

    pub fn user_get(&self, user: &str, r: &AuthUserGetResponse) -> Rendered {
        self.refuse_fields()?;
        self.rpc(
            r,
            || json::names(&r.header, "roles", &r.roles),
            |s| simple::user(s, user, r),
            |_| {},
        )
    }
}

/// The rows of `member list` in simple and table form.
fn member_rows(r: &MemberListResponse) -> Vec<Vec<String>> {
    r.members
        .iter()
        .map(|m| {
            vec![
                format!("{:x}", m.id),
                if m.name.is_empty() {
                    "unstarted"
                } else {
                    "started"
                }
                .to_owned(),
                m.name.clone(),
                m.peer_ur_ls.join(","),
                m.client_ur_ls.join(","),
                m.is_learner.to_string(),
            ]
        })
        .collect()
}

pub fn event_type(t: i32) -> &'static str {
    if t == 1 {
        "DELETE"
    } else {
        "PUT"
    }
}

pub fn alarm_name(a: i32) -> &'static str {
    match a {
        1 => "NOSPACE",
        2 => "CORRUPT",
        _ => "NONE",
    }
}
