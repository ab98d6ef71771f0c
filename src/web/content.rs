//! Where the DASH files live: one local folder (single-machine mode) or the ring of storage
//! nodes. Both give the same three operations to the upload and playback paths.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::cluster::{Cluster, ClusterError, OpenFile};
use crate::node::client::{ClientError, FileStat};
use crate::node::store::{Store, StoreError};

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
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ClientError> for ContentError {
    fn from(e: ClientError) -> Self {
        ContentError::Cluster(ClusterError::Node(e))
    }
}

impl Content {
    pub async fn put_file(&self, key: &str, path: &Path) -> Result<FileStat, ContentError> {
        match self {
            Content::Local(store) => {
                let stat = store.put_file(key, path).await?;
                Ok(FileStat {
                    size: stat.size,
                    sha256: stat.sha256,
                })
            }
            Content::Ring(cluster) => Ok(cluster.put_file(key, path).await?),
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
                let Some((stat, body)) = store.read_range(key, offset, length).await? else {
                    return Ok(None);
                };
                Ok(Some(OpenFile {
                    stat: FileStat {
                        size: stat.size,
                        sha256: stat.sha256,
                    },
                    body: body
                        .map_err(|e| ClientError::Io {
                            path: String::new(),
                            source: e,
                        })
                        .boxed(),
                }))
            }
            Content::Ring(cluster) => Ok(cluster.open(key, offset, length).await?),
        }
    }

    pub async fn read_all(&self, key: &str) -> Result<Option<Bytes>, ContentError> {
        let Some(file) = self.open(key, 0, 0).await? else {
            return Ok(None);
        };
        let chunks: Vec<Bytes> = file.body.try_collect().await?;
        Ok(Some(chunks.concat().into()))
    }

    pub async fn delete(&self, key: &str) -> Result<(), ContentError> {
        match self {
            Content::Local(store) => Ok(store.delete(key).await?),
            Content::Ring(cluster) => Ok(cluster.delete(key).await?),
        }
    }
}
