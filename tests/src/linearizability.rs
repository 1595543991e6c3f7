//! A linearizability checker for histories of one register per key: get, put and
//! compare-and-swap, where some writes have unknown results.
//!
//! The search is Wing & Gong's, with Lowe's just-in-time improvement and memoization
//! (G. Lowe, "Testing for linearizability", 2017; as in Porcupine and Knossos). The history is
//! a list of call and return entries in time order. Walking it, the checker may linearize an
//! operation at its call entry if the register model accepts it in the current state; it then
//! lifts the operation's call and return out of the list and starts over. Reaching the return
//! entry of an operation not yet linearized means this order cannot work: it backtracks to the
//! last choice. A set of (linearized operations, register state) pairs already explored cuts
//! repeated work. The history is linearizable when every entry has been lifted.
//!
//! Keys are independent registers, and linearizability is compositional, so each key is
//! checked alone ([`check_history`]).
//!
//! ## Unknown results
//!
//! A write whose result is unknown may take effect at any time after its call, or never. Its
//! return is placed at infinity: it may be linearized anywhere after its call. "Never" needs no
//! extra branch, as linearizing it last has no visible effect. For the same reason an unknown
//! compare-and-swap takes effect exactly when its comparison holds at its linearization point.
//! Reads that failed or have unknown results say nothing and are dropped.
//!
//! Unknown writes whose value nobody ever saw are dropped before the search (repeatedly, until
//! none is left): linearized last they change nothing anyone observed, and keeping them would
//! only widen the search, since each is concurrent with everything after its call.
//!
//! Written values must be unique per key, so that a read names the write it saw.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use crate::history::{format_ops, Op, OpKind, OpResult};

/// Default bound on search steps per key before the checker gives up.
pub const DEFAULT_STEP_LIMIT: u64 = 200_000_000;

/// The verdict on one key's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order works. The report names the operation that could not be placed and shows the
    /// longest partial linearization found.
    NotLinearizable {
        report: String,
    },
    /// The search used up its step budget without an answer.
    GaveUp {
        steps: u64,
    },
}

/// The verdict for one key.
#[derive(Clone, Debug)]
pub struct KeyVerdict {
    pub key: String,
    pub verdict: Verdict,
    /// Operations that took part in the search (after dropping the unobservable ones).
    pub checked_ops: usize,
    pub steps: u64,
}

/// Checks every key's history; returns the verdicts, sorted by key.
pub fn check_history(ops: &[Op], step_limit: u64) -> Vec<KeyVerdict> {
    let mut by_key: HashMap<&str, Vec<&Op>> = HashMap::new();
    for op in ops {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut verdicts: Vec<KeyVerdict> = by_key
        .into_iter()
        .map(|(key, ops)| check_key(key, &ops, step_limit))
        .collect();
    verdicts.sort_by(|a, b| a.key.cmp(&b.key));
    verdicts
}

/// A value as the search sees it: interned, `NONE` for an absent key.
type Value = u32;
const NONE: Value = 0;

/// The register's input and output for one operation, with values interned.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// A read that returned `0`.
    Get(Value),
    /// A write of `0` (acknowledged or unknown: a put always succeeds).
    Put(Value),
    /// A compare-and-swap known to have succeeded.
    CasSwapped { expected: Value, new: Value },
    /// A compare-and-swap known to have failed, having read `current`.
    CasFailed { expected: Value, current: Value },
    /// A compare-and-swap with an unknown result.
    CasUnknown { expected: Value, new: Value },
}

impl Step {
    /// The register's next state, or `None` when this operation cannot happen in `state`.
    fn apply(self, state: Value) -> Option<Value> {
        match self {
            Step::Get(value) => (value == state).then_some(state),
            Step::Put(value) => Some(value),
            Step::CasSwapped { expected, new } => (state == expected).then_some(new),
            Step::CasFailed { expected, current } => {
                (state != expected && state == current).then_some(state)
            }
            Step::CasUnknown { expected, new } => Some(if state == expected { new } else { state }),
        }
    }
}

/// Interns values: `None` is `NONE`, each distinct string gets its own number.
#[derive(Default)]
struct Interner {
    ids: HashMap<String, Value>,
}

impl Interner {
    fn id(&mut self, value: Option<&str>) -> Value {
        let Some(value) = value else {
            return NONE;
        };
        let next = self.ids.len() as Value + 1;
        *self.ids.entry(value.to_owned()).or_insert(next)
    }
}

/// Drops what cannot matter: failed and unknown reads, failed writes, and (repeatedly)
/// unknown writes whose value no other operation observed.
fn relevant_ops<'a>(ops: &[&'a Op]) -> Vec<&'a Op> {
    let mut kept: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|op| {
            !matches!(
                (&op.kind, &op.result),
                (_, OpResult::Failed(_)) | (OpKind::Get, OpResult::Unknown(_))
            )
        })
        .collect();
    loop {
        let mut observed: HashSet<&str> = HashSet::new();
        for op in &kept {
            match (&op.kind, &op.result) {
                (_, OpResult::Get { value: Some(v), .. }) => {
                    observed.insert(v);
                }
                (
                    _,
                    OpResult::Cas {
                        current: Some(v), ..
                    },
                ) => {
                    observed.insert(v);
                }
                _ => {}
            }
            if let OpKind::Cas {
                expected: Some(v), ..
            } = &op.kind
            {
                observed.insert(v);
            }
        }
        let before = kept.len();
        kept.retain(|op| {
            !op.result.is_unknown() || op.kind.written().is_some_and(|v| observed.contains(v))
        });
        if kept.len() == before {
            return kept;
        }
    }
}

fn to_step(op: &Op, interner: &mut Interner) -> Step {
    match (&op.kind, &op.result) {
        (OpKind::Get, OpResult::Get { value, .. }) => Step::Get(interner.id(value.as_deref())),
        (OpKind::Put { value }, _) => Step::Put(interner.id(Some(value))),
        (OpKind::Cas { expected, value }, result) => {
            let expected = interner.id(expected.as_deref());
            let new = interner.id(Some(value));
            match result {
                OpResult::Cas {
                    succeeded: true, ..
                } => Step::CasSwapped { expected, new },
                OpResult::Cas {
                    succeeded: false,
                    current,
                    ..
                } => Step::CasFailed {
                    expected,
                    current: interner.id(current.as_deref()),
                },
                _ => Step::CasUnknown { expected, new },
            }
        }
        (kind, result) => panic!("operation {kind:?} cannot have result {result:?}"),
    }
}

/// One call or return in the doubly linked list the search walks.
#[derive(Clone, Copy, Debug)]
struct Entry {
    op: usize,
    is_call: bool,
    prev: usize,
    next: usize,
}

/// Index of the list's head sentinel; `NIL` ends the list.
const HEAD: usize = 0;
const NIL: usize = usize::MAX;

fn check_key(key: &str, all: &[&Op], step_limit: u64) -> KeyVerdict {
    let ops = relevant_ops(all);
    let mut interner = Interner::default();
    let steps: Vec<Step> = ops.iter().map(|op| to_step(op, &mut interner)).collect();

    // Entries in time order; unknown returns at infinity; at equal times calls come first,
    // so that touching operations count as concurrent.
    let mut events: Vec<(u128, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call.as_nanos(), true, i));
        let ret = op.ret.map_or(u128::MAX, |r| r.as_nanos());
        events.push((ret, false, i));
    }
    events.sort_by_key(|&(time, is_call, op)| (time, !is_call, op));
    let mut entries = Vec::with_capacity(events.len() + 1);
    entries.push(Entry {
        op: usize::MAX,
        is_call: false,
        prev: NIL,
        next: 1,
    });
    let mut call_entry = vec![0; ops.len()];
    let mut return_entry = vec![0; ops.len()];
    for (i, &(_, is_call, op)) in events.iter().enumerate() {
        let index = i + 1;
        entries.push(Entry {
            op,
            is_call,
            prev: index - 1,
            next: if index == events.len() {
                NIL
            } else {
                index + 1
            },
        });
        if is_call {
            call_entry[op] = index;
        } else {
            return_entry[op] = index;
        }
    }
    if events.is_empty() {
        entries[HEAD].next = NIL;
    }

    let lift = |entries: &mut Vec<Entry>, op: usize| {
        for index in [call_entry[op], return_entry[op]] {
            let Entry { prev, next, .. } = entries[index];
            entries[prev].next = next;
            if next != NIL {
                entries[next].prev = prev;
            }
        }
    };
    let unlift = |entries: &mut Vec<Entry>, op: usize| {
        for index in [return_entry[op], call_entry[op]] {
            let Entry { prev, next, .. } = entries[index];
            entries[prev].next = index;
            if next != NIL {
                entries[next].prev = index;
            }
        }
    };

    let mut linearized = BitSet::new(ops.len());
    let mut state: Value = NONE;
    let mut seen: HashSet<(BitSet, Value)> = HashSet::new();
    // (operation linearized, state before it)
    let mut stack: Vec<(usize, Value)> = Vec::new();
    let mut best: Vec<usize> = Vec::new();
    let mut stuck_at: Option<(usize, Value)> = None;
    let mut entry = entries[HEAD].next;
    let mut step_count: u64 = 0;

    while entries[HEAD].next != NIL {
        step_count += 1;
        if step_count > step_limit {
            return KeyVerdict {
                key: key.to_owned(),
                verdict: Verdict::GaveUp { steps: step_count },
                checked_ops: ops.len(),
                steps: step_count,
            };
        }
        let Entry { op, is_call, .. } = entries[entry];
        if is_call {
            if let Some(next_state) = steps[op].apply(state) {
                linearized.set(op);
                if seen.insert((linearized.clone(), next_state)) {
                    stack.push((op, state));
                    state = next_state;
                    lift(&mut entries, op);
                    entry = entries[HEAD].next;
                    continue;
                }
                linearized.clear(op);
            }
            entry = entries[entry].next;
        } else {
            // `op` returns here but is not linearized: undo the last choice.
            if stack.len() >= best.len() {
                best = stack.iter().map(|&(op, _)| op).collect();
                stuck_at = Some((op, state));
            }
            let Some((last, before)) = stack.pop() else {
                let report = failure_report(key, &ops, &best, stuck_at, &interner);
                return KeyVerdict {
                    key: key.to_owned(),
                    verdict: Verdict::NotLinearizable { report },
                    checked_ops: ops.len(),
                    steps: step_count,
                };
            };
            linearized.clear(last);
            state = before;
            unlift(&mut entries, last);
            entry = entries[call_entry[last]].next;
        }
    }
    KeyVerdict {
        key: key.to_owned(),
        verdict: Verdict::Linearizable,
        checked_ops: ops.len(),
        steps: step_count,
    }
}

fn failure_report(
    key: &str,
    ops: &[&Op],
    best: &[usize],
    stuck_at: Option<(usize, Value)>,
    interner: &Interner,
) -> String {
    let names: HashMap<Value, &str> = interner
        .ids
        .iter()
        .map(|(name, id)| (*id, name.as_str()))
        .collect();
    let show = |v: Value| match names.get(&v) {
        Some(name) => format!("{name:?}"),
        None => "<none>".to_owned(),
    };
    let mut report = format!(
        "key {key:?}: history is not linearizable ({} operations checked)\n",
        ops.len()
    );
    if let Some((op, state)) = stuck_at {
        let op = ops[op];
        let _ = writeln!(
            report,
            "the longest partial linearization ({} operations) ends in state {}, and then this operation returns without any place to go:\n  {op}",
            best.len(),
            show(state)
        );
        let concurrent: Vec<&Op> = ops
            .iter()
            .copied()
            .filter(|other| {
                other.id != op.id
                    && other.call <= op.ret.unwrap_or(std::time::Duration::MAX)
                    && other.ret.is_none_or(|r| r >= op.call)
            })
            .collect();
        let _ = writeln!(report, "operations concurrent with it:");
        for line in format_ops(concurrent).lines() {
            let _ = writeln!(report, "  {line}");
        }
        let tail = &best[best.len().saturating_sub(20)..];
        let _ = writeln!(
            report,
            "last operations of that partial linearization, in order:"
        );
        for &index in tail {
            let _ = writeln!(report, "  {}", ops[index]);
        }
    }
    report
}

/// A fixed-size set of operation indexes, hashable for the memo.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    fn new(bits: usize) -> BitSet {
        BitSet {
            words: vec![0; bits.div_ceil(64)],
        }
    }

    fn set(&mut self, bit: usize) {
        self.words[bit / 64] |= 1 << (bit % 64);
    }

    fn clear(&mut self, bit: usize) {
        self.words[bit / 64] &= !(1 << (bit % 64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::op;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// A tiny language for hand-made histories: each op is
    /// (call ms, return ms or None for unknown, kind, result).
    fn put(id: usize, call: u64, ret: Option<u64>, value: &str) -> Op {
        let result = match ret {
            Some(_) => OpResult::Put { revision: 0 },
            None => OpResult::Unknown("timeout".into()),
        };
        op(
            id,
            "k",
            call,
            ret,
            OpKind::Put {
                value: value.into(),
            },
            result,
        )
    }

    fn get(id: usize, call: u64, ret: u64, value: Option<&str>) -> Op {
        op(
            id,
            "k",
            call,
            Some(ret),
            OpKind::Get,
            OpResult::Get {
                value: value.map(Into::into),
                mod_revision: 0,
                revision: 0,
            },
        )
    }

    fn cas(
        id: usize,
        call: u64,
        ret: Option<u64>,
        expected: Option<&str>,
        value: &str,
        outcome: Option<Result<(), Option<&str>>>,
    ) -> Op {
        let result = match outcome {
            None => OpResult::Unknown("timeout".into()),
            Some(Ok(())) => OpResult::Cas {
                succeeded: true,
                current: None,
                mod_revision: 0,
                revision: 0,
            },
            Some(Err(current)) => OpResult::Cas {
                succeeded: false,
                current: current.map(Into::into),
                mod_revision: 0,
                revision: 0,
            },
        };
        op(
            id,
            "k",
            call,
            ret,
            OpKind::Cas {
                expected: expected.map(Into::into),
                value: value.into(),
            },
            result,
        )
    }

    fn verdict(ops: &[Op]) -> Verdict {
        let verdicts = check_history(ops, DEFAULT_STEP_LIMIT);
        assert!(verdicts.len() <= 1);
        verdicts
            .into_iter()
            .next()
            .map_or(Verdict::Linearizable, |v| v.verdict)
    }

    #[track_caller]
    fn assert_linearizable(ops: &[Op]) {
        let v = verdict(ops);
        assert_eq!(
            v,
            Verdict::Linearizable,
            "expected linearizable:\n{}",
            format_ops(ops)
        );
    }

    #[track_caller]
    fn assert_not_linearizable(ops: &[Op]) -> String {
        match verdict(ops) {
            Verdict::NotLinearizable { report } => report,
            other => panic!(
                "expected not linearizable, got {other:?}:\n{}",
                format_ops(ops)
            ),
        }
    }

    #[test]
    fn empty_and_sequential_histories() {
        assert_linearizable(&[]);
        assert_linearizable(&[
            get(0, 0, 1, None),
            put(1, 2, Some(3), "a"),
            get(2, 4, 5, Some("a")),
            put(3, 6, Some(7), "b"),
            get(4, 8, 9, Some("b")),
        ]);
    }

    #[test]
    fn a_stale_read_after_a_write_returned_is_not_linearizable() {
        let report = assert_not_linearizable(&[
            put(0, 0, Some(10), "a"),
            put(1, 20, Some(30), "b"),
            get(2, 40, 50, Some("a")),
        ]);
        assert!(report.contains("get"), "{report}");
        assert!(report.contains("\"a\""), "{report}");
    }

    #[test]
    fn concurrent_reads_may_see_either_side_of_a_write() {
        assert_linearizable(&[
            put(0, 0, Some(10), "a"),
            put(1, 20, Some(40), "b"),
            get(2, 25, 30, Some("b")),
            get(3, 26, 35, Some("a")),
        ]);
    }

    #[test]
    fn reads_may_not_flip_back_and_forth() {
        // Once a read returned the new value, a later read (started after it returned) may not
        // see the old one, even while the write is still running.
        assert_not_linearizable(&[
            put(0, 0, Some(10), "a"),
            put(1, 20, Some(100), "b"),
            get(2, 25, 30, Some("b")),
            get(3, 40, 50, Some("a")),
        ]);
    }

    #[test]
    fn a_read_of_a_value_nobody_wrote_is_not_linearizable() {
        assert_not_linearizable(&[put(0, 0, Some(10), "a"), get(1, 20, 30, Some("zzz"))]);
    }

    #[test]
    fn a_read_before_the_write_was_invoked_is_not_linearizable() {
        assert_not_linearizable(&[get(0, 0, 5, Some("a")), put(1, 10, Some(20), "a")]);
    }

    #[test]
    fn a_lost_acknowledged_write_is_not_linearizable() {
        // The final read sees the initial state though "a" was acknowledged.
        assert_not_linearizable(&[put(0, 0, Some(10), "a"), get(1, 20, 30, None)]);
    }

    #[test]
    fn unknown_writes_may_take_effect_late_or_never() {
        // Never: nobody saw "x".
        assert_linearizable(&[
            put(0, 0, Some(10), "a"),
            put(1, 11, None, "x"),
            get(2, 20, 30, Some("a")),
        ]);
        // Late: seen long after its call, after another write.
        assert_linearizable(&[
            put(0, 0, None, "x"),
            put(1, 10, Some(20), "a"),
            get(2, 30, 40, Some("a")),
            get(3, 1000, 1010, Some("x")),
        ]);
        // But not before its call.
        assert_not_linearizable(&[get(0, 0, 5, Some("x")), put(1, 10, None, "x")]);
        // And not twice: once overwritten by a later write, it cannot come back.
        assert_not_linearizable(&[
            put(0, 0, None, "x"),
            get(1, 10, 20, Some("x")),
            put(2, 30, Some(40), "a"),
            get(3, 50, 60, Some("x")),
        ]);
    }

    #[test]
    fn cas_semantics() {
        // A successful swap needs the expected value.
        assert_linearizable(&[
            put(0, 0, Some(10), "a"),
            cas(1, 20, Some(30), Some("a"), "b", Some(Ok(()))),
            get(2, 40, 50, Some("b")),
        ]);
        assert_not_linearizable(&[
            put(0, 0, Some(10), "a"),
            cas(1, 20, Some(30), Some("zzz"), "b", Some(Ok(()))),
        ]);
        // Create-if-absent.
        assert_linearizable(&[
            cas(0, 0, Some(10), None, "a", Some(Ok(()))),
            cas(1, 20, Some(30), None, "b", Some(Err(Some("a")))),
        ]);
        // A failed swap reports the current value, which must differ from the expected one.
        assert_not_linearizable(&[
            put(0, 0, Some(10), "a"),
            cas(1, 20, Some(30), Some("a"), "b", Some(Err(Some("a")))),
        ]);
        // Two swaps from the same value cannot both succeed.
        assert_not_linearizable(&[
            put(0, 0, Some(10), "a"),
            cas(1, 20, Some(30), Some("a"), "b", Some(Ok(()))),
            cas(2, 20, Some(30), Some("a"), "c", Some(Ok(()))),
        ]);
    }

    #[test]
    fn unknown_cas_takes_effect_only_when_its_comparison_holds() {
        // It may explain a later read of its value ...
        assert_linearizable(&[
            put(0, 0, Some(10), "a"),
            cas(1, 20, None, Some("a"), "b", None),
            get(2, 100, 110, Some("b")),
        ]);
        // ... but not when the key never held the expected value.
        assert_not_linearizable(&[
            put(0, 0, Some(10), "a"),
            cas(1, 20, None, Some("zzz"), "b", None),
            get(2, 100, 110, Some("b")),
        ]);
    }

    #[test]
    fn unobserved_unknown_writes_are_dropped_before_the_search() {
        let mut ops = vec![put(0, 0, Some(1), "a")];
        for i in 1..200 {
            ops.push(put(i, 2 + i as u64, None, &format!("x{i}")));
        }
        ops.push(get(200, 10_000, 10_001, Some("a")));
        let verdicts = check_history(&ops, DEFAULT_STEP_LIMIT);
        assert_eq!(verdicts[0].verdict, Verdict::Linearizable);
        assert_eq!(verdicts[0].checked_ops, 2);
    }

    #[test]
    fn keys_are_checked_independently() {
        let mut other = get(2, 40, 50, Some("a"));
        other.key = "other".into();
        // On "k" alone "a" was overwritten; "other" has no write of "a".
        let verdicts = check_history(
            &[put(0, 0, Some(10), "a"), put(1, 20, Some(30), "b"), other],
            DEFAULT_STEP_LIMIT,
        );
        assert_eq!(verdicts.len(), 2);
        assert_eq!(verdicts[0].key, "k");
        assert_eq!(verdicts[0].verdict, Verdict::Linearizable);
        assert!(matches!(
            verdicts[1].verdict,
            Verdict::NotLinearizable { .. }
        ));
    }

    #[test]
    fn the_step_limit_gives_up() {
        let ops = [put(0, 0, Some(10), "a"), get(1, 20, 30, Some("a"))];
        let verdicts = check_history(&ops, 1);
        assert!(matches!(verdicts[0].verdict, Verdict::GaveUp { .. }));
    }

    /// Runs a register with real concurrency simulated by random delays between invocation,
    /// linearization point and return; the resulting histories must all pass. Then one read's
    /// answer is changed to a value overwritten before the read began; they must all fail.
    #[test]
    fn random_linearizable_histories_pass_and_corrupted_ones_fail() {
        let seed: u64 = std::env::var("OXCD_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut corrupted = 0;
        for round in 0..50 {
            let (ops, corruptible) = simulate(&mut rng, 5, 120);
            assert_linearizable(&ops);
            if let Some((index, stale)) = corruptible {
                corrupted += 1;
                let mut bad = ops.clone();
                if let OpResult::Get { value, .. } = &mut bad[index].result {
                    *value = Some(stale);
                }
                let v = verdict(&bad);
                assert!(
                    matches!(v, Verdict::NotLinearizable { .. }),
                    "round {round} (seed {seed}): corrupted history passed:\n{}",
                    format_ops(&bad)
                );
            }
        }
        assert!(
            corrupted >= 40,
            "only {corrupted} of 50 histories could be corrupted"
        );
    }

    /// Histories as large and as uncertain as long fault runs make (thousands of operations
    /// on one key, a fifth of the writes unknown but taking effect) are decided quickly.
    #[test]
    fn large_histories_with_many_unknown_writes_are_decided() {
        let mut rng = StdRng::seed_from_u64(7);
        let (ops, _) = simulate_with(&mut rng, 6, 600, 5);
        let started = std::time::Instant::now();
        let verdicts = check_history(&ops, DEFAULT_STEP_LIMIT);
        assert_eq!(verdicts[0].verdict, Verdict::Linearizable);
        eprintln!(
            "{} operations ({} checked), {} steps, {:?}",
            ops.len(),
            verdicts[0].checked_ops,
            verdicts[0].steps,
            started.elapsed()
        );
    }

    fn simulate(
        rng: &mut StdRng,
        clients: usize,
        ops_per_client: usize,
    ) -> (Vec<Op>, Option<(usize, String)>) {
        simulate_with(rng, clients, ops_per_client, 10)
    }

    /// `clients` clients each run operations on one register; every operation takes effect at
    /// a random instant inside its interval (some writes are left unknown). Returns the
    /// history and, if there is one, a read that can be made certainly stale: (its index, a
    /// value whose write returned before a known write replaced it, which itself returned
    /// before the read was invoked).
    fn simulate_with(
        rng: &mut StdRng,
        clients: usize,
        ops_per_client: usize,
        one_unknown_in: u32,
    ) -> (Vec<Op>, Option<(usize, String)>) {
        struct Pending {
            client: usize,
            call: u64,
            point: u64,
            ret: u64,
            kind: OpKind,
            unknown: bool,
        }
        /// A value written, with its write's return time if known.
        struct Written {
            value: String,
            ret: Option<u64>,
        }
        let mut pending = Vec::new();
        for client in 0..clients {
            let mut t = rng.random_range(0..10);
            for i in 0..ops_per_client {
                let call = t;
                let point = call + rng.random_range(0..20);
                let ret = point + rng.random_range(0..20);
                let value = format!("c{client}-{i}");
                let kind = match rng.random_range(0..3) {
                    0 => OpKind::Get,
                    1 => OpKind::Put { value },
                    _ => OpKind::Cas {
                        expected: None, // chosen at the linearization point below
                        value,
                    },
                };
                let unknown = !matches!(kind, OpKind::Get) && rng.random_ratio(1, one_unknown_in);
                pending.push(Pending {
                    client,
                    call,
                    point,
                    ret,
                    kind,
                    unknown,
                });
                t = ret + 1 + rng.random_range(0..5);
            }
        }
        pending.sort_by_key(|p| p.point);
        let mut state: Option<Written> = None;
        // Values certainly overwritten, with the return time of the known write that did it.
        let mut stale: Vec<(String, u64)> = Vec::new();
        let mut ops = Vec::new();
        let mut corruptible = None;
        for (id, p) in pending.into_iter().enumerate() {
            let current = state.as_ref().map(|w| w.value.clone());
            let replace =
                |state: &mut Option<Written>, stale: &mut Vec<(String, u64)>, value: String| {
                    let old = state.replace(Written {
                        value,
                        ret: (!p.unknown).then_some(p.ret),
                    });
                    if let Some(Written {
                        value: old,
                        ret: Some(old_ret),
                    }) = old
                    {
                        if !p.unknown && old_ret < p.call {
                            stale.push((old, p.ret));
                        }
                    }
                };
            let (kind, result) = match p.kind {
                OpKind::Get => {
                    let candidate = stale.iter().find(|(_, replaced)| *replaced < p.call);
                    if let (None, Some((v, _))) = (&corruptible, candidate) {
                        corruptible = Some((id, v.clone()));
                    }
                    let result = OpResult::Get {
                        value: current,
                        mod_revision: 0,
                        revision: 0,
                    };
                    (OpKind::Get, result)
                }
                OpKind::Put { value } => {
                    replace(&mut state, &mut stale, value.clone());
                    (OpKind::Put { value }, OpResult::Put { revision: 0 })
                }
                OpKind::Cas { value, .. } => {
                    // Half the time expect the current value, else a stale or absent one.
                    let expected = if rng.random_bool(0.5) {
                        current.clone()
                    } else {
                        stale.last().map(|(v, _)| v.clone())
                    };
                    let succeeded = expected == current;
                    if succeeded {
                        replace(&mut state, &mut stale, value.clone());
                    }
                    let result = OpResult::Cas {
                        succeeded,
                        current: if succeeded { None } else { current },
                        mod_revision: 0,
                        revision: 0,
                    };
                    (OpKind::Cas { expected, value }, result)
                }
            };
            let result = if p.unknown {
                OpResult::Unknown("simulated timeout".into())
            } else {
                result
            };
            let ret = (!p.unknown).then_some(p.ret);
            let mut recorded = op(id, "k", p.call, ret, kind, result);
            recorded.client = p.client;
            ops.push(recorded);
        }
        (ops, corruptible)
    }
}
