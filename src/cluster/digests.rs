//! Cheap comparison of replicas (DESIGN §6b, docs/repair.md): before a repair lists any
//! key, it asks every node for the digest of each of the ring's token ranges and lists
//! only where they disagree with the ring.
//!
//! All keys of one token range (the positions after the token before it, up to its own)
//! have the same owners. So in a cluster where every copy is where the ring wants it,
//! each owner of a range holds exactly the range's keys with the same recorded hashes
//! (equal digests, see [`crate::node::index`]) and every other node holds none of them
//! (count 0). A range where that holds has nothing to restore, move or replace; the
//! others are listed, merged into arcs of at most about `range_keys` copies.

use std::collections::{BTreeMap, BTreeSet};

use super::membership::Cluster;
use crate::node::index::RangeDigest;
use crate::ring::{KeyRange, Ring};

/// One token range of the ring and the nodes that own its keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRange {
    pub range: KeyRange,
    pub owners: Vec<String>,
}

/// The ring's token ranges in ring order; together they cover every position once. A ring
/// whose tokens all sit at one position has one range, the whole ring.
pub fn token_ranges(ring: &Ring) -> Vec<TokenRange> {
    let mut positions: Vec<u64> = ring.tokens().map(|(at, _)| at).collect();
    positions.dedup();
    let Some(&last) = positions.last() else {
        return Vec::new();
    };
    let mut previous = last;
    positions
        .into_iter()
        .map(|at| {
            let range = KeyRange::new(previous, at);
            previous = at;
            TokenRange {
                range,
                owners: ring.owners_at(at).into_iter().map(String::from).collect(),
            }
        })
        .collect()
}

/// Whether the nodes' digests of token range `i` agree with the ring: equal on its owners
/// and empty everywhere else.
fn agrees(i: usize, range: &TokenRange, digests: &BTreeMap<String, Vec<RangeDigest>>) -> bool {
    let mut owned = None;
    for (node, theirs) in digests {
        let digest = theirs[i];
        if range.owners.iter().any(|o| o == node) {
            match owned {
                None => owned = Some(digest),
                Some(first) if first != digest => return false,
                Some(_) => {}
            }
        } else if digest.count != 0 {
            return false;
        }
    }
    true
}

/// The arcs to list: the token ranges whose digests disagree with the ring, adjacent ones
/// merged while the copies they hold (summed over the nodes) stay within `range_keys`.
pub fn arcs_to_list(
    ranges: &[TokenRange],
    digests: &BTreeMap<String, Vec<RangeDigest>>,
    range_keys: u64,
) -> Vec<KeyRange> {
    let mut arcs: Vec<(KeyRange, u64)> = Vec::new();
    for (i, range) in ranges.iter().enumerate() {
        if agrees(i, range, digests) {
            continue;
        }
        let copies: u64 = digests.values().map(|d| d[i].count).sum();
        match arcs.last_mut() {
            Some((arc, held))
                if arc.end == range.range.start && *held + copies <= range_keys.max(1) =>
            {
                arc.end = range.range.end;
                *held += copies;
            }
            _ => arcs.push((range.range, copies)),
        }
    }
    arcs.into_iter().map(|(arc, _)| arc).collect()
}

/// What the digests settled.
#[derive(Debug)]
pub struct Compared {
    /// The arcs whose keys must be listed.
    pub arcs: Vec<KeyRange>,
    /// Token ranges compared, and how many disagreed.
    pub ranges: usize,
    pub differing: usize,
    /// Every video id some node holds a file of.
    pub held_videos: BTreeSet<String>,
}

/// Asks every node of `nodes` for its digests of the ring's token ranges and the videos it
/// holds. None when a node does not answer or has no index built yet: the caller then
/// lists every arc, as a repair without digests does.
pub async fn compare(
    cluster: &Cluster,
    ring: &Ring,
    nodes: &BTreeSet<String>,
    range_keys: u64,
) -> Option<Compared> {
    let ranges = token_ranges(ring);
    let arcs: Vec<KeyRange> = ranges.iter().map(|r| r.range).collect();
    let answers = futures::future::join_all(nodes.iter().map(|node| {
        let arcs = &arcs;
        async move {
            let client = cluster.client(node).ok()?;
            let digests = match client.range_digests(arcs).await {
                Ok(Some(digests)) => digests,
                Ok(None) => {
                    tracing::info!(%node, "repair: no digests yet (index being built); listing");
                    return None;
                }
                Err(e) => {
                    tracing::info!(%node, error = %e, "repair: no digests; listing");
                    return None;
                }
            };
            let videos = client.held_videos().await.ok()??;
            Some((node.clone(), digests, videos))
        }
    }))
    .await;
    let mut digests = BTreeMap::new();
    let mut held_videos = BTreeSet::new();
    for answer in answers {
        let (node, theirs, videos) = answer?;
        digests.insert(node, theirs);
        held_videos.extend(videos);
    }
    let differing = (0..ranges.len())
        .filter(|&i| !agrees(i, &ranges[i], &digests))
        .count();
    Some(Compared {
        arcs: arcs_to_list(&ranges, &digests, range_keys),
        ranges: ranges.len(),
        differing,
        held_videos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(xor: u128, count: u64) -> RangeDigest {
        RangeDigest { xor, count }
    }

    #[test]
    fn token_ranges_cover_the_ring_once_with_the_owners_of_their_keys() {
        let ring = Ring::with_nodes(16, 2, ["a:1", "b:1", "c:1"]);
        let ranges = token_ranges(&ring);
        assert_eq!(ranges.len(), 48);
        for i in 0..2000 {
            let key = format!("v{}/c{i}", i % 13);
            let holding: Vec<&TokenRange> = ranges
                .iter()
                .filter(|r| r.range.contains_key(&key))
                .collect();
            assert_eq!(holding.len(), 1, "{key}");
            let owners: Vec<String> = ring.owners(&key).into_iter().map(String::from).collect();
            assert_eq!(holding[0].owners, owners, "{key}");
        }
        let one = Ring::with_nodes(1, 1, ["a:1"]);
        assert!(token_ranges(&one)[0].range.is_whole());
        assert!(token_ranges(&Ring::new(4, 2)).is_empty());
    }

    #[test]
    fn only_ranges_that_disagree_with_the_ring_are_listed_and_adjacent_ones_merge() {
        let owners = |o: &[&str]| o.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ranges = vec![
            TokenRange {
                range: KeyRange::new(40, 10),
                owners: owners(&["a", "b"]),
            },
            TokenRange {
                range: KeyRange::new(10, 20),
                owners: owners(&["b", "c"]),
            },
            TokenRange {
                range: KeyRange::new(20, 30),
                owners: owners(&["c", "a"]),
            },
            TokenRange {
                range: KeyRange::new(30, 40),
                owners: owners(&["a", "b"]),
            },
        ];
        let healthy: BTreeMap<String, Vec<RangeDigest>> = [
            (
                "a",
                vec![digest(1, 5), digest(0, 0), digest(3, 7), digest(4, 1)],
            ),
            (
                "b",
                vec![digest(1, 5), digest(2, 6), digest(0, 0), digest(4, 1)],
            ),
            (
                "c",
                vec![digest(0, 0), digest(2, 6), digest(3, 7), digest(0, 0)],
            ),
        ]
        .into_iter()
        .map(|(n, d)| (n.to_string(), d))
        .collect();
        assert!(arcs_to_list(&ranges, &healthy, 100).is_empty());

        // c wiped: the ranges it owns differ, and the two adjacent ones merge into one arc
        // unless that would hold more than the bound.
        let mut wiped = healthy.clone();
        wiped.insert("c".into(), vec![digest(0, 0); 4]);
        assert_eq!(
            arcs_to_list(&ranges, &wiped, 100),
            vec![KeyRange::new(10, 30)]
        );
        assert_eq!(
            arcs_to_list(&ranges, &wiped, 6),
            vec![KeyRange::new(10, 20), KeyRange::new(20, 30)]
        );

        // A copy on a node that does not own the range (a hinted copy) differs too, even
        // though the owners agree.
        let mut hinted = healthy.clone();
        hinted.get_mut("c").unwrap()[0] = digest(9, 1);
        assert_eq!(
            arcs_to_list(&ranges, &hinted, 100),
            vec![KeyRange::new(40, 10)]
        );

        // Owners that hold the same count of different bytes differ.
        let mut rotten = healthy;
        rotten.get_mut("b").unwrap()[3] = digest(5, 1);
        assert_eq!(
            arcs_to_list(&ranges, &rotten, 100),
            vec![KeyRange::new(30, 40)]
        );
    }
}
