//! A repair's survey (DESIGN §6b, docs/repair.md), arc by arc so the web node holds one
//! arc's inventory at a time: first where to look ([`scope`]: the arcs whose token ranges'
//! digests disagree with the ring, or every arc when digests cannot settle it), then, per
//! arc, the keys listed from every node and compared with the ring and the metadata store
//! ([`survey_arc`]).
//!
//! Orphans, and the race with an upload starting: a key is an orphan when its video id has
//! no record at all (neither finished nor claimed), or only a delete's tombstone. Each
//! arc's nodes are listed first and the records read after: an upload claims its id
//! before it writes any file, so a file seen in the listing belongs to an upload whose
//! claim is already in the store when the records are read — unless that upload has since
//! failed and removed its claim, and then the file is an orphan indeed. A stale read of
//! the records (etcd without quorum) could miss a claim, so then no orphan is deleted.
//! Digests cannot show orphans (both copies of an orphan agree), so every node also says
//! which video ids it holds files of, read before the records for the same reason; one
//! without a record makes the survey list every arc.

use std::collections::BTreeSet;

use futures::StreamExt;

use super::arcs::work_arcs;
use super::digests;
use super::inventory::{self, KeyWork};
use super::membership::{Cluster, ClusterError};
use super::repair::RepairPlan;
use crate::meta::VideoStatus;
use crate::ring::{KeyRange, Ring};

/// Files checked or repaired at once.
pub(super) const PARALLELISM: usize = 16;

/// One key's work: copy/delete like a ring change, or remove an orphan.
pub(super) enum Task {
    Place(KeyWork),
    Orphan { key: String, holders: Vec<String> },
}

impl Task {
    pub fn key(&self) -> &str {
        match self {
            Task::Place(work) => &work.key,
            Task::Orphan { key, .. } => key,
        }
    }
}

/// Where a survey lists keys.
pub(super) struct Scope {
    pub ring: Ring,
    pub nodes: BTreeSet<String>,
    pub arcs: Vec<KeyRange>,
    /// Videos whose delete left a tombstone and of which no node holds a file after this
    /// survey's work: once it has run without a failure, the tombstones go, so a delete
    /// made while a holder was down finishes when it returns.
    pub tombstones: Vec<String>,
    /// What the digests found, for the operator.
    pub summary: String,
    /// Nodes that did not answer when the survey began: not listed (each listing would
    /// wait out the answer deadline again), and counted unreachable, so their work waits.
    pub silent: BTreeSet<String>,
}

/// Decides where to list. With `verify` every copy is to be read anyway, so every arc is
/// listed; otherwise the digests decide, unless a node cannot give them.
pub(super) async fn scope(cluster: &Cluster, verify: bool) -> Result<Scope, ClusterError> {
    let state = cluster.snapshot();
    let ring = state.ring.clone();
    let nodes = state.data_nodes();
    let range_keys = cluster.range_keys.get();
    // Digests and file counts are asked for at once: a node that does not answer then
    // costs one answer deadline, not one per question.
    let counting = futures::future::join_all(nodes.iter().map(|node| async move {
        let count = match cluster.client(node) {
            Ok(client) => client.stats().await.ok().map(|(s, _)| s.file_count),
            Err(_) => None,
        };
        (node.clone(), count)
    }));
    let (compared, counts) = match verify {
        true => (None, counting.await),
        false => tokio::join!(
            digests::compare(cluster, &ring, &nodes, range_keys),
            counting
        ),
    };
    let silent: BTreeSet<String> = counts
        .iter()
        .filter(|(_, count)| count.is_none())
        .map(|(node, _)| node.clone())
        .collect();
    let copies: u64 = counts.iter().filter_map(|(_, count)| *count).sum();
    // Read after the nodes said what they hold: see the module comment.
    let records = cluster.meta().list_videos().await?;
    let deleting: Vec<String> = records
        .value
        .iter()
        .filter(|v| v.status == VideoStatus::Deleting)
        .map(|v| v.id.clone())
        .collect();
    let known: BTreeSet<&str> = records
        .value
        .iter()
        .filter(|v| v.status != VideoStatus::Deleting)
        .map(|v| v.id.as_str())
        .collect();
    let tombstones = if records.stale { Vec::new() } else { deleting };
    if let Some(compared) = compared {
        let unknown = compared
            .held_videos
            .iter()
            .filter(|id| !known.contains(id.as_str()))
            .count();
        if unknown == 0 {
            let summary = format!(
                "digests: {} of {} token ranges differ; listing {} arcs",
                compared.differing,
                compared.ranges,
                compared.arcs.len()
            );
            return Ok(Scope {
                ring,
                nodes,
                arcs: compared.arcs,
                tombstones,
                summary,
                silent,
            });
        }
        tracing::info!(
            videos = unknown,
            "repair: nodes hold files of videos without a record; listing every arc"
        );
    }
    let arcs = work_arcs(copies, range_keys);
    Ok(Scope {
        summary: format!("listing all {} arcs", arcs.len()),
        ring,
        nodes,
        arcs,
        tombstones,
        silent,
    })
}

/// What one arc's survey found and what to do about it.
pub(super) struct ArcSurvey {
    pub plan: RepairPlan,
    pub tasks: Vec<Task>,
}

/// Lists `arc` on every node and compares it with the ring and the metadata store. With
/// `verify`, every copy is first read and checked against its recorded SHA-256 by its
/// node (a corrupt one is quarantined there and counts as missing); without, the nodes'
/// records are trusted and corruption is left to their scrub and to verified reads.
pub(super) async fn survey_arc(
    cluster: &Cluster,
    scope: &Scope,
    arc: KeyRange,
    verify: bool,
) -> Result<ArcSurvey, ClusterError> {
    let ring = &scope.ring;
    // Listings first, records after: see the module comment on the race with uploads.
    let answering: BTreeSet<String> = scope.nodes.difference(&scope.silent).cloned().collect();
    let (mut inventory, mut missed) = inventory::take_reachable_in(cluster, &answering, arc).await;
    missed.extend(scope.silent.iter().map(|node| inventory::Unreachable {
        node: node.clone(),
        why: "did not answer when the repair began".to_string(),
    }));
    if verify {
        drop_corrupt_copies(cluster, &mut inventory).await;
    }
    let records = cluster.meta().list_videos().await?;
    // A video being deleted keeps nothing: its files are orphans already.
    let known: BTreeSet<&str> = records
        .value
        .iter()
        .filter(|v| v.status != VideoStatus::Deleting)
        .map(|v| v.id.as_str())
        .collect();
    let unreachable: BTreeSet<String> = missed.iter().map(|m| m.node.clone()).collect();
    for m in &missed {
        tracing::warn!(node = %m.node, why = %m.why, "repair: node does not answer; its files wait");
    }
    let mut plan = RepairPlan {
        unreachable: unreachable.iter().cloned().collect(),
        orphans_kept_because_stale: records.stale,
        ..RepairPlan::default()
    };
    let mut tasks = Vec::new();
    for (key, holding) in &inventory {
        let owners = ring.owners(key);
        let on_owners = owners
            .iter()
            .filter(|o| holding.holders.iter().any(|h| h == *o))
            .count();
        if on_owners < owners.len() {
            plan.under_replicated += 1;
        }
        let video = key.split_once('/').map_or(key.as_str(), |(id, _)| id);
        if !known.contains(video) {
            plan.orphans.add(holding.size);
            if !records.stale {
                tasks.push(Task::Orphan {
                    key: key.clone(),
                    holders: holding.holders.clone(),
                });
            }
            continue;
        }
        let Some(work) = inventory::work_for(key, holding, ring) else {
            continue;
        };
        if owners.iter().any(|o| unreachable.contains(*o)) {
            plan.deferred.add(holding.size);
            continue;
        }
        for _ in &work.missing {
            plan.missing.add(holding.size);
        }
        for _ in &work.extra {
            plan.misplaced.add(holding.size);
        }
        tasks.push(Task::Place(work));
    }
    Ok(ArcSurvey { plan, tasks })
}

/// Has every holder verify its copy; drops the holders whose copy failed.
async fn drop_corrupt_copies(cluster: &Cluster, inventory: &mut inventory::Inventory) {
    let checks: Vec<(String, String)> = inventory
        .iter()
        .flat_map(|(key, h)| h.holders.iter().map(move |n| (key.clone(), n.clone())))
        .collect();
    let corrupt: Vec<(String, String)> = futures::stream::iter(checks)
        .map(|(key, node)| async move {
            let verdict = match cluster.client(&node) {
                Ok(client) => client.verify(&key).await,
                Err(e) => Err(e),
            };
            match verdict {
                Err(e) if e.is_data_loss() => Some((key, node)),
                Ok(None) => Some((key, node)),
                _ => None,
            }
        })
        .buffer_unordered(PARALLELISM)
        .filter_map(futures::future::ready)
        .collect()
        .await;
    for (key, node) in corrupt {
        tracing::warn!(%key, %node, "repair: copy failed verification (quarantined by its node)");
        if let Some(holding) = inventory.get_mut(&key) {
            holding.holders.retain(|h| *h != node);
            if holding.holders.is_empty() {
                inventory.remove(&key);
            }
        }
    }
}

/// Copies the reachable nodes report as quarantined since they started.
pub(super) async fn quarantined(
    cluster: &Cluster,
    nodes: &BTreeSet<String>,
    unreachable: &[String],
) -> u64 {
    let counts = futures::future::join_all(nodes.iter().filter(|n| !unreachable.contains(n)).map(
        |node| async move {
            match cluster.client(node) {
                Ok(client) => client.health().await.map_or(0, |h| h.quarantined_count),
                Err(_) => 0,
            }
        },
    ))
    .await;
    counts.into_iter().sum()
}
