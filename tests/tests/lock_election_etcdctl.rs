//! The real etcdctl 3.4.23's `lock` and `elect` commands against the server (issue 4). Both
//! run etcd's concurrency recipes in the client: session leases with keepalives, txns on create
//! revisions, sorted ranges with a max create revision, and watches for deletions.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use oxcd_e2e::{etcdctl_bin, Member};

/// An etcdctl that keeps running (a lock holder, a candidate, an observer), with its stdout
/// collected line by line.
struct Background {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Background {
    fn spawn(member: &Member, args: &[&str]) -> Background {
        let mut child = Command::new(etcdctl_bin())
            .arg(format!("--endpoints={}", member.endpoint()))
            .args(args)
            .env("ETCDCTL_API", "3")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run etcdctl {args:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Background {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits up to `timeout` for a line that satisfies `want`; every line read is kept.
    fn wait_line(&mut self, timeout: Duration, want: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child, which is reaped only in `Drop` or `wait`.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
    }

    /// Waits up to `timeout` for the process to exit; true if it did.
    fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A shell command that records its critical section in `log`, slowly enough that two
/// holders at once would interleave.
fn critical_section(log: &Path, who: usize) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "echo start {who} >> {log}; sleep 0.3; echo end {who} >> {log}",
            log = log.display()
        ),
    ]
}

#[test]
fn lock_with_a_command_never_lets_two_contenders_in_at_once() {
    let member = Member::start_single();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sections");
    const CONTENDERS: usize = 5;
    let mut runs: Vec<Child> = (0..CONTENDERS)
        .map(|who| {
            let mut args = vec![
                format!("--endpoints={}", member.endpoint()),
                "lock".into(),
                "the-lock".into(),
                "--".into(),
            ];
            args.extend(critical_section(&log, who));
            Command::new(etcdctl_bin())
                .args(&args)
                .env("ETCDCTL_API", "3")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for run in &mut runs {
        loop {
            if let Some(status) = run.try_wait().unwrap() {
                assert!(status.success(), "etcdctl lock failed: {status}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "contenders still running after 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 2 * CONTENDERS, "{lines:#?}");
    let mut holders = Vec::new();
    for pair in lines.chunks(2) {
        let who = pair[0].strip_prefix("start ").expect("a section starts");
        assert_eq!(
            pair[1],
            format!("end {who}"),
            "overlapping sections: {lines:#?}"
        );
        holders.push(who.to_owned());
    }
    holders.sort();
    holders.dedup();
    assert_eq!(
        holders.len(),
        CONTENDERS,
        "each contender held the lock once"
    );
    // Every contender removed its key on the way out.
    let left = member.etcdctl(&["get", "the-lock/", "--prefix", "--keys-only"]);
    assert_eq!(left.expect_success(), "");
}

#[test]
fn a_killed_holder_keeps_the_lock_until_its_lease_expires() {
    let member = Member::start_single();
    let mut first = Background::spawn(&member, &["lock", "--ttl=3", "held"]);
    let key = first
        .wait_line(Duration::from_secs(10), |l| l.starts_with("held/"))
        .expect("the first contender gets the lock");

    let mut second = Background::spawn(&member, &["lock", "--ttl=3", "held"]);
    assert_eq!(
        second.wait_line(Duration::from_millis(1500), |l| l.starts_with("held/")),
        None,
        "the lock was given twice"
    );
    first.signal(libc::SIGKILL);
    let killed = Instant::now();
    let next = second
        .wait_line(Duration::from_secs(8), |l| l.starts_with("held/"))
        .expect("the second contender gets the lock once the first lease expires");
    let waited = killed.elapsed();
    assert_ne!(next, key);
    assert!(
        waited >= Duration::from_millis(1500),
        "handed over {waited:?} after the kill: before the lease could expire"
    );
    assert!(
        waited <= Duration::from_secs(5),
        "handed over only after {waited:?}"
    );

    // A holder that is told to stop releases the lock at once.
    let mut third = Background::spawn(&member, &["lock", "--ttl=3", "held"]);
    second.signal(libc::SIGINT);
    assert!(
        second.wait_exit(Duration::from_secs(5)),
        "lock exits on SIGINT"
    );
    let released = Instant::now();
    third
        .wait_line(Duration::from_secs(5), |l| l.starts_with("held/"))
        .expect("the third contender gets the released lock");
    assert!(released.elapsed() < Duration::from_secs(2));
}

/// The leader values an observer printed (etcdctl prints each key, then its value).
fn values(seen: &[String]) -> Vec<String> {
    seen.iter()
        .filter(|l| !l.starts_with("race/"))
        .cloned()
        .collect()
}

#[test]
fn observers_see_every_leader_in_order() {
    let member = Member::start_single();
    let mut observers: Vec<Background> = (0..2)
        .map(|_| Background::spawn(&member, &["elect", "-l", "race"]))
        .collect();
    let mut candidates = Vec::new();
    for value in ["alpha", "beta", "gamma"] {
        candidates.push(Background::spawn(&member, &["elect", "race", value]));
        // Give each candidate time to queue before the next, so the order is known.
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut leader = candidates.remove(0);
    leader
        .wait_line(Duration::from_secs(10), |l| l == "alpha")
        .expect("alpha leads");
    for (i, next) in ["beta", "gamma"].into_iter().enumerate() {
        for observer in &mut observers {
            let want = if i == 0 { "alpha" } else { "beta" };
            observer
                .wait_line(Duration::from_secs(10), |l| l == want)
                .unwrap_or_else(|| panic!("observer missed {want}: {:?}", observer.seen));
        }
        // A leader told to stop resigns; the next candidate leads.
        leader.signal(libc::SIGINT);
        assert!(leader.wait_exit(Duration::from_secs(5)));
        leader = candidates.remove(0);
        leader
            .wait_line(Duration::from_secs(10), |l| l == next)
            .unwrap_or_else(|| panic!("{next} never led"));
    }
    for observer in &mut observers {
        observer
            .wait_line(Duration::from_secs(10), |l| l == "gamma")
            .unwrap_or_else(|| panic!("observer missed gamma: {:?}", observer.seen));
        assert_eq!(values(&observer.seen), ["alpha", "beta", "gamma"]);
    }
}
