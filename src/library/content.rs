//! Where the DASH files live: one local folder (single-machine mode) or the ring of storage
//! nodes. Both give the same three operations to the upload and playback paths.

use std::path::Path;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

use crate::cluster::files::OpenFile;
use crate::cluster::{Cluster, ClusterError};
use tokio::io::AsyncReadExt;

use crate::node::client::ClientError;
use crate::node::stat::{CHUNK_BYTES, FileStat};
use crate::node::store::{Store, StoreError};
use crate::node::write::Arrival;

#[derive(Clone)]
pub enum Content {
    /// `fs DIR`: the storage node's on-disk store, in process.
    Local(Arc<Store>),
    /// `nw ADMIN,NODES…`: the ring.
    Ring(Arc<Cluster>),
}

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("file of {0} bytes is too large to read whole")]
    TooLarge(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ClientError> for ContentError {
    fn from(e: ClientError) -> Self {
        ContentError::Cluster(ClusterError::Node(e))
    }
}

impl Content {
    /// Stores the file at `path` under `key`. On the ring every copy is checked against
    /// the file's SHA-256, which the nodes keep as the truth for verified reads and repair.
    pub async fn put_file(&self, key: &str, path: &Path) -> Result<FileStat, ContentError> {
        match self {
            Content::Local(store) => Ok(put_local(store, key, path).await?),
            Content::Ring(cluster) => {
                let sha256 = sha256_of_file(path)
                    .await
                    .map_err(|source| ClientError::Io {
                        path: path.display().to_string(),
                        source,
                    })?;
                Ok(cluster.put_file(key, path, Some(&sha256)).await?)
            }
        }
    }

    /// All of `key` if it is at most `limit` bytes, from a copy that verifies (the ring
    /// passes over a corrupt copy for the next holder). Ok(None) when absent;
    /// `ContentError::TooLarge` above the limit.
    pub async fn read_whole(
        &self,
        key: &str,
        limit: u64,
    ) -> Result<Option<(FileStat, bytes::Bytes)>, ContentError> {
        match self {
            Content::Local(_) => {
                let Some(opened) = self.open(key, 0, 0).await? else {
                    return Ok(None);
                };
                if opened.stat.size > limit {
                    return Err(ContentError::TooLarge(opened.stat.size));
                }
                let size = opened.stat.size;
                let data = crate::cluster::files::gather(opened.body, size).await?;
                Ok(Some((opened.stat, data)))
            }
            Content::Ring(cluster) => match cluster.read_whole(key, limit).await {
                Err(ClusterError::TooLarge(size)) => Err(ContentError::TooLarge(size)),
                other => Ok(other?),
            },
        }
    }

    /// `length` bytes of `key` from `offset` (0 = to the end); None if absent.
    pub async fn open(
        &self,
        key: &str,
        offset: u64,
        length: u64,
    ) -> Result<Option<OpenFile>, ContentError> {
        match self {
            Content::Local(store) => {
                let opened = match store.open_read(key).await {
                    Ok(opened) => opened,
                    Err(StoreError::NotFound) => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                let stat = opened.stat.clone();
                let body = opened.range(offset, length)?.map_err(|e| ClientError::Io {
                    path: String::new(),
                    source: std::io::Error::other(e),
                });
                Ok(Some(OpenFile {
                    stat,
                    body: body.boxed(),
                }))
            }
            Content::Ring(cluster) => Ok(cluster.open(key, offset, length).await?),
        }
    }

    /// Deletes every file of video `id`, wherever it is; returns how many there were.
    pub async fn delete_video_files(&self, id: &str) -> Result<usize, ContentError> {
        let prefix = format!("{id}/");
        let keys: Vec<String> = match self {
            Content::Local(store) => {
                let mut keys = Vec::new();
                let mut listing = std::pin::pin!(store.list(false));
                while let Some(batch) = listing.next().await {
                    keys.extend(batch?.into_iter().map(|k| k.key));
                }
                keys
            }
            Content::Ring(cluster) => cluster.all_keys().await?,
        };
        let doomed: Vec<&String> = keys.iter().filter(|k| k.starts_with(&prefix)).collect();
        for key in &doomed {
            self.delete(key).await?;
        }
        Ok(doomed.len())
    }

    pub async fn delete(&self, key: &str) -> Result<(), ContentError> {
        match self {
            Content::Local(store) => Ok(store.delete(key).await?),
            Content::Ring(cluster) => Ok(cluster.delete(key).await?),
        }
    }
}

/// The SHA-256 (lowercase hex) of the file at `path`, hashed off the async threads.
pub async fn sha256_of_file(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher)?;
        Ok(hex::encode(hasher.finalize()))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Streams the file at `path` into the local store, never holding it whole.
async fn put_local(store: &Store, key: &str, path: &Path) -> Result<FileStat, StoreError> {
    let io = |source| StoreError::Io {
        op: "reading",
        path: path.to_path_buf(),
        source,
    };
    let mut file = tokio::fs::File::open(path).await.map_err(io)?;
    let mut pending = store.begin_write(key, Arrival::Hashed(None)).await?;
    loop {
        let mut buf = bytes::BytesMut::with_capacity(CHUNK_BYTES);
        let n = file.read_buf(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        pending.write(buf.freeze()).await?;
    }
    pending.commit().await
}
