//! etcdctl's output formats: `simple` (this file), `json`, `fields`, `table`, `protobuf`.
//!
//! Each response has one method on [`Printer`], which renders it in the chosen format or
//! refuses as etcdctl does (`Error: table not supported as output format`, exit 4).
//! Protobuf is the response message's wire bytes.

mod fields;
mod json;
mod table;

use std::fmt::Write;

use oxcd_api::etcdserverpb::response_op::Response;
use oxcd_api::etcdserverpb::*;
use oxcd_api::mvccpb::KeyValue;
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

    /// Renders an RPC response in the formats every RPC shares (json, protobuf); simple
    /// and fields come from the callers; table is refused.
    fn rpc<M: Message>(
        &self,
        m: &M,
        json: impl FnOnce() -> String,
        simple: impl FnOnce() -> String,
        fields: impl FnOnce() -> String,
    ) -> Rendered {
        match self.format {
            Format::Simple => text(simple()),
            Format::Json => text(json() + "\n"),
            Format::Fields => text(fields()),
            Format::Protobuf => Ok(m.encode_to_vec()),
            Format::Table => Err(self.unsupported()),
        }
    }

    fn kv(&self, out: &mut String, kv: &KeyValue) {
        let (k, v) = if self.hex {
            (hex(&kv.key), hex(&kv.value))
        } else {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        };
        if !self.value_only {
            out.push_str(&k);
            out.push('\n');
        }
        out.push_str(&v);
        out.push('\n');
    }

    fn simple_get(&self, out: &mut String, r: &RangeResponse) {
        for kv in &r.kvs {
            self.kv(out, kv);
        }
    }

    fn simple_put(&self, out: &mut String, r: &PutResponse) {
        out.push_str("OK\n");
        if let Some(prev) = &r.prev_kv {
            self.kv(out, prev);
        }
    }

    fn simple_del(&self, out: &mut String, r: &DeleteRangeResponse) {
        let _ = writeln!(out, "{}", r.deleted);
        for kv in &r.prev_kvs {
            self.kv(out, kv);
        }
    }

    pub fn get(&self, r: &RangeResponse) -> Rendered {
        self.rpc(
            r,
            || json::range(r),
            || {
                let mut s = String::new();
                self.simple_get(&mut s, r);
                s
            },
            || {
                let mut s = String::new();
                fields::range(&mut s, r);
                s
            },
        )
    }

    pub fn put(&self, r: &PutResponse) -> Rendered {
        self.rpc(
            r,
            || json::put(r),
            || {
                let mut s = String::new();
                self.simple_put(&mut s, r);
                s
            },
            || {
                let mut s = String::new();
                fields::put(&mut s, r);
                s
            },
        )
    }

    pub fn del(&self, r: &DeleteRangeResponse) -> Rendered {
        self.rpc(
            r,
            || json::delete(r),
            || {
                let mut s = String::new();
                self.simple_del(&mut s, r);
                s
            },
            || {
                let mut s = String::new();
                fields::delete(&mut s, r);
                s
            },
        )
    }

    pub fn txn(&self, r: &TxnResponse) -> Rendered {
        self.rpc(
            r,
            || json::txn(r),
            || {
                let mut s = String::from(if r.succeeded {
                    "SUCCESS\n"
                } else {
                    "FAILURE\n"
                });
                for op in &r.responses {
                    s.push('\n');
                    match &op.response {
                        Some(Response::ResponseRange(x)) => self.simple_get(&mut s, x),
                        Some(Response::ResponsePut(x)) => self.simple_put(&mut s, x),
                        Some(Response::ResponseDeleteRange(x)) => self.simple_del(&mut s, x),
                        other => {
                            let _ = writeln!(s, "unexpected response {other:?}");
                        }
                    }
                }
                s
            },
            || {
                let mut s = String::new();
                fields::txn(&mut s, r);
                s
            },
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
        self.rpc(
            &wire,
            || json::watch(r),
            || {
                let mut s = String::new();
                for e in &r.events {
                    let _ = writeln!(s, "{}", event_type(e.r#type));
                    if let Some(prev) = &e.prev_kv {
                        self.kv(&mut s, prev);
                    }
                    if let Some(kv) = &e.kv {
                        self.kv(&mut s, kv);
                    }
                }
                s
            },
            || {
                let mut s = String::new();
                fields::watch(&mut s, r);
                s
            },
        )
    }

    pub fn grant(&self, r: &LeaseGrantResponse) -> Rendered {
        let header = r.header.unwrap_or_default();
        match self.format {
            Format::Simple => text(format!(
                "lease {:016x} granted with TTL({}s)\n",
                r.id, r.ttl
            )),
            Format::Json => text(
                json::header_fields(&header)
                    .int("ID", r.id)
                    .int("TTL", r.ttl)
                    .str("Error", &r.error)
                    .end()
                    + "\n",
            ),
            Format::Fields => {
                let mut s = String::new();
                fields::header(&mut s, &r.header);
                let _ = writeln!(s, "\"ID\" : {}\n\"TTL\" : {}", r.id, r.ttl);
                text(s)
            }
            _ => self.lease_wrapper(&r.header),
        }
    }

    /// clientv3's lease answers embed the response header, whose `Marshal` Go promotes: in
    /// protobuf they print the header alone. Table is refused.
    fn lease_wrapper(&self, header: &Option<ResponseHeader>) -> Rendered {
        match self.format {
            Format::Protobuf => Ok((*header).unwrap_or_default().encode_to_vec()),
            _ => Err(self.unsupported()),
        }
    }

    pub fn revoke(&self, id: i64, r: &LeaseRevokeResponse) -> Rendered {
        self.rpc(
            r,
            || json::header_only(&r.header),
            || format!("lease {id:016x} revoked\n"),
            || {
                let mut s = String::new();
                fields::header(&mut s, &r.header);
                s
            },
        )
    }

    pub fn keep_alive(&self, r: &LeaseKeepAliveResponse) -> Rendered {
        let header = r.header.unwrap_or_default();
        match self.format {
            Format::Simple => text(format!(
                "lease {:016x} keepalived with TTL({})\n",
                r.id, r.ttl
            )),
            Format::Json => text(
                json::header_fields(&header)
                    .int("ID", r.id)
                    .int("TTL", r.ttl)
                    .end()
                    + "\n",
            ),
            Format::Fields => {
                let mut s = String::new();
                fields::header(&mut s, &r.header);
                let _ = writeln!(s, "\"ID\" : {}\n\"TTL\" : {}", r.id, r.ttl);
                text(s)
            }
            _ => self.lease_wrapper(&r.header),
        }
    }

    pub fn time_to_live(&self, r: &LeaseTimeToLiveResponse, keys: bool) -> Rendered {
        let header = r.header.unwrap_or_default();
        match self.format {
            Format::Simple => {
                if r.granted_ttl == 0 && r.ttl == -1 {
                    return text(format!("lease {:016x} already expired\n", r.id));
                }
                let mut s = format!(
                    "lease {:016x} granted with TTL({}s), remaining({}s)",
                    r.id, r.granted_ttl, r.ttl
                );
                if keys {
                    let names: Vec<String> = r
                        .keys
                        .iter()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .collect();
                    let _ = write!(s, ", attached keys([{}])", names.join(" "));
                }
                text(s + "\n")
            }
            Format::Json => {
                let keys: Vec<String> = r
                    .keys
                    .iter()
                    .map(|k| go::json_string(&go::base64(k)))
                    .collect();
                text(
                    json::header_fields(&header)
                        .int("id", r.id)
                        .int("ttl", r.ttl)
                        .int("granted-ttl", r.granted_ttl)
                        .list_or_null("keys", keys)
                        .end()
                        + "\n",
                )
            }
            Format::Fields => {
                let mut s = String::new();
                fields::header(&mut s, &r.header);
                let _ = writeln!(
                    s,
                    "\"ID\" : {}\n\"TTL\" : {}\n\"GrantedTTL\" : {}",
                    r.id, r.ttl, r.granted_ttl
                );
                for k in &r.keys {
                    let _ = writeln!(s, "\"Key\" : {}", go::quote(k));
                }
                text(s)
            }
            _ => self.lease_wrapper(&r.header),
        }
    }

    pub fn leases(&self, r: &LeaseLeasesResponse) -> Rendered {
        let header = r.header.unwrap_or_default();
        match self.format {
            Format::Simple => {
                let mut s = format!("found {} leases\n", r.leases.len());
                for l in &r.leases {
                    let _ = writeln!(s, "{:016x}", l.id);
                }
                text(s)
            }
            Format::Json => {
                let leases = r
                    .leases
                    .iter()
                    .map(|l| json::Obj::new().int("id", l.id).end())
                    .collect();
                text(
                    json::header_fields(&header)
                        .raw("leases", json::list(leases))
                        .end()
                        + "\n",
                )
            }
            Format::Fields => {
                let mut s = String::new();
                fields::header(&mut s, &r.header);
                for l in &r.leases {
                    let _ = writeln!(s, "\"ID\" : {}", l.id);
                }
                text(s)
            }
            _ => self.lease_wrapper(&r.header),
        }
    }

    pub fn member_add(&self, r: &MemberAddResponse) -> Rendered {
        let json = || {
            json::Obj::new()
                .obj_omit("header", json::header(&r.header))
                .obj_omit("member", r.member.as_ref().map(json::member))
                .list_omit("members", json::members(&r.members))
                .end()
        };
        let cluster = r.header.as_ref().map_or(0, |h| h.cluster_id);
        let id = r.member.as_ref().map_or(0, |m| m.id);
        self.refuse_fields()?;
        self.rpc(
            r,
            json,
            || format!("Member {id:16x} added to cluster {cluster:16x}\n"),
            String::new,
        )
    }

    /// etcdctl's fields printer has no form for some answers and refuses them.
    fn refuse_fields(&self) -> Result<(), Exit> {
        if self.format == Format::Fields {
            Err(self.unsupported())
        } else {
            Ok(())
        }
    }

    pub fn member_change(
        &self,
        verb: &str,
        id: u64,
        header: &Option<ResponseHeader>,
        members: &[Member],
        m: &impl Message,
    ) -> Rendered {
        let cluster = header.as_ref().map_or(0, |h| h.cluster_id);
        let json = || {
            json::Obj::new()
                .obj_omit("header", json::header(header))
                .list_omit("members", json::members(members))
                .end()
        };
        self.refuse_fields()?;
        self.rpc(
            m,
            json,
            || format!("Member {id:16x} {verb} cluster {cluster:16x}\n"),
            String::new,
        )
    }

    pub fn member_list(&self, r: &MemberListResponse) -> Rendered {
        let rows = member_rows(r);
        match self.format {
            Format::Table => text(table::render(
                &[
                    "ID",
                    "Status",
                    "Name",
                    "Peer Addrs",
                    "Client Addrs",
                    "Is Learner",
                ],
                &rows,
            )),
            _ => self.rpc(
                r,
                || {
                    json::Obj::new()
                        .obj_omit("header", json::header(&r.header))
                        .list_omit("members", json::members(&r.members))
                        .end()
                },
                || rows.iter().map(|row| row.join(", ") + "\n").collect(),
                || {
                    let mut s = String::new();
                    fields::member_list(&mut s, r);
                    s
                },
            ),
        }
    }

    /// `endpoint health`; the simple form goes to stderr, so it is returned apart.
    pub fn endpoint_health(&self, list: &[Health]) -> Result<(Vec<u8>, String), Exit> {
        match self.format {
            Format::Simple => {
                let mut err = String::new();
                for h in list {
                    if h.error.is_empty() {
                        let _ = writeln!(
                            err,
                            "{} is healthy: successfully committed proposal: took = {}",
                            h.endpoint, h.took
                        );
                    } else {
                        let _ = writeln!(
                            err,
                            "{} is unhealthy: failed to commit proposal: {}",
                            h.endpoint, h.error
                        );
                    }
                }
                Ok((Vec::new(), err))
            }
            Format::Json => {
                let items = list
                    .iter()
                    .map(|h| {
                        json::Obj::new()
                            .str("endpoint", &h.endpoint)
                            .bool("health", h.health)
                            .str("took", &h.took)
                            .str_omit("error", &h.error)
                            .end()
                    })
                    .collect();
                Ok(((json::list(items) + "\n").into_bytes(), String::new()))
            }
            Format::Fields => {
                let mut s = String::new();
                for h in list {
                    let _ = writeln!(s, "\"Endpoint\" : {}", go::quote(h.endpoint.as_bytes()));
                    let _ = writeln!(s, "\"Health\" : {}", h.health);
                    let _ = writeln!(s, "\"Took\" : {}", h.took);
                    let _ = writeln!(s, "\"Error\" : {}", h.error);
                    s.push('\n');
                }
                Ok((s.into_bytes(), String::new()))
            }
            Format::Table => {
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
                Ok((
                    table::render(&["endpoint", "health", "took", "error"], &rows).into_bytes(),
                    String::new(),
                ))
            }
            Format::Protobuf => Err(self.unsupported()),
        }
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
        match self.format {
            Format::Simple => text(rows.iter().map(|row| row.join(", ") + "\n").collect()),
            Format::Table => text(table::render(
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
            )),
            Format::Json => {
                let items = list
                    .iter()
                    .map(|(ep, s)| {
                        json::Obj::new()
                            .str("Endpoint", ep)
                            .raw("Status", json::status(s))
                            .end()
                    })
                    .collect();
                text(json::list(items) + "\n")
            }
            Format::Fields => {
                let mut s = String::new();
                fields::endpoint_status(&mut s, list);
                text(s)
            }
            Format::Protobuf => Err(self.unsupported()),
        }
    }

    /// `snapshot status`: etcd's `snapshot.Status`.
    pub fn db_status(&self, st: &oxcd_storage::SnapshotStatus) -> Rendered {
        let row = vec![
            format!("{:x}", st.hash),
            st.revision.to_string(),
            st.total_key.to_string(),
            go::human_bytes(st.total_size),
        ];
        match self.format {
            Format::Simple => text(row.join(", ") + "\n"),
            Format::Table => text(table::render(
                &["hash", "revision", "total keys", "total size"],
                &[row],
            )),
            Format::Json => text(
                json::Obj::new()
                    .int("hash", st.hash)
                    .int("revision", st.revision)
                    .int("totalKey", st.total_key)
                    .int("totalSize", st.total_size)
                    .end()
                    + "\n",
            ),
            Format::Fields => text(format!(
                "\"Hash\" : {}\n\"Revision\" : {}\n\"Keys\" : {}\n\"Size\" : {}\n",
                st.hash, st.revision, st.total_key, st.total_size
            )),
            Format::Protobuf => Err(self.unsupported()),
        }
    }

    pub fn endpoint_hash_kv(&self, list: &[(String, HashKvResponse)]) -> Rendered {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|(ep, h)| vec![ep.clone(), h.hash.to_string()])
            .collect();
        match self.format {
            Format::Simple => text(rows.iter().map(|row| row.join(", ") + "\n").collect()),
            Format::Table => text(table::render(&["endpoint", "hash"], &rows)),
            Format::Json => {
                let items = list
                    .iter()
                    .map(|(ep, h)| {
                        json::Obj::new()
                            .str("Endpoint", ep)
                            .raw("HashKV", json::hash_kv(h))
                            .end()
                    })
                    .collect();
                text(json::list(items) + "\n")
            }
            Format::Fields => {
                let mut s = String::new();
                fields::endpoint_hash_kv(&mut s, list);
                text(s)
            }
            Format::Protobuf => Err(self.unsupported()),
        }
    }

    pub fn move_leader(&self, leader: u64, target: u64, r: &MoveLeaderResponse) -> Rendered {
        match self.format {
            Format::Simple => text(format!(
                "Leadership transferred from {leader:x} to {target:x}\n"
            )),
            Format::Json => text(json::header_only(&r.header) + "\n"),
            Format::Protobuf => Ok(r.encode_to_vec()),
            _ => Err(self.unsupported()),
        }
    }

    pub fn alarm(&self, r: &AlarmResponse) -> Rendered {
        let json = || {
            let alarms = r
                .alarms
                .iter()
                .map(|a| {
                    json::Obj::new()
                        .int_omit("memberID", a.member_id)
                        .int_omit("alarm", a.alarm)
                        .end()
                })
                .collect();
            json::Obj::new()
                .obj_omit("header", json::header(&r.header))
                .list_omit("alarms", alarms)
                .end()
        };
        self.rpc(
            r,
            json,
            || {
                r.alarms
                    .iter()
                    .map(|a| {
                        let mut s = String::new();
                        if a.member_id != 0 {
                            let _ = write!(s, "memberID:{} ", a.member_id);
                        }
                        if a.alarm != 0 {
                            let _ = write!(s, "alarm:{} ", alarm_name(a.alarm));
                        }
                        s + "\n"
                    })
                    .collect()
            },
            || {
                let mut s = String::new();
                fields::alarm(&mut s, r);
                s
            },
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
            || simple,
            || {
                let mut s = String::new();
                fields::header(&mut s, header);
                s
            },
        )
    }

    pub fn role_get(&self, role: &str, r: &AuthRoleGetResponse) -> Rendered {
        let json = || {
            let perms = r
                .perm
                .iter()
                .map(|p| {
                    json::Obj::new()
                        .int_omit("permType", p.perm_type)
                        .bytes_omit("key", &p.key)
                        .bytes_omit("range_end", &p.range_end)
                        .end()
                })
                .collect();
            json::Obj::new()
                .obj_omit("header", json::header(&r.header))
                .list_omit("perm", perms)
                .end()
        };
        self.rpc(
            r,
            json,
            || {
                let mut s = format!("Role {role}\nKV Read:\n");
                let print = |s: &mut String, p: &oxcd_api::authpb::Permission| {
                    let key = String::from_utf8_lossy(&p.key);
                    if p.range_end.is_empty() {
                        let _ = writeln!(s, "\t{key}");
                        return;
                    }
                    let end = String::from_utf8_lossy(&p.range_end);
                    if p.range_end == [0] {
                        let _ = write!(s, "\t[{key}, <open ended>");
                    } else {
                        let _ = write!(s, "\t[{key}, {end})");
                    }
                    if oxcd_client::prefix_end(&p.key) == p.range_end {
                        let _ = write!(s, " (prefix {key})");
                    }
                    s.push('\n');
                };
                // READ = 0, WRITE = 1, READWRITE = 2.
                for p in r
                    .perm
                    .iter()
                    .filter(|p| p.perm_type == 0 || p.perm_type == 2)
                {
                    print(&mut s, p);
                }
                s.push_str("KV Write:\n");
                for p in r
                    .perm
                    .iter()
                    .filter(|p| p.perm_type == 1 || p.perm_type == 2)
                {
                    print(&mut s, p);
                }
                s
            },
            || {
                let mut s = String::new();
                fields::header(&mut s, &r.header);
                for p in &r.perm {
                    let name = ["READ", "WRITE", "READWRITE"]
                        .get(p.perm_type as usize)
                        .copied()
                        .unwrap_or("UNKNOWN");
                    let _ = writeln!(s, "\"PermType\" :  {name}");
                    let _ = writeln!(s, "\"Key\" : {}", go::quote(&p.key));
                    let _ = writeln!(s, "\"RangeEnd\" : {}", go::quote(&p.range_end));
                }
                s
            },
        )
    }

    /// `role list` / `user list`: one name per line, or `"Roles" : "a" "b"` in fields.
    pub fn names(
        &self,
        field: &str,
        json_field: &str,
        names: &[String],
        header: &Option<ResponseHeader>,
        m: &impl Message,
    ) -> Rendered {
        let json = || {
            json::Obj::new()
                .obj_omit("header", json::header(header))
                .list_omit(json_field, json::strings(names))
                .end()
        };
        if field != "Roles" {
            self.refuse_fields()?;
        }
        self.rpc(
            m,
            json,
            || names.iter().map(|n| format!("{n}\n")).collect(),
            || {
                let mut s = String::new();
                fields::header(&mut s, header);
                if field == "Roles" {
                    s.push_str("\"Roles\" :");
                    for n in names {
                        s.push(' ');
                        s.push_str(&go::quote(n.as_bytes()));
                    }
                    s.push('\n');
                }
                s
            },
        )
    }

    pub fn user_get(&self, user: &str, r: &AuthUserGetResponse) -> Rendered {
        let json = || {
            json::Obj::new()
                .obj_omit("header", json::header(&r.header))
                .list_omit("roles", json::strings(&r.roles))
                .end()
        };
        self.refuse_fields()?;
        self.rpc(
            r,
            json,
            || {
                let mut s = format!("User: {user}\nRoles:");
                for role in &r.roles {
                    s.push(' ');
                    s.push_str(role);
                }
                s + "\n"
            },
            String::new,
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

/// `--hex`: every byte as `\xNN`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\x{b:02x}")).collect()
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
