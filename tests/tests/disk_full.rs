//! When the disk fills up (issue 16): the data dir lives on a small tmpfs mounted by the test
//! (root only; the test says SKIPPED otherwise), and clients write until it is full.
//!
//! - A first start that fails for lack of space leaves nothing that blocks the next start.
//! - When free space runs low, writes raise the NOSPACE alarm and are refused with etcd's
//!   `etcdserver: mvcc: database space exceeded`; reads go on; once space is back and the
//!   alarm is disarmed, writes are taken again.
//! - When the disk fills up at once, the member either refuses writes as above or exits
//!   non-zero with one log line naming the file and the error; never a member answering
//!   `server stopped`. After a restart every acknowledged write is there.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use etcd_client::Client;
use oxcd_e2e::{ports::free_port, wait_until, Member};

const MIB: u64 = 1024 * 1024;
/// oxcd's reserve: a WAL segment and 16 MiB (`--disk-space-reserve-bytes`, by default
/// `disk_space::DEFAULT_RESERVE_BYTES`).
const RESERVE: u64 = 80 * MIB;
const VALUE_BYTES: usize = 64 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";

/// A tmpfs mounted on a fresh temp dir, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_mib: u64) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("oxcd-disk-")
            .tempdir()
            .unwrap();
        run(
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"],
            dir.path(),
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn resize(&self, size_mib: u64) {
        run(
            "mount",
            &["-o", &format!("remount,size={size_mib}m")],
            self.path(),
        );
    }

    fn available(&self) -> u64 {
        let path = CString::new(self.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path and a statvfs the call fills before it is read.
        unsafe {
            let mut st: libc::statvfs = std::mem::zeroed();
            assert_eq!(libc::statvfs(path.as_ptr(), &mut st), 0);
            st.f_bavail as u64 * st.f_frsize as u64
        }
    }

    /// A file taking `bytes` of the file system at once.
    fn ballast(&self, name: &str, bytes: u64) -> PathBuf {
        let path = self.path().join(name);
        let file = std::fs::File::create(&path).unwrap();
        let rc = allocate(&file, 0, bytes);
        let error = std::io::Error::last_os_error();
        assert_eq!(rc, 0, "fallocate {bytes} bytes: {error}");
        path
    }

    /// A file taking every free block of the file system, as fast as the file system goes.
    fn fill(&self, name: &str) -> PathBuf {
        let path = self.path().join(name);
        let file = std::fs::File::create(&path).unwrap();
        let mut end = 0;
        for chunk in [MIB, 4096] {
            while allocate(&file, end, chunk) == 0 {
                end += chunk;
            }
        }
        path
    }
}

fn allocate(file: &std::fs::File, offset: u64, len: u64) -> i32 {
    use std::os::fd::AsRawFd;
    // SAFETY: fallocate on a file we own; no memory is passed.
    unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            0,
            offset as libc::off_t,
            len as libc::off_t,
        )
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

fn run(program: &str, args: &[&str], target: &Path) {
    let status = Command::new(program)
        .args(args)
        .arg(target)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "{program} {args:?} {} failed",
        target.display()
    );
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A single member whose data dir is `data_dir`.
fn member_at(data_dir: &Path) -> Member {
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    Member::builder()
        .ports(client, peer)
        .without_default_flags()
        .args([
            "--name=m0".to_string(),
            format!("--data-dir={}", data_dir.display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=m0={peer_url}"),
        ])
        .spawn()
}

async fn connect(member: &Member) -> Client {
    tokio::time::timeout(REQUEST_TIMEOUT, Client::connect([member.endpoint()], None))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Puts `prefix/<n>` keys with 64 KiB values until a put fails or `limit` passes; returns the
/// acknowledged keys and the first error.
async fn write_until_refused(
    client: &mut Client,
    prefix: &str,
    limit: Duration,
) -> (Vec<String>, Option<String>) {
    let deadline = Instant::now() + limit;
    let value = vec![b'v'; VALUE_BYTES];
    let mut acked = Vec::new();
    for i in 0.. {
        if Instant::now() >= deadline {
            return (acked, None);
        }
        let key = format!("{prefix}/{i:06}");
        match tokio::time::timeout(
            REQUEST_TIMEOUT,
            client.put(key.clone(), value.clone(), None),
        )
        .await
        {
            Ok(Ok(_)) => acked.push(key),
            Ok(Err(e)) => return (acked, Some(e.to_string())),
            Err(_) => return (acked, Some("put timed out".into())),
        }
    }
    unreachable!()
}

/// Every key in `acked` is there with its whole value.
async fn check_acked(client: &mut Client, acked: &[String]) {
    for key in acked {
        let resp = client.get(key.as_str(), None).await.expect("get");
        let kv = resp
            .kvs()
            .first()
            .unwrap_or_else(|| panic!("acknowledged {key} lost"));
        assert_eq!(kv.value().len(), VALUE_BYTES, "{key} has a damaged value");
    }
}

fn alarms(member: &Member) -> String {
    let out = member.etcdctl(&["alarm", "list"]);
    assert!(out.success(), "alarm list: {out}");
    out.stdout.clone()
}

#[test]
fn disk_full() {
    oxcd_e2e::oxcd_only!();
    if !is_root() {
        eprintln!("SKIPPED: disk_full mounts a tmpfs and needs root");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();

    // 1. A first start on a file system too small for the WAL's first segment fails, and
    //    leaves nothing that blocks the next start once space is there.
    let fs = Tmpfs::mount(32);
    let data_dir = fs.path().join("m0.etcd");
    let mut member = member_at(&data_dir);
    let status = member.wait_exit(Duration::from_secs(20));
    assert!(!status.success(), "started without room for the WAL");
    assert!(
        member.log_since_start().contains("No space left on device"),
        "no clear error:\n{}",
        member.log_tail(20)
    );
    assert!(
        !data_dir.join("member").exists(),
        "a failed first start left a member dir"
    );
    fs.resize(256);
    member.respawn();
    member.wait_ready();
    let mut client = rt.block_on(connect(&member));
    let mut acked = Vec::new();

    // 2. Free space runs low while clients write: NOSPACE, reads go on, writes come back.
    let room = fs.available().saturating_sub(RESERVE + 16 * MIB);
    let ballast = fs.ballast("ballast", room);
    let (keys, error) = rt.block_on(write_until_refused(
        &mut client,
        "low",
        Duration::from_secs(60),
    ));
    acked.extend(keys);
    let error = error.expect("writes were never refused");
    assert!(
        error.contains(NO_SPACE),
        "refused with {error:?}, want {NO_SPACE:?}"
    );
    assert!(
        alarms(&member).contains("alarm:NOSPACE"),
        "no NOSPACE alarm"
    );
    assert!(
        member.is_running(),
        "the member exited instead of refusing writes"
    );
    rt.block_on(check_acked(&mut client, &acked));
    let refused = rt.block_on(client.put("refused", "x", None));
    assert!(refused.is_err_and(|e| e.to_string().contains(NO_SPACE)));

    std::fs::remove_file(&ballast).unwrap();
    wait_until(
        "free space above the reserve",
        Duration::from_secs(5),
        || (fs.available() > RESERVE + 4 * MIB).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(300));
    let disarm = member.etcdctl(&["alarm", "disarm"]);
    assert!(disarm.success(), "alarm disarm: {disarm}");
    rt.block_on(client.put("after-disarm", "ok", None))
        .expect("write after disarm");

    // 3. The disk fills up at once under writes: refuse (NOSPACE) or exit with one clear line.
    let ballast = fs.fill("ballast");
    let (keys, error) = rt.block_on(write_until_refused(
        &mut client,
        "full",
        Duration::from_secs(10),
    ));
    acked.extend(keys);
    let error = error.unwrap_or_default();
    assert!(
        !error.contains("server stopped"),
        "a zombie member: {error}"
    );
    let exited = wait_until_exit_or(&mut member, Duration::from_secs(2));
    std::fs::remove_file(&ballast).unwrap();
    match exited {
        Some(code) => {
            assert_eq!(code, Some(1), "exit status after a failed write");
            let log = member.log_since_start();
            let fatal = log
                .lines()
                .find(|l| l.contains("No space left on device") && l.contains("\"path\""))
                .unwrap_or_else(|| {
                    panic!(
                        "no line names the file and the error:\n{}",
                        member.log_tail(20)
                    )
                });
            eprintln!("the member exited: {fatal}");
            member.respawn();
            member.wait_ready();
            client = rt.block_on(connect(&member));
        }
        None => {
            eprintln!("the member refused writes: {error}");
            assert!(error.contains(NO_SPACE), "refused with {error:?}");
        }
    }
    if alarms(&member).contains("NOSPACE") {
        std::thread::sleep(Duration::from_millis(300));
        let disarm = member.etcdctl(&["alarm", "disarm"]);
        assert!(disarm.success(), "alarm disarm: {disarm}");
    }
    rt.block_on(check_acked(&mut client, &acked));
    rt.block_on(client.put("after-full", "ok", None))
        .expect("write once space is back");
    drop(client);
    member.stop();
}

/// Waits up to `timeout` for the member to exit by itself; its exit code, if it did.
fn wait_until_exit_or(member: &mut Member, timeout: Duration) -> Option<Option<i32>> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !member.is_running() {
            return Some(member.wait_exit(Duration::from_secs(1)).code());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}
