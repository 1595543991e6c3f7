//! Where the programs under test come from.

use std::path::{Path, PathBuf};

/// The server under test: `$OXCD_BIN` if set, else the newer of `target/release/oxcd` and
/// `target/debug/oxcd` in this workspace (or under `$CARGO_TARGET_DIR`).
///
/// Panics with instructions when there is none.
pub fn server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("OXCD_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "OXCD_BIN={} does not exist or is not a file",
            bin.display()
        );
        return bin;
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("target"),
    };
    let newest = ["release", "debug"]
        .iter()
        .map(|profile| target.join(profile).join("oxcd"))
        .filter_map(|path| {
            let modified = path.metadata().ok()?.modified().ok()?;
            Some((modified, path))
        })
        .max();
    match newest {
        Some((_, path)) => path,
        None => panic!(
            "no oxcd binary in {}/{{release,debug}}: run `cargo build --release -p oxcd-server` \
             first, or set OXCD_BIN to a server binary (OXCD_BIN=/usr/bin/etcd runs the tests \
             against real etcd)",
            target.display()
        ),
    }
}

/// Real etcd, for comparisons: `$REAL_ETCD_BIN`, else `/usr/bin/etcd`.
pub fn real_etcd_bin() -> PathBuf {
    let bin = env_path("REAL_ETCD_BIN", "/usr/bin/etcd");
    assert!(
        bin.is_file(),
        "real etcd not found at {} (apt-get install etcd-server, or set REAL_ETCD_BIN)",
        bin.display()
    );
    bin
}

/// The real etcdctl 3.4: `$ETCDCTL_BIN`, else `/usr/bin/etcdctl`.
pub fn etcdctl_bin() -> PathBuf {
    let bin = env_path("ETCDCTL_BIN", "/usr/bin/etcdctl");
    assert!(
        bin.is_file(),
        "etcdctl not found at {} (apt-get install etcd-client, or set ETCDCTL_BIN)",
        bin.display()
    );
    bin
}

/// True when the server under test is real etcd rather than oxcd, judged by the name of the
/// binary after following symlinks (`etcd`), so that oxcd-only tests can skip themselves.
pub fn testing_real_etcd() -> bool {
    is_real_etcd(&server_bin())
}

/// True when `bin`, symlinks followed, is called `etcd`.
pub fn is_real_etcd(bin: &Path) -> bool {
    let resolved = bin.canonicalize().unwrap_or_else(|_| bin.to_path_buf());
    resolved.file_name().is_some_and(|name| name == "etcd")
}

/// The cargo workspace holding this crate.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

fn env_path(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_is_recognised_by_name() {
        assert!(is_real_etcd(Path::new("/nonexistent/bin/etcd")));
        assert!(!is_real_etcd(Path::new("/nonexistent/target/release/oxcd")));
        assert!(!is_real_etcd(Path::new("/nonexistent/etcdctl")));
    }
}
