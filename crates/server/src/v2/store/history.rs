//! The last events, for watches that start in the past (`waitIndex`).

use std::collections::VecDeque;
use std::sync::Arc;

use super::event::{Event, DELETE, EXPIRE};
use crate::v2::error::{Code, Error};

/// How many events the history keeps, as etcd.
pub const CAPACITY: usize = 1000;

/// The most recent [`CAPACITY`] events, oldest first; their indexes follow one another.
#[derive(Default)]
pub struct History {
    events: VecDeque<Arc<Event>>,
}

impl History {
    /// Adds an event; returns the index of the event that made room for it, if one did.
    pub fn add(&mut self, e: Arc<Event>) -> Option<u64> {
        self.events.push_back(e);
        if self.events.len() > CAPACITY {
            return self.events.pop_front().map(|old| old.index());
        }
        None
    }

    /// The first event at or after `index` that a watch of `key` sees. An index older than
    /// the history is an error; one past it, nothing yet.
    pub fn scan(
        &self,
        key: &str,
        recursive: bool,
        index: u64,
    ) -> Result<Option<Arc<Event>>, Error> {
        Ok(self.matching(key, recursive, index)?.next().cloned())
    }

    /// Every event at or after `index` that a watch of `key` sees, oldest first: what a
    /// stream watch starting there has missed.
    pub fn scan_all(
        &self,
        key: &str,
        recursive: bool,
        index: u64,
    ) -> Result<Vec<Arc<Event>>, Error> {
        Ok(self.matching(key, recursive, index)?.cloned().collect())
    }

    fn matching<'a>(
        &'a self,
        key: &'a str,
        recursive: bool,
        index: u64,
    ) -> Result<impl Iterator<Item = &'a Arc<Event>> + 'a, Error> {
        let start = self.events.front().map_or(0, |e| e.index());
        if index < start {
            return Err(Error::new(
                Code::EventIndexCleared,
                format!("the requested history has been cleared [{start}/{index}]"),
                0,
            ));
        }
        let prefix = if key.ends_with('/') {
            key.to_owned()
        } else {
            format!("{key}/")
        };
        let from = self.events.partition_point(|e| e.index() < index);
        Ok(self
            .events
            .iter()
            .skip(from)
            .filter(|e| !e.refresh)
            .filter(move |e| {
                let mut hit = e.node.key == key;
                if recursive {
                    hit = hit || e.node.key.starts_with(&prefix);
                }
                if e.action == DELETE || e.action == EXPIRE {
                    if let Some(prev) = e.prev_node.as_ref().filter(|p| p.dir) {
                        hit = hit || key.starts_with(&prev.key);
                    }
                }
                hit
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v2::store::event::SET;

    fn event(key: &str, index: u64) -> Arc<Event> {
        Arc::new(Event::new(SET, key, index, index))
    }

    #[test]
    fn keeps_the_last_thousand_and_reports_older_as_cleared() {
        let mut h = History::default();
        for i in 1..=1001 {
            let evicted = h.add(event("/1/a", i));
            assert_eq!(evicted, (i == 1001).then_some(1));
        }
        let e = h.scan("/1/a", false, 1).unwrap_err();
        assert_eq!(e.code, Code::EventIndexCleared);
        assert_eq!(e.cause, "the requested history has been cleared [2/1]");
        assert_eq!(h.scan("/1/a", false, 2).unwrap().unwrap().index(), 2);
        assert!(h.scan("/1/a", false, 1002).unwrap().is_none());
    }

    #[test]
    fn recursive_scans_see_children_only() {
        let mut h = History::default();
        h.add(event("/1/dir/x", 1));
        h.add(event("/1/dirx", 2));
        assert_eq!(h.scan("/1/dir", true, 1).unwrap().unwrap().index(), 1);
        assert!(h.scan("/1/dir", false, 1).unwrap().is_none());
        assert!(h.scan("/1/dir", true, 2).unwrap().is_none());
    }

    #[test]
    fn scan_all_gives_every_later_match_in_order() {
        let mut h = History::default();
        for (i, key) in ["/1/a", "/1/b", "/1/a", "/1/a/c"].iter().enumerate() {
            h.add(event(key, i as u64 + 1));
        }
        let indexes = |v: Vec<Arc<Event>>| v.iter().map(|e| e.index()).collect::<Vec<_>>();
        assert_eq!(indexes(h.scan_all("/1/a", false, 1).unwrap()), [1, 3]);
        assert_eq!(indexes(h.scan_all("/1/a", true, 2).unwrap()), [3, 4]);
        assert!(h.scan_all("/1/a", true, 5).unwrap().is_empty());
    }
}
