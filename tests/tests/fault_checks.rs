//! The fault-run checks can fail: three single-member servers posing as one cluster (each
//! client talks to its own member) must be caught as not linearizable, with members that
//! disagree on the event log. This needs no multi-member support, so it runs today.

use std::time::Duration;

use oxcd_e2e::fault_run::{run, seed, Scenario};
use oxcd_e2e::faults::Fault;

#[test]
fn three_unrelated_servers_are_caught_as_inconsistent() {
    let mut scenario = Scenario::new("split-brain", &[Fault::PauseFollower]);
    scenario.split_brain = true;
    scenario.warmup = Duration::from_secs(2);
    scenario.fault_phase = Duration::from_secs(1);
    scenario.hold = (Duration::from_millis(200), Duration::from_millis(200));
    // Each member's watchers stop at its own revision, short of the others': do not wait.
    scenario.catch_up = Duration::from_secs(3);
    let seed = seed();
    let report = match run(&scenario, seed) {
        Ok(summary) => panic!("three unrelated servers passed as one cluster: {summary}"),
        Err(report) => report,
    };
    assert!(
        report.contains("is not linearizable"),
        "the linearizability check missed it:\n{report}"
    );
    assert!(
        report.contains("event log differs"),
        "the event-log comparison missed it:\n{report}"
    );
    eprintln!(
        "caught, as it should be:\n{}",
        report.lines().take(30).collect::<Vec<_>>().join("\n")
    );
}
