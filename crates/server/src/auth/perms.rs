//! A user's key permissions, merged from all of its roles into sorted, disjoint intervals
//! (etcd's unified range permissions), and the two questions asked of them: may this user
//! touch this key, and this whole range.
//!
//! Keys follow etcd's conventions: a permission with an empty `range_end` covers the single
//! key, as the interval `[key, key + "\0")`; `range_end = "\0"` covers every key from `key` on;
//! any other `range_end` the half-open range `[key, range_end)`. A request's range is covered
//! only when the union of the permissions covers all of it: two permissions that touch (`[a,
//! b)` and `[b, c)`) together cover `[a, c)`, as etcd's interval tree sees it.

use std::cmp::Ordering;

use oxcd_api::authpb::{permission::Type as PermType, Role};

/// One end of an interval: a key, or past every key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Key(Vec<u8>),
    Unbounded,
}

impl PartialOrd for End {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for End {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (End::Key(a), End::Key(b)) => a.cmp(b),
            (End::Key(_), End::Unbounded) => Ordering::Less,
            (End::Unbounded, End::Key(_)) => Ordering::Greater,
            (End::Unbounded, End::Unbounded) => Ordering::Equal,
        }
    }
}

/// A half-open interval of keys `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Interval {
    start: Vec<u8>,
    end: End,
}

impl Interval {
    /// The keys a permission (or a request) names, by etcd's conventions.
    fn of(key: &[u8], range_end: &[u8]) -> Interval {
        let end = match range_end {
            [] => {
                let mut next = key.to_vec();
                next.push(0);
                End::Key(next)
            }
            [0] => End::Unbounded,
            end => End::Key(end.to_vec()),
        };
        Interval {
            start: key.to_vec(),
            end,
        }
    }

    fn is_empty(&self) -> bool {
        match &self.end {
            End::Key(end) => end.as_slice() <= self.start.as_slice(),
            End::Unbounded => false,
        }
    }
}

/// Sorted, disjoint, non-touching intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct IntervalSet {
    intervals: Vec<Interval>,
}

impl IntervalSet {
    fn from_intervals(mut all: Vec<Interval>) -> IntervalSet {
        all.retain(|i| !i.is_empty());
        all.sort_by(|a, b| a.start.cmp(&b.start));
        let mut merged: Vec<Interval> = Vec::with_capacity(all.len());
        for next in all {
            match merged.last_mut() {
                Some(last) if End::Key(next.start.clone()) <= last.end => {
                    if next.end > last.end {
                        last.end = next.end;
                    }
                }
                _ => merged.push(next),
            }
        }
        IntervalSet { intervals: merged }
    }

    /// The last interval starting at or before `key`.
    fn around(&self, key: &[u8]) -> Option<&Interval> {
        let after = self
            .intervals
            .partition_point(|i| i.start.as_slice() <= key);
        after.checked_sub(1).map(|i| &self.intervals[i])
    }

    fn contains_key(&self, key: &[u8]) -> bool {
        self.around(key)
            .is_some_and(|i| End::Key(key.to_vec()) < i.end)
    }

    fn covers(&self, want: &Interval) -> bool {
        self.around(&want.start).is_some_and(|i| want.end <= i.end)
    }
}

/// What one user may read and write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPermissions {
    read: IntervalSet,
    write: IntervalSet,
}

/// Read or write: what a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl UserPermissions {
    /// The union of the permissions of `roles`.
    pub fn merge<'a>(roles: impl IntoIterator<Item = &'a Role>) -> UserPermissions {
        let (mut read, mut write) = (Vec::new(), Vec::new());
        for perm in roles.into_iter().flat_map(|r| &r.key_permission) {
            let interval = Interval::of(&perm.key, &perm.range_end);
            match PermType::try_from(perm.perm_type).unwrap_or(PermType::Read) {
                PermType::Read => read.push(interval),
                PermType::Write => write.push(interval),
                PermType::Readwrite => {
                    read.push(interval.clone());
                    write.push(interval);
                }
            }
        }
        UserPermissions {
            read: IntervalSet::from_intervals(read),
            write: IntervalSet::from_intervals(write),
        }
    }

    /// Whether `access` to the keys `key`..`range_end` (etcd's conventions) is allowed.
    pub fn allows(&self, access: Access, key: &[u8], range_end: &[u8]) -> bool {
        let set = match access {
            Access::Read => &self.read,
            Access::Write => &self.write,
        };
        if range_end.is_empty() {
            set.contains_key(key)
        } else {
            set.covers(&Interval::of(key, range_end))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcd_api::authpb::Permission;

    fn role(perms: &[(PermType, &str, &str)]) -> Role {
        Role {
            name: b"r".to_vec(),
            key_permission: perms
                .iter()
                .map(|(t, k, e)| Permission {
                    perm_type: *t as i32,
                    key: k.as_bytes().to_vec(),
                    range_end: e.as_bytes().to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn single_key_permission_covers_that_key_only() {
        let p = UserPermissions::merge([&role(&[(PermType::Readwrite, "foo", "")])]);
        assert!(p.allows(Access::Read, b"foo", b""));
        assert!(p.allows(Access::Write, b"foo", b""));
        assert!(!p.allows(Access::Read, b"foo1", b""));
        assert!(!p.allows(Access::Read, b"fo", b""));
        // The range holding only "foo".
        assert!(p.allows(Access::Read, b"foo", b"foo\0"));
        assert!(!p.allows(Access::Read, b"foo", b"fop"));
    }

    #[test]
    fn ranges_prefixes_and_from_key() {
        let p = UserPermissions::merge([&role(&[
            (PermType::Read, "a", "c"),
            (PermType::Write, "k", "\0"),
        ])]);
        assert!(p.allows(Access::Read, b"b", b""));
        assert!(p.allows(Access::Read, b"a", b"c"));
        assert!(p.allows(Access::Read, b"ab", b"b"));
        assert!(!p.allows(Access::Read, b"a", b"d"));
        assert!(!p.allows(Access::Read, b"c", b""));
        assert!(!p.allows(Access::Write, b"b", b""));
        assert!(p.allows(Access::Write, b"zzz", b""));
        assert!(p.allows(Access::Write, b"k", b"\0"));
        assert!(p.allows(Access::Write, b"l", b"\0"));
        assert!(!p.allows(Access::Write, b"j", b"\0"));
        assert!(!p.allows(Access::Read, b"k", b""));
    }

    #[test]
    fn touching_and_overlapping_permissions_join() {
        let a = role(&[(PermType::Read, "a", "c")]);
        let b = role(&[(PermType::Readwrite, "c", "e"), (PermType::Read, "b", "d")]);
        let p = UserPermissions::merge([&a, &b]);
        assert!(p.allows(Access::Read, b"a", b"e"));
        assert!(!p.allows(Access::Read, b"a", b"e\0"));
        assert!(!p.allows(Access::Write, b"b", b"d"));
        assert!(p.allows(Access::Write, b"c", b"e"));
        // A point permission next to a range: [x, x\0) + [x\0, y).
        let c = role(&[(PermType::Read, "x", ""), (PermType::Read, "x\0", "y")]);
        assert!(UserPermissions::merge([&c]).allows(Access::Read, b"x", b"y"));
    }

    #[test]
    fn no_roles_allow_nothing() {
        let p = UserPermissions::merge([]);
        assert!(!p.allows(Access::Read, b"", b""));
        assert!(!p.allows(Access::Read, b"\0", b"\0"));
        assert!(!p.allows(Access::Write, b"a", b""));
    }
}
