//! Files on the ring: write to every holder, read from the first holder that has the file
//! (the wanted owners first, then, during a change, the old ones, so playback never breaks
//! during a change or with one node down), list and delete everywhere.

use std::collections::BTreeSet;
use std::path::Path;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

use super::membership::{Cluster, ClusterError};
use crate::node::client::{ClientError, FileStat};

/// A readable file: its size and hash, and its bytes (from `offset`) as a stream.
pub struct OpenFile {
    pub stat: FileStat,
    pub body: BoxStream<'static, Result<Bytes, ClientError>>,
}

impl Cluster {
    /// Stores the file at `path` under `key` on every holder; all copies must agree. The
    /// holders come from a snapshot: no lock is held while the bytes travel, and the write
    /// is counted so a ring change waits for it before it takes its inventory.
    pub async fn put_file(&self, key: &str, path: &Path) -> Result<FileStat, ClusterError> {
        let size = tokio::fs::metadata(path).await.map_or(0, |m| m.len());
        let (state, _ticket) = self.begin_write();
        let holders = state.write_holders(key);
        if holders.is_empty() {
            return Err(ClusterError::NoNodes);
        }
        let puts = holders.iter().map(|node| async move {
            let client = self.client(node)?;
            with_transfer_deadline(node, size, client.put_file(key, path, None)).await
        });
        let stats = futures::future::try_join_all(puts).await?;
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
        let holders = self.snapshot().read_holders(key);
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
        let nodes = self.snapshot().data_nodes();
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
        let nodes = self.snapshot().data_nodes();
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
