//! `migrate`, as etcdctl 3.4's: copies the keys of a stopped member's v2 store into its
//! mvcc store. Each file becomes a key at the revision of its v2 modified index, with its
//! created index as create revision, version 1 and no lease (a TTL is not carried over:
//! `--no-ttl` leaves such keys out); directories and hidden nodes are left out. A member
//! started on the data dir then serves them over v3, and its next revision follows them.
//!
//! The v2 store is read with the server's own code from the member's backend, where it is
//! current to the backend's consistent index. The WAL's committed entries past that index
//! (a member killed before its backend caught up) are then replayed into it in memory, by
//! the server's own v2 apply, as etcdctl rebuilds its store from the snap files and WAL.
//! Only the v2 store sees them: the backend is left as it was, so the member applies them
//! itself when it starts.
//!
//! The transformer protocol is etcdctl's: every node, root first, goes to the program's
//! stdin as etcd's v2 JSON (keys without the store's `/1` prefix, directories without their
//! children), one after the other; the program answers on its stdout with `mvccpb.KeyValue`s
//! in protobuf, each after its length (8 bytes, little endian). Without `--transformer` the
//! built-in one turns every file into a key as above.
//!
//! Deliberate differences, each where etcdctl would lose or hide something: a running
//! member is an error (etcdctl waits for its lock forever); a revision that already holds
//! another change is an error (etcdctl overwrites it); an answer that does not decode is an
//! error (etcdctl stops reading and reports success); and the consistent index stays as it
//! is (etcdctl moves it to the WAL's end, so v3 requests not yet in the backend are never
//! applied).

use std::io::{BufReader, ErrorKind, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use oxcd_api::etcdserverpb::InternalRaftRequest;
use oxcd_api::mvccpb::KeyValue;
use oxcd_api::oxcdpb::ConfChangeContext;
use oxcd_server::membership::Membership;
use oxcd_server::v2::apply::Committed;
use oxcd_server::v2::error::Code;
use oxcd_server::v2::json::JsonWriter;
use oxcd_server::v2::store::{NodeExtern, KEYS_PREFIX};
use oxcd_server::v2::V2Store;
use oxcd_storage::{schema, Backend, Revision, Snapshotter, Wal, WalSnapshot};
use prost::Message;
use raft::eraftpb::{ConfChange, Entry, EntryType};
use redb::ReadableTable;

use crate::cli::MigrateArgs;
use crate::exit::{code, CmdResult, Exit};
use crate::http::os_error_text;

pub fn migrate(a: MigrateArgs) -> CmdResult {
    let failed = |message: String| Exit::new(code::ERROR, message);
    let transformer = if a.transformer.is_empty() {
        println!("using default transformer");
        None
    } else {
        Some(Transformer::start(&a.transformer).map_err(failed)?)
    };
    let member = StoppedMember::open(Path::new(&a.data_dir), &a.wal_dir).map_err(failed)?;
    member.log_cluster();
    let Some(root) = member.v2_keys().map_err(failed)? else {
        println!("no v2 keys to migrate");
        return Ok(());
    };
    let mut stream = String::new();
    write_nodes(&mut stream, root, a.no_ttl);
    let kvs = match transformer {
        None => default_transform(&stream).map_err(failed)?,
        Some(t) => t.run(stream).map_err(|e| {
            println!("failed to transform keys");
            failed(e)
        })?,
    };
    member.write(&kvs).map_err(failed)?;
    println!("finished transforming keys");
    Ok(())
}

/// The backend of a stopped member, with its v2 store checked to be complete.
struct StoppedMember {
    backend: Backend,
    /// The WAL's entries the backend has not applied yet.
    unapplied: Vec<Entry>,
}

impl StoppedMember {
    fn open(data_dir: &Path, wal_dir: &str) -> Result<StoppedMember, String> {
        // etcdctl's first step, and so its error for a dir that is not a member's.
        let snap_dir = data_dir.join("member").join("snap");
        if let Err(e) = std::fs::read_dir(&snap_dir) {
            return Err(format!(
                "open {}: {}",
                snap_dir.display(),
                os_error_text(&e)
            ));
        }
        let backend = oxcd_utl::stopped::open_backend(data_dir)?;
        let wal_dir = match wal_dir {
            "" => data_dir.join("member").join("wal"),
            dir => dir.into(),
        };
        let applied = consistent_index(&backend)?;
        let unapplied = entries_after(&snap_dir, &wal_dir, applied)?;
        Ok(StoppedMember { backend, unapplied })
    }

    /// The lines etcd's membership logs while etcdctl replays the member's WAL.
    fn log_cluster(&self) {
        let Ok(membership) = Membership::load(0, &self.backend) else {
            return;
        };
        for m in membership.list() {
            let mut w = JsonWriter::default();
            w.open();
            w.field_str("level", "info");
            w.field_str("msg", "added member");
            w.field_str("cluster-id", "0");
            w.field_str("local-member-id", "0");
            w.field_str("added-peer-id", &format!("{:x}", m.id));
            w.open_array("added-peer-peer-urls");
            for url in &m.peer_ur_ls {
                w.element_str(url);
            }
            w.close_array();
            w.close();
            println!("{}", w.finish());
        }
        let Some(version) = self.cluster_version() else {
            return;
        };
        println!(
            "{{\"level\":\"info\",\"msg\":\"set initial cluster version\",\"cluster-id\":\"0\",\"local-member-id\":\"0\",\"cluster-version\":\"{version}\"}}"
        );
        println!(
            "{{\"level\":\"info\",\"msg\":\"enabled capabilities for version\",\"cluster-version\":\"{version}\"}}"
        );
    }

    /// The cluster version as etcd's membership logs it: major.minor.
    fn cluster_version(&self) -> Option<String> {
        let rtx = self.backend.begin_read().ok()?;
        let table = rtx.open_table(schema::CLUSTER).ok()?;
        let stored = table.get(schema::CLUSTER_VERSION).ok()??;
        let version = String::from_utf8_lossy(stored.value()).into_owned();
        Some(version.split('.').take(2).collect::<Vec<_>>().join("."))
    }

    /// The keys namespace with every node under it; `None` when it holds none.
    ///
    /// The namespace directory exists from a member's start, at index 0, as in an etcd
    /// member recovered from a snapshot. etcdctl replaying a WAL alone meets it first when
    /// a key is written, and so gives it that key's index.
    fn v2_keys(&self) -> Result<Option<NodeExtern>, String> {
        let store = V2Store::load(&self.backend).map_err(|e| e.to_string())?;
        self.replay(&store).map_err(|e| e.to_string())?;
        match store.get(KEYS_PREFIX, true) {
            Ok(event) if event.node.nodes.as_ref().is_some_and(|n| !n.is_empty()) => {
                Ok(Some(event.node))
            }
            Ok(_) => Ok(None),
            Err(e) if e.code == Code::KeyNotFound => Ok(None),
            Err(e) => Err(format!("{} ({})", e.code.message(), e.cause)),
        }
    }

    /// Applies the unapplied entries' v2 parts to `store`, as the member's apply would. The
    /// member table follows the conf changes inside a write batch that is dropped, never
    /// committed: the backend does not change.
    fn replay(&self, store: &V2Store) -> Result<(), Box<dyn std::error::Error>> {
        if self.unapplied.is_empty() {
            return Ok(());
        }
        let membership = Membership::load(0, &self.backend)?;
        let scratch = self.backend.begin_write()?;
        let member = |id| membership.get(id);
        for entry in &self.unapplied {
            match entry.get_entry_type() {
                EntryType::EntryConfChange => {
                    let mut cc = ConfChange::default();
                    protobuf::Message::merge_from_bytes(&mut cc, &entry.data)?;
                    let context = ConfChangeContext::decode(&cc.context[..]).unwrap_or_default();
                    let (change, id) = (cc.get_change_type(), cc.node_id);
                    membership.apply_conf_change(scratch.txn(), change, id, context.peer_urls)?;
                    store.replay(Committed::ConfChange(change, id), member);
                }
                EntryType::EntryNormal if !entry.data.is_empty() => {
                    let req = InternalRaftRequest::decode(&entry.data[..]).map_err(|e| {
                        format!("the WAL's entry {} does not decode: {e}", entry.index)
                    })?;
                    if let Some(v2) = &req.v2 {
                        store.replay(Committed::V2(v2), member);
                    } else if let Some(attr) = &req.cluster_member_attr_set {
                        store.replay(Committed::MemberAttributes(attr), member);
                    } else if let Some(version) = &req.cluster_version_set {
                        store.replay(Committed::ClusterVersion(&version.ver), member);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes `kvs` into the `key` table, each at its mod revision, in one transaction.
    fn write(self, kvs: &[KeyValue]) -> Result<(), String> {
        let text = |e: &dyn std::fmt::Display| e.to_string();
        let batch = self.backend.begin_write().map_err(|e| text(&e))?;
        {
            let mut table = batch.txn().open_table(schema::KEY).map_err(|e| text(&e))?;
            for kv in kvs {
                if kv.mod_revision <= 0 {
                    return Err(format!(
                        "key {:?} has mod revision {}: revisions start at 1",
                        String::from_utf8_lossy(&kv.key),
                        kv.mod_revision
                    ));
                }
                let at = Revision::new(kv.mod_revision, 0).to_key(false);
                let value = kv.encode_to_vec();
                let next = Revision::new(kv.mod_revision + 1, 0).to_key(false);
                for row in table
                    .range(at.as_slice()..next.as_slice())
                    .map_err(|e| text(&e))?
                {
                    let (k, v) = row.map_err(|e| text(&e))?;
                    // A second run writes the same keys again: that is no conflict.
                    if k.value() != at.as_slice() || v.value() != value.as_slice() {
                        return Err(format!(
                            "revision {} already holds another change than key {:?}; \
                             nothing was written",
                            kv.mod_revision,
                            String::from_utf8_lossy(&kv.key)
                        ));
                    }
                }
                table
                    .insert(at.as_slice(), value.as_slice())
                    .map_err(|e| text(&e))?;
            }
        }
        batch.commit().map_err(|e| text(&e))?;
        self.backend.close().map_err(|e| text(&e))
    }
}

fn consistent_index(backend: &Backend) -> Result<u64, String> {
    let text = |e: &dyn std::fmt::Display| e.to_string();
    let rtx = backend.begin_read().map_err(|e| text(&e))?;
    let table = rtx.open_table(schema::META).map_err(|e| text(&e))?;
    let stored = table
        .get(schema::META_CONSISTENT_INDEX)
        .map_err(|e| text(&e))?;
    Ok(stored
        .and_then(|v| schema::decode_u64(v.value()))
        .unwrap_or(0))
}

/// The WAL's entries after `applied`. The WAL is read from the snapshot a restart would
/// load, as the server reads it.
fn entries_after(snap_dir: &Path, wal_dir: &Path, applied: u64) -> Result<Vec<Entry>, String> {
    let text = |e: &dyn std::fmt::Display| format!("{}: {e}", wal_dir.display());
    let mut markers = Wal::valid_snapshots(wal_dir).map_err(|e| text(&e))?;
    markers.push(WalSnapshot::default());
    let snapshot = Snapshotter::new(snap_dir)
        .and_then(|s| s.load_newest_available(&markers))
        .map_err(|e| format!("{}: {e}", snap_dir.display()))?;
    let from = snapshot
        .map(|s| WalSnapshot {
            index: s.get_metadata().index,
            term: s.get_metadata().term,
        })
        .unwrap_or_default();
    let contents = Wal::read(wal_dir, from).map_err(|e| text(&e))?;
    Ok(contents
        .entries
        .into_iter()
        .filter(|e| e.index > applied)
        .collect())
}

/// etcdctl's stream of nodes for the transformer, root first, depth first, in key order.
fn write_nodes(out: &mut String, node: NodeExtern, no_ttl: bool) {
    let children = node.nodes.unwrap_or_default();
    let key = match &node.key[KEYS_PREFIX.len().min(node.key.len())..] {
        "" => "/".to_owned(),
        key => key.to_owned(),
    };
    if !no_ttl || node.ttl == 0 {
        let bare = NodeExtern {
            key,
            nodes: None,
            ..node
        };
        let mut w = JsonWriter::default();
        w.open();
        bare.write_json(&mut w, "");
        w.close();
        out.push_str(&w.finish());
    }
    for child in children {
        write_nodes(out, child, no_ttl);
    }
}

/// etcdctl's default transformer: every file becomes a key, directories nothing.
fn default_transform(stream: &str) -> Result<Vec<KeyValue>, String> {
    let mut kvs = Vec::new();
    for node in serde_json::Deserializer::from_str(stream).into_iter::<serde_json::Value>() {
        let node = node.map_err(|e| e.to_string())?;
        if node["dir"].as_bool() == Some(true) {
            continue;
        }
        let text = |field: &str| node[field].as_str().unwrap_or_default().as_bytes().to_vec();
        let index = |field: &str| node[field].as_i64().unwrap_or_default();
        kvs.push(KeyValue {
            key: text("key"),
            value: text("value"),
            create_revision: index("createdIndex"),
            mod_revision: index("modifiedIndex"),
            // How often a v2 key changed is not known.
            version: 1,
            lease: 0,
        });
    }
    Ok(kvs)
}

/// A user-provided transformer program, running.
struct Transformer {
    child: Child,
}

impl Transformer {
    /// Starts `program` (looked up in `PATH` when it has no slash, as Go's `exec` does).
    fn start(program: &str) -> Result<Transformer, String> {
        let child = Command::new(program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                if !program.contains('/') && e.kind() == ErrorKind::NotFound {
                    format!("exec: \"{program}\": executable file not found in $PATH")
                } else {
                    format!("fork/exec {program}: {}", os_error_text(&e))
                }
            })?;
        Ok(Transformer { child })
    }

    /// Feeds `stream` to the program and reads its keys until it closes its stdout; fails
    /// when the program fails or answers something that does not decode.
    fn run(mut self, stream: String) -> Result<Vec<KeyValue>, String> {
        let mut stdin = self.child.stdin.take().expect("piped stdin");
        // Written from another thread: the program may answer before it read everything.
        let feeder = std::thread::spawn(move || {
            // A program that stops reading early is its own business, as for etcdctl.
            let _ = stdin.write_all(stream.as_bytes());
        });
        let stdout = self.child.stdout.take().expect("piped stdout");
        let read = read_frames(BufReader::new(stdout));
        let _ = feeder.join();
        let status = self.child.wait().map_err(|e| os_error_text(&e))?;
        if !status.success() {
            return Err(go_exit_status(status));
        }
        read
    }
}

/// The program's answers: length-prefixed `mvccpb.KeyValue`s until the end of its output.
fn read_frames(mut r: impl Read) -> Result<Vec<KeyValue>, String> {
    let mut kvs = Vec::new();
    loop {
        let mut len = [0u8; 8];
        match r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(kvs),
            Err(e) => return Err(os_error_text(&e)),
        }
        let len = u64::from_le_bytes(len);
        let mut buf = Vec::new();
        r.by_ref()
            .take(len)
            .read_to_end(&mut buf)
            .map_err(|e| os_error_text(&e))?;
        if buf.len() as u64 != len {
            return Err(format!(
                "the transformer's answer ends inside a key ({} of {len} bytes)",
                buf.len()
            ));
        }
        let kv = KeyValue::decode(buf.as_slice())
            .map_err(|e| format!("the transformer's answer is not a mvccpb.KeyValue: {e}"))?;
        kvs.push(kv);
    }
}

/// How Go's `exec` words a program that failed: `exit status N` or `signal: NAME`.
fn go_exit_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(9)) => "signal: killed".to_owned(),
        (None, Some(15)) => "signal: terminated".to_owned(),
        (None, Some(s)) => format!("signal: {s}"),
        (None, None) => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(key: &str, value: &str, created: u64, modified: u64, ttl: i64) -> NodeExtern {
        NodeExtern {
            key: key.into(),
            value: Some(value.into()),
            ttl,
            expiration: (ttl > 0).then_some(1_800_000_000_000_000_000),
            created_index: created,
            modified_index: modified,
            ..Default::default()
        }
    }

    fn tree() -> NodeExtern {
        let dir = NodeExtern {
            key: "/1/dir".into(),
            dir: true,
            nodes: Some(vec![file("/1/dir/b", "3", 7, 7, 0)]),
            created_index: 6,
            modified_index: 6,
            ..Default::default()
        };
        NodeExtern {
            key: "/1".into(),
            dir: true,
            nodes: Some(vec![
                file("/1/a", "<2>", 4, 5, 0),
                dir,
                file("/1/ttl", "5", 9, 9, 100),
            ]),
            created_index: 4,
            modified_index: 4,
            ..Default::default()
        }
    }

    #[test]
    fn nodes_stream_as_etcdctl_writes_them() {
        let mut out = String::new();
        write_nodes(&mut out, tree(), false);
        assert_eq!(
            out,
            concat!(
                r#"{"key":"/","dir":true,"modifiedIndex":4,"createdIndex":4}"#,
                r#"{"key":"/a","value":"\u003c2\u003e","modifiedIndex":5,"createdIndex":4}"#,
                r#"{"key":"/dir","dir":true,"modifiedIndex":6,"createdIndex":6}"#,
                r#"{"key":"/dir/b","value":"3","modifiedIndex":7,"createdIndex":7}"#,
                r#"{"key":"/ttl","value":"5","expiration":"2027-01-15T08:00:00Z","ttl":100,"modifiedIndex":9,"createdIndex":9}"#,
            )
        );
        let mut no_ttl = String::new();
        write_nodes(&mut no_ttl, tree(), true);
        assert!(!no_ttl.contains("/ttl"));
    }

    #[test]
    fn default_transform_keeps_files_at_their_indexes() {
        let mut out = String::new();
        write_nodes(&mut out, tree(), false);
        let kvs = default_transform(&out).unwrap();
        let got: Vec<_> = kvs
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    String::from_utf8_lossy(&kv.value).into_owned(),
                    kv.create_revision,
                    kv.mod_revision,
                    kv.version,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("/a".into(), "<2>".into(), 4, 5, 1),
                ("/dir/b".into(), "3".into(), 7, 7, 1),
                ("/ttl".into(), "5".into(), 9, 9, 1),
            ]
        );
    }

    #[test]
    fn frames_decode_and_a_cut_frame_is_an_error() {
        let kv = KeyValue {
            key: b"k".to_vec(),
            mod_revision: 3,
            ..Default::default()
        };
        let body = kv.encode_to_vec();
        let mut framed = (body.len() as u64).to_le_bytes().to_vec();
        framed.extend_from_slice(&body);
        assert_eq!(read_frames(framed.as_slice()).unwrap(), vec![kv]);
        assert!(read_frames(&framed[..framed.len() - 1]).is_err());
        assert_eq!(read_frames(&[][..]).unwrap(), vec![]);
    }
}
