//! The v2 API over client TLS, against real etcd 3.4 given the same flags and commands:
//!
//! - an http:// and an https:// client URL on one port (etcd's TestV2CurlClientBoth): curl
//!   and etcdctl, v2 and v3, over plain text and TLS on the same port;
//! - with `--client-cert-auth`, a v2 request without basic auth acts as the user named by a
//!   certificate of its verified chain, the CA's included (TestCtlV2AuthWithCommonName).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oxcd_e2e::ports::free_port;
use oxcd_e2e::{etcdctl_bin, fixture, real_etcd_bin, server_bin, Member, MemberBuilder};
use regex::Regex;

/// How long one curl or etcdctl run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

fn file(name: &str) -> String {
    fixture(name).display().to_string()
}

/// Runs `cmd`; its exit status, stdout and stderr, with ports and ids blanked.
fn run(cmd: &mut Command) -> String {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + RUN_TIMEOUT;
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
        (r#"Index":\d+"#, r#"Index":<i>"#),
    ];
    let mut text = text;
    for (pattern, replacement) in rules {
        text = Regex::new(pattern)
            .unwrap()
            .replace_all(&text, replacement)
            .into_owned();
    }
    text
}

/// The fixture's client certificate (`example.com`, signed by the CA named `ca`): the CA,
/// certificate and key files, after curl's (and etcdctl v3's) flag names.
fn tls_flags() -> [(&'static str, String); 3] {
    [
        ("--cacert", file("ca.crt")),
        ("--cert", file("server.crt")),
        ("--key", file("server.key.insecure")),
    ]
}

/// etcdctl v2 names the same flags `--ca-file`, `--cert-file` and `--key-file`.
fn v2_flag(flag: &str) -> &str {
    match flag {
        "--cacert" => "--ca-file",
        "--cert" => "--cert-file",
        _ => "--key-file",
    }
}

fn curl(url: &str, extra: &[&str], tls: bool) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-L", url]).args(extra);
    if tls {
        for (flag, file) in tls_flags() {
            cmd.arg(flag).arg(file);
        }
    }
    run(&mut cmd)
}

fn ctl(api: &str, endpoint: &str, args: &[&str], tls: bool) -> String {
    let mut cmd = Command::new(etcdctl_bin());
    cmd.env("ETCDCTL_API", api)
        .arg(format!("--endpoints={endpoint}"));
    if api == "2" {
        // bcrypt under a loaded machine can outlast v2's 2 s default per request.
        cmd.arg("--timeout=10s");
    }
    if tls {
        // v2 takes global flags before the command only.
        cmd.args(tls_flags().map(|(flag, file)| match api {
            "2" => format!("{}={file}", v2_flag(flag)),
            _ => format!("{flag}={file}"),
        }));
    }
    run(cmd.args(args))
}

/// Starts real etcd and the server under test from the same builder settings.
fn start_pair(configure: impl Fn(MemberBuilder, u16) -> MemberBuilder) -> (Member, Member) {
    let spawn = |bin| {
        let port = free_port();
        configure(Member::builder().bin(bin).ports(port, free_port()), port).spawn()
    };
    let mut etcd = spawn(real_etcd_bin());
    let mut oxcd = spawn(server_bin());
    etcd.wait_ready();
    oxcd.wait_ready();
    (etcd, oxcd)
}

#[test]
fn http_and_https_share_one_client_port() {
    let (etcd, oxcd) = start_pair(|builder, port| {
        let urls = format!("http://127.0.0.1:{port},https://127.0.0.1:{port}");
        builder
            .name("both")
            .client_tls(true)
            .arg("--enable-v2")
            .arg(format!("--listen-client-urls={urls}"))
            .arg(format!("--advertise-client-urls={urls}"))
    });
    let session = |m: &Member| {
        let plain = format!("http://127.0.0.1:{}", m.client_port());
        let tls = format!("https://127.0.0.1:{}", m.client_port());
        let keys = |base: &str| format!("{base}/v2/keys/foo");
        [
            curl(&keys(&plain), &["-XPUT", "-d", "value=bar"], false),
            curl(&keys(&plain), &[], false),
            curl(&keys(&tls), &[], true),
            curl(&keys(&tls), &["-XPUT", "-d", "value=baz"], true),
            curl(&keys(&plain), &[], false),
            ctl("2", &plain, &["get", "/foo"], false),
            ctl("2", &tls, &["set", "/foo", "qux"], true),
            ctl("2", &plain, &["get", "/foo"], false),
        ]
        .join("\n")
    };
    let want = session(&etcd);
    let got = session(&oxcd);
    assert_eq!(got, want, "oxcd (left) and real etcd (right) differ");
    assert!(got.contains(r#"{"action":"get","node":{"key":"/foo","value":"baz","#));
    assert!(got.ends_with("status=Some(0)\nqux\n"), "{got}");

    // gRPC on the same port, both ways. etcd 3.4 itself fails plain gRPC here (its TLS gRPC
    // server takes the connection), so oxcd is checked alone.
    let plain = format!("http://127.0.0.1:{}", oxcd.client_port());
    let tls = format!("https://127.0.0.1:{}", oxcd.client_port());
    assert!(ctl("3", &plain, &["put", "k", "v"], false).starts_with("status=Some(0)\nOK"));
    assert_eq!(
        ctl("3", &tls, &["get", "k", "--print-value-only"], true),
        "status=Some(0)\nv\n"
    );
    assert_eq!(
        ctl("3", &plain, &["get", "k", "--print-value-only"], false),
        "status=Some(0)\nv\n"
    );
}

#[test]
fn client_certificate_common_name_is_the_v2_user() {
    let (etcd, oxcd) =
        start_pair(|builder, _| builder.name("cn").client_tls(true).arg("--enable-v2"));
    let script: &[&[&str]] = &[
        &["role", "add", "testrole"],
        &["role", "grant", "--rw", "--path=/foo", "testrole"],
        &["user", "add", "root:123"],
        // The CA's name: no certificate in the chain names "example.com" yet.
        &["user", "add", "ca:123"],
        &["user", "grant", "--roles", "testrole", "ca"],
        &["auth", "enable"],
        &["set", "/foo", "bar"],
        &["get", "/foo"],
        &["set", "/bar", "baz"],
        &["user", "list"],
        &["--username", "root:123", "user", "list"],
        // Now the leaf names a user too, and it comes first: one without roles.
        &["--username", "root:123", "user", "add", "example.com:123"],
        &["set", "/foo", "again"],
        &["--username", "ca:123", "set", "/foo", "by-password"],
        &["--username", "root:123", "auth", "disable"],
        &["set", "/bar", "free"],
    ];
    let session = |m: &Member| {
        script
            .iter()
            .map(|args| {
                format!(
                    "$ {}\n{}",
                    args.join(" "),
                    ctl("2", &m.client_url(), args, true)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let want = session(&etcd);
    let got = session(&oxcd);
    assert_eq!(got, want, "oxcd (left) and real etcd (right) differ");
    assert!(
        got.contains("$ set /foo bar\nstatus=Some(0)\nbar\n"),
        "{got}"
    );
    assert!(got.contains("Insufficient credentials"), "{got}");
}
