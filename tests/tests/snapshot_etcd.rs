//! Backups in etcd's format and migration both ways (issue 15): `etcdctl snapshot save`
//! against oxcd, `etcdctl snapshot restore` into real etcd, `oxcdutl snapshot restore` of real
//! etcd's snapshots into oxcd (1 and 3 members), users and roles with auth on both ways, a
//! snapshot under write load, damaged files, and `oxcdutl`'s offline tools.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use oxcd_e2e::{
    etcdctl, oxcd_only, ports::free_port, real_etcd_bin, server_bin, wait_until, Member,
};
use serde_json::Value;

/// `$OXCDUTL_BIN`, else `oxcdutl` beside the server under test.
fn utl_bin() -> PathBuf {
    let bin = std::env::var_os("OXCDUTL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| server_bin().with_file_name("oxcdutl"));
    assert!(
        bin.is_file(),
        "{} missing: cargo build --release -p oxcd-utl",
        bin.display()
    );
    bin
}

fn oxcdutl(args: &[&str]) -> Output {
    Command::new(utl_bin()).args(args).output().unwrap()
}

#[track_caller]
fn expect_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// etcd 3.5.1 (`/work/shared/tools/install-etcd-3.5.sh`): `$ETCD35_DIR`, else its cache dir.
fn etcd35() -> Option<PathBuf> {
    let dir = std::env::var_os("ETCD35_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            Some(PathBuf::from(std::env::var_os("HOME")?).join(".cache/etcd-tools/etcd-3.5.1"))
        })?;
    dir.join("etcd").is_file().then(|| dir.join("etcd"))
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// A history with overwrites, a delete, a compaction, a lease and a large value.
fn fill(m: &Member) -> String {
    for (k, v) in [("a", "1"), ("b", "1"), ("a", "2"), ("c", "1")] {
        m.etcdctl(&["put", k, v]).expect_success();
    }
    m.etcdctl(&["del", "b"]).expect_success();
    m.etcdctl(&["compact", "3"]).expect_success();
    let lease = m.etcdctl(&["lease", "grant", "600"]);
    let id = lease
        .expect_success()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    m.etcdctl(&["put", "--lease", &id, "leased", "x"])
        .expect_success();
    for i in 0..200 {
        m.etcdctl(&["put", &format!("k{i:03}"), &"v".repeat(100 + i)])
            .expect_success();
    }
    m.etcdctl(&["put", "big", &"y".repeat(20_000)])
        .expect_success();
    id
}

/// Every key with its revisions, the revision, and the KV hash, as a client sees them.
fn state(m: &Member) -> (Value, i64, u64) {
    let all = json(
        m.etcdctl(&["get", "", "--prefix", "-w", "json"])
            .expect_success(),
    );
    let hash = json(
        m.etcdctl(&["endpoint", "hashkv", "-w", "json"])
            .expect_success(),
    );
    (
        all["kvs"].clone(),
        all["header"]["revision"].as_i64().unwrap(),
        hash[0]["HashKV"]["hash"].as_u64().unwrap(),
    )
}

fn lease_ttl(m: &Member, id: &str) -> i64 {
    let out = json(
        m.etcdctl(&["lease", "timetolive", id, "-w", "json"])
            .expect_success(),
    );
    out["ttl"].as_i64().unwrap()
}

fn compact_revision_is(m: &Member, rev: i64) {
    let below = m.etcdctl(&["get", "a", &format!("--rev={}", rev - 1)]);
    assert!(
        below
            .stderr
            .contains("required revision has been compacted"),
        "{below}"
    );
    m.etcdctl(&["get", "a", &format!("--rev={rev}")])
        .expect_success();
}

fn save(m: &Member, dir: &Path) -> PathBuf {
    save_as(m, dir, &[])
}

/// As [`save`], with etcdctl flags such as `--user`.
fn save_as(m: &Member, dir: &Path, flags: &[&str]) -> PathBuf {
    let file = dir.join("backup.db");
    let args = [flags, &["snapshot", "save", file.to_str().unwrap()]].concat();
    let out = m.etcdctl(&args);
    assert!(out.expect_success().contains("Snapshot saved at"), "{out}");
    file
}

/// oxcd restored from `file` by `oxcdutl snapshot restore`, as `size` members.
fn restore_into_oxcd(file: &Path, dir: &Path, size: usize) -> Vec<Member> {
    restore_into_oxcd_with(file, dir, size, Member::wait_ready)
}

/// As [`restore_into_oxcd`], waiting for each member with `ready`.
fn restore_into_oxcd_with(
    file: &Path,
    dir: &Path,
    size: usize,
    ready: impl Fn(&mut Member),
) -> Vec<Member> {
    let names: Vec<String> = (0..size).map(|i| format!("r{i}")).collect();
    let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
    let cluster: Vec<String> = names
        .iter()
        .zip(&ports)
        .map(|(n, (_, p))| format!("{n}=http://127.0.0.1:{p}"))
        .collect();
    let cluster = cluster.join(",");
    let mut members: Vec<Member> = names
        .iter()
        .zip(&ports)
        .map(|(name, &(client, peer))| {
            let data = dir.join(format!("{name}.restored"));
            expect_ok(&oxcdutl(&[
                "snapshot",
                "restore",
                file.to_str().unwrap(),
                "--name",
                name,
                "--data-dir",
                data.to_str().unwrap(),
                "--initial-cluster",
                &cluster,
                "--initial-cluster-token",
                "restored",
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
            ]));
            Member::builder()
                .name(name)
                .ports(client, peer)
                .initial_cluster(&cluster)
                .arg(format!("--data-dir={}", data.display()))
                .spawn()
        })
        .collect();
    for m in &mut members {
        ready(m);
    }
    members
}

/// Migrate out: oxcd → `etcdctl snapshot save` → `etcdctl snapshot restore` → real etcd
/// 3.4, which serves the same keys, revisions, compaction point, lease and KV hash.
#[test]
fn oxcd_snapshot_restores_into_real_etcd() {
    oxcd_only!();
    let dir = tempfile::tempdir().unwrap();
    let m = Member::start_single();
    let lease = fill(&m);
    let (kvs, rev, hash) = state(&m);
    let file = save(&m, dir.path());

    let status = etcdctl(
        "",
        &["snapshot", "status", file.to_str().unwrap(), "-w", "json"],
    );
    let status = json(status.expect_success());
    assert_eq!(status["revision"].as_i64(), Some(rev));

    let (client, peer) = (free_port(), free_port());
    let data = dir.path().join("etcd.restored");
    let purl = format!("http://127.0.0.1:{peer}");
    etcdctl(
        "",
        &[
            "snapshot",
            "restore",
            file.to_str().unwrap(),
            "--name",
            "e0",
            "--data-dir",
            data.to_str().unwrap(),
            "--initial-cluster",
            &format!("e0={purl}"),
            "--initial-advertise-peer-urls",
            &purl,
        ],
    )
    .expect_success();
    let etcd = Member::builder()
        .name("e0")
        .bin(real_etcd_bin())
        .ports(client, peer)
        .arg(format!("--data-dir={}", data.display()))
        .start();
    assert_eq!(state(&etcd), (kvs, rev, hash));
    compact_revision_is(&etcd, 3);
    let ttl = lease_ttl(&etcd, &lease);
    assert!(ttl > 500 && ttl <= 600, "ttl {ttl}");
}

/// Migrate in: real etcd → `etcdctl snapshot save` → `oxcdutl snapshot restore` → oxcd of
/// one and of three members, with the same keys, revisions, compaction, lease and KV hash.
fn etcd_snapshot_restores_into_oxcd(etcd_bin: PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Member::builder().name("e0").bin(etcd_bin).start();
    let lease = fill(&etcd);
    let want = state(&etcd);
    let file = save(&etcd, dir.path());
    drop(etcd);

    let status = expect_ok(&oxcdutl(&[
        "snapshot",
        "status",
        file.to_str().unwrap(),
        "-w",
        "json",
    ]));
    assert_eq!(json(&status)["revision"].as_i64(), Some(want.1));

    for size in [1, 3] {
        let sub = dir.path().join(format!("x{size}"));
        std::fs::create_dir(&sub).unwrap();
        let members = restore_into_oxcd(&file, &sub, size);
        for m in &members {
            assert_eq!(state(m), want, "member {} of {size}", m.name());
        }
        compact_revision_is(&members[0], 3);
        let ttl = lease_ttl(&members[0], &lease);
        assert!(ttl > 500 && ttl <= 600, "ttl {ttl}");
        // The restored cluster takes writes, with revisions going on from the snapshot's.
        let put = members[0].etcdctl(&["put", "after", "1", "-w", "json"]);
        assert_eq!(
            json(put.expect_success())["header"]["revision"].as_i64(),
            Some(want.1 + 1)
        );
    }
}

#[test]
fn etcd_34_snapshot_restores_into_oxcd() {
    oxcd_only!();
    etcd_snapshot_restores_into_oxcd(real_etcd_bin());
}

#[test]
fn etcd_35_snapshot_restores_into_oxcd() {
    oxcd_only!();
    let Some(bin) = etcd35() else {
        eprintln!("SKIPPED: etcd 3.5.1 not installed (/work/shared/tools/install-etcd-3.5.sh)");
        return;
    };
    etcd_snapshot_restores_into_oxcd(bin);
}

/// A snapshot taken while a writer puts pairs of keys in single transactions holds whole
/// transactions only, exactly those up to its revision.
#[test]
fn snapshot_under_write_load_is_one_point_in_time() {
    oxcd_only!();
    let dir = tempfile::tempdir().unwrap();
    let m = Member::start_single();
    // Enough data that the snapshot takes a while.
    for i in 0..50 {
        m.etcdctl(&["put", &format!("pad{i}"), &"p".repeat(100_000)])
            .expect_success();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let pairs = Arc::new(AtomicI64::new(0));
    let endpoint = m.endpoint();
    let writer = {
        let (stop, pairs) = (stop.clone(), pairs.clone());
        std::thread::spawn(move || {
            for i in 0..5000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let ops = format!("\nput a{i:05} {i}\nput b{i:05} {i}\n\n\n");
                oxcd_e2e::etcdctl_stdin(&endpoint, &["txn"], &ops).expect_success();
                pairs.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let at_least = |n: i64| {
        wait_until("pairs written", Duration::from_secs(60), || {
            (pairs.load(Ordering::Relaxed) >= n).then_some(())
        })
    };
    at_least(5);
    let file = save(&m, dir.path());
    at_least(pairs.load(Ordering::Relaxed) + 5);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let written = pairs.load(Ordering::Relaxed);

    let restored = restore_into_oxcd(&file, dir.path(), 1);
    let r = &restored[0];
    let (_, rev, _) = state(r);
    let count = |prefix: &str| {
        let out = r.etcdctl(&["get", prefix, "--prefix", "--keys-only", "-w", "json"]);
        json(out.expect_success())["count"].as_i64().unwrap_or(0)
    };
    let (a, b) = (count("a"), count("b"));
    assert_eq!(a, b, "a torn transaction");
    assert!(
        a > 0 && a < written,
        "{a} of {written} pairs: not taken during the load"
    );
    // 1 (empty store) + 50 pads + one revision per pair.
    assert_eq!(rev, 1 + 50 + a);
    let live = json(
        m.etcdctl(&[
            "get",
            "a",
            "--prefix",
            "-w",
            "json",
            &format!("--rev={rev}"),
        ])
        .expect_success(),
    );
    assert_eq!(live["count"].as_i64(), Some(a));
}

/// A damaged, truncated or hashless file is refused with etcd's words, and no data dir is
/// left behind.
#[test]
fn damaged_snapshots_are_refused_before_anything_is_written() {
    oxcd_only!();
    let dir = tempfile::tempdir().unwrap();
    let m = Member::start_single();
    fill(&m);
    let file = save(&m, dir.path());
    let good = std::fs::read(&file).unwrap();
    let restore = |bytes: &[u8], extra: &[&str]| {
        let f = dir.path().join("damaged.db");
        std::fs::write(&f, bytes).unwrap();
        let data = dir.path().join("out.etcd");
        let mut args = vec!["snapshot", "restore", f.to_str().unwrap(), "--data-dir"];
        args.push(data.to_str().unwrap());
        args.extend_from_slice(extra);
        let out = oxcdutl(&args);
        assert!(!out.status.success());
        assert!(!data.exists(), "a data dir was left behind");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let mut corrupt = good.clone();
    corrupt[..512].fill(0);
    assert!(restore(&corrupt, &[]).contains("expected sha256"));
    let hashless = &good[..good.len() - 32];
    assert!(restore(hashless, &[]).contains("snapshot missing hash but --skip-hash-check=false"));
    let err = restore(&good[..good.len() / 2 - 32], &["--skip-hash-check"]);
    assert!(err.contains("invalid database"), "{err}");
    // A page overwritten, without a hash to tell: the reader's own checks find it.
    let mut pages = hashless.to_vec();
    pages[3 * 4096..4 * 4096].fill(0xab);
    let err = restore(&pages, &["--skip-hash-check"]);
    assert!(err.contains("invalid database"), "{err}");
}

/// `oxcdutl snapshot status` prints what `etcdctl snapshot status` prints, in every format.
#[test]
fn status_matches_etcdctl_in_every_format() {
    oxcd_only!();
    let dir = tempfile::tempdir().unwrap();
    let m = Member::start_single();
    fill(&m);
    let file = save(&m, dir.path());
    let f = file.to_str().unwrap();
    for format in ["simple", "json", "table", "fields"] {
        let theirs = etcdctl("", &["snapshot", "status", f, "-w", format]);
        let ours = expect_ok(&oxcdutl(&["snapshot", "status", f, "-w", format]));
        assert_eq!(ours, theirs.expect_success(), "-w {format}");
    }
}

/// `hashkv`, `backup` and `defrag` refuse a running member, and agree with it once stopped.
#[test]
fn offline_tools_work_on_a_stopped_member_only() {
    oxcd_only!();
    let dir = tempfile::tempdir().unwrap();
    let mut m = Member::start_single();
    fill(&m);
    let (kvs, rev, hash) = state(&m);
    let data = m.data_dir().to_str().unwrap().to_string();
    let busy = oxcdutl(&["hashkv", "--data-dir", &data]);
    assert!(!busy.status.success());
    assert!(String::from_utf8_lossy(&busy.stderr).contains("a member is running"));
    // The offline tools read the backend only. A member makes its backend durable within
    // 100 ms (the WAL holds the rest); since main's shutdown rework a SIGTERM right after a
    // write can leave that write in the WAL only, so give the flusher its interval first.
    std::thread::sleep(Duration::from_secs(1));
    m.stop();

    let out = expect_ok(&oxcdutl(&["hashkv", "--data-dir", &data, "-w", "json"]));
    assert_eq!(json(&out)["hash"].as_u64(), Some(hash));
    let backup = dir.path().join("offline.db");
    expect_ok(&oxcdutl(&[
        "backup",
        "--data-dir",
        &data,
        backup.to_str().unwrap(),
    ]));
    let st = etcdctl(
        "",
        &["snapshot", "status", backup.to_str().unwrap(), "-w", "json"],
    );
    assert_eq!(json(st.expect_success())["revision"].as_i64(), Some(rev));
    expect_ok(&oxcdutl(&["defrag", "--data-dir", &data]));

    let restored = restore_into_oxcd(&backup, dir.path(), 1);
    assert_eq!(state(&restored[0]), (kvs, rev, hash));
}

/// etcd 3.6 writes `storageVersion` into `meta` (and 3.5's `term` and `confState`); the
/// fixture is laid out so (see tests/fixtures/snapshot/README.md) and restores like the rest.
#[test]
fn etcd_36_layout_restores_into_oxcd() {
    oxcd_only!();
    let dir = tempfile::tempdir().unwrap();
    let file = oxcd_e2e::binaries::workspace_root().join("tests/fixtures/snapshot/etcd-3.6.db");
    let members = restore_into_oxcd(&file, dir.path(), 1);
    let (kvs, rev, _) = state(&members[0]);
    assert_eq!(rev, 308);
    assert_eq!(kvs.as_array().unwrap().len(), 304);
    compact_revision_is(&members[0], 3);
}

const ROOT: &str = "--user=root:rootpw";
const ALICE: &str = "--user=alice:alicepw";

/// Users and roles with a key, a range and a prefix permission, two keys, then auth on.
fn setup_auth(m: &Member) {
    let steps: [&[&str]; 14] = [
        &["user", "add", "root:rootpw"],
        &["role", "add", "root"],
        &["user", "grant-role", "root", "root"],
        &["user", "add", "alice:alicepw"],
        &["user", "add", "bob", "--no-password"],
        &["role", "add", "reader"],
        &[
            "role",
            "grant-permission",
            "--prefix",
            "reader",
            "read",
            "pub/",
        ],
        &["role", "grant-permission", "reader", "readwrite", "note"],
        &["role", "add", "writer"],
        &["role", "grant-permission", "writer", "write", "w0", "w9"],
        &["user", "grant-role", "alice", "reader"],
        &["put", "pub/a", "open"],
        &["put", "secret", "closed"],
        &["auth", "enable"],
    ];
    for step in steps {
        m.etcdctl(step).expect_success();
    }
    m.etcdctl(&[ROOT, "user", "grant-role", "bob", "writer"])
        .expect_success();
}

/// Until `etcdctl --user=root endpoint health` succeeds: with auth on, a request without a
/// user is refused, so the harness's own readiness probe cannot tell.
fn wait_ready_as_root(m: &mut Member) {
    wait_until("endpoint health as root", oxcd_e2e::start_timeout(), || {
        m.etcdctl(&[
            "--dial-timeout=1s",
            "--command-timeout=2s",
            ROOT,
            "endpoint",
            "health",
        ])
        .success()
        .then_some(())
    });
}

/// What the users, roles and permissions look like to root, and what each user may do: one
/// string to compare between the source and the restored member.
fn auth_view(m: &Member) -> String {
    let mut view = String::new();
    let reads: [&[&str]; 8] = [
        &[ROOT, "user", "list"],
        &[ROOT, "role", "list"],
        &[ROOT, "user", "get", "root"],
        &[ROOT, "user", "get", "alice"],
        &[ROOT, "user", "get", "bob"],
        &[ROOT, "role", "get", "root"],
        &[ROOT, "role", "get", "reader"],
        &[ROOT, "role", "get", "writer"],
    ];
    for args in reads {
        view += m.etcdctl(args).expect_success();
    }
    // Permitted and denied requests, and requests with no or a wrong user.
    let attempts: [&[&str]; 6] = [
        &[ALICE, "get", "pub/a", "--print-value-only"],
        &[ALICE, "get", "secret"],
        &[ALICE, "put", "pub/a", "x"],
        &[ALICE, "put", "note", "n"],
        &["get", "pub/a"],
        &["--user=alice:wrong", "get", "pub/a"],
    ];
    for args in attempts {
        let out = m.etcdctl(args);
        // etcdctl's retry warnings carry times and connection ids: keep the error only.
        let error: String = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("Error:"))
            .collect();
        view += &format!("{args:?} -> {}{error}\n", out.stdout);
    }
    view
}

/// `etcdctl auth status` of etcd 3.5.1 (3.4's etcdctl has no such command), when installed;
/// the server must serve AuthStatus (3.4's does not).
fn auth_status(m: &Member) -> Option<String> {
    let ctl = etcd35()?.with_file_name("etcdctl");
    let out = Command::new(ctl)
        .env("ETCDCTL_API", "3")
        .args([
            &format!("--endpoints={}", m.endpoint()),
            "--dial-timeout=2s",
            "--command-timeout=5s",
            ROOT,
            "auth",
            "status",
        ])
        .output()
        .unwrap();
    Some(expect_ok(&out))
}

#[track_caller]
fn assert_auth_enabled(view: &str) {
    assert!(
        view.contains("user name is empty") && view.contains("permission denied"),
        "{view}"
    );
}

/// Migrate out with auth on: oxcd's users, roles and permissions reach real etcd 3.4 through
/// `etcdctl snapshot restore`, which then allows and refuses what oxcd did.
#[test]
fn oxcd_users_and_roles_restore_into_real_etcd() {
    oxcd_only!();
    let dir = tempfile::tempdir().unwrap();
    let m = Member::builder().arg("--bcrypt-cost=4").start();
    setup_auth(&m);
    let want = auth_view(&m);
    assert_auth_enabled(&want);
    let file = save_as(&m, dir.path(), &[ROOT]);
    drop(m);

    let (client, peer) = (free_port(), free_port());
    let data = dir.path().join("etcd.restored");
    let purl = format!("http://127.0.0.1:{peer}");
    etcdctl(
        "",
        &[
            "snapshot",
            "restore",
            file.to_str().unwrap(),
            "--name",
            "e0",
            "--data-dir",
            data.to_str().unwrap(),
            "--initial-cluster",
            &format!("e0={purl}"),
            "--initial-advertise-peer-urls",
            &purl,
        ],
    )
    .expect_success();
    let mut etcd = Member::builder()
        .name("e0")
        .bin(real_etcd_bin())
        .ports(client, peer)
        .arg(format!("--data-dir={}", data.display()))
        .spawn();
    wait_ready_as_root(&mut etcd);
    // The refusals in the view show that auth is on (etcd 3.4 serves no AuthStatus).
    assert_eq!(auth_view(&etcd), want);
}

/// Migrate in with auth on: real etcd's users, roles and permissions reach oxcd of one and
/// three members through `oxcdutl snapshot restore`, with the same auth revision when the
/// source tells it (`serves_auth_status`: etcd 3.5).
fn etcd_users_and_roles_restore_into_oxcd(etcd_bin: PathBuf, serves_auth_status: bool) {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Member::builder().name("e0").bin(etcd_bin).start();
    setup_auth(&etcd);
    let want = auth_view(&etcd);
    assert_auth_enabled(&want);
    let want_status = serves_auth_status.then(|| auth_status(&etcd)).flatten();
    let file = save_as(&etcd, dir.path(), &[ROOT]);
    drop(etcd);

    for size in [1, 3] {
        let sub = dir.path().join(format!("x{size}"));
        std::fs::create_dir(&sub).unwrap();
        let members = restore_into_oxcd_with(&file, &sub, size, wait_ready_as_root);
        for m in &members {
            assert_eq!(auth_view(m), want, "member {} of {size}", m.name());
        }
        if let Some(ours) = auth_status(&members[0]) {
            assert!(ours.contains("Authentication Status: true"), "{ours}");
            if let Some(theirs) = &want_status {
                assert_eq!(&ours, theirs);
            }
        }
    }
}

#[test]
fn etcd_34_users_and_roles_restore_into_oxcd() {
    oxcd_only!();
    etcd_users_and_roles_restore_into_oxcd(real_etcd_bin(), false);
}

#[test]
fn etcd_35_users_and_roles_restore_into_oxcd() {
    oxcd_only!();
    let Some(bin) = etcd35() else {
        eprintln!("SKIPPED: etcd 3.5.1 not installed (/work/shared/tools/install-etcd-3.5.sh)");
        return;
    };
    etcd_users_and_roles_restore_into_oxcd(bin, true);
}

/// Every file under `dir` with its size, to tell that nothing was touched.
fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            out.extend(files(&entry.path()));
        } else {
            out.push((entry.path(), meta.len()));
        }
    }
    out.sort();
    out
}

/// A data dir that real etcd has run on (its WAL may hold entries its backend lacks) is
/// refused with the way to bring it over, and left as it was.
#[test]
fn a_data_dir_etcd_ran_on_is_refused_with_the_way_over() {
    oxcd_only!();
    let (client, peer) = (free_port(), free_port());
    let mut etcd = Member::builder()
        .name("m0")
        .bin(real_etcd_bin())
        .ports(client, peer)
        .start();
    etcd.etcdctl(&["put", "k", "v"]).expect_success();
    etcd.stop();
    let data = etcd.data_dir().to_path_buf();
    let before = files(&data);

    let mut oxcd = Member::builder()
        .name("m0")
        .ports(client, peer)
        .arg(format!("--data-dir={}", data.display()))
        .spawn();
    let status = oxcd.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    let log = oxcd.log();
    assert!(
        log.contains("etcd has run on it")
            && log.contains("etcdctl snapshot save")
            && log.contains("oxcdutl snapshot restore"),
        "{log}"
    );
    assert_eq!(files(&data), before);
}
