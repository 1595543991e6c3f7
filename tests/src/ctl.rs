//! Running the real `etcdctl` (API v3).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::binaries::etcdctl_bin;

/// How long one etcdctl invocation may run before it is killed and the test fails.
const CTL_TIMEOUT: Duration = Duration::from_secs(30);

/// What one etcdctl run printed, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtlOutput {
    /// The exit code; `None` when it was ended by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CtlOutput {
    /// True when etcdctl exited with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics, showing everything etcdctl printed, unless it succeeded; returns stdout.
    #[track_caller]
    pub fn expect_success(&self) -> &str {
        assert!(self.success(), "etcdctl failed: {self}");
        &self.stdout
    }
}

impl std::fmt::Display for CtlOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `etcdctl --endpoints=ENDPOINTS ARGS...` with `ETCDCTL_API=3`; stdin is empty.
pub fn etcdctl(endpoints: &str, args: &[&str]) -> CtlOutput {
    etcdctl_stdin(endpoints, args, "")
}

/// Runs etcdctl as [`etcdctl`] does, feeding `stdin` to it (for `txn` and `txn -i`).
///
/// Panics if etcdctl cannot be started or runs longer than 30 s.
pub fn etcdctl_stdin(endpoints: &str, args: &[&str], stdin: &str) -> CtlOutput {
    run(endpoints, args, stdin, CTL_TIMEOUT)
}

/// Runs etcdctl as [`etcdctl`] does, for commands that take longer than 30 s (`check
/// perf`); panics if it runs longer than `timeout`.
pub fn etcdctl_timeout(endpoints: &str, args: &[&str], timeout: Duration) -> CtlOutput {
    run(endpoints, args, "", timeout)
}

fn run(endpoints: &str, args: &[&str], stdin: &str, timeout: Duration) -> CtlOutput {
    let bin = etcdctl_bin();
    let mut child = Command::new(&bin)
        .arg(format!("--endpoints={endpoints}"))
        .args(args)
        .env("ETCDCTL_API", "3")
        .env_remove("ETCDCTL_ENDPOINTS")
        .env_remove("ETCDCTL_WRITE_OUT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let pid = child.id();

    let mut input = child.stdin.take().expect("stdin is piped");
    let stdin = stdin.to_owned();
    // etcdctl may exit before reading all of stdin; a broken pipe then is not our concern.
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let stdout = read_in_thread(child.stdout.take().expect("stdout is piped"));
    let stderr = read_in_thread(child.stderr.take().expect("stderr is piped"));

    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let status = match done_rx.recv_timeout(timeout) {
        Ok(status) => status.expect("wait for etcdctl"),
        Err(_) => {
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet
            // (the waiting thread is still blocked in wait).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("etcdctl {args:?} against {endpoints} ran longer than {timeout:?}");
        }
    };
    let _ = feeder.join();
    CtlOutput {
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn read_in_thread(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
