//! The terms of a contiguous run of raft log entries, stored once per term.
//!
//! A log's terms never decrease and change only at an election, so tens of thousands of
//! entries usually share one or two terms: the log keeps where each term starts rather than
//! eight bytes per entry.

use std::collections::VecDeque;

/// Terms of the entries `first..` of a log, as `(first index, term)` runs in index order.
#[derive(Default)]
pub struct TermRuns {
    runs: VecDeque<(u64, u64)>,
}

impl TermRuns {
    /// The term of entry `index`, which must be in the log.
    pub fn get(&self, index: u64) -> u64 {
        let after = self.runs.partition_point(|&(start, _)| start <= index);
        assert!(after > 0, "no term for raft log index {index}");
        self.runs[after - 1].1
    }

    /// Records that the entry after the last one, `index`, has `term`.
    pub fn push(&mut self, index: u64, term: u64) {
        if self.runs.back().is_none_or(|&(_, last)| last != term) {
            self.runs.push_back((index, term));
        }
    }

    /// Forgets the terms of entries from `index` on.
    pub fn truncate(&mut self, index: u64) {
        while self.runs.back().is_some_and(|&(start, _)| start >= index) {
            self.runs.pop_back();
        }
    }

    /// Forgets the terms of entries before `index`.
    pub fn compact(&mut self, index: u64) {
        while self.runs.get(1).is_some_and(|&(start, _)| start <= index) {
            self.runs.pop_front();
        }
    }

    pub fn clear(&mut self) {
        self.runs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against one term per entry, through appends, overwrites and compactions.
    #[test]
    fn gives_each_entry_its_term() {
        let mut runs = TermRuns::default();
        let mut plain: Vec<(u64, u64)> = Vec::new();
        let check = |runs: &TermRuns, plain: &[(u64, u64)]| {
            for &(index, term) in plain {
                assert_eq!(runs.get(index), term, "term of {index}");
            }
        };
        let append = |runs: &mut TermRuns, plain: &mut Vec<(u64, u64)>, from, to, term| {
            runs.truncate(from);
            plain.retain(|&(i, _)| i < from);
            for index in from..=to {
                runs.push(index, term);
                plain.push((index, term));
            }
        };
        append(&mut runs, &mut plain, 5, 20, 1);
        append(&mut runs, &mut plain, 21, 30, 2);
        check(&runs, &plain);
        assert_eq!(runs.runs.len(), 2);
        // A new leader overwrites the tail, from inside a run and from a run's first entry.
        append(&mut runs, &mut plain, 25, 40, 4);
        append(&mut runs, &mut plain, 25, 28, 5);
        check(&runs, &plain);
        append(&mut runs, &mut plain, 21, 22, 6);
        check(&runs, &plain);
        assert_eq!(runs.runs.len(), 2);
        for first in [4, 5, 12, 21, 22] {
            runs.compact(first);
            plain.retain(|&(i, _)| i >= first);
            check(&runs, &plain);
        }
        assert_eq!(runs.runs.len(), 1);
        runs.clear();
        plain.clear();
        append(&mut runs, &mut plain, 50, 51, 7);
        check(&runs, &plain);
    }
}
