//! Counters of the v2 store's operations, served at `/v2/stats/store` as etcd names them.

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
}
