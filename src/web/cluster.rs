//! The storage cluster as the web node sees it: the ring, the spare nodes, the migration in
//! progress (all persisted in the metadata store), and a pooled client per node.
//!
//! Reads try the wanted holders first and fall back to the old ones while a migration
//! runs, then to any other replica, so playback never breaks during a change or with one
//! node down.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::sync::{RwLock, RwLockReadGuard};

use crate::meta::{MetaError, MetaStore};
use crate::node::client::{ClientError, FileStat, StorageClient};
use crate::ring::Ring;

/// What the cluster is made of; saved as JSON in the metadata store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub ring: Ring,
    /// Known nodes outside the ring (added by `up`, or removed earlier): offered to the
    /// operator, never written to.
    #[serde(default)]
    pub spares: BTreeSet<String>,
    /// The change under way, if any: until it finishes, `ring` is still the old ring.
    #[serde(default)]
    pub migration: Option<Journal>,
    /// Raised by every save, so a web node following the store's watch never goes back
    /// to an older state delivered late.
    #[serde(default)]
    pub version: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Add,
    Remove,
}

/// A ring change in progress: enough to finish it after a crash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    pub id: String,
    pub kind: ChangeKind,
    pub node: String,
    pub target: Ring,
    pub started_at: DateTime<Utc>,
}

impl ClusterState {
    /// Holders to write a new file to: the target ring's owners while a change runs.
    pub fn write_holders(&self, key: &str) -> Vec<String> {
        let ring = self.migration.as_ref().map_or(&self.ring, |j| &j.target);
        ring.owners(key).into_iter().map(String::from).collect()
    }

    /// Holders to read from, in order: wanted owners, then (during a change) old owners.
    pub fn read_holders(&self, key: &str) -> Vec<String> {
        let mut holders = self.write_holders(key);
        if self.migration.is_some() {
            for node in self.ring.owners(key) {
                if !holders.iter().any(|h| h == node) {
                    holders.push(node.to_string());
                }
            }
        }
        holders
    }

    /// Every node that may hold files: ring members and a change's new node.
    pub fn data_nodes(&self) -> BTreeSet<String> {
        let mut nodes: BTreeSet<String> = self.ring.nodes().map(String::from).collect();
        if let Some(journal) = &self.migration {
            nodes.extend(journal.target.nodes().map(String::from));
        }
        nodes
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no storage node in the ring")]
    NoNodes,
    #[error("{0}")]
    Node(#[from] ClientError),
    #[error("copies of {key} disagree: {detail}")]
    Mismatch { key: String, detail: String },
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("cluster state in the metadata store is unreadable: {0}")]
    Corrupt(String),
}

/// A readable file: its size and hash, and its bytes (from `offset`) as a stream.
pub struct OpenFile {
    pub stat: FileStat,
    pub body: BoxStream<'static, Result<Bytes, ClientError>>,
}

pub struct Cluster {
    meta: MetaStore,
    state: RwLock<ClusterState>,
    clients: Mutex<HashMap<String, StorageClient>>,
}

impl Cluster {
    /// Loads the saved cluster state, or seeds it with `seed_nodes` when the store has
    /// none. A saved state wins over the seed: nodes changed at run time are kept.
    pub async fn load(
        meta: MetaStore,
        seed_nodes: &[String],
        virtual_nodes: u32,
        replicas: u32,
    ) -> Result<Arc<Self>, ClusterError> {
        let state = match meta.load_cluster_state().await? {
            Some(json) => {
                let state: ClusterState = serde_json::from_str(&json)
                    .map_err(|e| ClusterError::Corrupt(e.to_string()))?;
                let saved: BTreeSet<&str> = state.ring.nodes().collect();
                let seed: BTreeSet<&str> = seed_nodes.iter().map(String::as_str).collect();
                if saved != seed {
                    tracing::warn!(
                        ?saved,
                        ?seed,
                        "the saved ring differs from the command line; using the saved ring"
                    );
                }
                if state.ring.virtual_nodes() != virtual_nodes || state.ring.replicas() != replicas
                {
                    tracing::warn!(
                        saved_v = state.ring.virtual_nodes(),
                        saved_r = state.ring.replicas(),
                        "virtual nodes / replicas differ from the saved ring; using the saved values"
                    );
                }
                state
            }
            None => {
                let state = ClusterState {
                    ring: Ring::with_nodes(virtual_nodes, replicas, seed_nodes.iter().cloned()),
                    spares: BTreeSet::new(),
                    migration: None,
                    version: 1,
                };
                meta.save_cluster_state(&to_json(&state)).await?;
                state
            }
        };
        Ok(Arc::new(Cluster {
            meta,
            state: RwLock::new(state),
            clients: Mutex::new(HashMap::new()),
        }))
    }

    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    pub async fn snapshot(&self) -> ClusterState {
        self.state.read().await.clone()
    }

    /// Holds the state steady: a change cannot switch rings while this guard lives, so a
    /// write that started on one ring finishes before the migration lists the nodes.
    pub async fn read_state(&self) -> RwLockReadGuard<'_, ClusterState> {
        self.state.read().await
    }

    /// Saves `next` to the metadata store, then makes it the state in use. Taking the
    /// write lock waits for writes that started on the previous state.
    pub async fn replace_state(&self, mut next: ClusterState) -> Result<(), ClusterError> {
        let mut state = self.state.write().await;
        next.version = state.version + 1;
        self.meta.save_cluster_state(&to_json(&next)).await?;
        *state = next;
        Ok(())
    }

    /// Records nodes to offer the operator; those already in the ring are left alone.
    pub async fn register_spares(&self, spares: &[String]) -> Result<(), ClusterError> {
        let mut next = self.snapshot().await;
        let before = next.spares.len();
        let outside: Vec<String> = spares
            .iter()
            .filter(|n| !next.ring.contains(n))
            .cloned()
            .collect();
        next.spares.extend(outside);
        if next.spares.len() != before {
            self.replace_state(next).await?;
        }
        Ok(())
    }

    /// Adopts a state saved by another web node (seen through the store's watch).
    pub async fn adopt_saved_state(&self, json: &str) -> Result<(), ClusterError> {
        let next: ClusterState =
            serde_json::from_str(json).map_err(|e| ClusterError::Corrupt(e.to_string()))?;
        let mut state = self.state.write().await;
        if next.version > state.version {
            tracing::info!(nodes = ?next.ring.nodes().collect::<Vec<_>>(), "ring changed elsewhere");
            *state = next;
        }
        Ok(())
    }

    pub fn client(&self, address: &str) -> Result<StorageClient, ClientError> {
        let mut clients = self.clients.lock().expect("client pool lock");
        if let Some(client) = clients.get(address) {
            return Ok(client.clone());
        }
        let client = StorageClient::connect_lazy(address)?;
        clients.insert(address.to_string(), client.clone());
        Ok(client)
    }

    /// Stores the file at `path` under `key` on every holder; all copies must agree.
    pub async fn put_file(&self, key: &str, path: &Path) -> Result<FileStat, ClusterError> {
        let size = tokio::fs::metadata(path).await.map_or(0, |m| m.len());
        let state = self.read_state().await;
        let holders = state.write_holders(key);
        if holders.is_empty() {
            return Err(ClusterError::NoNodes);
        }
        let puts = holders.iter().map(|node| async move {
            let client = self.client(node)?;
            with_transfer_deadline(node, size, client.put_file(key, path, None)).await
        });
        let stats = futures::future::try_join_all(puts).await?;
        drop(state);
        let first = stats[0].clone();
        if let Some(other) = stats.iter().find(|s| **s != first) {
            return Err(ClusterError::Mismatch {
                key: key.to_string(),
                detail: format!("{first:?} vs {other:?}"),
            });
        }
        Ok(first)
    }

    /// Opens `key` from the first holder that has it, from `offset` for `length` bytes
    /// (0 = to the end). None if no holder has it.
    pub async fn open(
        &self,
        key: &str,
        offset: u64,
        length: u64,
    ) -> Result<Option<OpenFile>, ClusterError> {
        let holders = self.read_state().await.read_holders(key);
        if holders.is_empty() {
            return Err(ClusterError::NoNodes);
        }
        let mut last_error = None;
        for node in &holders {
            let client = self.client(node)?;
            match client.get_stream(key, offset, length).await {
                Ok(Some((stat, body))) => {
                    return Ok(Some(OpenFile {
                        stat,
                        body: body.boxed(),
                    }));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(%node, %key, error = %e, "holder failed; trying the next");
                    last_error = Some(e);
                }
            }
        }
        match last_error {
            Some(e) => Err(e.into()),
            None => Ok(None),
        }
    }

    /// Every key held by any node that may hold files.
    pub async fn all_keys(&self) -> Result<Vec<String>, ClusterError> {
        let nodes = self.read_state().await.data_nodes();
        let mut keys = BTreeSet::new();
        for node in &nodes {
            let listing = self.client(node)?.keys(false).await?;
            keys.extend(listing.into_iter().map(|info| info.key));
        }
        Ok(keys.into_iter().collect())
    }

    /// Deletes `key` from every node that may hold it; tries them all, then reports the
    /// first failure.
    pub async fn delete(&self, key: &str) -> Result<(), ClusterError> {
        let nodes = self.read_state().await.data_nodes();
        let deletes = nodes.iter().map(|node| async move {
            let client = self.client(node)?;
            client.delete(key).await
        });
        let results = futures::future::join_all(deletes).await;
        match results.into_iter().find_map(Result::err) {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// Bounds a file transfer by its size (at least 1 MiB/s, plus 30 s), so a node that stops
/// answering mid-transfer cannot hold up an upload, or a ring change waiting for it, forever.
pub async fn with_transfer_deadline<T>(
    node: &str,
    size: u64,
    transfer: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    let limit = std::time::Duration::from_secs(30 + size / (1024 * 1024));
    tokio::time::timeout(limit, transfer)
        .await
        .unwrap_or_else(|_| {
            Err(ClientError::Rpc {
                node: node.to_string(),
                status: tonic::Status::deadline_exceeded(format!(
                    "transfer of {size} bytes did not finish within {} s",
                    limit.as_secs()
                )),
            })
        })
}

pub fn to_json(state: &ClusterState) -> String {
    serde_json::to_string(state).expect("cluster state serializes")
}
