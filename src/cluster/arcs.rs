//! How the whole keyspace is cut for work over it (ring changes, repairs, surveys): into
//! arcs of the ring that each hold about `range_keys` keys, so the web node's memory is
//! bounded by that flag and not by the number of keys in the cluster. Keys sit on the ring
//! by SHA-256, so arcs of equal width hold nearly equal numbers of keys.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ring::KeyRange;

/// Keys per arc unless `tritontube web --range-keys` says otherwise: about 20 MB of the
/// web node's memory for one arc's inventory.
pub const DEFAULT_RANGE_KEYS: u64 = 20_000;

/// The arcs, in ring order, for work over about `stored_copies` copies (the sum of the
/// nodes' file counts: an upper bound on the keys) with about `range_keys` in each.
pub fn work_arcs(stored_copies: u64, range_keys: u64) -> Vec<KeyRange> {
    KeyRange::split_whole(stored_copies.div_ceil(range_keys.max(1)).max(1))
}

/// The bound in force; the operator's flag sets it at start.
#[derive(Debug)]
pub struct RangeKeys(AtomicU64);

impl Default for RangeKeys {
    fn default() -> Self {
        RangeKeys(AtomicU64::new(DEFAULT_RANGE_KEYS))
    }
}

impl RangeKeys {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Zero is taken as one: an arc always has room for a key.
    pub fn set(&self, keys: u64) {
        self.0.store(keys.max(1), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arcs_are_as_many_as_the_copies_need() {
        assert_eq!(work_arcs(0, 100).len(), 1);
        assert_eq!(work_arcs(100, 100).len(), 1);
        assert_eq!(work_arcs(101, 100).len(), 2);
        assert_eq!(work_arcs(2_000_000, 20_000).len(), 100);
        assert_eq!(work_arcs(5, 0).len(), 5);
    }

    #[test]
    fn equal_arcs_hold_nearly_equal_numbers_of_keys() {
        let arcs = work_arcs(40_000, 10_000);
        let mut counts = vec![0u32; arcs.len()];
        for i in 0..40_000 {
            let key = format!("video-{}/chunk-{i}", i / 100);
            let arc = arcs.iter().position(|a| a.contains_key(&key)).unwrap();
            counts[arc] += 1;
        }
        for count in counts {
            assert!((9_000..11_000).contains(&count), "{count} keys in one arc");
        }
    }
}
