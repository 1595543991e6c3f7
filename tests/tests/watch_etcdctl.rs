//! The real etcdctl 3.4.23 `watch` against the server under test, compared with what it prints
//! against real etcd (issue 3): --prefix, --rev, --prev-kv, -w json, interactive mode with
//! `progress`, `watch KEY -- COMMAND`, and a watch from a compacted revision.
//!
//! A watch runs until it is stopped, so each scenario runs etcdctl in the background on each
//! server, waits for a marker event, stops it and compares the normalised outputs. Watches
//! start from a past revision (`--rev`), so what they print does not depend on when they
//! connected; live writes follow once the history has arrived.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use oxcd_e2e::{etcdctl_bin, line_diff, wait_until, CtlOutput, Member, Normalizer, Oracle};

/// How long a background watch may take to print what a scenario waits for.
const WAIT: Duration = Duration::from_secs(20);

/// A running `etcdctl watch`, its output collected as it comes.
struct Watching {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Watching {
    fn spawn(member: &Member, args: &[&str]) -> Watching {
        let bin = etcdctl_bin();
        let mut child = Command::new(&bin)
            .arg(format!("--endpoints={}", member.endpoint()))
            .args(args)
            .env("ETCDCTL_API", "3")
            .env_remove("ETCDCTL_ENDPOINTS")
            .env_remove("ETCDCTL_WRITE_OUT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().expect("piped"), stdout.clone()),
            collect(child.stderr.take().expect("piped"), stderr.clone()),
        ];
        Watching {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            readers,
        }
    }

    /// Sends one line to an interactive watch.
    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to etcdctl");
        stdin.flush().expect("flush etcdctl's stdin");
    }

    /// Waits until stdout contains `text`.
    fn wait_for(&self, text: &str) {
        wait_until(&format!("etcdctl watch to print {text:?}"), WAIT, || {
            self.stdout.lock().unwrap().contains(text).then_some(())
        });
    }

    /// Waits for etcdctl to exit by itself.
    fn wait_exit(mut self) -> CtlOutput {
        let code = wait_until("etcdctl watch to exit", WAIT, || {
            self.child.try_wait().expect("wait for etcdctl")
        })
        .code();
        self.finish(code)
    }

    /// Stops etcdctl and returns everything it printed.
    fn stop(mut self) -> CtlOutput {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.finish(None)
    }

    fn finish(mut self, code: Option<i32>) -> CtlOutput {
        drop(self.stdin.take());
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let stdout = self.stdout.lock().unwrap().clone();
        let stderr = self.stderr.lock().unwrap().clone();
        CtlOutput {
            code,
            stdout,
            stderr,
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(mut pipe: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
}

fn put(m: &Member, key: &str, value: &str) {
    m.etcdctl(&["put", key, value]).expect_success();
}

/// Runs `scenario` on real etcd and on the server under test and panics with a diff unless
/// the normalised outputs are equal; returns the output.
#[track_caller]
fn same_on_both(oracle: &Oracle, args: &[&str], scenario: impl Fn(&Member) -> CtlOutput) -> String {
    let run = |m: &Member| Normalizer::for_member(m).normalize(args, &scenario(m));
    let expected = run(oracle.reference());
    let got = run(oracle.subject());
    assert!(
        expected == got,
        "etcdctl {args:?} differs from real etcd:\n---- diff (- real etcd, + {})\n{}",
        oracle.subject().bin().display(),
        line_diff(&expected, &got)
    );
    got
}

/// The history every scenario starts from: revisions 2..=8.
fn seed(m: &Member) {
    for (k, v) in [
        ("a", "1"),
        ("b/1", "x"),
        ("a", "2"),
        ("b/2", "y"),
        ("c", "3"),
    ] {
        put(m, k, v);
    }
    m.etcdctl(&["del", "a"]).expect_success();
    put(m, "b/1", "xx");
}

#[test]
fn watch_history_then_live() {
    let oracle = Oracle::start();
    for m in [oracle.reference(), oracle.subject()] {
        seed(m);
    }
    // (watch arguments, a key it watches): the live put to that key lands after the history,
    // whenever the watch connects, and ends the scenario once printed.
    let cases: [(&[&str], &str); 4] = [
        (&["watch", "--rev=2", "a"], "a"),
        (&["watch", "--rev=2", "--prefix", "b/"], "b/7"),
        (&["watch", "--rev=3", "--prev-kv", "a"], "a"),
        (&["watch", "--rev=4", "b/1", "c"], "b/9"),
    ];
    for (round, (args, key)) in cases.into_iter().enumerate() {
        let live = format!("live{round}");
        let out = same_on_both(&oracle, args, |m| {
            let w = Watching::spawn(m, args);
            put(m, key, &live);
            w.wait_for(&live);
            w.stop()
        });
        assert!(out.contains(&live) && out.lines().count() > 6, "{out}");
    }
}

#[test]
fn watch_history_in_json_and_fields() {
    let oracle = Oracle::start();
    for m in [oracle.reference(), oracle.subject()] {
        seed(m);
    }
    for args in [
        &[
            "watch",
            "--rev=2",
            "--prev-kv",
            "--prefix",
            "",
            "-w",
            "json",
        ][..],
        &["watch", "--rev=3", "--prefix", "b/", "-w", "fields"],
    ] {
        same_on_both(&oracle, args, |m| {
            let w = Watching::spawn(m, args);
            // The whole history comes in one response; give its printing a moment to finish.
            wait_until("etcdctl watch output", WAIT, || {
                (!w.stdout.lock().unwrap().is_empty()).then_some(())
            });
            std::thread::sleep(Duration::from_millis(300));
            w.stop()
        });
    }
}

#[test]
fn watch_interactive_with_progress() {
    let oracle = Oracle::start();
    for m in [oracle.reference(), oracle.subject()] {
        seed(m);
    }
    let args = ["watch", "-i"];
    let out = same_on_both(&oracle, &args, |m| {
        let mut w = Watching::spawn(m, &args);
        w.send("watch --rev=2 --prefix b/");
        w.wait_for("xx");
        put(m, "b/3", "z");
        w.wait_for("z\n");
        w.send("progress");
        w.wait_for("progress notify:");
        w.stop()
    });
    assert!(out.contains("progress notify: 9"), "{out}");
}

#[test]
fn watch_exec_runs_the_command_per_event() {
    let oracle = Oracle::start();
    let args = [
        "watch",
        "--rev=2",
        "k",
        "--",
        "sh",
        "-c",
        "echo ran $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE $ETCD_WATCH_REVISION",
    ];
    let out = same_on_both(&oracle, &args, |m| {
        put(m, "k", "v1");
        put(m, "other", "x");
        let w = Watching::spawn(m, &args);
        w.wait_for("ran \"PUT\" \"k\" \"v1\"");
        put(m, "k", "v2");
        w.wait_for("ran \"PUT\" \"k\" \"v2\"");
        w.stop()
    });
    assert!(out.contains("ran \"PUT\" \"k\" \"v2\" 4"), "{out}");
}

#[test]
fn watch_from_a_compacted_revision_is_canceled() {
    let oracle = Oracle::start();
    for m in [oracle.reference(), oracle.subject()] {
        seed(m);
        m.etcdctl(&["compaction", "5"]).expect_success();
    }
    for args in [
        &["watch", "--rev=3", "a"][..],
        &["watch", "--rev=3", "a", "-w", "json"],
    ] {
        let out = same_on_both(&oracle, args, |m| Watching::spawn(m, args).wait_exit());
        assert!(
            out.contains("required revision has been compacted"),
            "{out}"
        );
    }
    // From the compaction revision on, history is still there.
    let args = ["watch", "--rev=5", "--prefix", "b/"];
    same_on_both(&oracle, &args, |m| {
        let w = Watching::spawn(m, &args);
        w.wait_for("xx");
        w.stop()
    });
}
