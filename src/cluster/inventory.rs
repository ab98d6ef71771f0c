//! What the nodes really hold, and the copy → verify → delete step that moves one file
//! to where a ring wants it. Ring changes use it (and repair will): since the work is
//! computed from what the nodes hold, running it again after a crash finishes the job.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;

use super::files::with_transfer_deadline;
use super::membership::Cluster;
use crate::node::client::{ClientError, Code, StorageClient};
use crate::ring::{KeyRange, Ring};

/// One file as the nodes hold it.
#[derive(Clone, Debug)]
pub struct Holding {
    pub size: u64,
    pub sha256: String,
    pub holders: Vec<String>,
}

/// key → its size, hash and holders (in address order of the nodes).
pub type Inventory = BTreeMap<String, Holding>;

/// The work for one key: copy to `missing`, then delete from `extra`.
#[derive(Clone, Debug)]
pub struct KeyWork {
    pub key: String,
    pub size: u64,
    pub sha256: String,
    /// Nodes to copy from, best first.
    pub sources: Vec<String>,
    pub missing: Vec<String>,
    pub extra: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("node {node} is unreachable: {why}")]
pub struct Unreachable {
    pub node: String,
    pub why: String,
}

/// Lists every node of `nodes` with sizes and hashes. A node in `may_skip` that does not
/// answer is left out (a node being removed: its copies elsewhere are used); any other
/// node that does not answer stops the inventory, since files it holds would be missed.
pub async fn take(
    cluster: &Cluster,
    nodes: &BTreeSet<String>,
    may_skip: Option<&str>,
) -> Result<Inventory, Unreachable> {
    take_in(cluster, nodes, may_skip, KeyRange::WHOLE).await
}

/// [`take`] for the keys of one arc of the ring.
pub async fn take_in(
    cluster: &Cluster,
    nodes: &BTreeSet<String>,
    may_skip: Option<&str>,
    arc: KeyRange,
) -> Result<Inventory, Unreachable> {
    let (inventory, mut missed) = take_reachable_in(cluster, nodes, arc).await;
    match missed
        .iter()
        .position(|m| Some(m.node.as_str()) != may_skip)
    {
        Some(i) => Err(missed.swap_remove(i)),
        None => {
            for m in &missed {
                tracing::warn!(node = %m.node, why = %m.why, "node being removed does not answer; using other copies");
            }
            Ok(inventory)
        }
    }
}

/// Lists every node of `nodes` that answers, and says which did not.
pub async fn take_reachable(
    cluster: &Cluster,
    nodes: &BTreeSet<String>,
) -> (Inventory, Vec<Unreachable>) {
    take_reachable_in(cluster, nodes, KeyRange::WHOLE).await
}

/// [`take_reachable`] for the keys of one arc of the ring.
pub async fn take_reachable_in(
    cluster: &Cluster,
    nodes: &BTreeSet<String>,
    arc: KeyRange,
) -> (Inventory, Vec<Unreachable>) {
    let listings = futures::future::join_all(nodes.iter().map(|node| async move {
        let listing = match cluster.client(node) {
            Ok(client) => client.keys_in(true, arc).await,
            Err(e) => Err(e),
        };
        (node.clone(), listing)
    }))
    .await;
    let mut inventory = Inventory::new();
    let mut missed = Vec::new();
    for (node, listing) in listings {
        let keys = match listing {
            Ok(keys) => keys,
            Err(e) => {
                missed.push(Unreachable {
                    node,
                    why: e.to_string(),
                });
                continue;
            }
        };
        for info in keys {
            let holding = inventory.entry(info.key).or_insert_with(|| Holding {
                size: info.size,
                sha256: info.sha256.clone(),
                holders: Vec::new(),
            });
            if holding.sha256 == info.sha256 {
                holding.holders.push(node.clone());
            } else {
                // A copy that disagrees is treated as absent, so a good copy overwrites it.
                tracing::warn!(%node, "copy differs from another node's; it will be replaced");
            }
        }
    }
    (inventory, missed)
}

/// Every key whose holders differ from what `target` wants.
pub fn work_list(inventory: &Inventory, target: &Ring) -> Vec<KeyWork> {
    inventory
        .iter()
        .filter_map(|(key, holding)| work_for(key, holding, target))
        .collect()
}

/// What it takes to put `key` where `target` wants it: None when it already is.
pub fn work_for(key: &str, holding: &Holding, target: &Ring) -> Option<KeyWork> {
    let wanted = target.owners(key);
    let missing: Vec<String> = wanted
        .iter()
        .filter(|n| !holding.holders.iter().any(|h| h == *n))
        .map(|n| n.to_string())
        .collect();
    let extra: Vec<String> = holding
        .holders
        .iter()
        .filter(|h| !wanted.contains(&h.as_str()))
        .cloned()
        .collect();
    if missing.is_empty() && extra.is_empty() {
        return None;
    }
    // Read from holders that stay first: they are the healthy part of the cluster.
    let mut sources = holding.holders.clone();
    sources.sort_by_key(|h| !wanted.contains(&h.as_str()));
    Some(KeyWork {
        key: key.to_string(),
        size: holding.size,
        sha256: holding.sha256.clone(),
        sources,
        missing,
        extra,
    })
}

/// Copies one key to the holders that lack it, then deletes it where it is no longer
/// wanted. Returns the bytes copied.
pub async fn move_key(
    cluster: &Cluster,
    item: &KeyWork,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<u64, ClientError> {
    let copied = copy_paced(cluster, item, stop).await?;
    for node in &item.extra {
        cluster.client(node)?.delete(&item.key).await?;
    }
    Ok(copied)
}

/// [`copy_missing`] under the operator's pace and pause: waits until the key's bytes
/// may move, then copies and counts them for the measured rate.
pub async fn copy_paced(
    cluster: &Cluster,
    item: &KeyWork,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<u64, ClientError> {
    let bytes = item.size * item.missing.len() as u64;
    if !cluster.admit_move(bytes, stop).await {
        let node = item.missing.first().map_or("", String::as_str);
        return Err(ClientError::ended(
            node,
            Code::Cancelled,
            "stopped while waiting for the pace",
        ));
    }
    let copied = copy_missing(cluster, item).await?;
    cluster.moved(copied);
    Ok(copied)
}

/// Copies one key to every holder that lacks it, each copy durable and checked when this
/// returns; its surplus copies ([`KeyWork::extra`]) are then the caller's to delete.
/// Returns the bytes copied.
pub async fn copy_missing(cluster: &Cluster, item: &KeyWork) -> Result<u64, ClientError> {
    let mut copied = 0;
    for target in &item.missing {
        let to = cluster.client(target)?;
        let mut last_error = None;
        let mut done = false;
        for source in &item.sources {
            match copy(cluster, source, &to, item).await {
                Ok(()) => {
                    done = true;
                    break;
                }
                Err(e) => {
                    if e.is_data_loss() {
                        cluster.suspects().add(
                            &item.key,
                            format!("a copy to {target} found the copy on {source} corrupt"),
                        );
                    }
                    last_error = Some(e)
                }
            }
        }
        if !done {
            return Err(last_error.unwrap_or_else(|| {
                ClientError::ended(target, Code::NotFound, "no copy left to read from")
            }));
        }
        copied += item.size;
    }
    Ok(copied)
}

/// Deletes surplus copies of `keys` from `node` in one call, or one call per key on a
/// node without DeleteFiles (the original system's).
pub async fn delete_surplus(
    cluster: &Cluster,
    node: &str,
    keys: &[String],
) -> Result<(), ClientError> {
    let client = cluster.client(node)?;
    match client.delete_many(keys.to_vec()).await {
        Err(e) if e.is_unimplemented() => {
            for key in keys {
                client.delete(key).await?;
            }
            Ok(())
        }
        other => other.map(|_| ()),
    }
}

/// Copies one key from `source` to `to`: the target pulls it straight from the source
/// (the bytes never pass through this node); a node without that RPC (the original
/// system's) gets it relayed through here instead. Either way the target keeps the copy
/// only if it has the inventory's SHA-256.
async fn copy(
    cluster: &Cluster,
    source: &str,
    to: &StorageClient,
    item: &KeyWork,
) -> Result<(), ClientError> {
    let pulled = to.pull(&item.key, source, &item.sha256);
    match with_transfer_deadline(to.address(), item.size, pulled).await {
        Err(e) if e.is_unimplemented() => {}
        other => return other.map(|_| ()),
    }
    let from = cluster.client(source)?;
    let Some((_, body)) = from.get_stream(&item.key, 0, 0).await? else {
        return Err(ClientError::ended(
            source,
            Code::NotFound,
            "file vanished during the change",
        ));
    };
    // Chunks that fail to read end the stream; the target then refuses the copy, because
    // its hash no longer matches.
    let chunks = body.take_while(|chunk| futures::future::ready(chunk.is_ok()));
    let chunks = chunks.filter_map(|chunk| futures::future::ready(chunk.ok()));
    let put = to.put_stream(&item.key, Some(&item.sha256), chunks);
    with_transfer_deadline(to.address(), item.size, put).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holding(holders: &[&str]) -> Holding {
        Holding {
            size: 10,
            sha256: "ab".into(),
            holders: holders.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn work_list_copies_missing_and_deletes_extra() {
        let target = Ring::with_nodes(1, 1, ["localhost:8090", "localhost:8091", "localhost:8092"]);
        let mut inventory = Inventory::new();
        // Owned by 8091: held by 8090 only → copy to 8091, delete from 8090.
        inventory.insert("v1/manifest.mpd".to_string(), holding(&["localhost:8090"]));
        // Owned by 8092 and held there: nothing to do.
        inventory.insert(
            "v1/chunk-0-00001.m4s".to_string(),
            holding(&["localhost:8092"]),
        );
        let work = work_list(&inventory, &target);
        assert_eq!(work.len(), 1);
        assert_eq!(work[0].key, "v1/manifest.mpd");
        assert_eq!(work[0].missing, ["localhost:8091"]);
        assert_eq!(work[0].extra, ["localhost:8090"]);
    }
}
