//! Files on the ring: write to every holder, read from the first holder that has the file
//! (the wanted owners first, then, during a change, the old ones, so playback never breaks
//! during a change or with one node down), list and delete everywhere.

use std::collections::BTreeSet;
use std::path::Path;

use crate::node::client::Code;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use super::membership::{Cluster, ClusterError};
use crate::meta::Hint;
use crate::node::client::{ClientError, StorageClient};
use crate::node::stat::FileStat;

/// A readable file: its size and hash, and its bytes (from `offset`) as a stream.
pub struct OpenFile {
    pub stat: FileStat,
    pub body: BoxStream<'static, Result<Bytes, ClientError>>,
}

impl Cluster {
    /// Stores the file at `path` under `key` on its R owners; with `expected_sha256` each
    /// node keeps its copy only if it has that hash, which it records as the truth. An
    /// owner that does not answer (or whose disk is full) is replaced by the next node on
    /// the ring that does, as a hinted copy that repair hands to the owner later; with
    /// fewer than R nodes answering, the write fails (the caller removes what it wrote).
    ///
    /// The holders come from a snapshot: no lock is held while the bytes travel, and the
    /// write is counted so a ring change waits for it before it takes its inventory.
    pub async fn put_file(
        &self,
        key: &str,
        path: &Path,
        expected_sha256: Option<&str>,
    ) -> Result<FileStat, ClusterError> {
        let size = tokio::fs::metadata(path).await.map_or(0, |m| m.len());
        let (state, _ticket) = self.begin_write();
        let ring = state.write_ring();
        let preference = ring.preference_list(key);
        let wanted = (ring.replicas() as usize).min(preference.len());
        if wanted == 0 {
            return Err(ClusterError::NoNodes);
        }
        let put = |node: &str| {
            let node = node.to_string();
            async move {
                let client = self.client(&node)?;
                let sent = client.put_file(key, path, expected_sha256);
                with_transfer_deadline(&node, size, sent).await
            }
        };
        let owners = &preference[..wanted];
        let results = futures::future::join_all(owners.iter().map(|node| put(node))).await;
        let mut stats = Vec::with_capacity(wanted);
        let mut down = Vec::new();
        for (owner, result) in owners.iter().zip(results) {
            match result {
                Ok(stat) => stats.push(stat),
                Err(e) if stands_aside(&e) => {
                    tracing::warn!(%owner, %key, error = %e, "owner cannot take the file; writing a hinted copy");
                    down.push((owner.to_string(), e));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let mut stand_ins = preference[wanted..].iter();
        let mut hints = Vec::new();
        for (owner, why) in down {
            let placed = loop {
                let Some(candidate) = stand_ins.next() else {
                    return Err(ClusterError::TooFewNodes {
                        key: key.to_string(),
                        wanted,
                        last_error: why.to_string(),
                    });
                };
                match put(candidate).await {
                    Ok(stat) => break (candidate.to_string(), stat),
                    Err(e) if stands_aside(&e) => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            stats.push(placed.1);
            hints.push(Hint {
                key: key.to_string(),
                owner,
                stand_in: placed.0,
                at: chrono::Utc::now(),
            });
        }
        let first = stats[0].clone();
        if let Some(other) = stats.iter().find(|s| **s != first) {
            return Err(ClusterError::Mismatch {
                key: key.to_string(),
                detail: format!("{first:?} vs {other:?}"),
            });
        }
        for hint in &hints {
            // The hint is for the operator's view and repair's bookkeeping; repair finds
            // the misplaced copy from the nodes' listings even if this record is lost.
            if let Err(e) = self.meta().record_hint(hint).await {
                tracing::warn!(key = %hint.key, error = %e, "could not record a hinted copy");
            }
        }
        Ok(first)
    }

    /// Reads all of `key` (at most `limit` bytes) from the first holder that serves it
    /// whole: a holder whose copy fails verification (DATA_LOSS) or breaks mid-way is
    /// passed over for the next, so a corrupt copy never reaches the caller. Ok(None):
    /// no holder has it; Err(TooLarge) when it is larger than `limit`.
    pub async fn read_whole(
        &self,
        key: &str,
        limit: u64,
    ) -> Result<Option<(FileStat, Bytes)>, ClusterError> {
        self.read_first_holder(key, |client| async move {
            let Some((stat, body)) = client.get_stream(key, 0, 0).await? else {
                return Ok(None);
            };
            if stat.size > limit {
                return Err(ClusterError::TooLarge(stat.size));
            }
            let size = stat.size;
            Ok(Some((stat, gather(body, size).await?)))
        })
        .await
    }

    /// Opens `key` from the first holder that has it, from `offset` for `length` bytes
    /// (0 = to the end). None if no holder has it.
    pub async fn open(
        &self,
        key: &str,
        offset: u64,
        length: u64,
    ) -> Result<Option<OpenFile>, ClusterError> {
        self.read_first_holder(key, |client| async move {
            let opened = client.get_stream(key, offset, length).await?;
            Ok(opened.map(|(stat, body)| OpenFile {
                stat,
                body: body.boxed(),
            }))
        })
        .await
    }

    /// Runs `read` on the holders of `key` in read order until one has the file. A holder
    /// that fails (ClusterError::Node) is passed over for the next; any other error stops.
    async fn read_first_holder<T, F, Fut>(
        &self,
        key: &str,
        mut read: F,
    ) -> Result<Option<T>, ClusterError>
    where
        F: FnMut(StorageClient) -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, ClusterError>>,
    {
        let mut last_error = None;
        // During a ring change a file can move between two asks of one walk: not yet on
        // the new holder when it is asked, already deleted from the old one when that is
        // asked. The copy lands before the delete, so a second walk finds it.
        for walk in 0..2 {
            let state = self.snapshot();
            let holders = state.read_holders(key);
            if holders.is_empty() {
                return Err(ClusterError::NoNodes);
            }
            for node in &holders {
                match read(self.client(node)?).await {
                    Ok(Some(found)) => return Ok(Some(found)),
                    Ok(None) => {}
                    Err(ClusterError::Node(e)) => {
                        tracing::warn!(%node, %key, error = %e, "holder failed; trying the next");
                        if e.is_data_loss() {
                            self.suspects()
                                .add(key, format!("a read found the copy on {node} corrupt"));
                        }
                        last_error = Some(e);
                    }
                    Err(other) => return Err(other),
                }
            }
            let moving = state.migration.is_some() || self.snapshot().version != state.version;
            if walk == 0 && !moving {
                break;
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

/// All of a body in one buffer. A small file comes from the node as one message, which
/// is kept as it is (no copy); a body in several chunks is copied once into a buffer of
/// `size` bytes (the file's size, already checked against the caller's limit).
pub async fn gather<E>(
    body: impl futures::Stream<Item = Result<Bytes, E>>,
    size: u64,
) -> Result<Bytes, E> {
    let mut body = std::pin::pin!(body);
    let Some(first) = body.try_next().await? else {
        return Ok(Bytes::new());
    };
    let Some(second) = body.try_next().await? else {
        return Ok(first);
    };
    let mut whole = bytes::BytesMut::with_capacity(size as usize);
    whole.extend_from_slice(&first);
    whole.extend_from_slice(&second);
    while let Some(chunk) = body.try_next().await? {
        whole.extend_from_slice(&chunk);
    }
    Ok(whole.freeze())
}

/// Whether a write failure means "this node cannot take it now" (down, not answering,
/// disk full), so another node stands in, rather than a fault of the write itself.
pub fn stands_aside(e: &ClientError) -> bool {
    matches!(
        e.code(),
        Some(
            Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Cancelled
        )
    ) || matches!(e, ClientError::BadAddress(_))
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
            Err(ClientError::ended(
                node,
                Code::DeadlineExceeded,
                format!(
                    "transfer of {size} bytes did not finish within {} s",
                    limit.as_secs()
                ),
            ))
        })
}
