//! The `process_*` metrics Prometheus' Go client exports for etcd (dashboards chart memory and
//! CPU from them), read from `/proc` at scrape time. On systems without `/proc` they are
//! simply absent. Also etcd's own `os_fd_used` and `os_fd_limit`, the same counts under the
//! names etcd's dashboards use.

use std::fs;

use metrics::{describe_gauge, gauge, Unit};

pub fn describe() {
    // Recorded as a gauge, as the metrics facade's counters are whole numbers; rendered as
    // the counter it is (see `metrics::COUNTERS_WITH_FRACTIONS`).
    describe_gauge!(
        "process_cpu_seconds_total",
        Unit::Seconds,
        "User and system CPU time spent, in seconds."
    );
    describe_gauge!("process_open_fds", "Open file descriptors.");
    describe_gauge!("process_max_fds", "Limit on open file descriptors.");
    describe_gauge!("os_fd_used", "File descriptors this process has open.");
    describe_gauge!(
        "os_fd_limit",
        "How many file descriptors this process may open."
    );
    describe_gauge!(
        "process_virtual_memory_max_bytes",
        Unit::Bytes,
        "Limit on the virtual memory size in bytes (2^64-1 when unlimited)."
    );
    describe_gauge!(
        "process_resident_memory_bytes",
        Unit::Bytes,
        "Resident memory size in bytes."
    );
    describe_gauge!(
        "process_virtual_memory_bytes",
        Unit::Bytes,
        "Virtual memory size in bytes."
    );
    describe_gauge!(
        "process_start_time_seconds",
        Unit::Seconds,
        "Start time of the process since the Unix epoch, in seconds."
    );
}

/// Sets the process gauges from `/proc/self`.
pub fn refresh() {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if let Ok(stat) = fs::read_to_string("/proc/self/stat") {
        if let Some(s) = parse_stat(&stat) {
            if ticks > 0 {
                let tps = ticks as f64;
                gauge!("process_cpu_seconds_total").set((s.utime + s.stime) as f64 / tps);
                if let Some(boot) = boot_time() {
                    gauge!("process_start_time_seconds").set(boot + s.start_ticks as f64 / tps);
                }
            }
            gauge!("process_virtual_memory_bytes").set(s.vsize as f64);
            if page > 0 {
                gauge!("process_resident_memory_bytes").set((s.rss_pages * page as u64) as f64);
            }
        }
    }
    if let Ok(fds) = fs::read_dir("/proc/self/fd") {
        let open = fds.count() as f64;
        gauge!("process_open_fds").set(open);
        gauge!("os_fd_used").set(open);
    }
    if let Ok(limits) = fs::read_to_string("/proc/self/limits") {
        if let Some(max) = limit(&limits, "Max open files") {
            gauge!("process_max_fds").set(max as f64);
            gauge!("os_fd_limit").set(max as f64);
        }
        if let Some(max) = limit(&limits, "Max address space") {
            gauge!("process_virtual_memory_max_bytes").set(max as f64);
        }
    }
}

/// The fields of `/proc/self/stat` used here.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    utime: u64,
    stime: u64,
    start_ticks: u64,
    vsize: u64,
    rss_pages: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<Stat> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the command name.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        start_ticks: field(22)?,
        vsize: field(23)?,
        rss_pages: field(24)?,
    })
}

/// The system's boot time, from `/proc/stat`'s `btime`.
fn boot_time() -> Option<f64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit on open files from `/proc/self/limits`.
/// The soft limit named `name` in `/proc/self/limits`; `unlimited` is `u64::MAX`.
fn limit(limits: &str, name: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with(name))?;
    match line[name.len()..].split_whitespace().next()? {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_counted_after_the_command_name() {
        let stat = "7043 (a (weird) name) R 6981 6981 23056 0 -1 4194304 100 0 0 0 12 34 0 0 20 0 1 0 129250 3133440 387 18446744073709551615 0";
        assert_eq!(
            parse_stat(stat),
            Some(Stat {
                utime: 12,
                stime: 34,
                start_ticks: 129250,
                vsize: 3133440,
                rss_pages: 387,
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) R 2"), None);
    }

    #[test]
    fn open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax open files            20000                40000                files     \nMax address space         unlimited            unlimited            bytes     \n";
        assert_eq!(limit(limits, "Max open files"), Some(20000));
        assert_eq!(limit(limits, "Max address space"), Some(u64::MAX));
        assert_eq!(limit("nothing", "Max open files"), None);
    }

    #[test]
    fn refresh_reads_this_process() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, refresh);
        let text = handle.render();
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(text.contains("process_resident_memory_bytes "), "{text}");
            assert!(text.contains("process_open_fds "), "{text}");
            assert!(text.contains("os_fd_used "), "{text}");
            assert!(text.contains("os_fd_limit "), "{text}");
        }
    }
}
