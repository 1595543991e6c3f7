//! `oxcdctl make-mirror` (issue 13): oxcd → oxcd, oxcd → real etcd 3.4 and oxcd → an oxcd
//! that serves TLS (`--dest-cacert/--dest-cert/--dest-key`). Keys present before it starts
//! (the base copy) and written after (the watch) reach the destination under the prefix
//! etcdctl would give them (`--prefix`, `--dest-prefix`, `--no-dest-prefix`); deletes
//! follow. Its argument errors are compared with the real etcdctl's byte for byte.

mod ctl_support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ctl_support::{Pair, Server};
use oxcd_e2e::{fixture, real_etcd_bin, server_bin, wait_until, Member};

/// A running `oxcdctl make-mirror`, killed when dropped.
struct Mirror(Child);

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_mirror(source: &Member, args: &[String]) -> Mirror {
    let child = Command::new(ctl_support::oxcdctl_bin())
        .arg(format!("--endpoints={}", source.endpoint()))
        .arg("make-mirror")
        .args(args)
        .env_remove("ETCDCTL_ENDPOINTS")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start oxcdctl make-mirror");
    Mirror(child)
}

/// `key=value` lines of every key under `prefix` on `member`.
fn dump(member: &Member, prefix: &str) -> String {
    let out = member.etcdctl(&["get", prefix, "--prefix"]);
    out.expect_success()
        .lines()
        .collect::<Vec<_>>()
        .chunks(2)
        .map(|kv| format!("{}={}\n", kv[0], kv.get(1).copied().unwrap_or_default()))
        .collect()
}

/// Mirrors `source` to `dest` with the case's flags: key 1 exists before it starts, keys 2
/// and 3 are written after, key 1 is deleted after; the destination must follow.
fn mirror_case(source: &Member, dest: &Member, dest_args: &[String], case: Case) {
    source.etcdctl(&["put", &format!("{}1", case.source_prefix), "one"]);
    let mut args: Vec<String> = case.flags.iter().map(|s| s.to_string()).collect();
    args.extend(dest_args.iter().cloned());
    args.push(dest.client_url());
    let mirror = start_mirror(source, &args);
    let expected_first = format!("{}1=one\n", case.dest_prefix);
    wait_until("the base copy", Duration::from_secs(20), || {
        (dump(dest, case.dest_prefix) == expected_first).then_some(())
    });
    source.etcdctl(&["put", &format!("{}2", case.source_prefix), "two"]);
    source.etcdctl(&["put", &format!("{}3", case.source_prefix), "three"]);
    source.etcdctl(&["del", &format!("{}1", case.source_prefix)]);
    source.etcdctl(&["put", "unrelated", "x"]);
    let expected = format!("{p}2=two\n{p}3=three\n", p = case.dest_prefix);
    wait_until("the watched changes", Duration::from_secs(20), || {
        (dump(dest, case.dest_prefix) == expected).then_some(())
    });
    drop(mirror);
}

struct Case {
    flags: &'static [&'static str],
    source_prefix: &'static str,
    dest_prefix: &'static str,
}

/// etcd's e2e cases; the keys are `<source_prefix>1..3` and land as `<dest_prefix>1..3`.
const CASES: [Case; 3] = [
    Case {
        flags: &["--prefix", "key"],
        source_prefix: "key",
        dest_prefix: "key",
    },
    Case {
        flags: &["--prefix", "o_", "--dest-prefix", "d_"],
        source_prefix: "o_",
        dest_prefix: "d_",
    },
    // The prefix is taken off: n_z1 lands as z1.
    Case {
        flags: &["--prefix", "n_", "--no-dest-prefix"],
        source_prefix: "n_z",
        dest_prefix: "z",
    },
];

#[test]
fn make_mirror_to_oxcd_and_real_etcd() {
    for dest_bin in [server_bin(), real_etcd_bin()] {
        let source = Member::builder().bin(server_bin()).start();
        let dest = Member::builder().name("dest").bin(dest_bin).start();
        for case in CASES {
            mirror_case(&source, &dest, &[], case);
        }
        // With no prefix, every key is copied, and the unrelated one comes too.
        let mirror = start_mirror(&source, &[dest.client_url()]);
        wait_until("the whole keyspace", Duration::from_secs(20), || {
            (dump(&dest, "unrelated") == "unrelated=x\n").then_some(())
        });
        drop(mirror);
    }
}

#[test]
fn make_mirror_to_a_tls_destination() {
    let source = Member::builder().bin(server_bin()).start();
    let dest = Member::builder()
        .name("dest")
        .bin(server_bin())
        .client_tls(true)
        .start();
    let file = |name: &str| fixture(name).display().to_string();
    let tls = [
        format!("--dest-cacert={}", file("ca.crt")),
        format!("--dest-cert={}", file("server.crt")),
        format!("--dest-key={}", file("server.key.insecure")),
    ];
    mirror_case(
        &source,
        &dest,
        &tls,
        CASES.into_iter().nth(1).expect("case"),
    );
}

#[test]
fn make_mirror_argument_errors_match_etcdctl() {
    let pair = Pair::start(Server::UnderTest);
    pair.check_all(&[
        &["make-mirror"],
        &["make-mirror", "a:1", "b:2"],
        &[
            "make-mirror",
            "--dest-prefix",
            "d_",
            "--no-dest-prefix",
            "127.0.0.1:1",
        ],
    ]);
}

/// The destination is killed while the mirror runs and started again on its data: like the
/// real etcdctl (whose client waits for its connection to be ready), oxcdctl keeps running,
/// and what the source got meanwhile reaches the destination once it is back. Run with
/// oxcd and real etcd 3.4 as servers, each program against its own pair.
#[test]
fn make_mirror_waits_for_a_destination_that_restarts_as_etcdctl_does() {
    for server in [server_bin(), real_etcd_bin()] {
        let mut copies = Vec::new();
        for program in [oxcd_e2e::etcdctl_bin(), ctl_support::oxcdctl_bin()] {
            let source = Member::builder().bin(server.clone()).start();
            let mut dest = Member::builder().name("dest").bin(server.clone()).start();
            source.etcdctl(&["put", "m/a", "1"]).expect_success();
            let dir = tempfile::tempdir().expect("temp dir");
            let (out, err) = (dir.path().join("out"), dir.path().join("err"));
            let child = Command::new(&program)
                .arg(format!("--endpoints={}", source.endpoint()))
                .args(["make-mirror", "--prefix", "m/", &dest.endpoint()])
                .env("ETCDCTL_API", "3")
                .env_remove("ETCDCTL_ENDPOINTS")
                .stdout(std::fs::File::create(&out).expect("out file"))
                .stderr(std::fs::File::create(&err).expect("err file"))
                .spawn()
                .expect("start make-mirror");
            let mut mirror = Mirror(child);
            wait_until("the base copy", Duration::from_secs(20), || {
                (dump(&dest, "m/") == "m/a=1\n").then_some(())
            });
            dest.kill();
            source.etcdctl(&["put", "m/b", "2"]).expect_success();
            std::thread::sleep(Duration::from_secs(2));
            dest.restart();
            source.etcdctl(&["put", "m/c", "3"]).expect_success();
            let expected = "m/a=1\nm/b=2\nm/c=3\n";
            wait_until(
                "the changes made while it was down",
                Duration::from_secs(60),
                || (dump(&dest, "m/") == expected).then_some(()),
            );
            let running = mirror.0.try_wait().expect("mirror status").is_none();
            drop(mirror);
            let stderr = std::fs::read_to_string(&err).expect("stderr");
            let stdout = std::fs::read_to_string(&out).expect("stdout");
            // Only the count printed every 30 s may appear.
            assert!(
                stdout.lines().all(|l| l.parse::<u64>().is_ok()),
                "{program:?}: {stdout}"
            );
            copies.push((running, stderr, dump(&dest, "m/")));
        }
        assert_eq!(
            copies[0],
            (true, String::new(), "m/a=1\nm/b=2\nm/c=3\n".to_owned())
        );
        assert_eq!(
            copies[1], copies[0],
            "oxcdctl against etcdctl on {server:?}"
        );
    }
}
