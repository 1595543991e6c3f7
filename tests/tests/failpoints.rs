//! A crash at every persistence step (issue 16). Built only with this crate's `failpoints`
//! feature, and run against an `oxcd` built with the server's `failpoints` feature
//! (`OXCD_FAILPOINTS_BIN`, default `target/release/oxcd-failpoints`; see scripts/test.sh).
//!
//! Each case arms one failpoint (etcd's names in snake_case, e.g. `raft_before_save`) in
//! every member through `FAILPOINTS`, to panic after a random number of passes; the failpoint
//! build turns a panic into an abort, a crash at exactly that step. Clients write meanwhile
//! (and compact, defragment, or hold leases, as the step needs). Once a member has crashed,
//! every member restarts without failpoints (those still up are killed first: their failpoint
//! is still armed), and then:
//! - every acknowledged put is there, with its value, at the revision it was acknowledged at;
//! - revisions never went back (each writer's, and the store's after the restart);
//! - every member agrees (HashKV at the same revision).
//!
//! The snapshot send / receive / apply steps are reached on three members only: a follower is
//! stopped while the others write past its log (`--experimental-snapshot-catchup-entries`
//! keeps few entries behind each snapshot), then started again, so the leader sends it a
//! snapshot.
//!
//! `power_loss_on_one_member` kills a member whose WAL and backend lose every unsynced write,
//! and whose directories lose every change not synced; `power_loss_right_after_the_first_start`
//! does so right after a member's data dir was created.
//!
//! CI runs every failpoint on one member, a few on three, and the snapshot steps on three.
//! `OXCD_FAILPOINTS_SOAK_SECS=<seconds>` runs every failpoint on one and three members (the
//! snapshot steps on three) in turns for that long, and prints how many runs of each passed
//! (see `soak`). A failure prints the seed; replay with `OXCD_TEST_SEED`.

#![cfg(feature = "failpoints")]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions};
use oxcd_e2e::binaries::workspace_root;
use oxcd_e2e::{wait_until, Cluster, Member};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const WRITERS: usize = 3;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a case waits for its failpoint to crash a member.
const CRASH_WAIT: Duration = Duration::from_secs(40);
/// Kills in the power-loss test.
const POWER_LOSS_ROUNDS: usize = 6;
/// Snapshots every this many entries, so that snapshot steps come often.
const SNAPSHOT_COUNT: u64 = 200;
/// Entries kept behind a snapshot when a follower must catch up by snapshot.
const CATCH_UP_ENTRIES: u64 = 50;
/// Puts made while that follower is down: past two snapshots and their kept entries.
const LAG_PUTS: usize = (2 * SNAPSHOT_COUNT + CATCH_UP_ENTRIES) as usize;

/// What must happen for a failpoint to be passed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Load {
    /// Puts only.
    Puts,
    /// Puts, and a compaction every 200 ms.
    Compactions,
    /// Puts, and a defragmentation of every member every 500 ms.
    Defrags,
    /// Leases, then a clean stop of every member (which checkpoints them).
    LeaseStop,
    /// Puts while a follower is down long enough to need a snapshot when it comes back.
    LaggingFollower,
}

/// Every failpoint, the load that passes it, and how many passes to let by: a random number
/// in the range, whose start is past what a member's start-up passes.
const FAILPOINTS: &[(&str, Load, (u32, u32))] = &[
    ("raft_before_save", Load::Puts, (50, 400)),
    ("raft_after_save", Load::Puts, (50, 400)),
    ("wal_before_sync", Load::Puts, (50, 400)),
    ("wal_after_sync", Load::Puts, (50, 400)),
    ("before_commit", Load::Puts, (30, 60)),
    ("after_commit", Load::Puts, (30, 60)),
    ("raft_before_save_snap", Load::Puts, (0, 2)),
    ("raft_after_save_snap", Load::Puts, (0, 2)),
    ("raft_before_wal_save_snapshot", Load::Puts, (0, 2)),
    ("raft_after_wal_release", Load::Puts, (0, 2)),
    ("compact_before_commit_batch", Load::Compactions, (0, 5)),
    ("compact_after_commit_batch", Load::Compactions, (0, 5)),
    ("defrag_before_copy", Load::Defrags, (0, 2)),
    ("defrag_before_rename", Load::Defrags, (0, 2)),
    ("lease_before_checkpoint", Load::LeaseStop, (0, 0)),
];

/// The steps of a snapshot sent to a follower, which need three members.
const SNAPSHOT_FAILPOINTS: &[(&str, Load, (u32, u32))] = &[
    ("raft_before_snapshot_send", Load::LaggingFollower, (0, 0)),
    ("raft_after_snapshot_receive", Load::LaggingFollower, (0, 0)),
    ("raft_before_apply_snap", Load::LaggingFollower, (0, 0)),
    ("raft_after_apply_snap", Load::LaggingFollower, (0, 0)),
];

/// The failpoints CI runs on three members (all of them run on one).
const CI_THREE_MEMBERS: &[&str] = &["raft_before_save", "before_commit", "raft_after_save_snap"];

#[derive(Clone, Debug)]
struct Ack {
    key: String,
    value: String,
    revision: i64,
}

fn failpoints_bin() -> PathBuf {
    std::env::var_os("OXCD_FAILPOINTS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/release/oxcd-failpoints"))
}

fn seed() -> u64 {
    let seed = match std::env::var("OXCD_TEST_SEED") {
        Ok(s) => s.parse().expect("OXCD_TEST_SEED is a u64"),
        Err(_) => rand::rng().random(),
    };
    eprintln!("failpoints seed: {seed} (replay with OXCD_TEST_SEED={seed})");
    seed
}

async fn connect(endpoints: &[String]) -> Option<Client> {
    match tokio::time::timeout(REQUEST_TIMEOUT, Client::connect(endpoints, None)).await {
        Ok(Ok(client)) => Some(client),
        _ => None,
    }
}

/// Puts fresh keys until `stop`, recording each acknowledged one; checks that the revisions
/// one writer sees never go back.
async fn writer(
    endpoints: Vec<String>,
    id: usize,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
) {
    let mut client = None;
    let mut last_revision = 0;
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        let Some(c) = client.as_mut() else {
            client = connect(&endpoints).await;
            if client.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        };
        let key = format!("w{id}/{n:08}");
        let value = format!("value-{id}-{n}");
        n += 1;
        match tokio::time::timeout(REQUEST_TIMEOUT, c.put(key.clone(), value.clone(), None)).await {
            Ok(Ok(resp)) => {
                let revision = resp.header().expect("put has a header").revision();
                assert!(
                    revision > last_revision,
                    "{key}: revision {revision} after {last_revision}"
                );
                last_revision = revision;
                acks.lock().unwrap().push(Ack {
                    key,
                    value,
                    revision,
                });
            }
            _ => {
                client = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Compacts or defragments every now and then until `stop`; errors are expected (a member
/// down, a compaction at an old revision) and ignored.
async fn maintenance(endpoints: Vec<String>, load: Load, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        match load {
            Load::Compactions => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Some(mut c) = connect(&endpoints).await {
                    if let Ok(Ok(resp)) =
                        tokio::time::timeout(REQUEST_TIMEOUT, c.get("w0", None)).await
                    {
                        let rev = resp.header().map_or(0, |h| h.revision()) - 20;
                        if rev > 0 {
                            let _ =
                                tokio::time::timeout(REQUEST_TIMEOUT, c.compact(rev, None)).await;
                        }
                    }
                }
            }
            Load::Defrags => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                for endpoint in &endpoints {
                    if let Some(mut c) = connect(std::slice::from_ref(endpoint)).await {
                        let _ = tokio::time::timeout(REQUEST_TIMEOUT, c.defragment()).await;
                    }
                }
            }
            Load::Puts | Load::LeaseStop | Load::LaggingFollower => return,
        }
    }
}

/// One case: arm `failpoint` on every member of a `size`-member cluster, load, crash, restart,
/// check. Returns how many members crashed.
fn run_case(
    rt: &tokio::runtime::Runtime,
    rng: &mut StdRng,
    size: usize,
    failpoint: &str,
    load: Load,
    (min_skip, max_skip): (u32, u32),
) -> usize {
    // Three members pass the start-up steps more often (elections, publishing, catching up).
    let scale = if size > 1 { 4 } else { 1 };
    let skip = rng.random_range(min_skip * scale..=max_skip * scale);
    let spec = format!("{failpoint}={skip}*off->panic");
    eprintln!("case: {size} member(s), FAILPOINTS={spec}, load {load:?}");
    let bin = failpoints_bin();
    let env_spec = spec.clone();
    let mut cluster = Cluster::start_with(size, move |b| {
        let b = b
            .bin(bin.clone())
            .arg(format!("--snapshot-count={SNAPSHOT_COUNT}"))
            .env("FAILPOINTS", &env_spec);
        if load == Load::LaggingFollower {
            b.arg(format!(
                "--experimental-snapshot-catchup-entries={CATCH_UP_ENTRIES}"
            ))
        } else {
            b
        }
    });
    let endpoints = cluster.endpoints();
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    if load == Load::LeaseStop {
        rt.block_on(async {
            let mut c = connect(&endpoints).await.expect("connect");
            for _ in 0..5 {
                let lease = c.lease_grant(60, None).await.expect("lease grant");
                let key = format!("lease/{:x}", lease.id());
                let put = c.put(
                    key,
                    "held",
                    Some(etcd_client::PutOptions::new().with_lease(lease.id())),
                );
                put.await.expect("put with a lease");
            }
        });
        // Let the leases use some of their TTL, so there is something to checkpoint.
        std::thread::sleep(Duration::from_millis(1500));
        // The leader checkpoints the leases as it stops: first, while its followers are up to
        // commit the checkpoint (stopped last, alone, it could not).
        let leader = wait_until("a leader", Duration::from_secs(10), || cluster.leader());
        cluster.member_mut(leader).stop();
        for member in cluster.members_mut() {
            member.stop();
        }
    } else {
        for id in 0..WRITERS {
            tasks.push(rt.spawn(writer(endpoints.clone(), id, stop.clone(), acks.clone())));
        }
        tasks.push(rt.spawn(maintenance(endpoints.clone(), load, stop.clone())));
    }
    if load == Load::LaggingFollower {
        lag_one_follower(&mut cluster, &acks);
    }

    let deadline = Instant::now() + CRASH_WAIT;
    let crashed = loop {
        let crashed: Vec<usize> = (0..size)
            .filter(|&i| !cluster.member_mut(i).is_running())
            .collect();
        if !crashed.is_empty() || Instant::now() >= deadline {
            break crashed;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The others go on a little under load before the crashed members come back.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Release);
    for task in tasks {
        rt.block_on(task).expect("a writer failed its checks");
    }
    assert!(
        !crashed.is_empty(),
        "{spec}: no member crashed within {CRASH_WAIT:?}"
    );
    if load == Load::LeaseStop {
        // A member need not have applied the checkpoint before it stopped: one crash at the
        // failpoint is what counts.
        assert!(
            cluster
                .members()
                .iter()
                .any(|m| m.log().contains(failpoint)),
            "{spec}: the stop did not crash at the failpoint"
        );
    }

    // Members that did not crash yet still have the failpoint armed and could crash during the
    // checks: they are killed too. All start before any is waited on: alone, none may reach a
    // quorum.
    let mut restarted = 0;
    for i in 0..size {
        let member = cluster.member_mut(i);
        member.set_env("FAILPOINTS", None);
        if !member.is_running() {
            restarted += 1;
        }
        member.respawn();
    }
    for i in 0..size {
        cluster.member_mut(i).wait_ready();
    }
    let acks = acks.lock().unwrap().clone();
    rt.block_on(check(&cluster, &acks, &spec));
    eprintln!(
        "case passed: {spec}: {} acknowledged puts, {restarted} member(s) crashed",
        acks.len()
    );
    restarted
}

/// Stops a follower until the others have written `LAG_PUTS` puts, then starts it again
/// (failpoint still armed): the leader can only bring it up to date with a snapshot.
fn lag_one_follower(cluster: &mut Cluster, acks: &Mutex<Vec<Ack>>) {
    let leader = wait_until("a leader", Duration::from_secs(10), || cluster.leader());
    let follower = (leader + 1) % cluster.len();
    cluster.member_mut(follower).kill();
    let start = acks.lock().unwrap().len();
    wait_until(
        "puts past the stopped follower's log",
        Duration::from_secs(60),
        || (acks.lock().unwrap().len() >= start + LAG_PUTS).then_some(()),
    );
    cluster.member_mut(follower).respawn();
}

/// Every acknowledged put is there at its revision, the store's revision did not go back,
/// and every member has the same history.
async fn check(cluster: &Cluster, acks: &[Ack], spec: &str) {
    let endpoints = cluster.endpoints();
    let mut client = connect(&endpoints).await.expect("connect after restart");
    let max_acked = acks.iter().map(|a| a.revision).max().unwrap_or(0);
    for ack in acks {
        let resp = client.get(ack.key.as_str(), None).await.expect("get");
        let kv = resp
            .kvs()
            .first()
            .unwrap_or_else(|| panic!("{spec}: acknowledged {} lost", ack.key));
        assert_eq!(kv.value_str().unwrap(), ack.value, "{spec}: {}", ack.key);
        assert_eq!(kv.mod_revision(), ack.revision, "{spec}: {} moved", ack.key);
    }
    // A write through the cluster, then every member caught up to it: their histories match.
    let revision = client
        .put("failpoints/final", "x", None)
        .await
        .expect("put after restart")
        .header()
        .unwrap()
        .revision();
    assert!(
        revision > max_acked,
        "{spec}: revision went back to {revision} from {max_acked}"
    );
    let mut hashes = Vec::new();
    for endpoint in &endpoints {
        let mut c = connect(std::slice::from_ref(endpoint))
            .await
            .expect("connect a member");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let at = c
                .get(
                    "failpoints/final",
                    Some(GetOptions::new().with_serializable()),
                )
                .await
                .expect("serializable get")
                .header()
                .unwrap()
                .revision();
            if at >= revision {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{spec}: {endpoint} stuck at revision {at}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        hashes.push(c.hash_kv(revision).await.expect("hash kv").hash());
    }
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "{spec}: members disagree: HashKV {hashes:?} at revision {revision}"
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

fn check_binary() {
    let bin = failpoints_bin();
    assert!(
        bin.exists(),
        "no failpoint build at {} (see scripts/test.sh)",
        bin.display()
    );
}

#[test]
fn every_failpoint_on_one_member() {
    check_binary();
    let rt = runtime();
    let mut rng = StdRng::seed_from_u64(seed());
    for &(failpoint, load, skip) in FAILPOINTS {
        run_case(&rt, &mut rng, 1, failpoint, load, skip);
    }
}

#[test]
fn some_failpoints_on_three_members() {
    check_binary();
    let rt = runtime();
    let mut rng = StdRng::seed_from_u64(seed());
    for &(failpoint, load, skip) in FAILPOINTS
        .iter()
        .filter(|f| CI_THREE_MEMBERS.contains(&f.0))
    {
        run_case(&rt, &mut rng, 3, failpoint, load, skip);
    }
}

#[test]
fn snapshot_failpoints_on_three_members() {
    check_binary();
    let rt = runtime();
    let mut rng = StdRng::seed_from_u64(seed());
    for &(failpoint, load, skip) in SNAPSHOT_FAILPOINTS {
        run_case(&rt, &mut rng, 3, failpoint, load, skip);
    }
}

/// Power loss: the member's WAL and backend keep writes in memory until synced (the failpoint
/// build's `OXCD_TEST_LOSE_UNSYNCED_WRITES=1`), so kill -9 under load loses every write not
/// synced, as a power cut loses the page cache; after each restart every acknowledged put is
/// there.
#[test]
fn power_loss_on_one_member() {
    check_binary();
    let rt = runtime();
    let mut rng = StdRng::seed_from_u64(seed());
    let bin = failpoints_bin();
    let mut cluster = Cluster::start_with(1, move |b| {
        b.bin(bin.clone())
            .arg(format!("--snapshot-count={SNAPSHOT_COUNT}"))
            .env("OXCD_TEST_LOSE_UNSYNCED_WRITES", "1")
    });
    let endpoints = cluster.endpoints();
    let acks = Arc::new(Mutex::new(Vec::new()));
    for round in 0..POWER_LOSS_ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|id| {
                rt.spawn(writer(
                    endpoints.clone(),
                    round * WRITERS + id,
                    stop.clone(),
                    acks.clone(),
                ))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.random_range(300..2000)));
        cluster.member_mut(0).kill();
        stop.store(true, Ordering::Release);
        for task in tasks {
            rt.block_on(task).expect("a writer failed its checks");
        }
        cluster.member_mut(0).restart();
        let acks = acks.lock().unwrap().clone();
        let spec = format!("power loss round {round}");
        rt.block_on(check(&cluster, &acks, &spec));
        eprintln!("{spec} passed: {} acknowledged puts so far", acks.len());
    }
}

/// Power loss just after a first start: the data dir, the member dir, the backend and the WAL
/// were created and renamed into place. The power-loss mode also drops every directory change
/// not followed by an fsync of its directory, so this proves that the start syncs them: the
/// member comes back with its acknowledged put, and nothing was left to drop.
#[test]
fn power_loss_right_after_the_first_start() {
    check_binary();
    let mut member = Member::builder()
        .bin(failpoints_bin())
        .env("OXCD_TEST_LOSE_UNSYNCED_WRITES", "1")
        .start();
    member.etcdctl(&["put", "first", "start"]).expect_success();
    member.kill();
    member.restart();
    let log = member.log_since_start();
    assert!(
        !log.contains("dropped a directory change"),
        "a directory change was never synced:\n{log}"
    );
    let got = member.etcdctl(&["get", "first", "--print-value-only"]);
    assert_eq!(got.expect_success().trim(), "start");
}

/// The long matrix (not part of CI): every failpoint on one and three members (the snapshot
/// steps on three), in turns, for `OXCD_FAILPOINTS_SOAK_SECS` seconds of wall time (no case
/// starts after that). A failed case is counted and the soak goes on; at the end it prints
/// how many runs of each failpoint and size passed, and fails if any did not.
/// `OXCD_FAILPOINTS_SOAK_ONLY=<failpoint>` limits it to one failpoint.
#[test]
fn soak() {
    let Some(secs) = std::env::var("OXCD_FAILPOINTS_SOAK_SECS")
        .ok()
        .and_then(|r| r.parse::<u64>().ok())
    else {
        eprintln!("SKIPPED: set OXCD_FAILPOINTS_SOAK_SECS=<seconds> for the long failpoint matrix");
        return;
    };
    check_binary();
    // `OXCD_FAILPOINTS_SOAK_ONLY=<failpoint>` soaks that one alone.
    let only = std::env::var("OXCD_FAILPOINTS_SOAK_ONLY").ok();
    let cases: Vec<(usize, &str, Load, (u32, u32))> = [1, 3]
        .into_iter()
        .flat_map(|size| {
            let snapshot_steps = if size == 3 { SNAPSHOT_FAILPOINTS } else { &[] };
            FAILPOINTS
                .iter()
                .chain(snapshot_steps)
                .map(move |&(name, load, skip)| (size, name, load, skip))
        })
        .filter(|case| only.as_deref().is_none_or(|name| name == case.1))
        .collect();
    assert!(!cases.is_empty(), "no failpoint named {only:?}");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut rng = StdRng::seed_from_u64(seed());
    // (runs, passed) per case, in the order of `cases`.
    let mut counts = vec![(0u32, 0u32); cases.len()];
    let mut failures = Vec::new();
    'soak: loop {
        for (i, &(size, failpoint, load, skip)) in cases.iter().enumerate() {
            if Instant::now() >= deadline {
                break 'soak;
            }
            let case_seed: u64 = rng.random();
            eprintln!("soak case: {size} member(s), {failpoint}, seed {case_seed}");
            // A runtime per case: a failed case's writers end with it.
            let passed = std::panic::catch_unwind(|| {
                let rt = runtime();
                let mut case_rng = StdRng::seed_from_u64(case_seed);
                run_case(&rt, &mut case_rng, size, failpoint, load, skip);
            })
            .is_ok();
            counts[i].0 += 1;
            if passed {
                counts[i].1 += 1;
            } else {
                failures.push(format!(
                    "{failpoint} on {size} member(s), case seed {case_seed}"
                ));
            }
        }
    }
    eprintln!("failpoint soak ({secs} s): runs passed per failpoint and cluster size");
    for (&(size, failpoint, _, _), &(runs, passed)) in cases.iter().zip(&counts) {
        eprintln!("  {failpoint:32} {size} member(s): {passed}/{runs}");
    }
    assert!(failures.is_empty(), "failed cases: {failures:#?}");
}
