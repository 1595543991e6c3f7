//! `oxcd-bench` (issue 12): a short run of each kind of load against a fresh member prints
//! etcd benchmark's summary, with every request answered.

use std::path::PathBuf;
use std::process::Command;

use oxcd_e2e::Member;

/// `$OXCD_BENCH_BIN`, else the workspace's `target/release/oxcd-bench` (built by
/// scripts/test.sh).
fn bench_bin() -> PathBuf {
    let bin = std::env::var_os("OXCD_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/oxcd-bench")
        });
    assert!(
        bin.is_file(),
        "no {}: run `cargo build --release -p oxcd-bench`",
        bin.display()
    );
    bin
}

/// Runs oxcd-bench against `member` and returns its standard output.
fn bench(member: &Member, args: &[&str]) -> String {
    let endpoints = format!("--endpoints={}", member.endpoint());
    let out = Command::new(bench_bin())
        .arg(&endpoints)
        .args(args)
        .output()
        .expect("run oxcd-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "oxcd-bench {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The numbers of the last `Summary:` block: requests per second and the count in the
/// histogram, with no error distribution after it.
fn last_summary(out: &str) -> (f64, usize) {
    let summary = out
        .rsplit_once("\nSummary:\n")
        .unwrap_or_else(|| panic!("no summary in:\n{out}"))
        .1;
    assert!(
        !summary.contains("Error distribution"),
        "requests failed:\n{out}"
    );
    let rps = summary
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in:\n{out}"));
    let counted = summary
        .lines()
        .filter_map(|l| {
            l.split_once('[')?
                .1
                .split_once(']')?
                .0
                .parse::<usize>()
                .ok()
        })
        .sum();
    // Percentiles of zero are left out, as etcd's report does (watch events are timed from
    // their arrival, so theirs are all zero).
    assert!(
        summary.contains("\nLatency distribution:\n"),
        "no latencies:\n{out}"
    );
    (rps, counted)
}

#[test]
fn each_load_answers_every_request_with_etcds_summary() {
    let member = Member::start_single();
    let common = ["--conns=2", "--clients=10"];
    let cases: &[(&[&str], usize)] = &[
        (
            &[
                "put",
                "--key-size=8",
                "--val-size=256",
                "--sequential-keys",
                "--total=300",
            ],
            300,
        ),
        (&["range", "foo", "--consistency=l", "--total=300"], 300),
        (&["range", "foo", "--consistency=s", "--total=300"], 300),
        (&["txn-put", "--val-size=64", "--total=300"], 300),
        (&["lease-keepalive", "--total=300"], 300),
        // 20 puts, each seen by 2 streams x 5 watchers on one of 5 keys.
        (
            &[
                "watch",
                "--streams=2",
                "--watch-per-stream=5",
                "--watched-key-total=5",
                "--key-size=8",
                "--sequential-keys",
                "--key-space-size=5",
                "--put-total=20",
                "--put-rate=1000",
            ],
            40,
        ),
        // 10 puts, each seen by the 10 clients' watchers.
        (
            &[
                "watch-latency",
                "--total=10",
                "--put-rate=100",
                "--key-size=8",
            ],
            100,
        ),
    ];
    for (args, expected) in cases {
        let mut argv: Vec<&str> = common.to_vec();
        argv.extend_from_slice(args);
        let out = bench(&member, &argv);
        let (rps, counted) = last_summary(&out);
        assert!(rps > 0.0, "{args:?}: no throughput:\n{out}");
        assert_eq!(counted, *expected, "{args:?}: results counted:\n{out}");
    }

    let mixed = bench(
        &member,
        &[
            "--conns=2",
            "--clients=10",
            "txn-mixed",
            "--total=200",
            "--key-space-size=10",
        ],
    );
    let reads: usize = count_after(&mixed, "Total Read Ops: ");
    let writes: usize = count_after(&mixed, "Total Write Ops: ");
    assert_eq!(reads + writes, 200, "{mixed}");
    assert!(!mixed.contains("Error distribution"), "{mixed}");
}

fn count_after(out: &str, label: &str) -> usize {
    out.split_once(label)
        .and_then(|(_, rest)| rest.lines().next()?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in:\n{out}"))
}
