//! What a watcher watches: one key, a range, or every key from one on.

use super::WatchError;

/// The keys of one watcher, decided once from etcd's `key` / `range_end` rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum KeySpan {
    /// Exactly this key (`range_end` empty).
    Key(Box<[u8]>),
    /// `[start, end)`, `end > start`.
    Range(Box<[u8]>, Box<[u8]>),
    /// Every key `>= start` (`range_end` is `"\0"`).
    From(Box<[u8]>),
}

impl KeySpan {
    /// Reads a create request's `key` and `range_end` as etcd does: an empty key is `"\0"`
    /// (the smallest key), an empty end watches the key alone, `"\0"` every key from `key`
    /// on; any other end must be above `key`.
    pub(crate) fn new(key: &[u8], range_end: &[u8]) -> Result<KeySpan, WatchError> {
        let key: Box<[u8]> = if key.is_empty() {
            Box::new([0])
        } else {
            key.into()
        };
        match range_end {
            [] => Ok(KeySpan::Key(key)),
            [0] => Ok(KeySpan::From(key)),
            end if *end <= *key => Err(WatchError::EmptyRange),
            end => Ok(KeySpan::Range(key, end.into())),
        }
    }

    /// Whether `key` is watched.
    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeySpan::Key(k) => **k == *key,
            KeySpan::Range(s, e) => **s <= *key && *key < **e,
            KeySpan::From(s) => **s <= *key,
        }
    }

    /// The prefix this span is exactly the range of (`[p, prefix_end(p))`), if any: prefix
    /// watchers are looked up by the prefixes of a key instead of scanned.
    pub(crate) fn prefix(&self) -> Option<&[u8]> {
        match self {
            KeySpan::Range(s, e) if prefix_end(s).as_deref() == Some(&**e) => Some(s),
            _ => None,
        }
    }
}

/// The smallest key above every key with this prefix, or `None` when there is none (the
/// prefix is all `0xff`).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_key_rules() {
        assert_eq!(
            KeySpan::new(b"a", b"").unwrap(),
            KeySpan::Key(b"a"[..].into())
        );
        assert_eq!(
            KeySpan::new(b"", b"").unwrap(),
            KeySpan::Key(b"\0"[..].into())
        );
        assert_eq!(
            KeySpan::new(b"a", b"\0").unwrap(),
            KeySpan::From(b"a"[..].into())
        );
        assert_eq!(
            KeySpan::new(b"", b"\0").unwrap(),
            KeySpan::From(b"\0"[..].into())
        );
        assert_eq!(
            KeySpan::new(b"a", b"c").unwrap(),
            KeySpan::Range(b"a"[..].into(), b"c"[..].into())
        );
        assert_eq!(KeySpan::new(b"b", b"a"), Err(WatchError::EmptyRange));
        assert_eq!(KeySpan::new(b"a", b"a"), Err(WatchError::EmptyRange));
    }

    #[test]
    fn contains_by_kind() {
        let r = KeySpan::new(b"b", b"d").unwrap();
        assert!(!r.contains(b"a") && r.contains(b"b") && r.contains(b"c\xff") && !r.contains(b"d"));
        let f = KeySpan::new(b"b", b"\0").unwrap();
        assert!(!f.contains(b"a") && f.contains(b"b") && f.contains(b"\xff\xff"));
        let k = KeySpan::new(b"b", b"").unwrap();
        assert!(k.contains(b"b") && !k.contains(b"b\0"));
        let all = KeySpan::new(b"", b"\0").unwrap();
        assert!(all.contains(b"\0") && all.contains(b"z") && !all.contains(b""));
    }

    #[test]
    fn prefix_ranges_are_recognized() {
        assert_eq!(prefix_end(b"a"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(
            KeySpan::new(b"/pods/", b"/pods0").unwrap().prefix(),
            Some(&b"/pods/"[..])
        );
        assert_eq!(
            KeySpan::new(b"a\xff", b"b").unwrap().prefix(),
            Some(&b"a\xff"[..])
        );
        assert_eq!(KeySpan::new(b"a", b"c").unwrap().prefix(), None);
        assert_eq!(KeySpan::new(b"a", b"\0").unwrap().prefix(), None);
    }
}
