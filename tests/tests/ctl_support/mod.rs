//! What the oxcdctl tests share: running a given ctl binary with a deadline, and a `Pair`
//! of fresh servers, one driven by the real etcdctl and one by oxcdctl, whose normalised
//! outputs must be identical.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use oxcd_e2e::{etcdctl_bin, line_diff, real_etcd_bin, server_bin, CtlOutput, Member, Normalizer};

/// How long one ctl run may take.
const RUN_DEADLINE: Duration = Duration::from_secs(30);

/// oxcdctl: `$OXCDCTL_BIN`, else `target/release/oxcdctl` (or debug) of this workspace.
pub fn oxcdctl_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("OXCDCTL_BIN") {
        return PathBuf::from(bin);
    }
    let root = oxcd_e2e::binaries::workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    ["release", "debug"]
        .iter()
        .map(|p| target.join(p).join("oxcdctl"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no oxcdctl in {}: run `cargo build --release -p oxcd-ctl`",
                target.display()
            )
        })
}

/// What to run: arguments (after `--endpoints`), stdin, extra environment.
#[derive(Clone, Debug, Default)]
pub struct Run<'a> {
    pub args: &'a [&'a str],
    pub stdin: &'a str,
    pub env: &'a [(&'a str, &'a str)],
    /// Pass no `--endpoints` (the test gives them through the environment or args).
    pub no_endpoint_flag: bool,
    /// Give the endpoint as a URL (`http://host:port`), as the v2 commands need.
    pub url_endpoint: bool,
    /// How long the run may take (default: 30 s).
    pub deadline: Option<Duration>,
}

/// Runs `bin --endpoints=ENDPOINT ARGS` with ETCDCTL_API=3 and a deadline.
pub fn run(bin: &PathBuf, endpoint: &str, r: &Run) -> CtlOutput {
    let mut command = Command::new(bin);
    if r.url_endpoint {
        command.arg(format!("--endpoints=http://{endpoint}"));
    } else if !r.no_endpoint_flag {
        command.arg(format!("--endpoints={endpoint}"));
    }
    command
        .args(r.args)
        .env("ETCDCTL_API", "3")
        .env_remove("ETCDCTL_ENDPOINTS")
        .env_remove("ETCDCTL_WRITE_OUT")
        .envs(r.env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let pid = child.id();
    let mut input = child.stdin.take().expect("stdin piped");
    let stdin = r.stdin.to_owned();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("stdout piped")));
    let stderr = read(Box::new(child.stderr.take().expect("stderr piped")));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let deadline = r.deadline.unwrap_or(RUN_DEADLINE);
    let status = match rx.recv_timeout(deadline) {
        Ok(status) => status.expect("wait"),
        Err(_) => {
            // SAFETY: kill(2) on our own child, not yet reaped (its waiter still blocks).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!(
                "{} {:?} ran longer than {deadline:?}",
                bin.display(),
                r.args
            );
        }
    };
    let _ = feeder.join();
    CtlOutput {
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Which server both members of a pair run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// The server under test (`OXCD_BIN`, else target/release/oxcd).
    UnderTest,
    /// Real etcd 3.4.
    RealEtcd,
}

/// Both servers, for tests that run the same scenario on each.
pub const SERVERS: [Server; 2] = [Server::UnderTest, Server::RealEtcd];

/// Two fresh servers of one kind with the same history: the real etcdctl drives the first,
/// oxcdctl the second, and every command must print the same after normalising.
pub struct Pair {
    pub reference: Member,
    pub subject: Member,
    reference_norm: Normalizer,
    subject_norm: Normalizer,
    etcdctl: PathBuf,
    oxcdctl: PathBuf,
}

impl Pair {
    pub fn start(server: Server) -> Pair {
        Pair::start_with(server, &[])
    }

    pub fn start_with(server: Server, args: &[&str]) -> Pair {
        let bin = match server {
            Server::UnderTest => server_bin(),
            Server::RealEtcd => real_etcd_bin(),
        };
        let builder = Member::builder()
            .name("pair")
            .bin(bin)
            .args(args.iter().copied());
        let mut reference = builder.clone().spawn();
        let mut subject = builder.spawn();
        reference.wait_ready();
        subject.wait_ready();
        let reference_norm = Normalizer::for_member(&reference);
        let subject_norm = Normalizer::for_member(&subject);
        Pair {
            reference,
            subject,
            reference_norm,
            subject_norm,
            etcdctl: etcdctl_bin(),
            oxcdctl: oxcdctl_bin(),
        }
    }

    /// As [`Pair::check`], where each side names its own object (a lease): `placeholder`
    /// in `args` becomes `reference_id` or `subject_id` in hex, and both ids print as the
    /// placeholder. `extra` normalises more text on both sides.
    #[track_caller]
    pub fn check_ids(
        &self,
        args: &[&str],
        placeholder: &str,
        reference_id: u64,
        subject_id: u64,
        extra: fn(&str) -> String,
    ) {
        let with = |id: u64| -> Vec<String> {
            args.iter()
                .map(|a| a.replace(placeholder, &format!("{id:x}")))
                .collect()
        };
        let (reference_args, subject_args) = (with(reference_id), with(subject_id));
        let reference_run: Vec<&str> = reference_args.iter().map(String::as_str).collect();
        let subject_run: Vec<&str> = subject_args.iter().map(String::as_str).collect();
        let expected_raw = run(
            &self.etcdctl,
            &self.reference.endpoint(),
            &Run {
                args: &reference_run,
                ..Default::default()
            },
        );
        let got_raw = run(
            &self.oxcdctl,
            &self.subject.endpoint(),
            &Run {
                args: &subject_run,
                ..Default::default()
            },
        );
        let norm = |n: &Normalizer, id: u64| {
            n.clone()
                .replace(format!("{id:016x}"), placeholder)
                .replace_id(id, placeholder)
        };
        let expected = extra(&normalize(
            &norm(&self.reference_norm, reference_id),
            args,
            &expected_raw,
        ));
        let got = extra(&normalize(
            &norm(&self.subject_norm, subject_id),
            args,
            &got_raw,
        ));
        if expected != got {
            panic!(
                "oxcdctl {args:?} differs from etcdctl:\n---- diff (- etcdctl, + oxcdctl)\n{}\
                 ---- etcdctl, raw\n{expected_raw}---- oxcdctl, raw\n{got_raw}",
                line_diff(&expected, &got)
            );
        }
    }

    /// Runs etcdctl on the reference and oxcdctl on the subject; panics with a diff unless
    /// the normalised outputs match. Returns both raw outputs.
    #[track_caller]
    pub fn check_run(&self, r: &Run) -> (CtlOutput, CtlOutput) {
        let expected_raw = run(&self.etcdctl, &self.reference.endpoint(), r);
        let got_raw = run(&self.oxcdctl, &self.subject.endpoint(), r);
        let expected = normalize(&self.reference_norm, r.args, &expected_raw);
        let got = normalize(&self.subject_norm, r.args, &got_raw);
        if expected != got {
            panic!(
                "oxcdctl {:?} (stdin {:?}) differs from etcdctl:\n---- diff (- etcdctl, + oxcdctl)\n{}\
                 ---- etcdctl, raw\n{expected_raw}---- oxcdctl, raw\n{got_raw}",
                r.args,
                r.stdin,
                line_diff(&expected, &got)
            );
        }
        (expected_raw, got_raw)
    }

    #[track_caller]
    pub fn check(&self, args: &[&str]) -> (CtlOutput, CtlOutput) {
        self.check_run(&Run {
            args,
            ..Default::default()
        })
    }

    #[track_caller]
    pub fn check_all(&self, commands: &[&[&str]]) {
        for args in commands {
            self.check(args);
        }
    }

    /// Runs both ctl programs against the reference server only: for read-only commands
    /// whose output cannot be normalised (protobuf bytes). Outputs must be identical but
    /// for the retry-log line's time and client id.
    #[track_caller]
    pub fn check_same_server(&self, args: &[&str]) {
        let r = Run {
            args,
            ..Default::default()
        };
        let endpoint = self.reference.endpoint();
        let expected = run(&self.etcdctl, &endpoint, &r);
        let got = run(&self.oxcdctl, &endpoint, &r);
        let clean = |o: &CtlOutput| {
            format!(
                "exit {:?}\n{}\n--- stderr\n{}",
                o.code,
                o.stdout,
                normalize_log_lines(&o.stderr)
            )
        };
        assert_eq!(
            clean(&expected),
            clean(&got),
            "oxcdctl {args:?} differs from etcdctl on the same server"
        );
    }
}

/// Normalised form of a run: the shared normaliser, plus the zap log lines' time and id.
fn normalize(norm: &Normalizer, args: &[&str], out: &CtlOutput) -> String {
    let out = CtlOutput {
        code: out.code,
        stdout: out.stdout.clone(),
        stderr: normalize_log_lines(&out.stderr),
    };
    norm.normalize(args, &out)
}

/// The Go client's JSON log lines carry a time and a random client id.
pub fn normalize_log_lines(text: &str) -> String {
    let ts = regex::Regex::new(r#""ts":"[^"]*""#).expect("regex");
    let client = regex::Regex::new(r"client-[0-9a-f-]{36}").expect("regex");
    let epoch_ts = regex::Regex::new(r#""ts":[0-9.]+"#).expect("regex");
    let size = regex::Regex::new(r#""size":"[^"]*""#).expect("regex");
    let capnslog =
        regex::Regex::new(r"(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} ").expect("regex");
    let text = capnslog.replace_all(text, "<time> ");
    let text = ts.replace_all(&text, r#""ts":"<ts>""#);
    let text = epoch_ts.replace_all(&text, r#""ts":"<ts>""#);
    let text = size.replace_all(&text, r#""size":"<size>""#);
    client.replace_all(&text, "client-<id>").into_owned()
}

/// The id in `lease 694d7... granted with TTL(..)`.
pub fn granted_lease(out: &CtlOutput) -> u64 {
    let word = out
        .stdout
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no lease id in {out}"));
    u64::from_str_radix(word, 16).unwrap_or_else(|e| panic!("lease id {word:?}: {e}"))
}
