//! A fault run: a cluster behind peer proxies, clients and watchers recording everything
//! they do and see ([`crate::workload`]), faults injected one after another
//! ([`crate::faults`]), then every check: the members' event logs agree with each other and
//! with the acknowledged writes, each key's history is linearizable, revisions respect real
//! time, watch streams have no gaps, duplicates or disorder, and the members' `HashKV` agree.
//!
//! [`run`] does one run with a seed; [`soak`] repeats runs with fresh seeds for a while.
//! Every random choice (faults, their targets and lengths, client operations) comes from the
//! seed, but the servers' own timing does not, so a seed replays the same plan, not
//! necessarily the same interleaving.

use std::fmt;
use std::fs::File;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use crate::cluster::{Cluster, PeerTls};
use crate::faults::{Fault, Nemesis};
use crate::history::{check_revision_order, format_ops, Op, OpKind, OpResult};
use crate::linearizability::{check_history, Verdict, DEFAULT_STEP_LIMIT};
use crate::watch_check::{check_event_log, check_watch, Event};
use crate::workload::{connect, event_log, Endpoint, Workload, WorkloadConfig};

/// How many problems of one kind a report lists.
const PROBLEM_LIMIT: usize = 20;

/// How long the cluster may take to be healthy again after the last fault.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(40);

/// A member's revision and its event history up to it.
type EventLog = (i64, Vec<Event>);

/// What a fault run does.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    /// Cluster size (3 or 5).
    pub members: usize,
    /// The faults to choose from, uniformly.
    pub faults: Vec<Fault>,
    /// Traffic runs this long before the first fault.
    pub warmup: Duration,
    /// Faults are injected until this much time has passed after the warmup.
    pub fault_phase: Duration,
    /// How long a fault lasts: uniformly between the two.
    pub hold: (Duration, Duration),
    /// Quiet time after each repaired fault.
    pub settle: Duration,
    pub peer_tls: PeerTls,
    /// Extra server flags for every member.
    pub member_args: Vec<String>,
    /// The traffic (its seed is replaced by the run's).
    pub workload: WorkloadConfig,
    /// How long, after the faults, a member may take to deliver its event log, and the
    /// watchers to catch up.
    pub catch_up: Duration,
    /// Members that do not form a cluster ([`crate::ClusterBuilder::split_brain`]): only for
    /// the harness's self-test, which expects the checks to fail.
    pub split_brain: bool,
}

impl Scenario {
    /// A 3-member scenario choosing among `faults`, with CI-sized times: about 8 s of faults
    /// (3 or 4 of them).
    pub fn new(name: &str, faults: &[Fault]) -> Scenario {
        Scenario {
            name: name.to_owned(),
            members: 3,
            faults: faults.to_vec(),
            warmup: Duration::from_secs(1),
            fault_phase: Duration::from_secs(8),
            hold: (Duration::from_millis(1000), Duration::from_millis(3000)),
            settle: Duration::from_millis(1000),
            peer_tls: PeerTls::None,
            member_args: Vec::new(),
            workload: WorkloadConfig::default(),
            catch_up: Duration::from_secs(30),
            split_brain: false,
        }
    }

    pub fn fault_phase(mut self, phase: Duration) -> Scenario {
        self.fault_phase = phase;
        self
    }

    pub fn peer_tls(mut self, tls: PeerTls) -> Scenario {
        self.peer_tls = tls;
        self
    }

    pub fn members(mut self, members: usize) -> Scenario {
        self.members = members;
        self
    }
}

/// What a passing run did.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub scenario: String,
    pub seed: u64,
    pub faults: usize,
    pub ops: usize,
    pub ok: usize,
    pub failed_reads: usize,
    pub unknown_writes: usize,
    pub acknowledged_writes: usize,
    pub final_revision: i64,
    pub watch_events: usize,
    /// Peer connections the proxies accepted, and how many of them from an unknown sender.
    pub peer_connections: u64,
    pub unidentified_connections: u64,
    pub elapsed: Duration,
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fault run {:?} seed {} passed in {:.1?}: {} faults; {} operations ({} ok, {} reads failed, {} writes unknown), {} writes acknowledged, final revision {}, {} watch events checked, {} peer connections ({} unidentified)",
            self.scenario,
            self.seed,
            self.elapsed,
            self.faults,
            self.ops,
            self.ok,
            self.failed_reads,
            self.unknown_writes,
            self.acknowledged_writes,
            self.final_revision,
            self.watch_events,
            self.peer_connections,
            self.unidentified_connections
        )
    }
}

/// The seed for a run: `OXCD_TEST_SEED` if set, else a random one; printed either way.
pub fn seed() -> u64 {
    let seed = match std::env::var("OXCD_TEST_SEED") {
        Ok(s) => s.parse().expect("OXCD_TEST_SEED is a u64"),
        Err(_) => rand::rng().random(),
    };
    eprintln!("fault run seed: {seed} (replay with OXCD_TEST_SEED={seed})");
    seed
}

/// Holds an exclusive lock on a file in the temp dir, so that cluster tests of different
/// test processes (nextest runs each test in its own) never run at the same time: on two
/// cores, two clusters starve each other's heartbeats and a fault run measures the machine.
pub struct ClusterLock {
    _file: File,
}

/// Waits for the cluster lock and returns it; released on drop.
pub fn cluster_lock() -> ClusterLock {
    let path = std::env::temp_dir().join("oxcd-e2e-cluster.lock");
    let file = File::create(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    // SAFETY: flock(2) on a file descriptor we own, open for the lifetime of the lock.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {}", path.display());
    ClusterLock { _file: file }
}

/// Runs `scenario` with `seed` and all checks. `Err` holds the failure report: seed,
/// timeline, problems, and the history of any key that is not linearizable (the whole
/// history is written to a file named in the report, and the members' dirs are kept).
///
/// Panics (with the members' logs) when the cluster cannot be started or repaired at all.
pub fn run(scenario: &Scenario, seed: u64) -> Result<RunSummary, String> {
    assert!(!scenario.faults.is_empty(), "a scenario needs faults");
    let _lock = cluster_lock();
    let mut rng = StdRng::seed_from_u64(seed);
    let args = scenario.member_args.clone();
    let mut builder = Cluster::builder(scenario.members)
        .proxied()
        .peer_tls(scenario.peer_tls)
        .configure(move |b| b.args(args.clone()));
    if scenario.split_brain {
        builder = builder.split_brain();
    }
    let mut cluster = builder.start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build the client runtime");
    let started = Instant::now();
    let mut config = scenario.workload.clone();
    config.seed = rng.random();
    let mut workload = Workload::start(
        runtime.handle(),
        endpoints(&cluster),
        config.clone(),
        started,
    );
    let mut nemesis = Nemesis::new(started);
    nemesis.note(format!(
        "scenario {:?}, seed {seed}, members {:?}, peer TLS {:?}",
        scenario.name,
        cluster.names(),
        scenario.peer_tls
    ));

    std::thread::sleep(scenario.warmup);
    let faults_end = Instant::now() + scenario.fault_phase;
    while Instant::now() < faults_end {
        let fault = *scenario.faults.choose(&mut rng).expect("faults");
        let (min, max) = scenario.hold;
        let hold = rng.random_range(min..=max);
        nemesis.run_fault(&mut cluster, fault, hold, &mut rng, &mut |c| {
            workload.set_endpoints(endpoints(c))
        });
        std::thread::sleep(scenario.settle);
    }

    nemesis.note("faults over; stopping clients");
    runtime.block_on(workload.stop_clients());
    wait_healthy(&cluster, &mut nemesis);

    let mut problems = Vec::new();
    let recorder = workload.recorder();
    let final_revision = runtime.block_on(final_reads(&cluster, &config, &recorder));
    nemesis.note(format!("final reads done at revision {final_revision}"));
    let catch_up = scenario.catch_up;
    let logs: Vec<(String, Option<EventLog>)> = runtime.block_on(async {
        let mut logs = Vec::new();
        for member in cluster.members() {
            let log = event_log(&member.endpoint(), &config.prefix, catch_up).await;
            logs.push((member.name().to_owned(), log));
        }
        logs
    });
    let watches = runtime.block_on(workload.finish_watchers(final_revision, catch_up));
    let hashes = runtime.block_on(hash_kvs(&cluster, final_revision));
    nemesis.note("event logs, watches and hashes collected");
    runtime.shutdown_timeout(Duration::from_secs(2));
    let ops = recorder.ops();

    // Each key's history is linearizable.
    let mut not_linearizable = Vec::new();
    for verdict in check_history(&ops, DEFAULT_STEP_LIMIT) {
        match verdict.verdict {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable { report } => {
                problems.push(report);
                not_linearizable.push(verdict.key);
            }
            Verdict::GaveUp { steps } => problems.push(format!(
                "key {:?}: the linearizability search gave up after {steps} steps ({} operations)",
                verdict.key, verdict.checked_ops
            )),
        }
    }
    // The members agree on the event log, which ends at the final revision.
    let mut truth: Option<(&str, &Vec<Event>)> = None;
    for (name, log) in &logs {
        let Some((revision, log)) = log else {
            problems.push(format!(
                "{name} did not deliver its event log within {catch_up:?}"
            ));
            continue;
        };
        if *revision != final_revision {
            problems.push(format!(
                "{name} is at revision {revision}, though the final reads saw {final_revision}"
            ));
        }
        match truth {
            None => truth = Some((name, log)),
            Some((first_name, first)) if log != first => problems.push(format!(
                "{name}'s event log differs from {first_name}'s: {}",
                first_difference(first, log)
            )),
            Some(_) => {}
        }
    }
    let distinct_hashes: std::collections::BTreeSet<_> = hashes.iter().map(|(_, h)| *h).collect();
    if distinct_hashes.len() > 1 || hashes.iter().any(|(_, h)| h.is_none()) {
        problems.push(format!(
            "HashKV at revision {final_revision} differs or failed: {hashes:?}"
        ));
    }
    let empty = Vec::new();
    let truth = truth.map_or(&empty, |(_, log)| log);
    problems.extend(check_event_log(truth, &ops, PROBLEM_LIMIT));
    problems.extend(check_revision_order(&ops, PROBLEM_LIMIT));
    let mut watch_events = 0;
    for record in &watches {
        watch_events += record
            .segments
            .iter()
            .flat_map(|s| &s.responses)
            .map(Vec::len)
            .sum::<usize>();
        problems.extend(check_watch(record, truth, PROBLEM_LIMIT));
        let last = record.last_revision();
        if last < final_revision && truth.iter().any(|e| e.revision > last) {
            problems.push(format!(
                "watcher {} stopped at revision {last} of {final_revision} (it did not catch up within {catch_up:?}):\n{}",
                record.watcher,
                record.summary()
            ));
        }
    }
    let network = cluster.network().expect("a proxied cluster");
    let (peer_connections, unidentified_connections) = (
        network.accepted_connections(),
        network.unidentified_connections(),
    );
    if unidentified_connections * 2 > peer_connections {
        problems.push(format!(
            "the peer proxies could not tell the sender of {unidentified_connections} of {peer_connections} connections: link cuts did not work"
        ));
    }
    let acknowledged = ops.iter().filter(|op| op.write_took_effect()).count();
    if acknowledged == 0 {
        problems.push("no write was acknowledged in the whole run".to_owned());
    }

    let summary = RunSummary {
        scenario: scenario.name.clone(),
        seed,
        faults: nemesis.injected(),
        ops: ops.len(),
        ok: ops
            .iter()
            .filter(|op| !matches!(op.result, OpResult::Failed(_) | OpResult::Unknown(_)))
            .count(),
        failed_reads: ops
            .iter()
            .filter(|op| matches!(op.result, OpResult::Failed(_)))
            .count(),
        unknown_writes: ops.iter().filter(|op| op.result.is_unknown()).count(),
        acknowledged_writes: acknowledged,
        final_revision,
        watch_events,
        peer_connections,
        unidentified_connections,
        elapsed: started.elapsed(),
    };
    if problems.is_empty() {
        return Ok(summary);
    }
    Err(failure_report(
        scenario,
        seed,
        &mut cluster,
        &nemesis,
        &problems,
        &ops,
        &not_linearizable,
        &summary,
    ))
}

/// Each member as clients see it.
fn endpoints(cluster: &Cluster) -> Vec<Endpoint> {
    cluster
        .members()
        .iter()
        .map(|m| (m.name().to_owned(), m.endpoint()))
        .collect()
}

fn wait_healthy(cluster: &Cluster, nemesis: &mut Nemesis) {
    if let Some(network) = cluster.network() {
        network.heal();
    }
    crate::deadline::wait_until(
        "every member healthy after the faults",
        RECOVERY_TIMEOUT,
        || {
            cluster
                .members()
                .iter()
                .all(|m| {
                    m.etcdctl(&[
                        "--dial-timeout=1s",
                        "--command-timeout=3s",
                        "endpoint",
                        "health",
                    ])
                    .success()
                })
                .then_some(())
        },
    );
    nemesis.note("every member is healthy");
}

/// Reads every key from every member (recorded in the history); returns the highest header
/// revision seen, which, with the clients stopped, is the final revision.
async fn final_reads(
    cluster: &Cluster,
    config: &WorkloadConfig,
    recorder: &crate::workload::Recorder,
) -> i64 {
    let mut revision = 0;
    for (index, member) in cluster.members().iter().enumerate() {
        let Some(mut client) = connect(&member.endpoint()).await else {
            continue;
        };
        for key in 0..config.keys {
            let key = config.key(key);
            for _attempt in 0..5 {
                let result = recorder
                    .execute(1000 + index, member.name(), &mut client, &key, OpKind::Get)
                    .await;
                if let Some(r) = result.revision() {
                    revision = revision.max(r);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    revision
}

async fn hash_kvs(cluster: &Cluster, revision: i64) -> Vec<(String, Option<u32>)> {
    let mut hashes = Vec::new();
    for member in cluster.members() {
        let hash = match connect(&member.endpoint()).await {
            Some(mut client) => {
                let call = client.hash_kv(revision);
                match tokio::time::timeout(Duration::from_secs(10), call).await {
                    Ok(Ok(response)) => Some(response.hash()),
                    _ => None,
                }
            }
            None => None,
        };
        hashes.push((member.name().to_owned(), hash));
    }
    hashes
}

fn first_difference(a: &[Event], b: &[Event]) -> String {
    let at = a.iter().zip(b).position(|(x, y)| x != y);
    match at {
        Some(i) => format!("event {i}: {} vs {}", a[i], b[i]),
        None => format!("lengths {} vs {}", a.len(), b.len()),
    }
}

#[allow(clippy::too_many_arguments)]
fn failure_report(
    scenario: &Scenario,
    seed: u64,
    cluster: &mut Cluster,
    nemesis: &Nemesis,
    problems: &[String],
    ops: &[Op],
    not_linearizable: &[String],
    summary: &RunSummary,
) -> String {
    let mut report = format!(
        "fault run {:?} FAILED, seed {seed} (replay the same plan with OXCD_TEST_SEED={seed})\n{} problem(s):\n",
        scenario.name,
        problems.len()
    );
    for problem in problems {
        report.push_str("- ");
        report.push_str(problem.trim_end());
        report.push('\n');
    }
    report.push_str("timeline:\n");
    report.push_str(&nemesis.format_timeline());
    for key in not_linearizable {
        report.push_str(&format!("history of key {key:?}:\n"));
        report.push_str(&format_ops(ops.iter().filter(|op| &op.key == key)));
    }
    if scenario.split_brain {
        // The self-test expects this failure: nothing to keep for inspection.
        report.push_str(&format!("stats: {summary}\n"));
        return report;
    }
    let path = history_path(&scenario.name, seed);
    match File::create(&path).and_then(|mut f| f.write_all(format_ops(ops).as_bytes())) {
        Ok(()) => report.push_str(&format!(
            "whole history ({} operations): {}\n",
            ops.len(),
            path.display()
        )),
        Err(e) => report.push_str(&format!("could not write the history: {e}\n")),
    }
    for member in cluster.members_mut() {
        if let Some(dir) = member.keep_dir() {
            report.push_str(&format!(
                "kept {}'s data dir and log: {}\n",
                member.name(),
                dir.display()
            ));
        }
    }
    report.push_str(&format!("stats: {summary}\n"));
    report
}

fn history_path(scenario: &str, seed: u64) -> PathBuf {
    let name: String = scenario
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    std::env::temp_dir().join(format!("oxcd-fault-{name}-{seed}.history.txt"))
}

/// Runs `scenario` with [`seed`] and panics with the failure report if any check fails.
pub fn run_or_panic(scenario: &Scenario) -> RunSummary {
    let seed = seed();
    match run(scenario, seed) {
        Ok(summary) => {
            eprintln!("{summary}");
            summary
        }
        Err(report) => panic!("{report}"),
    }
}

/// What a soak did.
#[derive(Clone, Debug, Default)]
pub struct SoakReport {
    pub runs: usize,
    pub passed: usize,
    /// (scenario, seed, first lines of the report) of runs whose checks failed.
    pub failed: Vec<(String, u64, String)>,
    /// (scenario, seed, panic message) of runs that could not complete (a member did not
    /// start or recover in time).
    pub broken: Vec<(String, u64, String)>,
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "soak: {} runs, {} passed, {} failed checks, {} could not complete",
            self.runs,
            self.passed,
            self.failed.len(),
            self.broken.len()
        )?;
        for (scenario, seed, report) in &self.failed {
            writeln!(f, "  FAILED {scenario} seed {seed}:\n{report}")?;
        }
        for (scenario, seed, message) in &self.broken {
            writeln!(f, "  BROKEN {scenario} seed {seed}: {message}")?;
        }
        Ok(())
    }
}

/// Repeats fault runs, each with a random scenario of `scenarios` and a fresh seed, until
/// `total` has passed (a run is not started after that). Prints a line per run.
pub fn soak(scenarios: &[Scenario], total: Duration, first_seed: u64) -> SoakReport {
    let mut report = SoakReport::default();
    let mut rng = StdRng::seed_from_u64(first_seed);
    let started = Instant::now();
    while started.elapsed() < total {
        let scenario = scenarios.choose(&mut rng).expect("scenarios");
        let seed: u64 = rng.random();
        report.runs += 1;
        eprintln!(
            "soak run {} ({:.0?} of {total:?}): {} seed {seed}",
            report.runs,
            started.elapsed(),
            scenario.name
        );
        match std::panic::catch_unwind(AssertUnwindSafe(|| run(scenario, seed))) {
            Ok(Ok(summary)) => {
                report.passed += 1;
                eprintln!("soak run {}: {summary}", report.runs);
            }
            Ok(Err(failure)) => {
                eprintln!("soak run {}: {failure}", report.runs);
                let head: String = failure.lines().take(40).collect::<Vec<_>>().join("\n");
                report.failed.push((scenario.name.clone(), seed, head));
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "panic".to_owned());
                let head: String = message.lines().take(5).collect::<Vec<_>>().join("\n");
                report.broken.push((scenario.name.clone(), seed, head));
            }
        }
        eprintln!(
            "soak so far: {} runs, {} passed",
            report.runs, report.passed
        );
    }
    report
}
