//! One server process: spawn with etcd's flags, wait until ready, kill, pause, restart.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::binaries::server_bin;
use crate::cluster::fixture;
use crate::ctl::{etcdctl, CtlOutput};
use crate::deadline::start_timeout;
use crate::ports::free_port;

/// Log lines that mean a member is ready to serve (etcd prints both; either will do).
const READY_MARKERS: [&str; 2] = [
    "published local member to cluster",
    "ready to serve client requests",
];

/// How many lines of a member's log are printed when a test panics.
const LOG_TAIL_LINES: usize = 150;

/// How long a member may take to exit after `SIGTERM` before it gets `SIGKILL`.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How to spawn a [`Member`]. Obtain one with [`Member::builder`].
#[derive(Clone, Debug)]
pub struct MemberBuilder {
    name: String,
    bin: Option<PathBuf>,
    client_port: Option<u16>,
    peer_port: Option<u16>,
    advertise_peer_port: Option<u16>,
    peer_scheme: String,
    client_tls: bool,
    in_temp_dir: bool,
    learner: bool,
    initial_cluster: Option<String>,
    initial_cluster_state: String,
    token: String,
    default_flags: bool,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl MemberBuilder {
    /// The member's `--name` (default `m0`); also names its data dir and log file.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// The server binary (default [`server_bin`]).
    pub fn bin(mut self, bin: impl Into<PathBuf>) -> Self {
        self.bin = Some(bin.into());
        self
    }

    /// Fixed client and peer ports (default: fresh free ports).
    pub fn ports(mut self, client: u16, peer: u16) -> Self {
        self.client_port = Some(client);
        self.peer_port = Some(peer);
        self
    }

    /// Advertise this peer port instead of the one the member listens on, as when a proxy
    /// stands in front of it (see [`crate::PeerNetwork`]).
    pub fn advertise_peer_port(mut self, port: u16) -> Self {
        self.advertise_peer_port = Some(port);
        self
    }

    /// The scheme of the peer URLs, `http` (default) or `https`; the TLS flags themselves are
    /// [`MemberBuilder::args`].
    pub fn peer_scheme(mut self, scheme: &str) -> Self {
        self.peer_scheme = scheme.to_owned();
        self
    }

    /// Serve client URLs over `https` with the fixture certificates (`server.crt`, CA
    /// `ca.crt`) and `--client-cert-auth`; [`Member::etcdctl`] then presents the same
    /// certificate.
    pub fn client_tls(mut self, on: bool) -> Self {
        self.client_tls = on;
        self
    }

    /// Run the server in its temp dir, so relative paths in its flags (`unix://` socket
    /// names are paths relative to the working directory) land there.
    pub fn in_temp_dir(mut self) -> Self {
        self.in_temp_dir = true;
        self
    }

    /// The member joins as a learner: it is ready once it serves serializable reads, as a
    /// learner refuses linearizable ones (and so `endpoint health`).
    pub fn learner(mut self, learner: bool) -> Self {
        self.learner = learner;
        self
    }

    /// `--initial-cluster` (default: this member alone).
    pub fn initial_cluster(mut self, initial_cluster: &str) -> Self {
        self.initial_cluster = Some(initial_cluster.to_owned());
        self
    }

    /// `--initial-cluster-state` (default `new`).
    pub fn initial_cluster_state(mut self, state: &str) -> Self {
        self.initial_cluster_state = state.to_owned();
        self
    }

    /// `--initial-cluster-token` (default `oxcd-e2e`).
    pub fn token(mut self, token: &str) -> Self {
        self.token = token.to_owned();
        self
    }

    /// Pass none of the default flags, only [`MemberBuilder::arg`]s and environment: for tests
    /// of `ETCD_*` variables and `--config-file`. The member still knows its ports and data
    /// dir, so the test can hand them to the server its own way.
    pub fn without_default_flags(mut self) -> Self {
        self.default_flags = false;
        self
    }

    /// One more command-line argument, after the defaults (a later flag wins).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// More command-line arguments.
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// An environment variable for the server (inherited `ETCD_*` variables are removed).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Spawns the server and returns at once, without waiting for it to become ready.
    pub fn spawn(self) -> Member {
        let dir = tempfile::Builder::new()
            .prefix(&format!("oxcd-e2e-{}-", self.name))
            .tempdir()
            .expect("create a temp dir");
        let data_dir = dir.path().join(format!("{}.etcd", self.name));
        let log_path = dir.path().join(format!("{}.log", self.name));
        let client_port = self.client_port.unwrap_or_else(free_port);
        let peer_port = self.peer_port.unwrap_or_else(free_port);
        let mut member = Member {
            name: self.name,
            bin: self.bin.unwrap_or_else(server_bin),
            client_port,
            peer_port,
            advertise_peer_port: self.advertise_peer_port.unwrap_or(peer_port),
            peer_scheme: self.peer_scheme,
            client_tls: self.client_tls,
            in_temp_dir: self.in_temp_dir,
            learner: self.learner,
            probe_user: None,
            data_dir,
            log_path,
            argv: Vec::new(),
            env: self.env,
            dir: Some(dir),
            child: None,
            log_offset: 0,
        };
        if self.default_flags {
            let initial_cluster = self
                .initial_cluster
                .unwrap_or_else(|| format!("{}={}", member.name, member.advertised_peer_url()));
            member.argv = vec![
                format!("--name={}", member.name),
                format!("--data-dir={}", member.data_dir.display()),
                format!("--listen-client-urls={}", member.client_url()),
                format!("--advertise-client-urls={}", member.client_url()),
                format!("--listen-peer-urls={}", member.peer_url()),
                format!(
                    "--initial-advertise-peer-urls={}",
                    member.advertised_peer_url()
                ),
                format!("--initial-cluster={initial_cluster}"),
                format!("--initial-cluster-state={}", self.initial_cluster_state),
                format!("--initial-cluster-token={}", self.token),
            ];
            if member.client_tls {
                let file = |name: &str| fixture(name).display().to_string();
                member.argv.extend([
                    format!("--cert-file={}", file("server.crt")),
                    format!("--key-file={}", file("server.key.insecure")),
                    format!("--trusted-ca-file={}", file("ca.crt")),
                    "--client-cert-auth".to_owned(),
                ]);
            }
        }
        member.argv.extend(self.args);
        member.spawn_process();
        member
    }

    /// Spawns the server and waits until it is ready (see [`Member::wait_ready`]).
    pub fn start(self) -> Member {
        let mut member = self.spawn();
        member.wait_ready();
        member
    }
}

/// A server process on 127.0.0.1 with its own temp dir holding the data dir and a log file
/// of everything it printed (across restarts).
///
/// Dropping a member kills it; if the test is panicking, the tail of its log is printed first
/// and, with `OXCD_TEST_KEEP=1`, its temp dir is kept.
#[derive(Debug)]
pub struct Member {
    name: String,
    bin: PathBuf,
    client_port: u16,
    peer_port: u16,
    /// The peer port in `--initial-advertise-peer-urls`: `peer_port`, or a proxy's.
    advertise_peer_port: u16,
    peer_scheme: String,
    /// Client URLs are `https` with certificates (see [`MemberBuilder::client_tls`]).
    client_tls: bool,
    /// The server's working directory is its temp dir.
    in_temp_dir: bool,
    /// A learner is ready when it serves serializable reads.
    learner: bool,
    /// `name:password` the readiness probe authenticates as, once auth is enabled.
    probe_user: Option<String>,
    data_dir: PathBuf,
    log_path: PathBuf,
    /// The full argument list, reused by restarts.
    argv: Vec<String>,
    env: Vec<(String, String)>,
    /// Owns the data dir and log; `None` only once it has been kept for inspection.
    dir: Option<TempDir>,
    child: Option<Child>,
    /// Where the current process's output starts in the log file.
    log_offset: u64,
}

impl Member {
    /// A builder for a single new member named `m0` on fresh ports.
    pub fn builder() -> MemberBuilder {
        MemberBuilder {
            name: "m0".to_owned(),
            bin: None,
            client_port: None,
            peer_port: None,
            advertise_peer_port: None,
            peer_scheme: "http".to_owned(),
            client_tls: false,
            in_temp_dir: false,
            learner: false,
            initial_cluster: None,
            initial_cluster_state: "new".to_owned(),
            token: "oxcd-e2e".to_owned(),
            default_flags: true,
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Starts a single-member server with the default flags and waits until it is ready.
    pub fn start_single() -> Member {
        Member::builder().start()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    /// `127.0.0.1:PORT` of the client port, as etcdctl's `--endpoints` takes it.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// `http://127.0.0.1:PORT` of the client port (`https` with client TLS).
    pub fn client_url(&self) -> String {
        let scheme = if self.client_tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The etcdctl flags that present the fixture client certificate and trust the fixture
    /// CA, when the member serves client TLS; none otherwise.
    pub fn ctl_tls_args(&self) -> Vec<String> {
        if !self.client_tls {
            return Vec::new();
        }
        let file = |name: &str| fixture(name).display().to_string();
        vec![
            format!("--cacert={}", file("ca.crt")),
            format!("--cert={}", file("server.crt")),
            format!("--key={}", file("server.key.insecure")),
        ]
    }

    /// `SCHEME://127.0.0.1:PORT` of the peer port the member listens on.
    pub fn peer_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.peer_scheme, self.peer_port)
    }

    /// The peer URL other members use: [`Member::peer_url`], or its proxy's when proxied.
    pub fn advertised_peer_url(&self) -> String {
        format!(
            "{}://127.0.0.1:{}",
            self.peer_scheme, self.advertise_peer_port
        )
    }

    pub fn is_learner(&self) -> bool {
        self.learner
    }

    /// Records that the member was promoted from learner to voter (or demoted, for tests).
    pub fn set_learner(&mut self, learner: bool) {
        self.learner = learner;
    }

    /// The member's temp dir (data dir, log, and its working directory with
    /// [`MemberBuilder::in_temp_dir`]); `None` once kept.
    pub fn temp_dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(TempDir::path)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The arguments the server is started with.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// The process id, while a process exists.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Runs etcdctl against this member (over TLS with its certificate when it serves
    /// client TLS).
    pub fn etcdctl(&self, args: &[&str]) -> CtlOutput {
        if !self.client_tls {
            return etcdctl(&self.endpoint(), args);
        }
        let tls = self.ctl_tls_args();
        let all: Vec<&str> = tls
            .iter()
            .map(String::as_str)
            .chain(args.iter().copied())
            .collect();
        etcdctl(&self.client_url(), &all)
    }

    /// True while the process has not exited (a paused process counts as running).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits until the log of the current process shows a ready line and `etcdctl endpoint
    /// health` succeeds; panics with the log if the process exits or the deadline
    /// ([`start_timeout`]) passes.
    pub fn wait_ready(&mut self) {
        let timeout = start_timeout();
        let deadline = Instant::now() + timeout;
        let mut logged_ready = false;
        let mut last_health = None;
        loop {
            if let Some(status) = self.try_exit_status() {
                self.fail(&format!("exited with {status} before becoming ready"));
            }
            if !logged_ready {
                let log = self.log_since_start();
                logged_ready = READY_MARKERS.iter().any(|m| log.contains(m));
            }
            if logged_ready {
                const TIMEOUTS: [&str; 2] = ["--dial-timeout=1s", "--command-timeout=2s"];
                let user = self.probe_user.as_deref().map(|u| format!("--user={u}"));
                let user: Vec<&str> = user.iter().map(String::as_str).collect();
                let health = if self.learner {
                    let probe =
                        [&TIMEOUTS[..], &user, &["get", "health", "--consistency=s"]].concat();
                    self.etcdctl(&probe)
                } else {
                    let probe = [&TIMEOUTS[..], &user, &["endpoint", "health"]].concat();
                    self.etcdctl(&probe)
                };
                if health.success() {
                    return;
                }
                last_health = Some(health);
            }
            if Instant::now() >= deadline {
                let why = match &last_health {
                    Some(health) => format!("endpoint health did not succeed; last try: {health}"),
                    None => format!("no line in the log contains any of {READY_MARKERS:?}"),
                };
                self.fail(&format!("not ready after {timeout:?}: {why}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits up to `timeout` for the process to exit by itself and returns its status; panics
    /// with the log if it is still running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                return status;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("still running after {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `SIGKILL`, then reaps the process. Does nothing if none is running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `SIGTERM`, then up to 10 s for a clean exit, then `SIGKILL`. Returns the exit status
    /// (`None` if no process was running or it had to be killed).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let pid = self.live_pid()?;
        // SAFETY: kill(2) on our own, not yet reaped, child.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Some(status) = self.try_exit_status() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        None
    }

    /// `SIGSTOP`: the process stays, but does nothing until [`Member::resume`].
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
    }

    /// `SIGCONT` after [`Member::pause`].
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
    }

    /// Kills the process if one runs, starts the server again on the same data dir with the
    /// same arguments, and waits until it is ready.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn_process();
        self.wait_ready();
    }

    /// Kills the process if one runs and starts the server again without waiting (for tests
    /// that expect it to refuse to start).
    pub fn respawn(&mut self) {
        self.kill();
        self.spawn_process();
    }

    /// Makes the readiness probe authenticate as `user` (`name:password`): with auth
    /// enabled, an anonymous `endpoint health` is refused (`user name is empty`), as by etcd.
    pub fn set_probe_user(&mut self, user: Option<&str>) {
        self.probe_user = user.map(str::to_owned);
    }

    /// Sets (or with `None` removes) an environment variable for the next start.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            self.env.push((key.to_owned(), value.to_owned()));
        }
    }

    /// Keeps the member's temp dir (data dir and log) when the member is dropped, and returns
    /// its path; for reports of failed runs. `None` if it is already kept.
    pub fn keep_dir(&mut self) -> Option<PathBuf> {
        self.dir.take().map(TempDir::keep)
    }

    /// Everything every process of this member has printed so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// What the current (or last) process has printed.
    pub fn log_since_start(&self) -> String {
        let bytes = std::fs::read(&self.log_path).unwrap_or_default();
        let start = (self.log_offset as usize).min(bytes.len());
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn spawn_process(&mut self) {
        assert!(self.child.is_none(), "member {} already runs", self.name);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open the member log");
        let note = format!(
            "==== oxcd-e2e: starting {} {}\n",
            self.bin.display(),
            self.argv.join(" ")
        );
        log.write_all(note.as_bytes())
            .expect("write the member log");
        self.log_offset = log.metadata().expect("stat the member log").len();
        let stderr: File = log.try_clone().expect("clone the log handle");

        let mut command = Command::new(&self.bin);
        command.args(&self.argv);
        if self.in_temp_dir {
            if let Some(dir) = &self.dir {
                command.current_dir(dir.path());
            }
        }
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCD_") {
                command.env_remove(key);
            }
        }
        command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.child = Some(child);
    }

    fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    fn live_pid(&mut self) -> Option<libc::pid_t> {
        if self.is_running() {
            self.pid().map(|pid| pid as libc::pid_t)
        } else {
            None
        }
    }

    fn signal(&mut self, signal: libc::c_int) {
        let pid = self
            .live_pid()
            .unwrap_or_else(|| self.fail("no running process to signal"));
        // SAFETY: kill(2) on our own child, which is still running (so not reaped).
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }

    #[track_caller]
    fn fail(&self, what: &str) -> ! {
        panic!(
            "member {} ({}): {what}\nlog {}:\n{}",
            self.name,
            self.bin.display(),
            self.log_path.display(),
            self.log_tail(LOG_TAIL_LINES)
        );
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "==== log of member {} ({}), last {LOG_TAIL_LINES} lines ====\n{}\n==== end of log of {} ====",
                self.name,
                self.log_path.display(),
                self.log_tail(LOG_TAIL_LINES),
                self.name
            );
            if std::env::var_os("OXCD_TEST_KEEP").is_some() {
                if let Some(dir) = self.dir.take() {
                    eprintln!("kept {}", dir.keep().display());
                }
            }
        }
    }
}
