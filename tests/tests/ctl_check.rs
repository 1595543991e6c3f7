//! `oxcdctl check perf` and `check datascale` against the real etcdctl 3.4's (issue 13):
//! their refusals byte for byte, datascale's lines and exit code on twin servers (oxcd and
//! real etcd), and a full 60-second `check perf` run beside etcdctl's on oxcd.
//!
//! etcdctl draws its progress bar on stdout even into a pipe (`\r 12 / 60 20.00% 00m48s`);
//! oxcdctl draws one only on a terminal, so the bar's text is taken out of etcdctl's output
//! before comparing. Measured numbers (MB, writes/s, seconds) are compared by shape.

mod ctl_support;

use std::time::Duration;

use ctl_support::{Pair, Run, Server, SERVERS};
use oxcd_e2e::CtlOutput;

/// etcdctl's progress bar text on a pipe: `\r` + counters + percent (+ time), with the
/// newline it prints when the bar finishes.
fn strip_progress(text: &str) -> String {
    let bar =
        regex::Regex::new(r"(\r *\d+ / \d+ +\d+\.\d\d%(?: [0-9hmsµ.]+)?)+\n?").expect("regex");
    bar.replace_all(text, "").into_owned()
}

/// A run's output with the bar removed and every measured number replaced by `N`; the
/// revisions too when `revisions` (a timed load writes as many keys as it can).
fn shape(out: &CtlOutput, revisions: bool) -> CtlOutput {
    let number = regex::Regex::new(r"-?\d+(\.\d+)?( MB| writes/s|s\b)").expect("regex");
    let revision = regex::Regex::new(r"revision \d+").expect("regex");
    let mut stdout = strip_progress(&out.stdout);
    if revisions {
        stdout = revision.replace_all(&stdout, "revision N").into_owned();
    }
    CtlOutput {
        code: out.code,
        stdout: number.replace_all(&stdout, "N$2").into_owned(),
        stderr: out.stderr.clone(),
    }
}

fn run(pair: &Pair, etcdctl: bool, args: &[&str], deadline: Duration) -> CtlOutput {
    let (bin, member) = if etcdctl {
        (oxcd_e2e::etcdctl_bin(), &pair.reference)
    } else {
        (ctl_support::oxcdctl_bin(), &pair.subject)
    };
    ctl_support::run(
        &bin,
        &member.endpoint(),
        &Run {
            args,
            deadline: Some(deadline),
            ..Default::default()
        },
    )
}

/// Runs etcdctl and oxcdctl at once, each on its server; both outputs in their shape.
fn both(pair: &Pair, args: &[&str], deadline: Duration) -> (CtlOutput, CtlOutput) {
    std::thread::scope(|s| {
        let reference = s.spawn(|| run(pair, true, args, deadline));
        let subject = run(pair, false, args, deadline);
        (reference.join().expect("etcdctl run"), subject)
    })
}

#[test]
fn check_refusals_and_datascale_match_etcdctl() {
    let endpoint = regex::Regex::new(r#""[^"]+:\d+""#).expect("regex");
    for server in SERVERS {
        let pair = Pair::start(server);
        pair.check_all(&[
            &["check", "perf", "--load", "huge"],
            &["check", "datascale", "--load", "x"],
            &["put", "/etcdctl-check-perf/taken", "v"],
            &["check", "perf"],
            &["put", "/used/k", "v"],
            &["check", "datascale", "--prefix", "/used/"],
            &["check", "perf", "--prefix", "/used/", "--load", "small"],
        ]);

        // The small datascale load: 10,000 keys of 1 KiB, then deleted, compacted, defragmented.
        let args = &[
            "check",
            "datascale",
            "--auto-compact",
            "--auto-defrag",
            "--prefix",
            "/ds/",
        ];
        let (expected, got) = both(&pair, args, Duration::from_secs(120));
        let (expected_shape, got_shape) = (shape(&expected, false), shape(&got, false));
        let normal = |o: &CtlOutput| {
            endpoint
                .replace_all(&o.to_string(), "<endpoint>")
                .into_owned()
        };
        // Both sides wrote the same keys count, so even the revisions agree.
        assert_eq!(
            normal(&expected_shape),
            normal(&got_shape),
            "on {server:?}: oxcdctl {args:?} differs from etcdctl\n--- etcdctl\n{expected}\n--- oxcdctl\n{got}"
        );
        assert!(got.success(), "{got}");
        // The keys are gone afterwards.
        let left = pair
            .subject
            .etcdctl(&["get", "/ds/", "--prefix", "--keys-only"]);
        assert_eq!(left.stdout, "", "check datascale deletes its keys: {left}");
    }
}

#[test]
fn check_perf_matches_etcdctl_on_oxcd() {
    let pair = Pair::start(Server::UnderTest);
    let args = &["check", "perf", "--auto-compact"];
    let (expected, got) = both(&pair, args, Duration::from_secs(150));
    eprintln!(
        "--- etcdctl\n{}\n--- oxcdctl\n{got}",
        shape(&expected, true)
    );

    // oxcdctl's lines are etcdctl's, and its exit code follows its last line.
    let line = regex::Regex::new(
        r"^(PASS: Throughput is \d+ writes/s|FAIL: Throughput too low: \d+ writes/s|PASS: Slowest request took \d+\.\d{6}s|Slowest request took too long: \d+\.\d{6}s|PASS: Stddev is \d+\.\d{6}s|Stddev too high: \d+\.\d{6}s|Compacting with revision \d+|Compacted with revision \d+|FAIL: too many errors|FAIL: ERROR\(.*\) -> \d+|PASS|FAIL)$",
    )
    .expect("regex");
    for text in [&strip_progress(&expected.stdout), &got.stdout] {
        for l in text.lines() {
            assert!(line.is_match(l), "unexpected line {l:?} in\n{text}");
        }
    }
    let passed = got.stdout.ends_with("\nPASS\n");
    assert_eq!(got.code, Some(if passed { 0 } else { 1 }), "{got}");
    assert_eq!(got.stderr, "", "{got}");
    // etcdctl's limiter: at most 150 puts a second (PASS above 135).
    let writes: u64 = regex::Regex::new(r"(?:Throughput is|too low:) (\d+) writes/s")
        .expect("regex")
        .captures(&got.stdout)
        .and_then(|c| c[1].parse().ok())
        .unwrap_or_else(|| panic!("no throughput in {got}"));
    assert!(
        writes <= 152,
        "oxcdctl exceeded the s model's 150 writes/s: {got}"
    );
    // When both passed, the outputs are the same but for the numbers.
    if passed && expected.code == Some(0) {
        assert_eq!(
            shape(&expected, true).to_string(),
            shape(&got, true).to_string()
        );
    }
    let left = pair
        .subject
        .etcdctl(&["get", "/etcdctl-check-perf/", "--prefix", "--keys-only"]);
    assert_eq!(left.stdout, "", "check perf deletes its keys: {left}");
}
