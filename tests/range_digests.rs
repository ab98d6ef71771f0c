//! A real storage node's position index, through its RPCs: RangeDigests gives per-arc
//! digests that follow every write, delete and quarantine, a restart or a scrub pass
//! rebuilds the same digests (and reconciles what changed on disk behind the node's
//! back), and StreamKeys with an arc lists exactly that arc's keys.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use support::{StorageNode, pseudo_random_bytes, sha256_hex, start_storage_node_at};
use tritontube::node::client::StorageClient;
use tritontube::node::index::{RangeDigest, key_part};
use tritontube::ring::KeyRange;

/// A guard against hanging forever, never a measurement.
const PATIENCE: Duration = Duration::from_secs(60);

/// Arcs of several shapes: equal slices, one that wraps, the whole ring.
fn arcs() -> Vec<KeyRange> {
    let mut arcs = KeyRange::split_whole(7);
    arcs.push(KeyRange::new(u64::MAX - u64::MAX / 5, u64::MAX / 3));
    arcs.push(KeyRange::WHOLE);
    arcs
}

/// The digests `held` (key → SHA-256) must give.
fn expected(held: &BTreeMap<String, String>) -> Vec<RangeDigest> {
    arcs()
        .into_iter()
        .map(|arc| {
            let mut digest = RangeDigest::default();
            for (key, sha) in held {
                if arc.contains_key(key) {
                    digest.toggle(key_part(key, sha), true);
                }
            }
            digest
        })
        .collect()
}

async fn wait_for_index(client: &StorageClient) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !client.health().await.unwrap().position_index_ready {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the index was never built"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn put(node: &StorageNode, held: &mut BTreeMap<String, String>, key: &str, seed: u64) {
    let data = Bytes::from(pseudo_random_bytes(1000 + seed as usize, seed));
    let sha = sha256_hex(&data);
    node.client().put(key, data, Some(&sha)).await.unwrap();
    held.insert(key.to_string(), sha);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_digests_follow_writes_deletes_and_quarantines_and_survive_a_rebuild() {
    let temp = tempfile::tempdir().unwrap();
    let node = start_storage_node_at(temp.path(), "127.0.0.1:0").await;
    let mut held = BTreeMap::new();
    // Files already there when the node starts are found by the index's first walk.
    for i in 0..60u64 {
        put(&node, &mut held, &format!("v{}/chunk-{i}", i % 4), i).await;
    }
    node.stop().await;
    // Started again on a port of its own: only the folder matters to the index, and the
    // old port may meanwhile be another connection's.
    let node = start_storage_node_at(temp.path(), "127.0.0.1:0").await;
    let client = node.client();
    wait_for_index(&client).await;
    assert_eq!(
        client.range_digests(&arcs()).await.unwrap(),
        Some(expected(&held))
    );

    // Writes, an overwrite with other bytes, deletes.
    for i in 60..80u64 {
        put(&node, &mut held, &format!("v9/chunk-{i}"), i).await;
    }
    put(&node, &mut held, "v0/chunk-0", 999).await;
    for key in ["v1/chunk-1", "v9/chunk-61"] {
        client.delete(key).await.unwrap();
        held.remove(key);
    }
    assert_eq!(
        client.range_digests(&arcs()).await.unwrap(),
        Some(expected(&held))
    );

    // A copy found corrupt by a read is quarantined, and leaves the digests with it.
    let rotten = "v2/chunk-2";
    let path = node.dir.join(rotten);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    assert!(client.get(rotten).await.is_err());
    held.remove(rotten);
    assert_eq!(
        client.range_digests(&arcs()).await.unwrap(),
        Some(expected(&held))
    );

    // A restart rebuilds the index from the records: the same digests.
    node.stop().await;
    let node = start_storage_node_at(temp.path(), "127.0.0.1:0").await;
    let client = node.client();
    wait_for_index(&client).await;
    assert_eq!(
        client.range_digests(&arcs()).await.unwrap(),
        Some(expected(&held))
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrub_pass_reconciles_the_index_with_files_removed_by_hand() {
    let temp = tempfile::tempdir().unwrap();
    let node = start_storage_node_at(temp.path(), "127.0.0.1:0").await;
    let client = node.client();
    wait_for_index(&client).await;
    let mut held = BTreeMap::new();
    for i in 0..30u64 {
        put(&node, &mut held, &format!("v{}/chunk-{i}", i % 3), i).await;
    }
    // Removed behind the node's back: the index still counts it until a scrub pass.
    std::fs::remove_file(node.dir.join("v0/chunk-3")).unwrap();
    let stale = client.range_digests(&arcs()).await.unwrap().unwrap();
    assert_eq!(stale, expected(&held));
    held.remove("v0/chunk-3");

    let passes = client.scrub(false).await.unwrap().passes_completed;
    assert!(client.scrub(true).await.unwrap().started);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while client.scrub(false).await.unwrap().passes_completed == passes {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no scrub pass ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        client.range_digests(&arcs()).await.unwrap(),
        Some(expected(&held))
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_keys_of_an_arc_lists_exactly_its_keys_and_is_counted() {
    let temp = tempfile::tempdir().unwrap();
    let node = start_storage_node_at(temp.path(), "127.0.0.1:0").await;
    let client = node.client();
    wait_for_index(&client).await;
    let mut held = BTreeMap::new();
    for i in 0..50u64 {
        put(&node, &mut held, &format!("v{}/chunk-{i}", i % 5), i).await;
    }
    let before = client.health().await.unwrap().key_listings_served;
    for arc in arcs() {
        let listed = client.keys_in(true, arc).await.unwrap();
        let mut got: Vec<(String, String)> =
            listed.into_iter().map(|k| (k.key, k.sha256)).collect();
        got.sort();
        let want: Vec<(String, String)> = held
            .iter()
            .filter(|(k, _)| arc.contains_key(k))
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        assert_eq!(got, want, "{arc:?}");
    }
    let after = client.health().await.unwrap().key_listings_served;
    assert_eq!(after - before, arcs().len() as u64);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_ranges_in_one_call_are_refused() {
    let node = support::start_storage_node().await;
    let mut raw =
        tritontube::proto::storage::storage_service_client::StorageServiceClient::connect(format!(
            "http://{}",
            node.address()
        ))
        .await
        .unwrap();
    let range = tritontube::proto::storage::KeyRange { start: 1, end: 2 };
    let answer = raw
        .range_digests(tritontube::proto::storage::RangeDigestsRequest {
            ranges: vec![range; 70_000],
        })
        .await;
    assert_eq!(answer.unwrap_err().code(), tonic::Code::InvalidArgument);
}

/// The keys of `arc` a store lists, sorted.
async fn listed_in(store: &tritontube::node::store::Store, arc: KeyRange) -> Vec<String> {
    use futures::StreamExt;
    let mut keys = Vec::new();
    let mut batches = std::pin::pin!(store.list_in(false, arc));
    while let Some(batch) = batches.next().await {
        keys.extend(batch.unwrap().into_iter().map(|listed| listed.key));
    }
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arc_is_listed_the_same_before_and_after_the_index_is_built() {
    use tritontube::node::write::Arrival;
    let temp = tempfile::tempdir().unwrap();
    let store = tritontube::node::store::Store::open(temp.path())
        .await
        .unwrap();
    let mut all = Vec::new();
    for i in 0..40u64 {
        let key = format!("v{}/chunk-{i}", i % 3);
        let data = Bytes::from(pseudo_random_bytes(100, i));
        store.put(&key, data, Arrival::Hashed(None)).await.unwrap();
        all.push(key);
    }
    assert!(!store.index_ready());
    assert_eq!(store.range_digests(&arcs()), None);
    let walked: Vec<Vec<String>> = futures::future::join_all(arcs().into_iter().map(|arc| {
        let store = store.clone();
        async move { listed_in(&store, arc).await }
    }))
    .await;
    assert_eq!(store.build_index().await.unwrap(), all.len());
    for (arc, walked) in arcs().into_iter().zip(walked) {
        let mut want: Vec<String> = all
            .iter()
            .filter(|k| arc.contains_key(k))
            .cloned()
            .collect();
        want.sort();
        assert_eq!(walked, want, "walked {arc:?}");
        assert_eq!(listed_in(&store, arc).await, want, "indexed {arc:?}");
    }
}
