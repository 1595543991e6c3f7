//! Revisions and their one byte form, the key of the backend's `key` table.

use std::fmt;

/// Length of an encoded revision: main (8), `_`, sub (8).
pub const REVISION_BYTES: usize = 17;

/// Appended to an encoded revision whose value is a tombstone (a deletion).
const TOMBSTONE_MARK: u8 = b't';

/// A point in the store's history. `main` counts write transactions that changed something;
/// `sub` numbers the changes inside one such transaction, from 0. Ordered by main, then sub,
/// which is also the byte order of [`Revision::to_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    /// The transaction's revision, the one clients see.
    pub main: i64,
    /// The change's position inside its transaction.
    pub sub: i64,
}

impl Revision {
    /// A revision.
    pub const fn new(main: i64, sub: i64) -> Revision {
        Revision { main, sub }
    }

    /// The 17-byte form: main big endian, `_`, sub big endian. Byte order equals revision
    /// order for the non-negative revisions the store uses.
    pub fn to_bytes(self) -> [u8; REVISION_BYTES] {
        let mut b = [0u8; REVISION_BYTES];
        b[..8].copy_from_slice(&self.main.to_be_bytes());
        b[8] = b'_';
        b[9..].copy_from_slice(&self.sub.to_be_bytes());
        b
    }

    /// The form stored for a change: with the tombstone mark appended for a deletion.
    pub fn to_key(self, tombstone: bool) -> Vec<u8> {
        let mut k = Vec::with_capacity(REVISION_BYTES + 1);
        k.extend_from_slice(&self.to_bytes());
        if tombstone {
            k.push(TOMBSTONE_MARK);
        }
        k
    }

    /// Decodes a stored key: the revision and whether it marks a tombstone. `None` when the
    /// bytes are not a revision.
    pub fn from_key(b: &[u8]) -> Option<(Revision, bool)> {
        let tombstone = match b.len() {
            REVISION_BYTES => false,
            n if n == REVISION_BYTES + 1 && b[REVISION_BYTES] == TOMBSTONE_MARK => true,
            _ => return None,
        };
        if b[8] != b'_' {
            return None;
        }
        let main = i64::from_be_bytes(b[..8].try_into().ok()?);
        let sub = i64::from_be_bytes(b[9..REVISION_BYTES].try_into().ok()?);
        Some((Revision { main, sub }, tombstone))
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.main, self.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_is_revision_order() {
        let revs = [
            Revision::new(0, 0),
            Revision::new(0, 1),
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(1, 255),
            Revision::new(1, 256),
            Revision::new(2, 0),
            Revision::new(255, 0),
            Revision::new(256, 0),
            Revision::new(i64::MAX, i64::MAX),
        ];
        for w in revs.windows(2) {
            assert!(w[0] < w[1]);
            assert!(w[0].to_bytes() < w[1].to_bytes(), "{} vs {}", w[0], w[1]);
            // A tombstone sorts right after its plain form and before the next revision.
            assert!(w[0].to_key(true) < w[1].to_key(false));
        }
    }

    #[test]
    fn round_trips_with_and_without_tombstone() {
        let r = Revision::new(0x0102_0304_0506_0708, 9);
        assert_eq!(Revision::from_key(&r.to_key(false)), Some((r, false)));
        assert_eq!(Revision::from_key(&r.to_key(true)), Some((r, true)));
        assert_eq!(r.to_bytes()[8], b'_');
        assert_eq!(r.to_bytes().len(), 17);
    }

    #[test]
    fn rejects_malformed_keys() {
        let mut k = Revision::new(1, 2).to_key(false);
        assert_eq!(Revision::from_key(&k[..16]), None);
        k.push(b'x');
        assert_eq!(Revision::from_key(&k), None);
        let mut k = Revision::new(1, 2).to_key(false);
        k[8] = b'-';
        assert_eq!(Revision::from_key(&k), None);
        assert_eq!(Revision::from_key(b""), None);
    }
}
