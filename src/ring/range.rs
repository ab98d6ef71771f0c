//! Arcs of the ring: the unit of work over the whole keyspace. A token owns the positions
//! after the token before it up to and including its own, so an arc is half-open on the
//! left, `(start, end]`, and wraps past 2^64 − 1 when `end <= start`.

use serde::{Deserialize, Serialize};

use super::position;

/// The positions `p` with `start < p <= end`, wrapping when `end <= start`;
/// `start == end` is the whole ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyRange {
    pub start: u64,
    pub end: u64,
}

impl KeyRange {
    /// Every position.
    pub const WHOLE: KeyRange = KeyRange { start: 0, end: 0 };

    pub fn new(start: u64, end: u64) -> Self {
        KeyRange { start, end }
    }

    pub fn is_whole(&self) -> bool {
        self.start == self.end
    }

    pub fn contains(&self, position: u64) -> bool {
        if self.start < self.end {
            self.start < position && position <= self.end
        } else {
            // Wraps (or is the whole ring, where one of the two always holds).
            position > self.start || position <= self.end
        }
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.contains(position(key))
    }

    /// The whole ring cut into `count` arcs of (nearly) equal width, in ring order; the
    /// last ends at 2^64 − 1 and the first starts there, so together they cover every
    /// position exactly once. `count` 0 or 1 gives the whole ring.
    pub fn split_whole(count: u64) -> Vec<KeyRange> {
        if count <= 1 {
            return vec![KeyRange::WHOLE];
        }
        let width = u64::MAX / count;
        let mut ranges = Vec::with_capacity(count as usize);
        let mut start = u64::MAX;
        for i in 0..count {
            let end = if i + 1 == count {
                u64::MAX
            } else {
                (i + 1) * width
            };
            ranges.push(KeyRange::new(start, end));
            start = end;
        }
        ranges
    }
}

impl std::fmt::Display for KeyRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_whole() {
            write!(f, "(whole ring)")
        } else {
            write!(f, "({:016x}, {:016x}]", self.start, self.end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arc_is_open_at_its_start_and_closed_at_its_end() {
        let arc = KeyRange::new(10, 20);
        assert!(!arc.contains(10));
        assert!(arc.contains(11));
        assert!(arc.contains(20));
        assert!(!arc.contains(21));
    }

    #[test]
    fn an_arc_wraps_past_the_top_of_the_ring() {
        let arc = KeyRange::new(u64::MAX - 1, 5);
        assert!(arc.contains(u64::MAX));
        assert!(arc.contains(0));
        assert!(arc.contains(5));
        assert!(!arc.contains(6));
        assert!(!arc.contains(u64::MAX - 1));
    }

    #[test]
    fn the_whole_ring_contains_every_position() {
        for p in [0, 1, u64::MAX / 2, u64::MAX] {
            assert!(KeyRange::WHOLE.contains(p));
        }
    }

    #[test]
    fn split_arcs_cover_every_position_exactly_once() {
        for count in [1u64, 2, 3, 7, 64, 1000] {
            let arcs = KeyRange::split_whole(count);
            assert_eq!(arcs.len() as u64, count.max(1));
            for p in [0, 1, 2, u64::MAX / 3, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
                let holders = arcs.iter().filter(|a| a.contains(p)).count();
                assert_eq!(holders, 1, "position {p} in {count} arcs");
            }
            for arc in &arcs {
                assert!(arc.contains(arc.end));
            }
        }
    }
}
