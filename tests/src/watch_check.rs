//! Checks of the event log against the recorded operations, and of recorded watch streams
//! against the event log.
//!
//! After a fault run, every member is asked for the whole event history of the test's keys
//! (a watch from revision 1; nothing is compacted during a run). The members must agree, and
//! their common log is the "truth" that [`check_event_log`] holds the operations against:
//! every acknowledged write appears exactly at the revision it was acknowledged with, every
//! event is a write some client attempted, none twice, and every read saw the value the log
//! had at the read's mod revision. Then [`check_watch`] holds each watch stream that clients
//! kept open during the run against it: ordered, unique, no gaps, atomic per revision.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::history::{Op, OpResult};

/// One event: a put (`value` `Some`) or a delete of `key` at `revision`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub revision: i64,
    pub key: String,
    pub value: Option<String>,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "rev {} put {} = {v:?}", self.revision, self.key),
            None => write!(f, "rev {} delete {}", self.revision, self.key),
        }
    }
}

/// One connection of a watcher: where it was opened and what it received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchSegment {
    pub member: String,
    /// The first revision this segment asked for (or, without a start revision, the created
    /// response's header revision + 1).
    pub start_revision: i64,
    /// The events of each response, in the order received.
    pub responses: Vec<Vec<Event>>,
    /// Why it ended (error, cancel), empty while open or when stopped by the test.
    pub ended: String,
}

/// Everything one watcher received, over all its connections. On each reconnection it asks
/// for the revision after the last one it received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchRecord {
    pub watcher: usize,
    pub segments: Vec<WatchSegment>,
    /// Anomalies seen while recording (compaction notices, a created response missing).
    pub anomalies: Vec<String>,
}

impl WatchRecord {
    /// The revision of the last event received, 0 if none.
    pub fn last_revision(&self) -> i64 {
        self.segments
            .iter()
            .flat_map(|s| s.responses.iter().flatten())
            .map(|e| e.revision)
            .max()
            .unwrap_or(0)
    }

    /// The first revision asked for, if the watcher ever got a stream created.
    pub fn start_revision(&self) -> Option<i64> {
        self.segments.first().map(|s| s.start_revision)
    }

    /// One line per connection: where, from which revision, how much, why it ended.
    pub fn summary(&self) -> String {
        let mut out = format!("watcher {}:\n", self.watcher);
        for s in &self.segments {
            let events: usize = s.responses.iter().map(Vec::len).sum();
            let first = s.responses.iter().flatten().next().map(|e| e.revision);
            let last = s.responses.iter().flatten().last().map(|e| e.revision);
            out.push_str(&format!(
                "  on {} from rev {}: {} responses, {events} events (revs {first:?}..{last:?}), ended: {}\n",
                s.member,
                s.start_revision,
                s.responses.len(),
                if s.ended.is_empty() { "-" } else { &s.ended }
            ));
        }
        out
    }
}

/// Holds the event log (every member's, which must be equal) against the operations.
/// Returns one message per problem, at most `limit`.
pub fn check_event_log(log: &[Event], ops: &[Op], limit: usize) -> Vec<String> {
    let mut problems = Vec::new();
    let push = |problems: &mut Vec<String>, p: String| {
        if problems.len() < limit {
            problems.push(p);
        }
    };
    // Order: revisions never decrease, and one revision never touches a key twice.
    for pair in log.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.revision < a.revision || (b.revision == a.revision && a.key == b.key) {
            push(
                &mut problems,
                format!("event log out of order: {a} then {b}"),
            );
        }
    }
    // Each written (key, value) to the operations that tried to write it.
    let mut writers: HashMap<(&str, &str), Vec<&Op>> = HashMap::new();
    for op in ops {
        if let Some(value) = op.kind.written() {
            writers.entry((&op.key, value)).or_default().push(op);
        }
    }
    let mut at_revision: HashMap<(&str, i64), &Event> = HashMap::new();
    let mut seen_values: HashMap<(&str, &str), &Event> = HashMap::new();
    for event in log {
        at_revision.insert((&event.key, event.revision), event);
        let Some(value) = &event.value else {
            push(
                &mut problems,
                format!("{event}: no client deletes, yet the key was deleted"),
            );
            continue;
        };
        if let Some(first) = seen_values.insert((&event.key, value), event) {
            push(
                &mut problems,
                format!("one write applied twice: {first} and {event}"),
            );
        }
        match writers.get(&(event.key.as_str(), value.as_str())) {
            None => push(
                &mut problems,
                format!("{event}: no client ever wrote this value"),
            ),
            Some(attempts) => {
                let could = attempts.iter().any(|op| {
                    !matches!(
                        op.result,
                        OpResult::Cas {
                            succeeded: false,
                            ..
                        } | OpResult::Failed(_)
                    )
                });
                if !could {
                    push(
                        &mut problems,
                        format!(
                            "{event}: written by an operation that reported no effect:\n  {}",
                            attempts[0]
                        ),
                    );
                }
            }
        }
    }
    // Every acknowledged write is in the log, at its revision.
    for op in ops {
        let (Some(value), Some(revision)) = (op.kind.written(), op.write_revision()) else {
            continue;
        };
        match at_revision.get(&(op.key.as_str(), revision)) {
            Some(event) if event.value.as_deref() == Some(value) => {}
            Some(event) => push(
                &mut problems,
                format!("acknowledged write lost: the log has {event} instead of\n  {op}"),
            ),
            None => push(
                &mut problems,
                format!("acknowledged write lost: nothing at revision {revision} for\n  {op}"),
            ),
        }
    }
    // Every answer that read a value read it as the log has it.
    for op in ops {
        let (value, mod_revision, revision) = match &op.result {
            OpResult::Get {
                value,
                mod_revision,
                revision,
            } => (value, *mod_revision, *revision),
            OpResult::Cas {
                succeeded: false,
                current,
                mod_revision,
                revision,
            } => (current, *mod_revision, *revision),
            _ => continue,
        };
        match value {
            Some(value) => match at_revision.get(&(op.key.as_str(), mod_revision)) {
                Some(event) if event.value.as_deref() == Some(value) => {}
                other => push(
                    &mut problems,
                    format!(
                        "a read disagrees with the log at its mod revision {mod_revision} ({}):\n  {op}",
                        other.map_or("no event".to_owned(), |e| e.to_string())
                    ),
                ),
            },
            None => {
                if let Some(event) = log
                    .iter()
                    .find(|e| e.key == op.key && e.revision <= revision)
                {
                    push(
                        &mut problems,
                        format!(
                            "a read at revision {revision} found no key, but the log has {event}:\n  {op}"
                        ),
                    );
                }
            }
        }
    }
    problems
}

/// Holds one watcher's record against the event log. Returns one message per problem.
pub fn check_watch(record: &WatchRecord, log: &[Event], limit: usize) -> Vec<String> {
    let mut problems: Vec<String> = record.anomalies.clone();
    let Some(start) = record.start_revision() else {
        return problems;
    };
    let mut last: Option<&Event> = None;
    let mut received: Vec<&Event> = Vec::new();
    for (s, segment) in record.segments.iter().enumerate() {
        for (r, response) in segment.responses.iter().enumerate() {
            if response.is_empty() {
                continue;
            }
            for event in response {
                if event.revision < segment.start_revision {
                    problems.push(format!(
                        "segment {s} asked for revisions from {} but got {event}",
                        segment.start_revision
                    ));
                }
                if let Some(prev) = last {
                    if event.revision < prev.revision {
                        problems.push(format!("out of order: {prev} then {event}"));
                    } else if event.revision == prev.revision && event.key == prev.key {
                        problems.push(format!("duplicate: {event}"));
                    }
                }
                last = Some(event);
                received.push(event);
            }
            // Atomic: a revision's events all come in one response.
            let first = &response[0];
            let previous = segment.responses[..r]
                .iter()
                .rev()
                .find_map(|resp| resp.last());
            if previous.is_some_and(|p| p.revision == first.revision) {
                problems.push(format!(
                    "revision {} split across responses in segment {s}",
                    first.revision
                ));
            }
        }
    }
    // No gaps: from the first revision asked for to the last received, the watcher got
    // exactly the log's events.
    let end = record.last_revision();
    let expected: Vec<&Event> = log
        .iter()
        .filter(|e| e.revision >= start && e.revision <= end)
        .collect();
    if problems.is_empty() && received != expected {
        let got: BTreeMap<(i64, &str), &Event> = received
            .iter()
            .map(|e| ((e.revision, e.key.as_str()), *e))
            .collect();
        let want: BTreeMap<(i64, &str), &Event> = expected
            .iter()
            .map(|e| ((e.revision, e.key.as_str()), *e))
            .collect();
        for (k, e) in &want {
            match got.get(k) {
                None => problems.push(format!("missed (a gap): {e}")),
                Some(g) if g != e => problems.push(format!("got {g}, the log has {e}")),
                _ => {}
            }
        }
        for (k, g) in &got {
            if !want.contains_key(k) {
                problems.push(format!("an event the log does not have: {g}"));
            }
        }
    }
    if !problems.is_empty() {
        problems.truncate(limit);
        problems.push(record.summary());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::op;
    use crate::history::OpKind;

    fn ev(revision: i64, key: &str, value: &str) -> Event {
        Event {
            revision,
            key: key.into(),
            value: Some(value.into()),
        }
    }

    fn put(id: usize, key: &str, value: &str, result: OpResult) -> Op {
        op(
            id,
            key,
            id as u64 * 10,
            (!result.is_unknown()).then_some(id as u64 * 10 + 5),
            OpKind::Put {
                value: value.into(),
            },
            result,
        )
    }

    fn log() -> Vec<Event> {
        vec![ev(2, "a", "a1"), ev(3, "b", "b1"), ev(4, "a", "a2")]
    }

    fn ops() -> Vec<Op> {
        vec![
            put(0, "a", "a1", OpResult::Put { revision: 2 }),
            put(1, "b", "b1", OpResult::Unknown("timeout".into())),
            put(2, "a", "a2", OpResult::Put { revision: 4 }),
            put(3, "b", "never", OpResult::Unknown("timeout".into())),
            op(
                4,
                "a",
                50,
                Some(55),
                OpKind::Get,
                OpResult::Get {
                    value: Some("a2".into()),
                    mod_revision: 4,
                    revision: 4,
                },
            ),
            op(
                5,
                "b",
                1,
                Some(2),
                OpKind::Get,
                OpResult::Get {
                    value: None,
                    mod_revision: 0,
                    revision: 2,
                },
            ),
        ]
    }

    #[test]
    fn a_consistent_log_passes() {
        assert_eq!(check_event_log(&log(), &ops(), 10), Vec::<String>::new());
    }

    #[test]
    fn a_lost_acknowledged_write_is_reported() {
        let mut log = log();
        log.pop();
        let problems = check_event_log(&log, &ops(), 10);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("acknowledged write lost")),
            "{problems:?}"
        );
    }

    #[test]
    fn invented_duplicated_and_misplaced_events_are_reported() {
        let mut log = log();
        log.push(ev(5, "a", "invented"));
        log.push(ev(6, "b", "b1"));
        let problems = check_event_log(&log, &ops(), 10);
        assert!(problems.iter().any(|p| p.contains("no client ever wrote")));
        assert!(problems.iter().any(|p| p.contains("applied twice")));

        let mut ops = ops();
        ops[2].result = OpResult::Put { revision: 3 };
        let problems = check_event_log(&self::log(), &ops, 10);
        assert!(problems.iter().any(|p| p.contains("lost")), "{problems:?}");
    }

    #[test]
    fn a_read_that_disagrees_with_the_log_is_reported() {
        let mut ops = ops();
        if let OpResult::Get { mod_revision, .. } = &mut ops[4].result {
            *mod_revision = 2;
        }
        let problems = check_event_log(&log(), &ops, 10);
        assert_eq!(problems.len(), 1, "{problems:?}");
        // A read that found no key at a revision where the key existed.
        let mut ops = self::ops();
        if let OpResult::Get { revision, .. } = &mut ops[5].result {
            *revision = 3;
        }
        let problems = check_event_log(&log(), &ops, 10);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    fn record(start: i64, responses: Vec<Vec<Event>>) -> WatchRecord {
        WatchRecord {
            watcher: 0,
            segments: vec![WatchSegment {
                member: "m0".into(),
                start_revision: start,
                responses,
                ended: String::new(),
            }],
            anomalies: Vec::new(),
        }
    }

    #[test]
    fn a_complete_watch_passes_and_may_start_late_or_stop_early() {
        let log = log();
        let full = record(
            1,
            vec![vec![log[0].clone()], vec![log[1].clone(), log[2].clone()]],
        );
        assert_eq!(check_watch(&full, &log, 10), Vec::<String>::new());
        let late = record(3, vec![vec![log[1].clone()]]);
        assert_eq!(check_watch(&late, &log, 10), Vec::<String>::new());
        let mut resumed = record(1, vec![vec![log[0].clone()]]);
        resumed.segments.push(WatchSegment {
            member: "m1".into(),
            start_revision: 3,
            responses: vec![vec![log[1].clone()], vec![log[2].clone()]],
            ended: String::new(),
        });
        assert_eq!(check_watch(&resumed, &log, 10), Vec::<String>::new());
    }

    #[test]
    fn gaps_duplicates_and_disorder_are_reported() {
        let log = log();
        let gap = record(1, vec![vec![log[0].clone()], vec![log[2].clone()]]);
        let problems = check_watch(&gap, &log, 10);
        assert!(problems[0].contains("gap"), "{problems:?}");

        let dup = record(1, vec![vec![log[0].clone()], vec![log[0].clone()]]);
        let problems = check_watch(&dup, &log, 10);
        assert!(problems[0].contains("duplicate"), "{problems:?}");

        let disorder = record(1, vec![vec![log[1].clone()], vec![log[0].clone()]]);
        let problems = check_watch(&disorder, &log, 10);
        assert!(problems[0].contains("out of order"), "{problems:?}");

        let mut wrong = log[1].clone();
        wrong.value = Some("other".into());
        let changed = record(3, vec![vec![wrong]]);
        let problems = check_watch(&changed, &log, 10);
        assert!(problems[0].contains("the log has"), "{problems:?}");

        let early = record(3, vec![vec![log[0].clone()]]);
        let problems = check_watch(&early, &log, 10);
        assert!(
            problems[0].contains("asked for revisions from 3"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_revision_split_across_responses_is_reported() {
        let log = vec![ev(2, "a", "1"), ev(2, "b", "1")];
        let split = record(1, vec![vec![log[0].clone()], vec![log[1].clone()]]);
        let problems = check_watch(&split, &log, 10);
        assert!(problems[0].contains("split"), "{problems:?}");
    }
}
