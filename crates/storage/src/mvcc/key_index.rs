//! The history of one key: which revisions hold its versions, grouped by life.
//!
//! A key lives, dies (is deleted) and may live again. Each life is a *generation*: the
//! revisions of its puts, closed by the revision of the tombstone that ended it. A tombstone
//! therefore always opens a new, empty generation, and the last generation is the one a put
//! extends. A key index always has at least one generation.
//!
//! # A worked example
//!
//! Key `k` gets: put at 2, put at 4, delete at 6, put at 8, put at 9, delete at 11 (sub
//! revisions 0, written `2` for `2.0`). Its index, newest generation first:
//!
//! ```text
//! modified: 11
//! generations:
//!   [ ]                      <- open, empty: the key does not exist now
//!   [8, 9, 11(t)]            created 8, ver 3 (two puts and the tombstone)
//!   [2, 4, 6(t)]             created 2, ver 3
//! ```
//!
//! Reading `k` at revision 5 finds the oldest generation (6(t) > 5) and in it the newest
//! revision ≤ 5, which is 4: version 2, created at 2. At revision 7 the first generation is
//! dead (its tombstone 6 ≤ 7) and the next has not begun (8 > 7): `k` does not exist.
//!
//! Compacting at revision `r` forgets what no read at `r` or later can see: every generation
//! whose tombstone is ≤ `r`, and inside the generation alive at `r`, every revision below the
//! newest one ≤ `r`. That newest one is *kept* (the backend must keep its value).
//!
//! ```text
//! compact(4):  [ ], [8, 9, 11(t)], [4, 6(t)]      keeps 4
//! compact(7):  [ ], [8, 9, 11(t)]                 keeps nothing: k did not exist at 7
//! compact(9):  [ ], [9, 11(t)]                    keeps 9
//! compact(11): [ ]                                keeps nothing; the key index is empty
//!                                                 and leaves the tree index
//! ```
//!
//! A tombstone is never kept: a read at or after it sees no key, which needs no value.
//!
//! # Leases
//!
//! A key index also knows the lease of each put, so that keys-only reads need no value from
//! the backend. Most keys never have a lease and the rest rarely change it, so it keeps only the
//! puts whose lease differs from the previous put's (`lease_changes`): the lease of a put at
//! `r` is that of the newest change at or before `r`, or none.

use std::collections::HashSet;

use super::revision::Revision;

/// The history of one key. The key itself is the tree index's map key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyIndex {
    /// The newest revision of the key, put or tombstone.
    modified: Revision,
    /// Oldest first; never empty; only the last may be empty.
    generations: Vec<Generation>,
    /// The puts that changed the key's lease (from the previous put's, or from none), oldest
    /// first: the put's revision and its lease. Empty for a key that never had a lease.
    lease_changes: Box<[(Revision, i64)]>,
}

/// One life of a key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Generation {
    /// Number of changes in this life (puts and the closing tombstone), including any that a
    /// compaction removed from `revs`: the version of the newest revision in `revs`.
    ver: i64,
    /// The revision of the put that began this life.
    created: Revision,
    /// Oldest first; a closed generation ends with its tombstone.
    revs: Vec<Revision>,
}

/// What a read at some revision sees of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyAt {
    /// The revision holding the value.
    pub modified: Revision,
    /// The put that began the key's current life.
    pub created: Revision,
    /// The key's version: 1 for the creating put, then one more per put.
    pub version: i64,
    /// The lease the put at `modified` attached (0 for none).
    pub lease: i64,
}

impl KeyIndex {
    /// A key with no history.
    pub fn new() -> KeyIndex {
        KeyIndex {
            modified: Revision::default(),
            generations: vec![Generation::default()],
            lease_changes: Box::default(),
        }
    }

    /// A key index rebuilt from the first revision the backend still holds for a key, whose
    /// earlier history compaction removed. `created`, `version` and `lease` come from the
    /// stored value.
    pub fn restored(created: Revision, modified: Revision, version: i64, lease: i64) -> KeyIndex {
        let lease_changes = if lease == 0 {
            Box::default()
        } else {
            Box::new([(modified, lease)]) as Box<[_]>
        };
        KeyIndex {
            modified,
            generations: vec![Generation {
                ver: version,
                created,
                revs: vec![modified],
            }],
            lease_changes,
        }
    }

    /// Records a put at `rev` with `lease` (0 for none); `rev` must be newer than every
    /// revision recorded so far.
    pub fn put(&mut self, rev: Revision, lease: i64) {
        let last_put = self.lease_changes.last().map_or(0, |&(_, l)| l);
        self.record(rev);
        if lease != last_put {
            let mut changes = std::mem::take(&mut self.lease_changes).into_vec();
            changes.push((rev, lease));
            self.lease_changes = changes.into_boxed_slice();
        }
    }

    /// Appends `rev`, a put or a tombstone, to the current generation.
    fn record(&mut self, rev: Revision) {
        assert!(
            rev > self.modified,
            "key index: put at {rev} is not after the last change {}",
            self.modified
        );
        let g = self
            .generations
            .last_mut()
            .expect("a key index has a generation");
        if g.revs.is_empty() {
            g.created = rev;
        }
        g.revs.push(rev);
        g.ver += 1;
        self.modified = rev;
    }

    /// Records a deletion at `rev` and opens a new generation. Returns false, changing nothing,
    /// when the key does not exist (its current generation is empty).
    pub fn tombstone(&mut self, rev: Revision) -> bool {
        if self.current_is_empty() {
            return false;
        }
        self.record(rev);
        self.generations.push(Generation::default());
        true
    }

    /// The key as a read at main revision `at` sees it; `None` if it did not exist then.
    pub fn get(&self, at: i64) -> Option<KeyAt> {
        let g = self.generation_at(at)?;
        let n = g.revs.iter().rposition(|r| r.main <= at)?;
        Some(KeyAt {
            modified: g.revs[n],
            created: g.created,
            version: g.ver - (g.revs.len() - 1 - n) as i64,
            lease: self.lease_at(g.revs[n]),
        })
    }

    /// The lease of the put at `rev` (see the module doc).
    fn lease_at(&self, rev: Revision) -> i64 {
        let n = self.lease_changes.partition_point(|&(r, _)| r <= rev);
        n.checked_sub(1).map_or(0, |i| self.lease_changes[i].1)
    }

    /// Keeps of `lease_changes` only what reads at or after the oldest revision left need:
    /// the newest change at or before it, and every later one.
    fn trim_lease_changes(&mut self) {
        let Some(oldest) = self
            .generations
            .iter()
            .find_map(|g| g.revs.first().copied())
        else {
            self.lease_changes = Box::default();
            return;
        };
        let n = self.lease_changes.partition_point(|&(r, _)| r <= oldest);
        let mut from = n.saturating_sub(1);
        if n > 0 && self.lease_changes[from].1 == 0 {
            from = n; // a change to no lease before everything left says nothing
        }
        if from > 0 {
            self.lease_changes = self.lease_changes[from..].into();
        }
    }

    /// The newest revision recorded, put or tombstone.
    pub fn modified(&self) -> Revision {
        self.modified
    }

    /// Revisions with main ≥ `rev`, oldest first; of several changes in one main revision only
    /// the last is returned, as the others are invisible outside their transaction.
    pub fn since(&self, rev: i64) -> Vec<Revision> {
        let mut out: Vec<Revision> = Vec::new();
        for g in &self.generations {
            if g.revs.last().is_none_or(|last| last.main < rev) {
                continue;
            }
            for &r in g.revs.iter().filter(|r| r.main >= rev) {
                match out.last_mut() {
                    Some(last) if last.main == r.main => *last = r,
                    _ => out.push(r),
                }
            }
        }
        out
    }

    /// Forgets the history no read at `at` or later can see (see the module doc) and appends
    /// the revisions it forgets, which the backend need not keep, to `removed`.
    pub fn compact(&mut self, at: i64, removed: &mut Vec<Revision>) {
        let live = self.live_generation(at);
        for g in self.generations.drain(..live) {
            removed.extend(g.revs);
        }
        let last = self.generations.len() - 1;
        let g = &mut self.generations[0];
        if let Some(n) = g.revs.iter().rposition(|r| r.main <= at) {
            removed.extend(g.revs.drain(..n));
            if g.revs.len() == 1 && last != 0 {
                // Only a tombstone is left of a closed life: nothing to read, nothing to keep.
                removed.extend(self.generations.remove(0).revs);
            }
        }
        self.trim_lease_changes();
    }

    /// Adds to `keep` the revision [`KeyIndex::compact`] at `at` would keep, changing nothing.
    pub fn keep(&self, at: i64, keep: &mut HashSet<Revision>) {
        let live = self.live_generation(at);
        let g = &self.generations[live];
        if let Some(n) = g.revs.iter().rposition(|r| r.main <= at) {
            let closing_tombstone = n == g.revs.len() - 1 && live != self.generations.len() - 1;
            if !closing_tombstone {
                keep.insert(g.revs[n]);
            }
        }
    }

    /// Forgets every revision with main above `rev`, as if they were never recorded: undoes the
    /// changes of a batch that did not commit.
    pub fn roll_back_after(&mut self, rev: i64) {
        loop {
            let n = self.generations.len();
            let reopens = n > 1
                && self.generations[n - 2]
                    .revs
                    .last()
                    .is_some_and(|t| t.main > rev);
            let g = &mut self.generations[n - 1];
            match g.revs.last() {
                Some(r) if r.main > rev => {
                    g.revs.pop();
                    g.ver -= 1;
                    if g.revs.is_empty() {
                        *g = Generation::default();
                    }
                }
                Some(_) => break,
                // An open, empty generation: drop it if the tombstone that opened it is undone.
                None if reopens => {
                    self.generations.pop();
                }
                None => break,
            }
        }
        self.modified = self
            .generations
            .iter()
            .rev()
            .find_map(|g| g.revs.last().copied())
            .unwrap_or_default();
        let kept = self.lease_changes.partition_point(|&(r, _)| r.main <= rev);
        if kept < self.lease_changes.len() {
            self.lease_changes = self.lease_changes[..kept].into();
        }
    }

    /// True when nothing is left: a single empty generation. Such a key leaves the tree index.
    pub fn is_empty(&self) -> bool {
        self.generations.len() == 1 && self.generations[0].revs.is_empty()
    }

    fn current_is_empty(&self) -> bool {
        self.generations.last().is_none_or(|g| g.revs.is_empty())
    }

    /// Index of the first generation still alive at `at`: the open one, or the first whose
    /// tombstone is after `at`.
    fn live_generation(&self, at: i64) -> usize {
        let last = self.generations.len() - 1;
        self.generations[..last]
            .iter()
            .position(|g| g.revs.last().is_some_and(|t| t.main > at))
            .unwrap_or(last)
    }

    /// The generation a read at `at` falls in, `None` when `at` is between lives.
    fn generation_at(&self, at: i64) -> Option<&Generation> {
        let last = self.generations.len() - 1;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(newest)) = (g.revs.first(), g.revs.last()) else {
                continue;
            };
            if i != last && newest.main <= at {
                return None; // its tombstone is at or before `at`
            }
            if first.main <= at {
                return Some(g);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// The module doc's example: put 2, put 4, del 6, put 8, put 9, del 11.
    fn example() -> KeyIndex {
        let mut ki = KeyIndex::new();
        ki.put(r(2), 0);
        ki.put(r(4), 0);
        assert!(ki.tombstone(r(6)));
        ki.put(r(8), 0);
        ki.put(r(9), 0);
        assert!(ki.tombstone(r(11)));
        ki
    }

    fn gens(ki: &KeyIndex) -> Vec<Vec<i64>> {
        ki.generations
            .iter()
            .map(|g| g.revs.iter().map(|r| r.main).collect())
            .collect()
    }

    fn at(ki: &KeyIndex, rev: i64) -> Option<(i64, i64, i64)> {
        ki.get(rev)
            .map(|k| (k.modified.main, k.created.main, k.version))
    }

    #[test]
    fn generations_follow_puts_and_tombstones() {
        let ki = example();
        assert_eq!(gens(&ki), vec![vec![2, 4, 6], vec![8, 9, 11], vec![]]);
        assert_eq!(ki.modified, r(11));
        assert!(ki.current_is_empty());
    }

    #[test]
    fn get_sees_the_key_as_of_a_revision() {
        let ki = example();
        assert_eq!(at(&ki, 1), None);
        assert_eq!(at(&ki, 2), Some((2, 2, 1)));
        assert_eq!(at(&ki, 3), Some((2, 2, 1)));
        assert_eq!(at(&ki, 5), Some((4, 2, 2)));
        assert_eq!(at(&ki, 6), None);
        assert_eq!(at(&ki, 7), None);
        assert_eq!(at(&ki, 8), Some((8, 8, 1)));
        assert_eq!(at(&ki, 10), Some((9, 8, 2)));
        assert_eq!(at(&ki, 11), None);
        assert_eq!(at(&ki, 100), None);
    }

    #[test]
    fn tombstone_on_a_missing_key_is_refused() {
        let mut ki = KeyIndex::new();
        assert!(!ki.tombstone(r(1)));
        ki.put(r(2), 0);
        assert!(ki.tombstone(r(3)));
        assert!(!ki.tombstone(r(4)));
        assert_eq!(gens(&ki), vec![vec![2, 3], vec![]]);
    }

    #[test]
    #[should_panic(expected = "not after the last change")]
    fn put_going_back_in_time_is_a_broken_invariant() {
        let mut ki = KeyIndex::new();
        ki.put(r(5), 0);
        ki.put(r(5), 0);
    }

    #[test]
    fn since_returns_last_sub_of_each_main() {
        let mut ki = KeyIndex::new();
        ki.put(Revision::new(2, 0), 0);
        ki.put(Revision::new(2, 1), 0);
        assert!(ki.tombstone(Revision::new(3, 0)));
        ki.put(Revision::new(4, 0), 0);
        assert_eq!(ki.since(0), vec![Revision::new(2, 1), r(3), r(4)]);
        assert_eq!(ki.since(3), vec![r(3), r(4)]);
        assert_eq!(ki.since(5), vec![]);
    }

    /// Compacting the example at every revision: what is left and what is kept, each checked
    /// against what `keep` predicts and against reads at and after the compaction revision.
    #[test]
    fn compaction_keeps_what_later_reads_need() {
        // (compaction revision, generations left, revisions kept)
        type Case = (i64, Vec<Vec<i64>>, Vec<i64>);
        let cases: &[Case] = &[
            (1, vec![vec![2, 4, 6], vec![8, 9, 11], vec![]], vec![]),
            (2, vec![vec![2, 4, 6], vec![8, 9, 11], vec![]], vec![2]),
            (3, vec![vec![2, 4, 6], vec![8, 9, 11], vec![]], vec![2]),
            (4, vec![vec![4, 6], vec![8, 9, 11], vec![]], vec![4]),
            (5, vec![vec![4, 6], vec![8, 9, 11], vec![]], vec![4]),
            (6, vec![vec![8, 9, 11], vec![]], vec![]),
            (7, vec![vec![8, 9, 11], vec![]], vec![]),
            (8, vec![vec![8, 9, 11], vec![]], vec![8]),
            (9, vec![vec![9, 11], vec![]], vec![9]),
            (10, vec![vec![9, 11], vec![]], vec![9]),
            (11, vec![vec![]], vec![]),
            (12, vec![vec![]], vec![]),
        ];
        let full = example();
        let stored: Vec<Revision> = full
            .generations
            .iter()
            .flat_map(|g| g.revs.clone())
            .collect();
        for (rev, want_gens, want_keep) in cases {
            let mut predicted = HashSet::new();
            full.keep(*rev, &mut predicted);
            let mut ki = full.clone();
            let mut removed = Vec::new();
            ki.compact(*rev, &mut removed);
            assert_eq!(&gens(&ki), want_gens, "compact({rev})");
            let want: HashSet<Revision> = want_keep.iter().map(|&m| r(m)).collect();
            let want_removed: Vec<Revision> = stored
                .iter()
                .filter(|r| r.main <= *rev && !want.contains(r))
                .copied()
                .collect();
            removed.sort();
            assert_eq!(removed, want_removed, "removed by compact({rev})");
            assert_eq!(predicted, want, "keep({rev})");
            assert_eq!(ki.is_empty(), *rev >= 11);
            if !ki.is_empty() {
                for read in *rev..14 {
                    assert_eq!(
                        ki.get(read),
                        full.get(read),
                        "read at {read} after compact({rev})"
                    );
                }
            }
        }
    }

    #[test]
    fn compaction_is_idempotent_and_stepwise_equals_direct() {
        let mut stepwise = example();
        let mut removed_stepwise = Vec::new();
        for rev in 1..=10 {
            stepwise.compact(rev, &mut removed_stepwise);
        }
        let mut direct = example();
        let mut removed = Vec::new();
        direct.compact(10, &mut removed);
        assert_eq!(stepwise, direct);
        removed.sort();
        removed_stepwise.sort();
        assert_eq!(removed_stepwise, removed, "each revision is removed once");
        let before = direct.clone();
        let mut again = Vec::new();
        direct.compact(10, &mut again);
        assert_eq!(direct, before);
        assert!(again.is_empty(), "a second compaction removes nothing");
    }

    #[test]
    fn compaction_of_a_live_key_keeps_its_latest_value() {
        let mut ki = KeyIndex::new();
        for m in 1..=5 {
            ki.put(r(m), 0);
        }
        let mut removed = Vec::new();
        ki.compact(100, &mut removed);
        assert_eq!(removed, [r(1), r(2), r(3), r(4)]);
        assert_eq!(at(&ki, 100), Some((5, 1, 5)));
        ki.put(r(101), 0);
        assert_eq!(at(&ki, 101), Some((101, 1, 6)));
    }

    #[test]
    fn roll_back_undoes_puts_and_tombstones() {
        let full = example();
        for rev in 0..12 {
            let mut ki = full.clone();
            ki.roll_back_after(rev);
            let mut rebuilt = KeyIndex::new();
            for (m, tomb) in [
                (2, false),
                (4, false),
                (6, true),
                (8, false),
                (9, false),
                (11, true),
            ] {
                if m <= rev {
                    if tomb {
                        rebuilt.tombstone(r(m));
                    } else {
                        rebuilt.put(r(m), 0);
                    }
                }
            }
            assert_eq!(ki, rebuilt, "roll back after {rev}");
        }
    }

    #[test]
    fn restored_index_continues_versions() {
        let mut ki = KeyIndex::restored(r(3), r(7), 4, 0);
        ki.put(r(9), 0);
        assert_eq!(at(&ki, 8), Some((7, 3, 4)));
        assert_eq!(at(&ki, 9), Some((9, 3, 5)));
        assert_eq!(at(&ki, 6), None);
    }

    fn lease(ki: &KeyIndex, rev: i64) -> Option<i64> {
        ki.get(rev).map(|k| k.lease)
    }

    /// Puts with lease 5 at 2, 5 at 3, none at 4, 7 at 5; delete at 6; put with 7 at 8 and
    /// none at 9.
    fn leased() -> KeyIndex {
        let mut ki = KeyIndex::new();
        for (m, l) in [(2, 5), (3, 5), (4, 0), (5, 7)] {
            ki.put(r(m), l);
        }
        assert!(ki.tombstone(r(6)));
        ki.put(r(8), 7);
        ki.put(r(9), 0);
        ki
    }

    #[test]
    fn lease_of_each_put_is_known_and_only_changes_are_kept() {
        let ki = leased();
        let want = [
            (1, None),
            (2, Some(5)),
            (3, Some(5)),
            (4, Some(0)),
            (5, Some(7)),
            (6, None),
            (7, None),
            (8, Some(7)),
            (9, Some(0)),
            (10, Some(0)),
        ];
        for (rev, l) in want {
            assert_eq!(lease(&ki, rev), l, "at {rev}");
        }
        let changes: Vec<(i64, i64)> = ki.lease_changes.iter().map(|&(r, l)| (r.main, l)).collect();
        assert_eq!(changes, [(2, 5), (4, 0), (5, 7), (9, 0)]);
    }

    #[test]
    fn compaction_and_roll_back_keep_leases_right() {
        let full = leased();
        for rev in 1..=10 {
            let mut ki = full.clone();
            ki.compact(rev, &mut Vec::new());
            for read in rev..12 {
                assert_eq!(
                    lease(&ki, read),
                    lease(&full, read),
                    "read at {read} after compact({rev})"
                );
            }
            assert!(ki.lease_changes.len() <= full.lease_changes.len());
        }
        let mut ki = full.clone();
        ki.compact(10, &mut Vec::new());
        assert!(ki.lease_changes.is_empty(), "the live put has no lease");

        let mut ki = full.clone();
        ki.roll_back_after(4);
        assert_eq!(lease(&ki, 10), Some(0));
        ki.put(r(5), 3);
        assert_eq!(lease(&ki, 5), Some(3));
        assert_eq!(lease(&ki, 3), Some(5));
    }

    #[test]
    fn restored_index_keeps_the_lease() {
        let mut ki = KeyIndex::restored(r(3), r(7), 4, 9);
        assert_eq!(lease(&ki, 7), Some(9));
        ki.put(r(8), 9);
        ki.put(r(10), 0);
        assert_eq!((lease(&ki, 8), lease(&ki, 10)), (Some(9), Some(0)));
    }
}
