//! `ETCDCTL_API=2 etcdctl` (3.4) against the server, every v2 verb, compared with real etcd
//! 3.4 `--enable-v2` given the same commands: stdout, stderr and exit status must match apart
//! from member ids, ports and expiration times.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oxcd_e2e::{etcdctl_bin, real_etcd_bin, server_bin, Member};
use regex::Regex;

/// Runs `etcdctl` (API v2) against `member`; exit status, stdout and stderr, normalised.
fn ctl(member: &Member, args: &[&str]) -> String {
    let mut child = Command::new(etcdctl_bin())
        .env("ETCDCTL_API", "2")
        .arg(format!("--endpoints={}", member.client_url()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run etcdctl");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "status={:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = [
        (r"127\.0\.0\.1:\d+", "127.0.0.1:<port>"),
        (r"\b[0-9a-f]{14,16}\b", "<id>"),
        (r#""expiration":"[^"]+""#, r#""expiration":"<t>""#),
        (r"Expiration: .*", "Expiration: <t>"),
        (r"TTL: \d+", "TTL: <ttl>"),
    ];
    let mut out = text;
    for (pattern, replacement) in rules {
        out = Regex::new(pattern)
            .unwrap()
            .replace_all(&out, replacement)
            .into_owned();
    }
    out
}

#[test]
fn etcdctl_v2_verbs_match_real_etcd() {
    let builder = Member::builder().name("ctl2").arg("--enable-v2");
    let mut etcd = builder.clone().bin(real_etcd_bin()).spawn();
    let mut oxcd = builder.bin(server_bin()).spawn();
    etcd.wait_ready();
    oxcd.wait_ready();
    let script: &[&[&str]] = &[
        &["set", "/a/b", "c"],
        &["get", "/a/b"],
        &["-o", "json", "get", "/a/b"],
        &["-o", "extended", "get", "/a/b"],
        &["set", "--ttl", "100", "/t", "v"],
        &["-o", "extended", "get", "/t"],
        &["mk", "/m", "1"],
        &["mk", "/m", "2"],
        &["mk", "--in-order", "/q", "job"],
        &["mkdir", "/d"],
        &["mkdir", "/d"],
        &["setdir", "/d2"],
        &["set", "/d2/x", "1"],
        &["update", "/m", "3"],
        &["update", "/nope", "3"],
        &["updatedir", "--ttl", "100", "/d"],
        &["set", "--swap-with-value", "3", "/m", "4"],
        &["set", "--swap-with-value", "x", "/m", "5"],
        &["rm", "--with-value", "x", "/m"],
        &["rm", "/m"],
        &["rm", "/d2"],
        &["rm", "--recursive", "/d2"],
        &["rmdir", "/d"],
        &["get", "/d"],
        &["ls"],
        &["ls", "-r", "-p", "--sort"],
        &["ls", "--sort", "-r", "/a"],
        &["-o", "json", "ls", "/a"],
        &["watch", "--after-index", "1", "/a/b"],
        &["watch", "--after-index", "1", "-r", "/a"],
        &["member", "list"],
        &["cluster-health"],
        &["member", "add", "extra", "http://127.0.0.1:1"],
        &["role", "add", "reader"],
        &["role", "grant", "--read", "--path", "/a/*", "reader"],
        &["role", "get", "reader"],
        &["role", "list"],
        &["user", "add", "alice:pw"],
        &["user", "grant", "--roles", "reader", "alice"],
        &["user", "grant", "--roles", "reader", "alice"],
        &["user", "get", "alice"],
        &["user", "list"],
        &["user", "revoke", "--roles", "reader", "alice"],
        &["role", "revoke", "--read", "--path", "/a/*", "reader"],
        &["auth", "enable"],
        &["user", "add", "root:rootpw"],
        &["auth", "enable"],
        &["get", "/a/b"],
        &["set", "/a/b", "denied"],
        &["--username", "root:rootpw", "set", "/a/b", "allowed"],
        &["--username", "root:rootpw", "auth", "disable"],
        &["user", "remove", "alice"],
        &["role", "remove", "reader"],
    ];
    for args in script {
        let want = ctl(&etcd, args);
        let got = ctl(&oxcd, args);
        assert_eq!(got, want, "etcdctl {}", args.join(" "));
    }
}

#[test]
fn exec_watch_runs_the_command_for_each_change() {
    let mut oxcd = Member::builder()
        .name("execwatch")
        .arg("--enable-v2")
        .bin(server_bin())
        .spawn();
    oxcd.wait_ready();
    let out = oxcd.data_dir().join("exec-watch.out");
    let mut child = Command::new(etcdctl_bin())
        .env("ETCDCTL_API", "2")
        .arg(format!("--endpoints={}", oxcd.client_url()))
        .args(["exec-watch", "/ew", "--", "sh", "-c"])
        .arg(format!(
            "echo \"$ETCD_WATCH_ACTION $ETCD_WATCH_VALUE\" >> {}",
            out.display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for v in ["one", "two"] {
        ctl(&oxcd, &["set", "/ew", v]);
        std::thread::sleep(Duration::from_millis(300));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    while Instant::now() < deadline {
        seen = std::fs::read_to_string(&out).unwrap_or_default();
        if seen.lines().count() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(seen, "set one\nset two\n");
}
