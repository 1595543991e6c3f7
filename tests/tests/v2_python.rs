//! A real v2 client: the python-etcd library (Debian `python3-etcd`) drives the server
//! through writes, reads, deletes, directories, in-order keys, TTLs, test_and_set, watches
//! and its `etcd.Lock` (`tests/scripts/v2_python_etcd.py`). The same script runs against
//! real etcd 3.4 first, so a failure on oxcd is oxcd's.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use oxcd_e2e::{real_etcd_bin, server_bin, Member};

/// Debian's interpreter, which has python3-etcd (a pyenv `python3` may not).
const PYTHON: &str = "/usr/bin/python3";

fn run_script(member: &Member) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/v2_python_etcd.py");
    let mut child = Command::new(PYTHON)
        .arg(&script)
        .arg(member.client_port().to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python3 (install python3-etcd: scripts/deps.sh)");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "python-etcd against {}:\n{text}",
        member.bin().display()
    );
    text
}

#[test]
fn python_etcd_works_as_with_real_etcd() {
    for bin in [real_etcd_bin(), server_bin()] {
        let mut member = Member::builder()
            .name("py")
            .arg("--enable-v2")
            .bin(bin)
            .spawn();
        member.wait_ready();
        let out = run_script(&member);
        assert!(out.trim_end().ends_with("ok"), "{out}");
    }
}
