//! Consistent-hash placement of keys on storage nodes. Pure code: no I/O.
//!
//! A position is the first 8 bytes of SHA-256, big-endian. A node `host:port` has
//! `virtual_nodes` tokens: token 0 at position("host:port"), token i > 0 at
//! position("host:port#i"). A key lives on the first `replicas` distinct nodes met walking
//! from position(key) upward (token ≥ key), wrapping at 2^64. With one token and one
//! replica this is exactly the original Tritontube's placement.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Tokens per node. 512 keeps the largest node's share within 7 % of the mean for 3 to 10
/// nodes named `127.0.0.1:809x` or `localhost:809x`; 256 reaches 1.11 and 128 reaches 1.20
/// on the same names (see `tests` below and the README's share table).
pub const DEFAULT_VIRTUAL_NODES: u32 = 512;

/// Copies of each file. Two survive the loss of any one storage node at twice the disk.
pub const DEFAULT_REPLICAS: u32 = 2;

/// Position of a string on the ring: the first 8 bytes of its SHA-256, big-endian.
pub fn position(s: &str) -> u64 {
    let digest = Sha256::digest(s.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("SHA-256 has 32 bytes"))
}

fn token_label(node: &str, index: u32) -> String {
    if index == 0 {
        node.to_string()
    } else {
        format!("{node}#{index}")
    }
}

/// The set of storage nodes and where each key lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RingSpec", into = "RingSpec")]
pub struct Ring {
    virtual_nodes: u32,
    replicas: u32,
    nodes: BTreeSet<String>,
    /// Sorted by (position, node) so equal positions still order deterministically.
    tokens: Vec<(u64, String)>,
}

/// What a ring is made of; the tokens are derived from it.
#[derive(Serialize, Deserialize)]
struct RingSpec {
    virtual_nodes: u32,
    replicas: u32,
    nodes: Vec<String>,
}

impl From<RingSpec> for Ring {
    fn from(spec: RingSpec) -> Self {
        Ring::with_nodes(spec.virtual_nodes, spec.replicas, spec.nodes)
    }
}

impl From<Ring> for RingSpec {
    fn from(ring: Ring) -> Self {
        RingSpec {
            virtual_nodes: ring.virtual_nodes,
            replicas: ring.replicas,
            nodes: ring.nodes.into_iter().collect(),
        }
    }
}

/// A key whose holders differ between two rings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyMove {
    pub key: String,
    pub from: Vec<String>,
    pub to: Vec<String>,
}

impl Ring {
    /// An empty ring. `virtual_nodes` and `replicas` are raised to at least 1.
    pub fn new(virtual_nodes: u32, replicas: u32) -> Self {
        Ring {
            virtual_nodes: virtual_nodes.max(1),
            replicas: replicas.max(1),
            nodes: BTreeSet::new(),
            tokens: Vec::new(),
        }
    }

    pub fn with_nodes<I, S>(virtual_nodes: u32, replicas: u32, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut ring = Ring::new(virtual_nodes, replicas);
        for node in nodes {
            ring.add(node);
        }
        ring
    }

    pub fn virtual_nodes(&self) -> u32 {
        self.virtual_nodes
    }

    pub fn replicas(&self) -> u32 {
        self.replicas
    }

    /// Adds a node; false if it was already there.
    pub fn add(&mut self, node: impl Into<String>) -> bool {
        let node = node.into();
        if !self.nodes.insert(node.clone()) {
            return false;
        }
        for index in 0..self.virtual_nodes {
            self.tokens
                .push((position(&token_label(&node, index)), node.clone()));
        }
        self.tokens.sort_unstable();
        true
    }

    /// Removes a node; false if it was not there.
    pub fn remove(&mut self, node: &str) -> bool {
        if !self.nodes.remove(node) {
            return false;
        }
        self.tokens.retain(|(_, owner)| owner != node);
        true
    }

    pub fn contains(&self, node: &str) -> bool {
        self.nodes.contains(node)
    }

    /// Nodes in address order.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every token as (position, node), in ring order.
    pub fn tokens(&self) -> impl Iterator<Item = (u64, &str)> {
        self.tokens.iter().map(|(pos, node)| (*pos, node.as_str()))
    }

    /// The nodes holding `key`, first replica first: min(replicas, nodes) distinct nodes.
    pub fn owners(&self, key: &str) -> Vec<&str> {
        self.walk(key, self.replicas as usize)
    }

    /// Every node in the order met walking the ring from `key`: the owners first, then
    /// the nodes that stand in for an owner that is down (hinted copies).
    pub fn preference_list(&self, key: &str) -> Vec<&str> {
        self.walk(key, self.nodes.len())
    }

    /// The first `count` distinct nodes met walking from `key` (fewer if the ring has fewer).
    fn walk(&self, key: &str, count: usize) -> Vec<&str> {
        let wanted = count.min(self.nodes.len());
        let mut owners: Vec<&str> = Vec::with_capacity(wanted);
        if wanted == 0 {
            return owners;
        }
        let key_position = position(key);
        let start = self.tokens.partition_point(|(pos, _)| *pos < key_position);
        let len = self.tokens.len();
        for offset in 0..len {
            let node = self.tokens[(start + offset) % len].1.as_str();
            if !owners.contains(&node) {
                owners.push(node);
                if owners.len() == wanted {
                    break;
                }
            }
        }
        owners
    }

    /// The first replica of `key`, if the ring has any node.
    pub fn primary(&self, key: &str) -> Option<&str> {
        self.owners(key).into_iter().next()
    }

    /// Fraction of the ring (0..1) for which each node is the first replica.
    pub fn shares(&self) -> BTreeMap<String, f64> {
        let mut arcs: BTreeMap<String, u128> = self.nodes.iter().map(|n| (n.clone(), 0)).collect();
        let full = 1u128 << 64;
        let last = self.tokens.last().map_or(0, |(p, _)| *p as u128);
        for (i, (pos, node)) in self.tokens.iter().enumerate() {
            // A token owns the arc from the previous token (exclusive) up to itself; the
            // first token's arc wraps around from the last.
            let arc = match i {
                0 => *pos as u128 + full - last,
                _ => (*pos - self.tokens[i - 1].0) as u128,
            };
            *arcs.get_mut(node).expect("token of a known node") += arc;
        }
        arcs.into_iter()
            .map(|(node, arc)| (node, arc as f64 / full as f64))
            .collect()
    }

    /// Largest share ÷ mean share: 1.0 is perfect balance.
    pub fn imbalance(&self) -> f64 {
        let shares = self.shares();
        if shares.is_empty() {
            return 1.0;
        }
        let largest = shares.values().cloned().fold(0.0, f64::max);
        largest * shares.len() as f64
    }

    /// The keys whose holder set differs between `self` (now) and `next` (wanted).
    pub fn diff<'a, I>(&self, next: &Ring, keys: I) -> Vec<KeyMove>
    where
        I: IntoIterator<Item = &'a str>,
    {
        keys.into_iter()
            .filter_map(|key| {
                let from = self.owners(key);
                let to = next.owners(key);
                let same = from.len() == to.len() && from.iter().all(|n| to.contains(n));
                (!same).then(|| KeyMove {
                    key: key.to_string(),
                    from: from.into_iter().map(String::from).collect(),
                    to: to.into_iter().map(String::from).collect(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn original(nodes: &[&str]) -> Ring {
        Ring::with_nodes(1, 1, nodes.iter().copied())
    }

    #[test]
    fn the_preference_list_starts_with_the_owners_and_names_every_node_once() {
        let ring = Ring::with_nodes(64, 2, ["a:1", "b:2", "c:3", "d:4"]);
        for key in ["v1/manifest.mpd", "v1/chunk-0-00001.m4s", "x/y"] {
            let list = ring.preference_list(key);
            assert_eq!(list[..2], ring.owners(key)[..]);
            let mut sorted = list.clone();
            sorted.sort();
            assert_eq!(sorted, ["a:1", "b:2", "c:3", "d:4"]);
        }
    }

    #[test]
    fn positions_match_the_design_test_vectors() {
        assert_eq!(position("localhost:8090"), 8831287181302866298);
        assert_eq!(position("localhost:8091"), 15195719212023434717);
        assert_eq!(position("localhost:8092"), 7885380174407825360);
        assert_eq!(position("localhost:8093"), 7923247947613183022);
        assert_eq!(position("v1/manifest.mpd"), 14795369458551898204);
        assert_eq!(position("v1/chunk-0-00001.m4s"), 4132141117495000388);
        assert_eq!(
            position("big buck bunny/manifest.mpd"),
            18132478014013537778
        );
    }

    #[test]
    fn one_token_one_replica_is_the_original_placement() {
        let ring = original(&["localhost:8090", "localhost:8091", "localhost:8092"]);
        assert_eq!(ring.owners("v1/manifest.mpd"), ["localhost:8091"]);
        assert_eq!(ring.owners("v1/chunk-0-00001.m4s"), ["localhost:8092"]);
        // Above the last token: wraps to the lowest one.
        assert_eq!(
            ring.owners("big buck bunny/manifest.mpd"),
            ["localhost:8092"]
        );
    }

    #[test]
    fn original_shares_and_the_cost_of_one_token() {
        let mut ring = original(&["localhost:8090", "localhost:8091", "localhost:8092"]);
        let shares = ring.shares();
        assert!((shares["localhost:8090"] - 0.05).abs() < 0.01, "{shares:?}");
        assert!((shares["localhost:8091"] - 0.35).abs() < 0.01, "{shares:?}");
        assert!((shares["localhost:8092"] - 0.60).abs() < 0.01, "{shares:?}");
        ring.add("localhost:8093");
        let taken = ring.shares()["localhost:8093"];
        assert!(taken < 0.005, "8093 takes {taken}");
    }

    #[test]
    fn shares_sum_to_one() {
        for n in 1..12 {
            let ring = Ring::with_nodes(
                DEFAULT_VIRTUAL_NODES,
                1,
                (0..n).map(|i| format!("127.0.0.1:{}", 8090 + i)),
            );
            let total: f64 = ring.shares().values().sum();
            assert!((total - 1.0).abs() < 1e-9, "{n} nodes: {total}");
        }
    }

    #[test]
    fn default_virtual_nodes_balance_within_ten_percent() {
        for n in 3..=10 {
            let ring = Ring::with_nodes(
                DEFAULT_VIRTUAL_NODES,
                1,
                (0..n).map(|i| format!("127.0.0.1:{}", 8090 + i)),
            );
            let imbalance = ring.imbalance();
            assert!(imbalance <= 1.10, "{n} nodes: largest/mean = {imbalance}");
        }
    }

    #[test]
    fn empty_ring_owns_nothing_and_adding_twice_is_refused() {
        let mut ring = Ring::new(4, 2);
        assert!(ring.owners("a/b").is_empty());
        assert!(ring.add("n1:1"));
        assert!(!ring.add("n1:1"));
        assert_eq!(ring.owners("a/b"), ["n1:1"]);
        assert!(!ring.remove("n2:1"));
        assert!(ring.remove("n1:1"));
        assert!(ring.is_empty());
        assert_eq!(ring.tokens().count(), 0);
    }

    #[test]
    fn serde_round_trip_rebuilds_tokens() {
        let ring = Ring::with_nodes(16, 2, ["a:1", "b:2", "c:3"]);
        let json = serde_json::to_string(&ring).unwrap();
        let back: Ring = serde_json::from_str(&json).unwrap();
        assert_eq!(ring, back);
    }

    #[test]
    fn diff_lists_exactly_the_keys_that_change_holders() {
        let before = original(&["localhost:8090", "localhost:8091", "localhost:8092"]);
        let mut after = before.clone();
        after.add("localhost:8093");
        let keys: Vec<String> = (0..2000).map(|i| format!("v{i}/chunk.m4s")).collect();
        let moves = before.diff(&after, keys.iter().map(String::as_str));
        for m in &moves {
            assert_eq!(m.to, ["localhost:8093"]);
        }
        let unmoved = keys.len() - moves.len();
        assert!(unmoved > 0);
    }

    fn node_names() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::btree_set(1u16..2000, 1..8)
            .prop_map(|ports| ports.into_iter().map(|p| format!("10.0.0.1:{p}")).collect())
    }

    fn keys() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec("[a-z0-9]{1,8}/[a-z0-9-]{1,12}\\.m4s", 1..60)
    }

    proptest! {
        #[test]
        fn adding_a_node_only_moves_keys_onto_it(
            nodes in node_names(), keys in keys(), v in 1u32..32, r in 1u32..4
        ) {
            let before = Ring::with_nodes(v, r, nodes.iter().cloned());
            let mut after = before.clone();
            let newcomer = "10.0.0.2:9999";
            after.add(newcomer);
            for key in &keys {
                let old = before.owners(key);
                let new = after.owners(key);
                // Every holder that is not the newcomer already held the key.
                for n in &new {
                    prop_assert!(*n == newcomer || old.contains(n), "{key}: {old:?} -> {new:?}");
                }
            }
        }

        #[test]
        fn removing_a_node_only_moves_its_keys(
            nodes in node_names(), keys in keys(), v in 1u32..32, r in 1u32..4, pick in 0usize..8
        ) {
            let before = Ring::with_nodes(v, r, nodes.iter().cloned());
            let gone = nodes[pick % nodes.len()].clone();
            let mut after = before.clone();
            after.remove(&gone);
            for key in &keys {
                let old = before.owners(key);
                let new = after.owners(key);
                prop_assert!(!new.contains(&gone.as_str()));
                // Holders that survive keep the key.
                for n in &old {
                    prop_assert!(*n == gone || new.contains(n), "{key}: {old:?} -> {new:?}");
                }
                if !old.contains(&gone.as_str()) {
                    prop_assert_eq!(&old, &new);
                }
            }
        }

        #[test]
        fn replicas_are_distinct_and_as_many_as_possible(
            nodes in node_names(), keys in keys(), v in 1u32..16, r in 1u32..5
        ) {
            let ring = Ring::with_nodes(v, r, nodes.iter().cloned());
            for key in &keys {
                let owners = ring.owners(key);
                prop_assert_eq!(owners.len(), (r as usize).min(nodes.len()));
                let distinct: BTreeSet<_> = owners.iter().collect();
                prop_assert_eq!(distinct.len(), owners.len());
                prop_assert_eq!(ring.primary(key), owners.first().copied());
            }
        }

        #[test]
        fn placement_does_not_depend_on_insertion_order(
            nodes in node_names(), keys in keys(), v in 1u32..16, r in 1u32..4
        ) {
            let forward = Ring::with_nodes(v, r, nodes.iter().cloned());
            let backward = Ring::with_nodes(v, r, nodes.iter().rev().cloned());
            for key in &keys {
                prop_assert_eq!(forward.owners(key), backward.owners(key));
            }
        }
    }
}
