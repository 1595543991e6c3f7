//! Histories of client operations, as recorded by the fault tests and read by the checkers.
//!
//! Every operation has the time it was invoked and, when the client learnt how it ended, the
//! time it returned. Its result is one of three kinds:
//!
//! - ok: the server answered, and the answer is recorded (values, revisions);
//! - failed: it certainly had no effect (only reads are ever counted so: a read changes
//!   nothing whatever happened);
//! - unknown: a write that timed out or got an error; it may have taken effect at any moment
//!   after its invocation, or never. Its return time is "never" for the checkers.
//!
//! Written values are unique (client and sequence number), so a read names the write it saw.

use std::fmt;
use std::time::Duration;

/// What an operation asked for; all act on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// A linearizable range read of the key.
    Get,
    /// Put `value`.
    Put { value: String },
    /// A txn: if the key's value equals `expected` (or, for `None`, the key does not exist)
    /// then put `value`, else read the key.
    Cas {
        expected: Option<String>,
        value: String,
    },
}

impl OpKind {
    /// The value this operation writes, if it is a write.
    pub fn written(&self) -> Option<&str> {
        match self {
            OpKind::Get => None,
            OpKind::Put { value } | OpKind::Cas { value, .. } => Some(value),
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    /// A read's answer: the value (`None`: no such key), the key's mod revision (0 when absent)
    /// and the response header's revision.
    Get {
        value: Option<String>,
        mod_revision: i64,
        revision: i64,
    },
    /// A put was acknowledged at `revision`.
    Put { revision: i64 },
    /// A txn answered: `succeeded` says which branch ran. When it failed, `current` and
    /// `mod_revision` are what the else branch read.
    Cas {
        succeeded: bool,
        current: Option<String>,
        mod_revision: i64,
        revision: i64,
    },
    /// Certainly without effect, with the error.
    Failed(String),
    /// May or may not have taken effect, with the error.
    Unknown(String),
}

impl OpResult {
    /// The response header's revision, for answered operations.
    pub fn revision(&self) -> Option<i64> {
        match self {
            OpResult::Get { revision, .. }
            | OpResult::Put { revision }
            | OpResult::Cas { revision, .. } => Some(*revision),
            OpResult::Failed(_) | OpResult::Unknown(_) => None,
        }
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, OpResult::Unknown(_))
    }
}

/// One recorded operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// Position in the history, for reports.
    pub id: usize,
    /// Which client ran it (a client runs one operation at a time).
    pub client: usize,
    /// The member (endpoint or name) it was sent to.
    pub member: String,
    pub key: String,
    pub kind: OpKind,
    /// When it was invoked, since the start of the run.
    pub call: Duration,
    /// When it returned; `None` for unknown results (they may take effect at any later time).
    pub ret: Option<Duration>,
    pub result: OpResult,
}

impl Op {
    /// True when this write certainly took effect (acknowledged put, successful txn).
    pub fn write_took_effect(&self) -> bool {
        matches!(
            self.result,
            OpResult::Put { .. }
                | OpResult::Cas {
                    succeeded: true,
                    ..
                }
        )
    }

    /// The revision an effective write was acknowledged at.
    pub fn write_revision(&self) -> Option<i64> {
        self.write_took_effect()
            .then(|| self.result.revision())
            .flatten()
    }
}

fn show(value: &Option<String>) -> String {
    match value {
        Some(v) => format!("{v:?}"),
        None => "<none>".to_owned(),
    }
}

fn millis(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ret = self.ret.map_or_else(|| "…".to_owned(), millis);
        write!(
            f,
            "#{:<5} c{:<2} [{:>10} .. {:>10}] {:<8} {} ",
            self.id,
            self.client,
            millis(self.call),
            ret,
            self.member,
            self.key
        )?;
        match &self.kind {
            OpKind::Get => write!(f, "get")?,
            OpKind::Put { value } => write!(f, "put {value:?}")?,
            OpKind::Cas { expected, value } => write!(f, "cas {} -> {value:?}", show(expected))?,
        }
        write!(f, " => ")?;
        match &self.result {
            OpResult::Get {
                value,
                mod_revision,
                revision,
            } => write!(f, "{} (mod {mod_revision}, rev {revision})", show(value)),
            OpResult::Put { revision } => write!(f, "ok (rev {revision})"),
            OpResult::Cas {
                succeeded: true,
                revision,
                ..
            } => write!(f, "swapped (rev {revision})"),
            OpResult::Cas {
                succeeded: false,
                current,
                mod_revision,
                revision,
            } => write!(
                f,
                "not swapped, found {} (mod {mod_revision}, rev {revision})",
                show(current)
            ),
            OpResult::Failed(e) => write!(f, "failed: {e}"),
            OpResult::Unknown(e) => write!(f, "unknown: {e}"),
        }
    }
}

/// Formats operations one a line, sorted by invocation time.
pub fn format_ops<'a>(ops: impl IntoIterator<Item = &'a Op>) -> String {
    let mut ops: Vec<&Op> = ops.into_iter().collect();
    ops.sort_by_key(|op| (op.call, op.id));
    let mut out = String::new();
    for op in ops {
        out.push_str(&op.to_string());
        out.push('\n');
    }
    out
}

/// Checks that response header revisions respect real time, across all keys, as etcd's one
/// revision counter must: an operation invoked after another returned sees a revision at
/// least as new, and a write that took effect gets a strictly newer one. Also a read's mod
/// revision is never past its header revision. Returns one message per violation (at most
/// `limit`).
pub fn check_revision_order(ops: &[Op], limit: usize) -> Vec<String> {
    let mut problems = Vec::new();
    for op in ops {
        if let OpResult::Get {
            mod_revision,
            revision,
            ..
        } = &op.result
        {
            if mod_revision > revision {
                problems.push(format!(
                    "a read's mod revision {mod_revision} is past its header revision {revision}:\n  {op}"
                ));
            }
        }
    }
    // Answered operations by return time; sweep invocations in time order, keeping the
    // operation with the highest revision among those that returned before.
    let mut answered: Vec<(&Op, Duration, i64)> = ops
        .iter()
        .filter_map(|op| Some((op, op.ret?, op.result.revision()?)))
        .collect();
    answered.sort_by_key(|(_, ret, _)| *ret);
    let mut by_call: Vec<(&Op, i64)> = answered.iter().map(|(op, _, rev)| (*op, *rev)).collect();
    by_call.sort_by_key(|(op, _)| op.call);
    let mut returned = 0;
    let mut newest: Option<(&Op, i64)> = None;
    for (op, revision) in by_call {
        while returned < answered.len() && answered[returned].1 < op.call {
            let (done, _, rev) = answered[returned];
            if newest.is_none_or(|(_, best)| rev > best) {
                newest = Some((done, rev));
            }
            returned += 1;
        }
        let Some((before, seen)) = newest else {
            continue;
        };
        let stale = if op.write_took_effect() {
            revision <= seen
        } else {
            revision < seen
        };
        if stale {
            problems.push(format!(
                "revision went back in real time: an operation that returned at revision {seen}\n  {before}\nwas followed by one at revision {revision}\n  {op}"
            ));
        }
        if problems.len() >= limit {
            break;
        }
    }
    problems.truncate(limit);
    problems
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A compact way to write operations in tests: times in milliseconds, `ret` `None` for
    /// unknown results.
    pub(crate) fn op(
        id: usize,
        key: &str,
        call: u64,
        ret: Option<u64>,
        kind: OpKind,
        result: OpResult,
    ) -> Op {
        Op {
            id,
            client: id,
            member: "m0".into(),
            key: key.into(),
            kind,
            call: Duration::from_millis(call),
            ret: ret.map(Duration::from_millis),
            result,
        }
    }

    fn put(id: usize, call: u64, ret: u64, value: &str, revision: i64) -> Op {
        op(
            id,
            "k",
            call,
            Some(ret),
            OpKind::Put {
                value: value.into(),
            },
            OpResult::Put { revision },
        )
    }

    fn get(id: usize, call: u64, ret: u64, value: &str, mod_revision: i64, revision: i64) -> Op {
        op(
            id,
            "k",
            call,
            Some(ret),
            OpKind::Get,
            OpResult::Get {
                value: Some(value.into()),
                mod_revision,
                revision,
            },
        )
    }

    #[test]
    fn revisions_in_real_time_order_pass() {
        let ops = vec![
            put(0, 0, 10, "a", 2),
            get(1, 5, 15, "a", 2, 2),
            put(2, 20, 30, "b", 3),
            get(3, 25, 26, "a", 2, 2), // concurrent with the put: may see the older state
            get(4, 31, 40, "b", 3, 3),
        ];
        assert_eq!(check_revision_order(&ops, 10), Vec::<String>::new());
    }

    #[test]
    fn a_read_behind_a_finished_write_is_reported() {
        let ops = vec![put(0, 0, 10, "a", 5), get(1, 11, 12, "x", 3, 4)];
        let problems = check_revision_order(&ops, 10);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("went back"));
    }

    #[test]
    fn a_write_must_get_a_newer_revision() {
        let ops = vec![put(0, 0, 10, "a", 5), put(1, 11, 12, "b", 5)];
        assert_eq!(check_revision_order(&ops, 10).len(), 1);
    }

    #[test]
    fn mod_revision_past_header_is_reported() {
        let ops = vec![get(0, 0, 1, "a", 7, 6)];
        assert_eq!(check_revision_order(&ops, 10).len(), 1);
    }

    #[test]
    fn formats_each_kind() {
        let unknown = op(
            7,
            "k",
            1,
            None,
            OpKind::Cas {
                expected: None,
                value: "v".into(),
            },
            OpResult::Unknown("timeout".into()),
        );
        let line = unknown.to_string();
        assert!(
            line.contains("cas <none> -> \"v\" => unknown: timeout"),
            "{line}"
        );
        assert!(line.contains('…'), "{line}");
    }
}
