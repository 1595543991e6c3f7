//! The index of synced watchers by what they watch, so that a write finds the watchers of its
//! key without looking at the others.
//!
//! Three shapes, three lookups: single-key watchers by hash; prefix watchers (`[p,
//! prefix_end(p))`, etcd's `--prefix`) by hashing each registered prefix length of the key;
//! any other range by a scan of the ranges that start at or before the key.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use super::span::KeySpan;

/// A watcher's id inside the store (not the client's watch id): unique for the store's life.
pub(crate) type WatcherId = u64;

/// A range watcher under its start key: the end (`None` for every key from the start) and
/// the watcher.
type RangeEnd = (Option<Box<[u8]>>, WatcherId);

/// Watchers indexed by their keys.
#[derive(Debug, Default)]
pub(crate) struct WatcherGroup {
    /// Watchers of exactly one key.
    keys: HashMap<Box<[u8]>, Vec<WatcherId>>,
    /// Watchers of a prefix, by the prefix.
    prefixes: HashMap<Box<[u8]>, Vec<WatcherId>>,
    /// How many prefixes of each length `prefixes` holds; a key is looked up once per length.
    prefix_lens: BTreeMap<usize, usize>,
    /// Other ranges, by start key.
    ranges: BTreeMap<Box<[u8]>, Vec<RangeEnd>>,
    /// Watchers in the group.
    len: usize,
}

impl WatcherGroup {
    /// Adds watcher `id` watching `span`.
    pub(crate) fn add(&mut self, id: WatcherId, span: &KeySpan) {
        self.len += 1;
        if let Some(p) = span.prefix() {
            let ids = self.prefixes.entry(p.into()).or_default();
            if ids.is_empty() {
                *self.prefix_lens.entry(p.len()).or_default() += 1;
            }
            ids.push(id);
            return;
        }
        match span {
            KeySpan::Key(k) => self.keys.entry(k.clone()).or_default().push(id),
            KeySpan::Range(s, e) => self
                .ranges
                .entry(s.clone())
                .or_default()
                .push((Some(e.clone()), id)),
            KeySpan::From(s) => self.ranges.entry(s.clone()).or_default().push((None, id)),
        }
    }

    /// Removes watcher `id`, added with `span`; false if it was not there.
    pub(crate) fn remove(&mut self, id: WatcherId, span: &KeySpan) -> bool {
        let removed = if let Some(p) = span.prefix() {
            let removed = remove_from(&mut self.prefixes, p, |&w| w == id);
            if removed && !self.prefixes.contains_key(p) {
                let n = self
                    .prefix_lens
                    .get_mut(&p.len())
                    .expect("a prefix length is counted");
                *n -= 1;
                if *n == 0 {
                    self.prefix_lens.remove(&p.len());
                }
            }
            removed
        } else {
            match span {
                KeySpan::Key(k) => remove_from(&mut self.keys, k, |&w| w == id),
                KeySpan::Range(s, _) | KeySpan::From(s) => {
                    let mut removed = false;
                    if let Some(list) = self.ranges.get_mut(s) {
                        if let Some(i) = list.iter().position(|(_, w)| *w == id) {
                            list.swap_remove(i);
                            removed = true;
                        }
                        if list.is_empty() {
                            self.ranges.remove(s);
                        }
                    }
                    removed
                }
            }
        };
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Calls `f` for every watcher whose span holds `key`, each once.
    pub(crate) fn for_each_match(&self, key: &[u8], mut f: impl FnMut(WatcherId)) {
        if let Some(ids) = self.keys.get(key) {
            ids.iter().copied().for_each(&mut f);
        }
        for &len in self.prefix_lens.keys() {
            if len > key.len() {
                break;
            }
            if let Some(ids) = self.prefixes.get(&key[..len]) {
                ids.iter().copied().for_each(&mut f);
            }
        }
        for (_, list) in self
            .ranges
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
        {
            for (end, id) in list {
                if end.as_deref().is_none_or(|e| key < e) {
                    f(*id);
                }
            }
        }
    }

    /// How many watchers the group holds.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// Removes the first element matching `is` from `map[key]`, and the entry if it empties.
fn remove_from<T>(
    map: &mut HashMap<Box<[u8]>, Vec<T>>,
    key: &[u8],
    is: impl Fn(&T) -> bool,
) -> bool {
    let Some(list) = map.get_mut(key) else {
        return false;
    };
    let Some(i) = list.iter().position(is) else {
        return false;
    };
    list.swap_remove(i);
    if list.is_empty() {
        map.remove(key);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn matches(g: &WatcherGroup, key: &[u8]) -> Vec<WatcherId> {
        let mut v = Vec::new();
        g.for_each_match(key, |id| v.push(id));
        v.sort();
        v
    }

    #[test]
    fn finds_keys_prefixes_and_ranges() {
        let mut g = WatcherGroup::default();
        g.add(1, &KeySpan::new(b"a", b"").unwrap());
        g.add(2, &KeySpan::new(b"a", b"b").unwrap()); // prefix "a"
        g.add(3, &KeySpan::new(b"a", b"\0").unwrap());
        g.add(4, &KeySpan::new(b"ab", b"ad").unwrap());
        g.add(5, &KeySpan::new(b"", b"\0").unwrap());
        assert_eq!(matches(&g, b"a"), [1, 2, 3, 5]);
        assert_eq!(matches(&g, b"ac"), [2, 3, 4, 5]);
        assert_eq!(matches(&g, b"b"), [3, 5]);
        assert_eq!(matches(&g, b""), Vec::<u64>::new());
        assert_eq!(g.len(), 5);
        assert!(g.remove(2, &KeySpan::new(b"a", b"b").unwrap()));
        assert!(!g.remove(2, &KeySpan::new(b"a", b"b").unwrap()));
        assert!(!g.remove(9, &KeySpan::new(b"a", b"").unwrap()));
        assert_eq!(matches(&g, b"ac"), [3, 4, 5]);
        assert_eq!(g.len(), 4);
        assert!(g.prefix_lens.is_empty());
    }

    /// Random adds and removes against a brute-force scan of every span. Replay with
    /// OXCD_TEST_SEED.
    #[test]
    fn randomized_against_brute_force() {
        let seed: u64 = std::env::var("OXCD_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random);
        println!("OXCD_TEST_SEED={seed}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let key = |rng: &mut rand::rngs::StdRng| -> Vec<u8> {
            (0..rng.random_range(0..4))
                .map(|_| *[b'a', b'b', 0xff].get(rng.random_range(0..3)).unwrap())
                .collect()
        };
        let mut g = WatcherGroup::default();
        let mut all: Vec<(WatcherId, KeySpan)> = Vec::new();
        for id in 0..2000u64 {
            if !all.is_empty() && rng.random_bool(0.3) {
                let (w, span) = all.swap_remove(rng.random_range(0..all.len()));
                assert!(g.remove(w, &span), "seed {seed}");
            } else {
                let k = key(&mut rng);
                let end = match rng.random_range(0..4) {
                    0 => vec![],
                    1 => vec![0],
                    2 => super::super::span::prefix_end(&k).unwrap_or_default(),
                    _ => key(&mut rng),
                };
                if let Ok(span) = KeySpan::new(&k, &end) {
                    g.add(id, &span);
                    all.push((id, span));
                }
            }
            let probe = key(&mut rng);
            let mut want: Vec<WatcherId> = all
                .iter()
                .filter(|(_, s)| s.contains(&probe))
                .map(|(w, _)| *w)
                .collect();
            want.sort();
            assert_eq!(matches(&g, &probe), want, "seed {seed} key {probe:?}");
            assert_eq!(g.len(), all.len());
        }
    }
}
