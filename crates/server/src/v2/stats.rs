//! Counters of the v2 store's operations, served at `/v2/stats/store` as etcd names them,
//! and the same work counted for `/metrics` (etcd's `etcd_debugging_store_*`) in [`STORE`].

use std::sync::atomic::{AtomicU64, Ordering};

use super::json::JsonWriter;

/// The operations counted.
#[derive(Clone, Copy)]
pub enum Op {
    Get,
    Set,
    Create,
    Update,
    Delete,
    CompareAndSwap,
    CompareAndDelete,
}

/// Successes and failures per operation, and expired keys; per member, not replicated.
#[derive(Default, Clone)]
pub struct Stats {
    ok: [u64; 7],
    failed: [u64; 7],
    expired: u64,
}

impl Stats {
    pub fn count(&mut self, op: Op, ok: bool) {
        let counts = if ok { &mut self.ok } else { &mut self.failed };
        counts[op as usize] += 1;
    }

    pub fn expired(&mut self) {
        self.expired += 1;
    }

    /// etcd's JSON for the counters and the number of watchers (no newline).
    pub fn to_json(&self, watchers: usize) -> String {
        let mut w = JsonWriter::default();
        w.open();
        let pairs = [
            ("getsSuccess", "getsFail", Op::Get),
            ("setsSuccess", "setsFail", Op::Set),
            ("deleteSuccess", "deleteFail", Op::Delete),
            ("updateSuccess", "updateFail", Op::Update),
            ("createSuccess", "createFail", Op::Create),
            (
                "compareAndSwapSuccess",
                "compareAndSwapFail",
                Op::CompareAndSwap,
            ),
            (
                "compareAndDeleteSuccess",
                "compareAndDeleteFail",
                Op::CompareAndDelete,
            ),
        ];
        for (ok, failed, op) in pairs {
            w.field_u64(ok, self.ok[op as usize]);
            w.field_u64(failed, self.failed[op as usize]);
        }
        w.field_u64("expireCount", self.expired);
        w.field_u64("watchers", watchers as u64);
        w.close();
        w.finish()
    }
}

/// etcd's `etcd_debugging_store_*` counts for this process (one member per process): reads
/// by action (`get`, `getRecursive`), writes by action, whatever their outcome, as etcd counts
/// them; expired keys; watch requests. Membership writes under `/0` count, as in etcd.
pub struct StoreMetrics {
    reads: [AtomicU64; 2],
    writes: [AtomicU64; 7],
    expires: AtomicU64,
    watch_requests: AtomicU64,
}

/// Counts by etcd's action label.
pub type ActionCounts = Vec<(&'static str, u64)>;

/// The process's v2 store counts.
pub static STORE: StoreMetrics = StoreMetrics {
    reads: [AtomicU64::new(0), AtomicU64::new(0)],
    writes: [
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    ],
    expires: AtomicU64::new(0),
    watch_requests: AtomicU64::new(0),
};

/// etcd's action label of each write (`Op::Get` is never a write).
const WRITE_ACTIONS: [(Op, &str); 6] = [
    (Op::Set, "set"),
    (Op::Create, "create"),
    (Op::Update, "update"),
    (Op::Delete, "delete"),
    (Op::CompareAndSwap, "compareAndSwap"),
    (Op::CompareAndDelete, "compareAndDelete"),
];

impl StoreMetrics {
    pub fn read(&self, recursive: bool) {
        self.reads[usize::from(recursive)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn write(&self, op: Op) {
        self.writes[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn expired(&self) {
        self.expires.fetch_add(1, Ordering::Relaxed);
    }

    pub fn watch_request(&self) {
        self.watch_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads by action, then writes by action; actions never seen are left out, as etcd
    /// creates a series on its first use.
    pub fn by_action(&self) -> (ActionCounts, ActionCounts) {
        let seen = |pairs: ActionCounts| -> ActionCounts {
            pairs.into_iter().filter(|(_, n)| *n > 0).collect()
        };
        let reads = vec![
            ("get", self.reads[0].load(Ordering::Relaxed)),
            ("getRecursive", self.reads[1].load(Ordering::Relaxed)),
        ];
        let writes = WRITE_ACTIONS
            .iter()
            .map(|(op, name)| (*name, self.writes[*op as usize].load(Ordering::Relaxed)))
            .collect();
        (seen(reads), seen(writes))
    }

    pub fn expires(&self) -> u64 {
        self.expires.load(Ordering::Relaxed)
    }

    pub fn watch_requests(&self) -> u64 {
        self.watch_requests.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_etcds_fields_in_order() {
        let mut s = Stats::default();
        s.count(Op::Set, true);
        s.count(Op::Get, false);
        assert_eq!(
            s.to_json(2),
            r#"{"getsSuccess":0,"getsFail":1,"setsSuccess":1,"setsFail":0,"deleteSuccess":0,"deleteFail":0,"updateSuccess":0,"updateFail":0,"createSuccess":0,"createFail":0,"compareAndSwapSuccess":0,"compareAndSwapFail":0,"compareAndDeleteSuccess":0,"compareAndDeleteFail":0,"expireCount":0,"watchers":2}"#
        );
    }

    #[test]
    fn store_metrics_name_etcds_actions_once_seen() {
        let m = StoreMetrics {
            reads: Default::default(),
            writes: Default::default(),
            expires: AtomicU64::new(0),
            watch_requests: AtomicU64::new(0),
        };
        assert_eq!(m.by_action(), (vec![], vec![]));
        m.read(true);
        m.write(Op::CompareAndSwap);
        m.write(Op::CompareAndSwap);
        m.write(Op::Create);
        m.expired();
        m.watch_request();
        assert_eq!(
            m.by_action(),
            (
                vec![("getRecursive", 1)],
                vec![("create", 1), ("compareAndSwap", 2)]
            )
        );
        assert_eq!((m.expires(), m.watch_requests()), (1, 1));
    }
}
