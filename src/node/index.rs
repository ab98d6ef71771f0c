//! The position index: every key the node holds, in ring order (by `ring::position`), with
//! a 16-byte part of its digest. It lets the node answer for one arc of the ring at a cost
//! proportional to the keys in that arc, not to the whole disk: the keys themselves
//! (StreamKeys with an arc) and a digest of them (RangeDigests), so a repair compares
//! replicas without moving key lists (DESIGN §6b).
//!
//! - A key's part is the first 16 bytes of SHA-256(key ‖ 0 ‖ recorded SHA-256 in hex); an
//!   arc's digest is the XOR of its keys' parts with their count. XOR makes it
//!   independent of order and lets a write or delete change it in O(1) for any arc; two
//!   different sets give the same digest with odds of 2^-128.
//! - It lives under the store's metadata lock, beside the totals, and changes in the
//!   same step as the disk: a write's rename, a delete, a quarantine.
//! - It is built by one walk at start (reading the records the node keeps), and built
//!   again by each full scrub pass, which reconciles it with whatever changed on disk
//!   behind the node's back. Until the first build ends it is not ready: arc listings walk
//!   the disk as before, and RangeDigests says so, so callers list instead.
//! - While a build walks, the old index keeps serving; changes go to both, and a key
//!   changed during the walk is taken from the change, never from the (older) walk.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Bound;

use sha2::{Digest, Sha256};

use crate::ring::{KeyRange, position};

/// An arc's digest: the XOR of its keys' parts, and how many keys there are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RangeDigest {
    pub xor: u128,
    pub count: u64,
}

impl RangeDigest {
    /// Adds (or, applied twice, removes) one key's part.
    pub fn toggle(&mut self, part: u128, adding: bool) {
        self.xor ^= part;
        if adding {
            self.count += 1;
        } else {
            self.count = self.count.saturating_sub(1);
        }
    }
}

/// The part one key with the recorded `sha256` (hex) adds to a digest.
pub fn key_part(key: &str, sha256: &str) -> u128 {
    let mut hasher = Sha256::new();
    hasher.update(key.as_bytes());
    hasher.update([0u8]);
    hasher.update(sha256.to_ascii_lowercase().as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first)
}

/// (position, key) → part, in ring order.
type Entries = BTreeMap<(u64, Box<str>), u128>;

/// A build under way: what the walk has found so far, and the keys changed since it
/// started (the walk's view of those may be older than the change).
#[derive(Debug, Default)]
struct Build {
    fresh: Entries,
    touched: HashSet<Box<str>>,
}

#[derive(Debug, Default)]
pub(crate) struct PositionIndex {
    entries: Entries,
    ready: bool,
    build: Option<Build>,
}

/// The inclusive spans of positions an arc covers (two when it wraps).
fn spans(range: KeyRange) -> Vec<(u64, u64)> {
    let KeyRange { start, end } = range;
    let mut spans = Vec::with_capacity(2);
    if start < end {
        spans.push((start + 1, end));
    } else {
        if start < u64::MAX {
            spans.push((start + 1, u64::MAX));
        }
        spans.push((0, end));
    }
    spans
}

fn in_span(entries: &Entries, (low, high): (u64, u64)) -> impl Iterator<Item = (&str, u128)> {
    let upper = if high == u64::MAX {
        Bound::Unbounded
    } else {
        Bound::Excluded((high + 1, Box::<str>::from("")))
    };
    entries
        .range((Bound::Included((low, Box::<str>::from(""))), upper))
        .map(|((_, key), part)| (&**key, *part))
}

impl PositionIndex {
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Keys in the index now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `key` is now stored with the recorded `sha256`.
    pub fn put(&mut self, key: &str, sha256: &str) {
        let entry = (position(key), Box::<str>::from(key));
        let part = key_part(key, sha256);
        if let Some(build) = &mut self.build {
            build.fresh.insert(entry.clone(), part);
            build.touched.insert(entry.1.clone());
        }
        self.entries.insert(entry, part);
    }

    /// `key` is no longer held (deleted or quarantined).
    pub fn remove(&mut self, key: &str) {
        let entry = (position(key), Box::<str>::from(key));
        if let Some(build) = &mut self.build {
            build.fresh.remove(&entry);
            build.touched.insert(entry.1.clone());
        }
        self.entries.remove(&entry);
    }

    /// Starts a build: the walk's findings go to a fresh index.
    pub fn begin_build(&mut self) {
        self.build = Some(Build::default());
    }

    /// What the walk found, as (key, recorded SHA-256); keys changed since the build began
    /// are left as the change made them.
    pub fn found(&mut self, listed: impl IntoIterator<Item = (String, String)>) {
        let Some(build) = &mut self.build else {
            return;
        };
        for (key, sha256) in listed {
            if build.touched.contains(key.as_str()) {
                continue;
            }
            let part = key_part(&key, &sha256);
            build
                .fresh
                .insert((position(&key), key.into_boxed_str()), part);
        }
    }

    /// Ends a build: the fresh index replaces the old one. Returns how many keys the two
    /// disagreed on (changes made behind the node's back, e.g. files removed by hand).
    pub fn finish_build(&mut self) -> u64 {
        let Some(build) = self.build.take() else {
            return 0;
        };
        let fresh = build.fresh;
        let differing = if self.ready {
            let old = std::mem::take(&mut self.entries);
            let gone = old
                .iter()
                .filter(|(k, v)| fresh.get(*k) != Some(*v))
                .count();
            let new = fresh.keys().filter(|k| !old.contains_key(*k)).count();
            (gone + new) as u64
        } else {
            0
        };
        self.entries = fresh;
        self.ready = true;
        differing
    }

    /// Drops a build that failed; the old index (ready or not) stays.
    pub fn abandon_build(&mut self) {
        self.build = None;
    }

    /// The digest of each arc; None while the index is not ready.
    pub fn digests(&self, range: KeyRange) -> Option<RangeDigest> {
        if !self.ready {
            return None;
        }
        let mut digest = RangeDigest::default();
        for span in spans(range) {
            for (_, part) in in_span(&self.entries, span) {
                digest.toggle(part, true);
            }
        }
        Some(digest)
    }

    /// Every video id with a file here; None while the index is not ready.
    pub fn video_ids(&self) -> Option<BTreeSet<String>> {
        if !self.ready {
            return None;
        }
        let mut ids: BTreeSet<&str> = BTreeSet::new();
        for (_, key) in self.entries.keys() {
            ids.insert(key.split_once('/').map_or(&**key, |(id, _)| id));
        }
        Some(ids.into_iter().map(String::from).collect())
    }

    /// The keys of an arc in ring order; None while the index is not ready.
    pub fn keys_in(&self, range: KeyRange) -> Option<Vec<String>> {
        if !self.ready {
            return None;
        }
        let mut keys = Vec::new();
        for span in spans(range) {
            keys.extend(in_span(&self.entries, span).map(|(key, _)| key.to_string()));
        }
        Some(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(n: u8) -> String {
        hex::encode([n; 32])
    }

    fn built(keys: &[(&str, String)]) -> PositionIndex {
        let mut index = PositionIndex::default();
        index.begin_build();
        index.found(keys.iter().map(|(k, s)| (k.to_string(), s.clone())));
        index.finish_build();
        index
    }

    #[test]
    fn not_ready_until_built() {
        let mut index = PositionIndex::default();
        index.put("v/a", &sha(1));
        assert_eq!(index.digests(KeyRange::WHOLE), None);
        assert_eq!(index.keys_in(KeyRange::WHOLE), None);
        index.begin_build();
        index.finish_build();
        assert!(index.is_ready());
        // The write made before the build began is not lost: a build only knows what its
        // walk found, and the walk finds the file on disk.
        assert_eq!(index.digests(KeyRange::WHOLE).unwrap().count, 0);
    }

    #[test]
    fn a_digest_is_the_xor_of_the_parts_in_the_arc_whatever_the_order() {
        let keys: Vec<(String, String)> = (0..200)
            .map(|i| (format!("v{}/c{i}", i % 7), sha(i as u8)))
            .collect();
        let as_refs: Vec<(&str, String)> =
            keys.iter().map(|(k, s)| (k.as_str(), s.clone())).collect();
        let forward = built(&as_refs);
        let mut reversed_refs = as_refs.clone();
        reversed_refs.reverse();
        let backward = built(&reversed_refs);
        for arc in KeyRange::split_whole(9)
            .into_iter()
            .chain([KeyRange::WHOLE, KeyRange::new(u64::MAX / 2, 3)])
        {
            let mut expected = RangeDigest::default();
            for (key, sha) in &keys {
                if arc.contains_key(key) {
                    expected.toggle(key_part(key, sha), true);
                }
            }
            assert_eq!(forward.digests(arc), Some(expected), "{arc:?}");
            assert_eq!(backward.digests(arc), Some(expected), "{arc:?}");
            let listed = forward.keys_in(arc).unwrap();
            assert_eq!(listed.len() as u64, expected.count);
            assert!(listed.iter().all(|k| arc.contains_key(k)));
            let positions: Vec<u64> = listed.iter().map(|k| position(k)).collect();
            let wraps = arc.start >= arc.end;
            if !wraps {
                assert!(positions.windows(2).all(|w| w[0] <= w[1]));
            }
        }
    }

    #[test]
    fn changes_keep_the_digests_those_of_the_keys_held() {
        let mut index = built(&[("v/a", sha(1)), ("v/b", sha(2))]);
        let before = index.digests(KeyRange::WHOLE).unwrap();
        index.put("v/c", &sha(3));
        index.remove("v/c");
        assert_eq!(index.digests(KeyRange::WHOLE), Some(before));
        // Rewritten with other bytes: same count, another digest; written back: the same.
        index.put("v/a", &sha(9));
        let changed = index.digests(KeyRange::WHOLE).unwrap();
        assert_eq!(changed.count, 2);
        assert_ne!(changed, before);
        index.put("v/a", &sha(1));
        assert_eq!(index.digests(KeyRange::WHOLE), Some(before));
        // Removing a key not held changes nothing.
        index.remove("v/zzz");
        assert_eq!(index.digests(KeyRange::WHOLE), Some(before));
    }

    #[test]
    fn changes_during_a_build_win_over_the_walk() {
        let mut index = built(&[("v/a", sha(1)), ("v/b", sha(2))]);
        index.begin_build();
        // The walk read v/a before it was rewritten and v/b before it was deleted.
        index.put("v/a", &sha(5));
        index.remove("v/b");
        index.put("v/c", &sha(6));
        index.found([
            ("v/a".to_string(), sha(1)),
            ("v/b".to_string(), sha(2)),
            ("v/d".to_string(), sha(7)),
        ]);
        let differing = index.finish_build();
        let expected = built(&[("v/a", sha(5)), ("v/c", sha(6)), ("v/d", sha(7))]);
        assert_eq!(
            index.digests(KeyRange::WHOLE),
            expected.digests(KeyRange::WHOLE)
        );
        // v/d appeared behind the node's back (v/a, v/b, v/c were changes it made).
        assert!(differing >= 1);
    }

    #[test]
    fn spans_cover_each_position_of_an_arc_once() {
        assert_eq!(spans(KeyRange::new(1, 5)), vec![(2, 5)]);
        assert_eq!(spans(KeyRange::new(5, 1)), vec![(6, u64::MAX), (0, 1)]);
        assert_eq!(spans(KeyRange::new(u64::MAX, 3)), vec![(0, 3)]);
        assert_eq!(spans(KeyRange::WHOLE), vec![(1, u64::MAX), (0, 0)]);
    }
}
