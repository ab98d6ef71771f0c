//! Consistent-hash placement of keys on storage nodes. Pure code: no I/O.
//!
//! A position is the first 8 bytes of SHA-256, big-endian. A node `host:port` has
//! `virtual_nodes` tokens: token 0 at position("host:port"), token i > 0 at
//! position("host:port#i"). A key lives on the first `replicas` distinct nodes met walking
//! from position(key) upward (token ≥ key), wrapping at 2^64. With one token and one
//! replica this is exactly the original Tritontube's placement.
//!
//! Zones (failure domains: a rack, a room, a power feed): a node may carry one. Walking
//! upward, a node is taken only if its zone holds no copy yet, until `replicas` copies or
//! every zone holds one; then the walk starts again and takes distinct nodes as in the
//! plain rule. A node without a zone is a zone of its own, so with no zone set the
//! placement is exactly the plain rule. See docs/placement.md for the test vectors.

mod range;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use range::KeyRange;

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
    /// The zone of each node that has one.
    zones: BTreeMap<String, String>,
    /// Sorted by (position, node) so equal positions still order deterministically.
    tokens: Vec<(u64, String)>,
}

/// What a ring is made of; the tokens are derived from it.
#[derive(Serialize, Deserialize)]
struct RingSpec {
    virtual_nodes: u32,
    replicas: u32,
    nodes: Vec<String>,
    /// Absent when no node has a zone, so rings saved before zones read back the same.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    zones: BTreeMap<String, String>,
}

impl From<RingSpec> for Ring {
    fn from(spec: RingSpec) -> Self {
        let mut ring = Ring::with_nodes(spec.virtual_nodes, spec.replicas, spec.nodes);
        for (node, zone) in spec.zones {
            ring.set_zone(&node, Some(&zone));
        }
        ring
    }
}

impl From<Ring> for RingSpec {
    fn from(ring: Ring) -> Self {
        RingSpec {
            virtual_nodes: ring.virtual_nodes,
            replicas: ring.replicas,
            nodes: ring.nodes.into_iter().collect(),
            zones: ring.zones,
        }
    }
}

/// A node's failure domain: its zone, or the node alone when it has none.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Domain<'a> {
    Zone(&'a str),
    Alone(&'a str),
}

/// Why a zone name is refused: it is shown in a console column and typed on command
/// lines, so it is short, printable and has no spaces.
pub fn check_zone_name(zone: &str) -> Result<(), String> {
    if zone.is_empty() || zone.len() > 64 {
        return Err(format!(
            "a zone name has 1 to 64 characters, not {}",
            zone.len()
        ));
    }
    if let Some(c) = zone
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(format!(
            "a zone name has letters, digits and - _ . : only; {c:?} is not allowed"
        ));
    }
    Ok(())
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
            zones: BTreeMap::new(),
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
        self.zones.remove(node);
        self.tokens.retain(|(_, owner)| owner != node);
        true
    }

    /// Puts a node of the ring in a zone (None: in no zone); false if the node is not in
    /// the ring or already was there.
    pub fn set_zone(&mut self, node: &str, zone: Option<&str>) -> bool {
        if !self.nodes.contains(node) || self.zone(node) == zone {
            return false;
        }
        match zone {
            Some(zone) => self.zones.insert(node.to_string(), zone.to_string()),
            None => self.zones.remove(node),
        };
        true
    }

    /// The zone of a node, if it has one.
    pub fn zone(&self, node: &str) -> Option<&str> {
        self.zones.get(node).map(String::as_str)
    }

    /// Whether any node has a zone.
    pub fn has_zones(&self) -> bool {
        !self.zones.is_empty()
    }

    /// Fraction of the ring (0..1) for which each zone holds the first replica; nodes
    /// without a zone are left out.
    pub fn zone_shares(&self) -> BTreeMap<String, f64> {
        let mut shares = BTreeMap::new();
        for (node, share) in self.shares() {
            if let Some(zone) = self.zone(&node) {
                *shares.entry(zone.to_string()).or_insert(0.0) += share;
            }
        }
        shares
    }

    fn domain<'a>(&'a self, node: &'a str) -> Domain<'a> {
        match self.zones.get(node) {
            Some(zone) => Domain::Zone(zone),
            None => Domain::Alone(node),
        }
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

    /// The owners of every key at ring position `at` (all keys of one token range share
    /// them).
    pub fn owners_at(&self, at: u64) -> Vec<&str> {
        self.walk_from(at, self.replicas as usize)
    }

    /// Every node in the order met walking the ring from `key`: the owners first, then
    /// the nodes that stand in for an owner that is down (hinted copies).
    pub fn preference_list(&self, key: &str) -> Vec<&str> {
        self.walk(key, self.nodes.len())
    }

    /// The first `count` distinct nodes met walking from `key` (fewer if the ring has
    /// fewer), one per zone first while a zone holds no copy.
    fn walk(&self, key: &str, count: usize) -> Vec<&str> {
        self.walk_from(position(key), count)
    }

    fn walk_from(&self, key_position: u64, count: usize) -> Vec<&str> {
        let wanted = count.min(self.nodes.len());
        let mut owners: Vec<&str> = Vec::with_capacity(wanted);
        if wanted == 0 {
            return owners;
        }
        let start = self.tokens.partition_point(|(pos, _)| *pos < key_position);
        let len = self.tokens.len();
        let ring_order = (0..len).map(|offset| self.tokens[(start + offset) % len].1.as_str());
        if self.zones.is_empty() {
            // Every node is a zone of its own: the plain rule, without the bookkeeping.
            for node in ring_order {
                if !owners.contains(&node) {
                    owners.push(node);
                    if owners.len() == wanted {
                        break;
                    }
                }
            }
            return owners;
        }
        let domains: BTreeSet<Domain> = self.nodes.iter().map(|n| self.domain(n)).collect();
        let mut covered: BTreeSet<Domain> = BTreeSet::new();
        for node in ring_order.clone() {
            if owners.len() == wanted || covered.len() == domains.len() {
                break;
            }
            if covered.insert(self.domain(node)) {
                owners.push(node);
            }
        }
        // Fewer zones than copies: the rest go to distinct nodes, in ring order.
        for node in ring_order {
            if owners.len() == wanted {
                break;
            }
            if !owners.contains(&node) {
                owners.push(node);
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

    fn four_nodes_in_two_zones(replicas: u32) -> Ring {
        let mut ring = Ring::with_nodes(
            1,
            replicas,
            [
                "localhost:8090",
                "localhost:8091",
                "localhost:8092",
                "localhost:8093",
            ],
        );
        for (node, zone) in [
            ("localhost:8090", "a"),
            ("localhost:8091", "a"),
            ("localhost:8092", "b"),
            ("localhost:8093", "b"),
        ] {
            assert!(ring.set_zone(node, Some(zone)));
        }
        ring
    }

    #[test]
    fn zoned_placement_matches_the_documented_vectors() {
        // docs/placement.md: ring order 8092 (b), 8093 (b), 8090 (a), 8091 (a).
        let ring = four_nodes_in_two_zones(2);
        assert_eq!(
            ring.owners("v1/manifest.mpd"),
            ["localhost:8091", "localhost:8092"]
        );
        assert_eq!(
            ring.owners("v1/chunk-0-00001.m4s"),
            ["localhost:8092", "localhost:8090"]
        );
        assert_eq!(
            ring.owners("big buck bunny/manifest.mpd"),
            ["localhost:8092", "localhost:8090"]
        );
        // The plain rule would put both copies of those two in zone b.
        let plain = Ring::with_nodes(
            1,
            2,
            [
                "localhost:8090",
                "localhost:8091",
                "localhost:8092",
                "localhost:8093",
            ],
        );
        assert_eq!(
            plain.owners("v1/chunk-0-00001.m4s"),
            ["localhost:8092", "localhost:8093"]
        );
        // More copies than zones: one per zone first, then distinct nodes in ring order.
        let three = four_nodes_in_two_zones(3);
        assert_eq!(
            three.owners("v1/chunk-0-00001.m4s"),
            ["localhost:8092", "localhost:8090", "localhost:8093"]
        );
        assert_eq!(
            three.owners("v1/manifest.mpd"),
            ["localhost:8091", "localhost:8092", "localhost:8093"]
        );
    }

    #[test]
    fn zones_survive_serde_and_rings_without_zones_read_as_before() {
        let ring = four_nodes_in_two_zones(2);
        let json = serde_json::to_string(&ring).unwrap();
        let back: Ring = serde_json::from_str(&json).unwrap();
        assert_eq!(ring, back);
        assert_eq!(back.zone("localhost:8093"), Some("b"));
        let old = r#"{"virtual_nodes":4,"replicas":2,"nodes":["a:1","b:2"]}"#;
        let read: Ring = serde_json::from_str(old).unwrap();
        assert!(!read.has_zones());
        assert_eq!(serde_json::to_string(&read).unwrap(), old);
    }

    #[test]
    fn zone_shares_add_up_their_nodes_and_removing_a_node_forgets_its_zone() {
        let mut ring = four_nodes_in_two_zones(2);
        let shares = ring.shares();
        let zones = ring.zone_shares();
        let a = shares["localhost:8090"] + shares["localhost:8091"];
        assert!((zones["a"] - a).abs() < 1e-12);
        assert!((zones["a"] + zones["b"] - 1.0).abs() < 1e-9);
        assert!(ring.remove("localhost:8090"));
        assert_eq!(ring.zone("localhost:8090"), None);
        assert!(
            !ring.set_zone("localhost:8090", Some("a")),
            "not in the ring"
        );
        assert!(!ring.set_zone("localhost:8091", Some("a")), "already there");
        assert!(ring.set_zone("localhost:8091", None));
        assert_eq!(ring.zone_shares().len(), 1);
    }

    #[test]
    fn zone_names_are_short_and_printable() {
        assert!(check_zone_name("rack-1").is_ok());
        assert!(check_zone_name("eu-west.a:2").is_ok());
        assert!(check_zone_name("").is_err());
        assert!(check_zone_name("a b").is_err());
        assert!(check_zone_name(&"x".repeat(65)).is_err());
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
        fn copies_land_in_distinct_zones_while_zones_last(
            nodes in node_names(), keys in keys(), v in 1u32..16, r in 1u32..5,
            zone_count in 1usize..4
        ) {
            let mut ring = Ring::with_nodes(v, r, nodes.iter().cloned());
            for (i, node) in nodes.iter().enumerate() {
                ring.set_zone(node, Some(&format!("z{}", i % zone_count)));
            }
            let zones_in_use = nodes.len().min(zone_count);
            for key in &keys {
                let owners = ring.owners(key);
                prop_assert_eq!(owners.len(), (r as usize).min(nodes.len()));
                let distinct: BTreeSet<_> = owners.iter().collect();
                prop_assert_eq!(distinct.len(), owners.len());
                let zones: BTreeSet<_> = owners.iter().map(|n| ring.zone(n)).collect();
                prop_assert_eq!(zones.len(), owners.len().min(zones_in_use), "{:?}", owners);
            }
        }

        #[test]
        fn a_zone_per_node_is_the_plain_rule(
            nodes in node_names(), keys in keys(), v in 1u32..16, r in 1u32..5
        ) {
            let plain = Ring::with_nodes(v, r, nodes.iter().cloned());
            let mut zoned = plain.clone();
            for node in &nodes {
                zoned.set_zone(node, Some(&format!("zone-of-{node}")));
            }
            for key in &keys {
                prop_assert_eq!(plain.owners(key), zoned.owners(key));
                prop_assert_eq!(plain.preference_list(key), zoned.preference_list(key));
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
