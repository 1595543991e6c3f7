//! The tree index: every key's [`KeyIndex`], ordered by key, answering "which revisions hold
//! the keys of this range as of revision R".
//!
//! The apply task records a batch's changes here as it makes them, before the batch commits.
//! They stay invisible to other readers because every question names a revision, and readers
//! ask at the published current revision, below every pending change (see `kv_store`).

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use super::key_index::{KeyAt, KeyIndex};
use super::revision::Revision;

/// The keys a request names, by etcd's rules for `key` and `range_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyRange<'a> {
    /// `range_end` empty: the key alone.
    Single(&'a [u8]),
    /// `range_end` is `"\0"`: every key ≥ `key`.
    From(&'a [u8]),
    /// Keys in `[key, range_end)`; empty when `range_end <= key`.
    Between(&'a [u8], &'a [u8]),
}

/// Lower and upper bound of a key range, for `BTreeMap::range`.
type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// Whether `key` is below the upper bound `hi`.
fn below_upper(key: &[u8], hi: Bound<&[u8]>) -> bool {
    match hi {
        Bound::Included(h) => key < h,
        Bound::Excluded(h) => key < h,
        Bound::Unbounded => true,
    }
}

impl<'a> KeyRange<'a> {
    /// Reads `key` and `range_end` as etcd does.
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> KeyRange<'a> {
        match range_end {
            [] => KeyRange::Single(key),
            [0] => KeyRange::From(key),
            end => KeyRange::Between(key, end),
        }
    }

    fn bounds(self) -> Option<KeyBounds<'a>> {
        match self {
            KeyRange::Single(k) => Some((Bound::Included(k), Bound::Included(k))),
            KeyRange::From(k) => Some((Bound::Included(k), Bound::Unbounded)),
            // BTreeMap::range panics on a reversed range: answer it as empty instead.
            KeyRange::Between(k, end) if end <= k => None,
            KeyRange::Between(k, end) => Some((Bound::Included(k), Bound::Excluded(end))),
        }
    }
}

/// Every key's history, by key.
#[derive(Debug, Default)]
pub(crate) struct TreeIndex {
    tree: BTreeMap<Vec<u8>, KeyIndex>,
}

impl TreeIndex {
    /// The key's history, if the index has one.
    pub fn get(&self, key: &[u8]) -> Option<&KeyIndex> {
        self.tree.get(key)
    }

    /// The key's history, created empty if missing.
    pub fn entry(&mut self, key: &[u8]) -> &mut KeyIndex {
        if !self.tree.contains_key(key) {
            self.tree.insert(key.to_vec(), KeyIndex::new());
        }
        self.tree.get_mut(key).expect("inserted above")
    }

    /// Inserts or replaces a key's history (restoring from the backend).
    pub fn insert(&mut self, key: Vec<u8>, ki: KeyIndex) {
        self.tree.insert(key, ki);
    }

    /// Number of keys with any history (live or not).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// Keys in `range` with their history, in key order.
    pub fn iter_range<'s>(
        &'s self,
        range: KeyRange<'_>,
    ) -> impl Iterator<Item = (&'s Vec<u8>, &'s KeyIndex)> + 's {
        self.iter_range_after(range, None)
    }

    /// Keys in `range` after `after` (from the start when `None`) with their history, in key
    /// order: where a range read in pieces goes on.
    pub fn iter_range_after<'s>(
        &'s self,
        range: KeyRange<'_>,
        after: Option<&[u8]>,
    ) -> impl Iterator<Item = (&'s Vec<u8>, &'s KeyIndex)> + 's {
        let bounds = range.bounds().and_then(|(lo, hi)| match after {
            None => Some((lo, hi)),
            // Past the upper bound already: nothing left (and BTreeMap::range would panic).
            Some(a) if !below_upper(a, hi) => None,
            Some(a) if matches!(lo, Bound::Included(l) if l > a) => Some((lo, hi)),
            Some(a) => Some((Bound::Excluded(a), hi)),
        });
        let it = bounds.map(|b| self.tree.range::<[u8], _>(b));
        it.into_iter().flatten()
    }

    /// Keys in `range` that exist at `at`, with what a read at `at` sees of each, in key order.
    pub fn live_at<'s>(
        &'s self,
        range: KeyRange<'_>,
        at: i64,
    ) -> impl Iterator<Item = (&'s Vec<u8>, KeyAt)> + 's {
        self.iter_range(range)
            .filter_map(move |(k, ki)| ki.get(at).map(|a| (k, a)))
    }

    /// What `f` makes of the first `limit` keys (all when `limit` ≤ 0) of `range` that exist at
    /// `at`, in key order, and the number of all such keys.
    pub fn collect<T>(
        &self,
        range: KeyRange<'_>,
        at: i64,
        limit: i64,
        mut f: impl FnMut(&[u8], KeyAt) -> T,
    ) -> (Vec<T>, i64) {
        let limit = usize::try_from(limit)
            .ok()
            .filter(|&l| l > 0)
            .unwrap_or(usize::MAX);
        let mut out = Vec::new();
        let mut total = 0i64;
        for (k, a) in self.live_at(range, at) {
            if out.len() < limit {
                out.push(f(k, a));
            }
            total += 1;
        }
        (out, total)
    }

    /// The revisions holding the first `limit` keys (all when `limit` ≤ 0) of `range` that
    /// exist at `at`, in key order, and the number of all such keys.
    pub fn revisions(&self, range: KeyRange<'_>, at: i64, limit: i64) -> (Vec<Revision>, i64) {
        self.collect(range, at, limit, |_, a| a.modified)
    }

    /// The number of keys of `range` that exist at `at`.
    pub fn count(&self, range: KeyRange<'_>, at: i64) -> i64 {
        self.live_at(range, at).count() as i64
    }

    /// Every revision of `range` with main in `[from, to]`, in revision order (one per main
    /// revision and key, see [`KeyIndex::since`]).
    #[allow(dead_code)] // for the watchable store's catch-up by key
    pub fn range_since(&self, range: KeyRange<'_>, from: i64, to: i64) -> Vec<Revision> {
        let mut revs: Vec<Revision> = self
            .iter_range(range)
            .flat_map(|(_, ki)| ki.since(from))
            .filter(|r| r.main <= to)
            .collect();
        revs.sort_unstable();
        revs
    }

    /// Compacts at `at` up to `max_keys` keys after `after` (from the first key when `None`),
    /// appending the revisions it forgets to `removed` and dropping keys left empty. Returns the
    /// last key visited, from which the next chunk goes on, or `None` when the index is done.
    pub fn compact_chunk(
        &mut self,
        at: i64,
        after: Option<&[u8]>,
        max_keys: usize,
        removed: &mut Vec<Revision>,
    ) -> Option<Vec<u8>> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut last = None;
        let mut emptied = Vec::new();
        for (k, ki) in self
            .tree
            .range_mut::<[u8], _>((lower, Bound::Unbounded))
            .take(max_keys)
        {
            ki.compact(at, removed);
            if ki.is_empty() {
                emptied.push(k.clone());
            }
            last = Some(k);
        }
        let last = last.cloned();
        for k in emptied {
            self.tree.remove(&k);
        }
        last
    }

    /// The revisions a compaction at `at` keeps, without compacting.
    pub fn keep(&self, at: i64) -> HashSet<Revision> {
        let mut keep = HashSet::new();
        for ki in self.tree.values() {
            ki.keep(at, &mut keep);
        }
        keep
    }

    /// Forgets every revision with main above `rev`, dropping keys left empty: undoes the
    /// changes of a batch that did not commit. Visits every key.
    pub fn roll_back_after(&mut self, rev: i64) {
        self.tree.retain(|_, ki| {
            ki.roll_back_after(rev);
            !ki.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// a@2, b@3, c@4, b deleted @5, d@6
    fn sample() -> TreeIndex {
        let mut t = TreeIndex::default();
        t.entry(b"a").put(r(2), 0);
        t.entry(b"b").put(r(3), 0);
        t.entry(b"c").put(r(4), 0);
        assert!(t.entry(b"b").tombstone(r(5)));
        t.entry(b"d").put(r(6), 0);
        t
    }

    #[test]
    fn key_range_follows_etcd_rules() {
        assert_eq!(KeyRange::new(b"a", b""), KeyRange::Single(b"a"));
        assert_eq!(KeyRange::new(b"a", b"\0"), KeyRange::From(b"a"));
        assert_eq!(KeyRange::new(b"a", b"c"), KeyRange::Between(b"a", b"c"));
    }

    #[test]
    fn revisions_at_a_revision_with_limit_and_count() {
        let t = sample();
        let all = KeyRange::From(b"");
        assert_eq!(t.revisions(all, 4, 0), (vec![r(2), r(3), r(4)], 3));
        assert_eq!(t.revisions(all, 6, 0), (vec![r(2), r(4), r(6)], 3));
        assert_eq!(t.revisions(all, 6, 2), (vec![r(2), r(4)], 3));
        assert_eq!(t.revisions(KeyRange::Single(b"b"), 4, 0), (vec![r(3)], 1));
        assert_eq!(t.revisions(KeyRange::Single(b"b"), 5, 0), (vec![], 0));
        assert_eq!(
            t.revisions(KeyRange::Between(b"b", b"d"), 6, 0),
            (vec![r(4)], 1)
        );
        assert_eq!(t.count(all, 3), 2);
        assert_eq!(t.count(all, 1), 0);
    }

    #[test]
    fn reversed_or_empty_ranges_are_empty_not_panics() {
        let t = sample();
        assert_eq!(t.count(KeyRange::Between(b"d", b"a"), 6), 0);
        assert_eq!(t.count(KeyRange::Between(b"b", b"b"), 6), 0);
        assert_eq!(t.count(KeyRange::Single(b"zz"), 6), 0);
    }

    #[test]
    fn range_since_is_in_revision_order_and_bounded() {
        let t = sample();
        assert_eq!(
            t.range_since(KeyRange::From(b""), 3, 5),
            vec![r(3), r(4), r(5)]
        );
        assert_eq!(
            t.range_since(KeyRange::Single(b"b"), 0, 100),
            vec![r(3), r(5)]
        );
    }

    #[test]
    fn chunked_compaction_equals_whole_and_drops_dead_keys() {
        let mut whole = sample();
        let mut removed_whole = Vec::new();
        assert_eq!(
            whole.compact_chunk(5, None, usize::MAX, &mut removed_whole),
            Some(b"d".to_vec())
        );
        let mut chunked = sample();
        let predicted = chunked.keep(5);
        let mut removed = Vec::new();
        let mut cursor = None;
        while let Some(last) = chunked.compact_chunk(5, cursor.as_deref(), 1, &mut removed) {
            cursor = Some(last);
        }
        assert_eq!(removed, removed_whole);
        assert_eq!(predicted, HashSet::from([r(2), r(4)]));
        removed.sort();
        assert_eq!(removed, [r(3), r(5)]);
        assert!(
            chunked.get(b"b").is_none(),
            "b died at 5 and must leave the index"
        );
        assert_eq!(chunked.len(), 3);
        assert_eq!(whole.len(), 3);
    }

    #[test]
    fn roll_back_forgets_pending_changes() {
        let mut t = sample();
        t.entry(b"a").put(r(7), 0);
        assert!(t.entry(b"c").tombstone(r(7)));
        t.entry(b"new").put(r(8), 0);
        assert!(!t.entry(b"b").tombstone(r(8)));
        t.entry(b"b").put(r(8), 0);
        t.roll_back_after(6);
        let fresh = sample();
        assert_eq!(t.len(), fresh.len());
        for k in [&b"a"[..], b"b", b"c", b"d"] {
            assert_eq!(t.get(k), fresh.get(k), "{}", String::from_utf8_lossy(k));
        }
    }
}
