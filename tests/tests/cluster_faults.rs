//! Proof under faults (issue 5): 3-member clusters behind fault-injecting peer proxies, with
//! clients recording every get, put and compare-and-swap on a few keys and watchers recording
//! their streams, while members are killed, stopped, paused, cut off (both ways and one way)
//! and replaced. Each run then checks that every key's history is linearizable, that no
//! acknowledged write is lost, that the members' event logs and hashes agree, and that the
//! watch streams have no gaps, duplicates or disorder (`oxcd_e2e::fault_run`).
//!
//! Each test is one run of about 15 s; cluster tests never run at the same time (a file lock),
//! so the file takes a couple of minutes. Replay a failed run's plan with the seed it printed:
//! `OXCD_TEST_SEED=<seed> cargo test -p oxcd-e2e --test cluster_faults <test>`. The same runs
//! pass against real etcd: `OXCD_BIN=/usr/bin/etcd cargo test -p oxcd-e2e --test cluster_faults`.
//!
//! The soak mode repeats runs of every scenario with fresh seeds for `OXCD_SOAK_SECS`
//! seconds (not part of CI): `OXCD_SOAK_SECS=3600 cargo test -p oxcd-e2e --test cluster_faults
//! -- --ignored --nocapture soak`.

use std::time::Duration;

use oxcd_e2e::fault_run::{run_or_panic, seed, soak, Scenario};
use oxcd_e2e::faults::Fault;
use oxcd_e2e::CutMode;

fn crashes() -> Scenario {
    Scenario::new(
        "crashes",
        &[Fault::KillLeader, Fault::KillFollower, Fault::StopLeader],
    )
}

fn pauses() -> Scenario {
    Scenario::new("pauses", &[Fault::PauseLeader, Fault::PauseFollower])
}

fn partitions() -> Scenario {
    Scenario::new(
        "partitions",
        &[
            Fault::IsolateLeader(CutMode::Blackhole),
            Fault::IsolateLeader(CutMode::Refuse),
            Fault::IsolateFollower(CutMode::Blackhole),
            Fault::IsolateFollower(CutMode::Refuse),
        ],
    )
}

fn one_way_cuts() -> Scenario {
    Scenario::new(
        "one-way-cuts",
        &[
            Fault::LeaderCannotSend,
            Fault::LeaderCannotHear,
            Fault::CutLeaderToFollower,
            Fault::CutFollowerToLeader,
        ],
    )
}

fn membership() -> Scenario {
    Scenario::new(
        "membership",
        &[Fault::ReplaceFollower, Fault::AddLearnerThenRemove],
    )
    .fault_phase(Duration::from_secs(12))
}

fn everything() -> Scenario {
    Scenario::new("everything", &Fault::ALL)
}

#[test]
fn kill_stop_and_restart_leader_and_followers() {
    run_or_panic(&crashes());
}

#[test]
fn pause_and_resume_leader_and_followers() {
    run_or_panic(&pauses());
}

#[test]
fn isolate_leader_and_followers_both_ways() {
    run_or_panic(&partitions());
}

#[test]
fn cut_peer_links_one_way() {
    run_or_panic(&one_way_cuts());
}

#[test]
fn replace_members_under_load() {
    run_or_panic(&membership());
}

#[test]
fn random_faults_of_every_kind() {
    run_or_panic(&everything());
}

/// Not for CI: `OXCD_SOAK_SECS` seconds of runs with random scenarios and seeds, 3- and
/// 5-member clusters, longer fault phases; prints how many passed. Without `OXCD_SOAK_SECS`
/// it does nothing (so that `--include-ignored` stays short).
#[test]
#[ignore = "soak mode, minutes to hours: set OXCD_SOAK_SECS and run with --ignored"]
fn soak_mode() {
    let Some(secs) = std::env::var("OXCD_SOAK_SECS").ok() else {
        eprintln!("SKIPPED: set OXCD_SOAK_SECS to the soak's length in seconds");
        return;
    };
    let secs: u64 = secs.parse().expect("OXCD_SOAK_SECS is a number of seconds");
    let long = Duration::from_secs(30);
    let scenarios = vec![
        crashes().fault_phase(long),
        pauses().fault_phase(long),
        partitions().fault_phase(long),
        one_way_cuts().fault_phase(long),
        membership().fault_phase(long),
        everything().fault_phase(long),
        everything().fault_phase(long).members(5),
    ];
    let report = soak(&scenarios, Duration::from_secs(secs), seed());
    eprintln!("{report}");
    assert!(
        report.failed.is_empty() && report.broken.is_empty(),
        "{report}"
    );
}
