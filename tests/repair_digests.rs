//! A repair compares the nodes' per-range digests before it lists any key: on a healthy
//! cluster no node serves a single key listing, and after one node is wiped only the
//! token ranges it owns that hold keys are listed, and every copy comes back.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use support::web::{WebOptions, holdings, start_web_ring};
use support::{
    StorageNode, pseudo_random_bytes, ring_of, sha256_hex, start_storage_node_at,
    start_storage_nodes,
};
use tritontube::admin_cli::connect;
use tritontube::cluster::digests::token_ranges;
use tritontube::meta::{MetaStore, VideoDetails};
use tritontube::proto::admin::{ListWorkersRequest, StartRepairRequest, WorkerInfo};
use tritontube::ring::Ring;

/// A guard against hanging forever, never a measurement.
const PATIENCE: Duration = Duration::from_secs(120);

/// A wiped node restarts at its address; a node another test binds meanwhile could take
/// the port, so these tests run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn record_videos(meta: &MetaStore, ids: &[&str]) {
    for id in ids {
        meta.claim_video(id, chrono::Utc::now()).await.unwrap();
        meta.finish_video(id, &VideoDetails::default())
            .await
            .unwrap();
    }
}

/// Puts `count` files of videos `ids` on the owners `ring` names; returns the keys.
async fn seed_files(
    nodes: &[&StorageNode],
    ring: &Ring,
    ids: &[&str],
    count: usize,
) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for i in 0..count {
        let key = format!("{}/chunk-0-{i:05}.m4s", ids[i % ids.len()]);
        let data = Bytes::from(pseudo_random_bytes(512 + i, i as u64));
        let sha = sha256_hex(&data);
        for owner in ring.owners(&key) {
            let node = nodes.iter().find(|n| n.address() == owner).unwrap();
            node.client()
                .put(&key, data.clone(), Some(&sha))
                .await
                .unwrap();
        }
        keys.insert(key);
    }
    keys
}

/// Runs a repair through the admin service and waits for its worker's final status.
async fn repair(admin_address: &str) -> WorkerInfo {
    let mut admin = connect(admin_address, None).unwrap();
    let id = admin
        .start_repair(StartRepairRequest {
            dry_run: false,
            verify: false,
        })
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let workers = admin
            .list_workers(ListWorkersRequest {})
            .await
            .unwrap()
            .into_inner()
            .workers;
        if let Some(w) = workers.iter().find(|w| w.id == id) {
            if matches!(w.state.as_str(), "done" | "failed" | "interrupted") {
                return w.clone();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "repair never finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every node's position index is built.
async fn indexes_ready(nodes: &[&StorageNode]) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for node in nodes {
        while !node.client().health().await.unwrap().position_index_ready {
            assert!(tokio::time::Instant::now() < deadline, "no index");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// StreamKeys calls each node has served since it started.
async fn listings(nodes: &[&StorageNode]) -> BTreeMap<String, u64> {
    let mut served = BTreeMap::new();
    for node in nodes {
        let health = node.client().health().await.unwrap();
        served.insert(node.address(), health.key_listings_served);
    }
    served
}

/// Whether every key sits on exactly its owners.
fn placed(held: &BTreeMap<String, Vec<String>>, ring: &Ring, keys: &BTreeSet<String>) -> bool {
    held.keys().cloned().collect::<BTreeSet<_>>() == *keys
        && held.iter().all(|(key, holders)| {
            let mut owners: Vec<String> = ring.owners(key).into_iter().map(String::from).collect();
            owners.sort();
            let mut holders = holders.clone();
            holders.sort();
            holders == owners
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_healthy_repair_lists_no_keys() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let all = start_storage_nodes(3).await;
    let every: Vec<&StorageNode> = all.iter().collect();
    let web = start_web_ring(
        &every,
        WebOptions {
            replicas: 2,
            ..WebOptions::default()
        },
    )
    .await;
    let addresses: Vec<String> = every.iter().map(|n| n.address()).collect();
    let ring = ring_of(&addresses, 2);
    let ids = ["alpha", "beta", "gamma"];
    record_videos(&web.meta, &ids).await;
    let keys = seed_files(&every, &ring, &ids, 300).await;
    indexes_ready(&every).await;
    let before = listings(&every).await;

    let mut admin = connect(&web.admin, None).unwrap();
    let plan = admin
        .start_repair(StartRepairRequest {
            dry_run: true,
            verify: false,
        })
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap();
    assert_eq!(plan.missing.unwrap().files, 0);
    let worker = repair(&web.admin).await;
    assert_eq!(worker.state, "done", "{}", worker.outcome);
    assert_eq!(worker.files_done, 0, "{}", worker.outcome);
    assert!(
        worker.outcome.contains("listing 0 arcs"),
        "{}",
        worker.outcome
    );
    assert_eq!(
        listings(&every).await,
        before,
        "a repair of a healthy cluster listed keys"
    );
    assert!(placed(&holdings(&every).await, &ring, &keys));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repair_after_a_wiped_node_lists_only_the_differing_ranges_and_restores_every_copy() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut all = start_storage_nodes(3).await;
    let web = {
        let every: Vec<&StorageNode> = all.iter().collect();
        start_web_ring(
            &every,
            WebOptions {
                replicas: 2,
                ..WebOptions::default()
            },
        )
        .await
    };
    let addresses: Vec<String> = all.iter().map(|n| n.address()).collect();
    let ring = ring_of(&addresses, 2);
    let ids = ["one", "two", "three", "four"];
    record_videos(&web.meta, &ids).await;
    let keys = seed_files(&all.iter().collect::<Vec<_>>(), &ring, &ids, 300).await;
    indexes_ready(&all.iter().collect::<Vec<_>>()).await;

    // The token ranges that must differ once the node is wiped: those it owns that hold
    // a key. Adjacent ones are listed as one arc (the default bound holds them all).
    let wiped = all.pop().unwrap();
    let wiped_address = wiped.address();
    let ranges = token_ranges(&ring);
    let differing: Vec<bool> = ranges
        .iter()
        .map(|r| r.owners.contains(&wiped_address) && keys.iter().any(|k| r.range.contains_key(k)))
        .collect();
    let expected_arcs = (0..ranges.len())
        .filter(|&i| differing[i] && (i == 0 || !differing[i - 1]))
        .count() as u64;
    let expected_ranges = differing.iter().filter(|d| **d).count();
    assert!(expected_ranges > 0 && expected_ranges < ranges.len());

    let survivors: Vec<String> = all.iter().map(|n| n.address()).collect();
    let before = listings(&all.iter().collect::<Vec<_>>()).await;
    let dir = wiped.dir.clone();
    let temp = wiped.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    let mut restarted = start_storage_node_at(&dir, &wiped_address).await;
    restarted.temp = temp;
    indexes_ready(&[&restarted]).await;
    all.push(restarted);
    let every: Vec<&StorageNode> = all.iter().collect();

    // Should the web node have noticed the new store first, the repair it started by
    // itself is the one this request returns, or this one finds nothing left to do.
    let worker = repair(&web.admin).await;
    assert_eq!(worker.state, "done", "{}", worker.outcome);
    let after = listings(&every).await;
    for address in &survivors {
        assert_eq!(
            after[address] - before[address],
            expected_arcs,
            "{address} listed other arcs than the differing ranges"
        );
    }
    assert_eq!(after[&wiped_address], expected_arcs);
    assert!(placed(&holdings(&every).await, &ring, &keys));
    // Nothing differs any more: a second repair lists nothing.
    let again = repair(&web.admin).await;
    assert!(
        again.outcome.contains("listing 0 arcs"),
        "{}",
        again.outcome
    );
}
