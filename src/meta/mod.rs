//! Metadata store: the videos and the cluster state (ring membership and migration
//! journal), in SQLite on one machine or in an etcd cluster.
//!
//! - [`sqlite`]: one SQLite file (rusqlite, bundled), blocking calls off the async threads.
//! - [`etcd`]: an etcd v3 cluster; the original's `videos/{id}` keys, the rest under
//!   `tritontube/`.

pub mod etcd;
pub mod sqlite;

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

pub use etcd::EtcdStore;
pub use sqlite::SqliteStore;

/// Where a video is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoStatus {
    /// Claimed by an upload that is still transcoding or storing.
    Processing,
    /// Every file is stored; playable.
    Ready,
}

impl VideoStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VideoStatus::Processing => "processing",
            VideoStatus::Ready => "ready",
        }
    }
}

/// What is known of one video once it is stored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VideoDetails {
    pub duration_seconds: f64,
    /// Bytes of the uploaded MP4.
    pub source_bytes: u64,
    /// Number of DASH files stored and their total size.
    pub file_count: u64,
    pub stored_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Video {
    pub id: String,
    pub uploaded_at: DateTime<Utc>,
    pub status: VideoStatus,
    /// None while processing, and for videos written by the original system.
    pub details: Option<VideoDetails>,
}

/// A read result and whether it may be stale (served by a member without quorum).
#[derive(Clone, Debug, PartialEq)]
pub struct Read<T> {
    pub value: T,
    pub stale: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("video {0:?} already exists")]
    AlreadyExists(String),
    #[error("video {0:?} not found")]
    NotFound(String),
    /// The store cannot answer now (etcd without quorum, no member reachable, a deadline
    /// passed); retrying later may work.
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    #[error("metadata store error: {0}")]
    Internal(String),
}

pub type MetaResult<T> = Result<T, MetaError>;

/// The metadata store in use. An enum rather than a trait object: two backends, static
/// dispatch, and async methods without boxing.
#[derive(Clone)]
pub enum MetaStore {
    Sqlite(SqliteStore),
    Etcd(EtcdStore),
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            MetaStore::Sqlite($store) => $call,
            MetaStore::Etcd($store) => $call,
        }
    };
}

impl MetaStore {
    /// Opens (creating and migrating if needed) the SQLite file at `path`.
    pub async fn sqlite(path: &std::path::Path) -> MetaResult<Self> {
        Ok(MetaStore::Sqlite(SqliteStore::open(path).await?))
    }

    /// Connects to etcd; endpoints are `host:port` or `http://host:port`.
    pub async fn etcd(endpoints: &[String]) -> MetaResult<Self> {
        Ok(MetaStore::Etcd(EtcdStore::connect(endpoints).await?))
    }

    /// Claims `id` for an upload (status Processing). `AlreadyExists` if the id is taken in
    /// any state; of two concurrent claims exactly one succeeds.
    pub async fn claim_video(&self, id: &str, at: DateTime<Utc>) -> MetaResult<()> {
        dispatch!(self, s => s.claim_video(id, at).await)
    }

    /// Marks a claimed video Ready with its details (on etcd this is when the original's
    /// `videos/{id}` key appears).
    pub async fn finish_video(&self, id: &str, details: &VideoDetails) -> MetaResult<()> {
        dispatch!(self, s => s.finish_video(id, details).await)
    }

    /// Forgets a video in any state (a failed upload's claim, or a deletion). Idempotent.
    pub async fn remove_video(&self, id: &str) -> MetaResult<()> {
        dispatch!(self, s => s.remove_video(id).await)
    }

    pub async fn get_video(&self, id: &str) -> MetaResult<Read<Option<Video>>> {
        dispatch!(self, s => s.get_video(id).await)
    }

    /// Every video, newest first.
    pub async fn list_videos(&self) -> MetaResult<Read<Vec<Video>>> {
        dispatch!(self, s => s.list_videos().await)
    }

    /// The cluster state document (ring + migration journal, JSON owned by the web node),
    /// or None if never saved.
    pub async fn load_cluster_state(&self) -> MetaResult<Option<String>> {
        dispatch!(self, s => s.load_cluster_state().await)
    }

    pub async fn save_cluster_state(&self, json: &str) -> MetaResult<()> {
        dispatch!(self, s => s.save_cluster_state(json).await)
    }

    /// Every later change of the cluster state document, as it happens. SQLite has one
    /// writer (this process), so its stream never yields.
    pub async fn watch_cluster_state(&self) -> MetaResult<BoxStream<'static, String>> {
        dispatch!(self, s => s.watch_cluster_state().await)
    }

    /// A short name for logs and pages: "sqlite" or "etcd".
    pub fn kind(&self) -> &'static str {
        match self {
            MetaStore::Sqlite(_) => "sqlite",
            MetaStore::Etcd(_) => "etcd",
        }
    }
}
