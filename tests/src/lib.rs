//! End-to-end test support for oxcd: real server processes on 127.0.0.1, driven by the real
//! `etcdctl` and by the `etcd-client` crate.
//!
//! The pieces, and how they meet:
//!
//! - [`binaries`] finds the programs: the server under test (`OXCD_BIN`, else the newest
//!   `target/{release,debug}/oxcd`), real etcd for comparisons (`REAL_ETCD_BIN`, else
//!   `/usr/bin/etcd`) and `etcdctl` (`ETCDCTL_BIN`, else `/usr/bin/etcdctl`).
//! - [`ports`] hands out free TCP ports, never the same one twice in a process.
//! - [`Member`] is one server process with its own temp dir (data dir and log file). It is
//!   spawned with etcd's flags, waited on until its log says it is ready and `endpoint health`
//!   succeeds, and can be killed (`SIGKILL`), paused (`SIGSTOP`/`SIGCONT`) and restarted on the
//!   same data dir. Its log is printed when a test panics.
//! - [`Cluster`] bootstraps 1, 3 or 5 members statically, optionally with peer TLS
//!   ([`PeerTls`]) and behind fault-injecting peer proxies ([`PeerNetwork`]), and adds,
//!   promotes and removes members while it runs.
//! - [`etcdctl()`] runs the real `etcdctl` (API v3) with a deadline and optional stdin.
//! - [`Normalizer`] blanks what legitimately differs between two servers (member and cluster
//!   ids, raft terms and indexes, version strings, db sizes, timings, ports).
//! - [`Oracle`] runs the same `etcdctl` commands against a fresh real etcd and the server under
//!   test and fails with a diff when their normalised outputs differ.
//!
//! - Fault runs ([`fault_run`]): clients record every operation ([`history`],
//!   [`workload`]) while [`faults`] kill, pause, restart, cut off and replace members; then
//!   [`linearizability`] checks each key's history, and [`watch_check`] the event log and
//!   the watch streams.
//!
//! Every wait is bounded by a deadline ([`wait_until`]). Tests that check behaviour only oxcd
//! has start with [`oxcd_only!`], which skips them (loudly) only when `OXCD_BIN` is real etcd.
//!
//! Environment knobs: `OXCD_BIN`, `REAL_ETCD_BIN`, `ETCDCTL_BIN`, `OXCD_TEST_SEED` (random
//! tests), `OXCD_TEST_START_TIMEOUT` (seconds a server may take to become ready, default 30),
//! `OXCD_TEST_KEEP=1` (keep temp dirs of failed tests), `OXCD_SOAK_SECS` (the soak test).

pub mod binaries;
mod cluster;
mod ctl;
mod deadline;
mod diff;
pub mod fault_run;
pub mod faults;
pub mod history;
pub mod linearizability;
mod member;
mod normalize;
mod oracle;
pub mod ports;
mod proxy;
pub mod watch_check;
pub mod workload;

pub use binaries::{etcdctl_bin, real_etcd_bin, server_bin, testing_real_etcd};
pub use cluster::{fixture, wait_for_membership, Cluster, ClusterBuilder, MemberInfo, PeerTls};
pub use ctl::{etcdctl, etcdctl_stdin, etcdctl_timeout, CtlOutput};
pub use deadline::{start_timeout, wait_until};
pub use diff::line_diff;
pub use member::{Member, MemberBuilder};
pub use normalize::Normalizer;
pub use oracle::Oracle;
pub use proxy::{CutMode, PeerNetwork};

/// Skips the calling test when the server under test is real etcd, because the test checks
/// behaviour that only oxcd has (say, a flag etcd 3.4 does not know). Against oxcd it never
/// skips. Use it as the first statement of a test function returning `()`.
#[macro_export]
macro_rules! oxcd_only {
    () => {
        if $crate::testing_real_etcd() {
            eprintln!(
                "SKIPPED: oxcd-specific test; OXCD_BIN={} is real etcd",
                $crate::server_bin().display()
            );
            return;
        }
    };
}
