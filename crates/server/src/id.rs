//! Unique request ids: the low 16 bits of the member id, then a counter seeded from the clock,
//! so ids from different members, and from one member across restarts, do not collide.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const SUFFIX_BITS: u32 = 48;

/// Hands out request ids.
pub struct IdGenerator {
    prefix: u64,
    suffix: AtomicU64,
}

impl IdGenerator {
    pub fn new(member_id: u64) -> IdGenerator {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        IdGenerator {
            prefix: (member_id & 0xffff) << SUFFIX_BITS,
            // Leave 8 bits of room so a burst in one millisecond does not reach the next
            // restart's starting point.
            suffix: AtomicU64::new((millis << 8) & ((1 << SUFFIX_BITS) - 1)),
        }
    }

    pub fn next(&self) -> u64 {
        let suffix = self.suffix.fetch_add(1, Ordering::Relaxed) + 1;
        self.prefix | (suffix & ((1 << SUFFIX_BITS) - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_carry_the_member_prefix() {
        let ids = IdGenerator::new(0xabcd_1234);
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        assert_eq!(a >> SUFFIX_BITS, 0x1234);
        assert_eq!(b >> SUFFIX_BITS, 0x1234);
    }
}
