//! Client of one storage node: the calls the web node, migration and console make.
//! Large files always go through the streaming RPCs, so neither side holds a file whole
//! unless the caller asks for it.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::AsyncReadExt;
/// The status codes a node answers with, which callers classify errors by.
pub use tonic::Code;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

pub use super::stat::{CHUNK_BYTES, FileStat, NodeStats};
use crate::node::address::with_scheme;
use crate::node::call_metrics::{self, MeteredChannel};
use crate::node::index::RangeDigest;
use crate::proto::storage::storage_service_client::StorageServiceClient;
use crate::proto::storage::{
    DeleteFilesRequest, DeleteRequest, GetFileRequest, HeldVideosRequest, KeyInfo,
    ListQuarantineRequest, NodeStatsRequest, PullFileRequest, PutFileChunk, PutFileResponse,
    QuarantinedFile, RangeDigestsRequest, ScrubRequest, ScrubResponse, StatFileRequest,
    StatFileResponse, StreamKeysRequest,
};
use crate::ring::KeyRange;
use crate::trust::tls::ClusterTls;

/// How long a node may take to answer a call that moves no file body (stat, delete,
/// the start of a read or listing): a hung node must not hang its caller.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Ranges per RangeDigests call: about 100 KB of reply.
const DIGEST_BATCH: usize = 4096;
/// How long one listing batch with stats may take (hashing up to 1 000 files).
const HASHING_BATCH_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest message the compatible (unary, whole-file) RPCs accept and send.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid node address {0:?}")]
    BadAddress(String),
    #[error("storage node {node}: {status}")]
    Rpc { node: String, status: Status },
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl ClientError {
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Rpc { status, .. } => Some(status.code()),
            _ => None,
        }
    }

    /// The node's copy is corrupt (DATA_LOSS): it has been quarantined there; read the
    /// next holder. Also a pull whose source copy was corrupt or whose bytes did not hash
    /// to the expected SHA-256 (nothing was stored).
    pub fn is_data_loss(&self) -> bool {
        self.code() == Some(Code::DataLoss)
    }

    /// The node refused a write for lack of space (RESOURCE_EXHAUSTED); nothing of it was
    /// kept: place that copy elsewhere.
    pub fn is_disk_full(&self) -> bool {
        self.code() == Some(Code::ResourceExhausted)
    }

    /// The node does not have the RPC (a node of the original system).
    pub fn is_unimplemented(&self) -> bool {
        self.code() == Some(Code::Unimplemented)
    }

    /// A call to `node` that ended as if it had answered `code` with `why`: a caller's
    /// own deadline, a stop, or a file gone in between, reported like the node's answers.
    pub fn ended(node: &str, code: Code, why: impl Into<String>) -> Self {
        ClientError::Rpc {
            node: node.to_string(),
            status: Status::new(code, why),
        }
    }
}

pub type ClientResult<T> = Result<T, ClientError>;

impl From<PutFileResponse> for FileStat {
    fn from(reply: PutFileResponse) -> Self {
        FileStat {
            size: reply.size,
            sha256: reply.sha256,
            crc32c: None,
        }
    }
}

/// A node's health as NodeStats reports it (fields documented in proto/storage.proto).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeHealth {
    pub stats: NodeStats,
    pub free_bytes: u64,
    pub disk_total_bytes: u64,
    pub min_free_bytes: u64,
    pub quarantined_count: u64,
    pub checksum_failures: u64,
    /// Empty from a node that predates store identities (or the original system's).
    pub store_id: String,
    pub store_created_unix_ms: u64,
    pub store_recreated: bool,
    /// The node's `--zone`, empty for none.
    pub zone: String,
    /// StreamKeys calls the node has served since it started.
    pub key_listings_served: u64,
    /// Whether the node's position index is built (RangeDigests answers).
    pub position_index_ready: bool,
}

/// A cheap-to-clone handle on one node; the underlying HTTP/2 connection is shared and
/// re-established on demand.
#[derive(Clone, Debug)]
pub struct StorageClient {
    address: String,
    /// Every call through it is counted and timed for the metrics.
    inner: StorageServiceClient<MeteredChannel>,
}

/// Turns `host:port` (or a URL) into an endpoint with the timeouts every node call uses.
pub fn endpoint(address: &str) -> ClientResult<Endpoint> {
    Ok(Endpoint::from_shared(with_scheme(address))
        .map_err(|_| ClientError::BadAddress(address.to_string()))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .initial_stream_window_size(Some(4 * 1024 * 1024))
        .initial_connection_window_size(Some(16 * 1024 * 1024)))
}

impl StorageClient {
    /// A client that connects on first use; never fails for a well-formed address.
    pub fn connect_lazy(address: &str) -> ClientResult<Self> {
        Self::connect_lazy_tls(address, None)
    }

    /// As [`Self::connect_lazy`]; with `tls`, over mutual TLS with the cluster CA.
    pub fn connect_lazy_tls(address: &str, tls: Option<&ClusterTls>) -> ClientResult<Self> {
        let channel = match tls {
            None => endpoint(address)?,
            Some(tls) => {
                let url = crate::trust::tls::url(address, true);
                endpoint(&url)?
                    .tls_config(tls.client_config())
                    .map_err(|e| ClientError::BadAddress(format!("{address}: {e}")))?
            }
        }
        .connect_lazy();
        Ok(Self::from_channel(address, channel))
    }

    pub fn from_channel(address: &str, channel: Channel) -> Self {
        StorageClient {
            address: address.to_string(),
            inner: StorageServiceClient::new(call_metrics::metered(address, channel))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Waits for `call` at most [`ANSWER_TIMEOUT`].
    async fn answer<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        within(ANSWER_TIMEOUT, call).await
    }

    fn rpc(&self, status: Status) -> ClientError {
        ClientError::Rpc {
            node: self.address.clone(),
            status,
        }
    }

    /// Stores `data` under `key` (streamed in chunks). With `expected_sha256`, the node
    /// refuses a copy whose hash differs and keeps nothing of it.
    pub async fn put(
        &self,
        key: &str,
        data: Bytes,
        expected_sha256: Option<&str>,
    ) -> ClientResult<FileStat> {
        let chunks = chunked(data);
        self.put_stream(key, expected_sha256, futures::stream::iter(chunks))
            .await
    }

    /// Streams the file at `path` to the node under `key`, never holding it whole.
    pub async fn put_file(
        &self,
        key: &str,
        path: &Path,
        expected_sha256: Option<&str>,
    ) -> ClientResult<FileStat> {
        let io_error = |source| ClientError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = tokio::fs::File::open(path).await.map_err(io_error)?;
        // Read ahead of the network by a few chunks, no more.
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let reader = tokio::spawn(async move {
            loop {
                let mut buf = vec![0u8; CHUNK_BYTES];
                let mut filled = 0;
                while filled < buf.len() {
                    let n = file.read(&mut buf[filled..]).await?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                if filled == 0 {
                    return Ok::<_, std::io::Error>(());
                }
                buf.truncate(filled);
                if tx.send(Bytes::from(buf)).await.is_err() {
                    return Ok(());
                }
            }
        });
        let sent = self
            .put_stream(
                key,
                expected_sha256,
                tokio_stream::wrappers::ReceiverStream::new(rx),
            )
            .await;
        match reader.await {
            Ok(Ok(())) => sent,
            Ok(Err(e)) => Err(io_error(e)),
            Err(join) => Err(io_error(std::io::Error::other(join))),
        }
    }

    /// Streams chunks to the node under `key`; the file appears only once all arrived.
    pub async fn put_stream<S>(
        &self,
        key: &str,
        expected_sha256: Option<&str>,
        chunks: S,
    ) -> ClientResult<FileStat>
    where
        S: Stream<Item = Bytes> + Send + 'static,
    {
        let first = PutFileChunk {
            key: key.to_string(),
            data: Bytes::new(),
            expected_sha256: expected_sha256.unwrap_or_default().to_string(),
        };
        let rest = chunks.map(|data| PutFileChunk {
            data,
            ..Default::default()
        });
        let request = futures::stream::iter([first]).chain(rest);
        let reply = self
            .inner
            .clone()
            .put_file(request)
            .await
            .map_err(|s| self.rpc(s))?
            .into_inner();
        Ok(reply.into())
    }

    /// Has this node copy `key` straight from the node at `source`; the copy is kept only
    /// if it hashes to `expected_sha256`.
    pub async fn pull(
        &self,
        key: &str,
        source: &str,
        expected_sha256: &str,
    ) -> ClientResult<FileStat> {
        let request = PullFileRequest {
            key: key.to_string(),
            source_address: source.to_string(),
            expected_sha256: expected_sha256.to_string(),
        };
        let reply = self
            .inner
            .clone()
            .pull_file(request)
            .await
            .map_err(|s| self.rpc(s))?
            .into_inner();
        Ok(reply.into())
    }

    /// The whole file, or None if the node does not have it.
    pub async fn get(&self, key: &str) -> ClientResult<Option<Bytes>> {
        let Some((stat, stream)) = self.get_stream(key, 0, 0).await? else {
            return Ok(None);
        };
        let mut data = Vec::with_capacity(stat.size as usize);
        let mut stream = std::pin::pin!(stream);
        while let Some(chunk) = stream.next().await {
            data.extend_from_slice(&chunk?);
        }
        Ok(Some(Bytes::from(data)))
    }

    /// A byte range of the file (`length` 0 = to the end) as a stream of chunks, with the
    /// whole file's size and hash; None if the node does not have it.
    pub async fn get_stream(
        &self,
        key: &str,
        offset: u64,
        length: u64,
    ) -> ClientResult<
        Option<(
            FileStat,
            impl Stream<Item = ClientResult<Bytes>> + Send + 'static,
        )>,
    > {
        let request = GetFileRequest {
            key: key.to_string(),
            offset,
            length,
        };
        let mut inner = self.inner.clone();
        let mut stream = match self.answer(inner.get_file(request)).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::NotFound => return Ok(None),
            Err(status) => return Err(self.rpc(status)),
        };
        // The first message carries the size and hash (and perhaps the first bytes).
        let first = match self.answer(stream.message()).await {
            Ok(Some(first)) => first,
            Ok(None) => return Err(self.rpc(Status::internal("empty reply stream"))),
            Err(status) if status.code() == Code::NotFound => return Ok(None),
            Err(status) => return Err(self.rpc(status)),
        };
        let stat = FileStat {
            size: first.total_size,
            sha256: first.sha256,
            crc32c: first.crc32c,
        };
        let node = self.address.clone();
        let head = futures::stream::iter((!first.data.is_empty()).then_some(Ok(first.data)));
        let tail = stream
            .map_ok(|chunk| chunk.data)
            .map_err(move |status| ClientError::Rpc {
                node: node.clone(),
                status,
            });
        Ok(Some((stat, head.chain(tail))))
    }

    /// Size and SHA-256 of the file, or None if the node does not have it.
    pub async fn stat(&self, key: &str) -> ClientResult<Option<FileStat>> {
        let request = StatFileRequest {
            key: key.to_string(),
            verify: false,
        };
        let mut inner = self.inner.clone();
        let reply = self.answer(inner.stat_file(request)).await;
        self.stat_reply(reply)
    }

    /// Has the node read the whole file and check it against its recorded SHA-256: the
    /// size and hash when it matches, None if absent, and an error for which
    /// [`ClientError::is_data_loss`] holds when it does not (the copy is quarantined).
    pub async fn verify(&self, key: &str) -> ClientResult<Option<FileStat>> {
        let request = StatFileRequest {
            key: key.to_string(),
            verify: true,
        };
        let mut inner = self.inner.clone();
        // Reads the whole file: allow the time a big one takes.
        let reply = within(HASHING_BATCH_TIMEOUT, inner.stat_file(request)).await;
        self.stat_reply(reply)
    }

    fn stat_reply(
        &self,
        reply: Result<tonic::Response<StatFileResponse>, Status>,
    ) -> ClientResult<Option<FileStat>> {
        match reply {
            Ok(reply) => {
                let reply = reply.into_inner();
                Ok(Some(FileStat {
                    size: reply.size,
                    sha256: reply.sha256,
                    crc32c: None,
                }))
            }
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(self.rpc(status)),
        }
    }

    /// Deletes the file; succeeds if it is already absent.
    pub async fn delete(&self, key: &str) -> ClientResult<()> {
        let request = DeleteRequest {
            key: key.to_string(),
        };
        let mut inner = self.inner.clone();
        let reply = self
            .answer(inner.delete_file(request))
            .await
            .map_err(|s| self.rpc(s))?;
        if reply.into_inner().success {
            Ok(())
        } else {
            Err(self.rpc(Status::internal("delete reported failure")))
        }
    }

    /// Deletes `keys` (at most 1024) in one call; returns how many the node held.
    /// UNIMPLEMENTED from a node without DeleteFiles (the original system's).
    pub async fn delete_many(&self, keys: Vec<String>) -> ClientResult<u64> {
        let mut inner = self.inner.clone();
        let reply = self
            .answer(inner.delete_files(DeleteFilesRequest { keys }))
            .await
            .map_err(|s| self.rpc(s))?;
        Ok(reply.into_inner().deleted)
    }

    /// Every key the node holds (with size and hash when `with_stat`).
    pub async fn keys(&self, with_stat: bool) -> ClientResult<Vec<KeyInfo>> {
        self.keys_in(with_stat, KeyRange::WHOLE).await
    }

    /// The keys the node holds in one arc of the ring. A node from before arcs sends
    /// every key; those outside the arc are dropped here.
    pub async fn keys_in(&self, with_stat: bool, range: KeyRange) -> ClientResult<Vec<KeyInfo>> {
        let mut inner = self.inner.clone();
        let request = StreamKeysRequest {
            with_stat,
            range: (!range.is_whole()).then_some(crate::proto::storage::KeyRange {
                start: range.start,
                end: range.end,
            }),
        };
        let mut stream = self
            .answer(inner.stream_keys(request))
            .await
            .map_err(|s| self.rpc(s))?
            .into_inner();
        let mut keys = Vec::new();
        // Each batch must come within a deadline; the whole listing may take longer. A
        // batch with stats may have to hash files the node has not hashed yet.
        let batch_timeout = if with_stat {
            HASHING_BATCH_TIMEOUT
        } else {
            ANSWER_TIMEOUT
        };
        while let Some(batch) = within(batch_timeout, stream.message())
            .await
            .map_err(|s| self.rpc(s))?
        {
            keys.extend(
                batch
                    .keys
                    .into_iter()
                    .filter(|k| range.contains_key(&k.key)),
            );
        }
        Ok(keys)
    }

    /// File count and bytes, and how long the call took.
    pub async fn stats(&self) -> ClientResult<(NodeStats, Duration)> {
        let started = Instant::now();
        let mut inner = self.inner.clone();
        let reply = self
            .answer(inner.node_stats(NodeStatsRequest {}))
            .await
            .map_err(|s| self.rpc(s))?
            .into_inner();
        Ok((
            NodeStats {
                file_count: reply.file_count,
                total_bytes: reply.total_bytes,
            },
            started.elapsed(),
        ))
    }
}

impl StorageClient {
    /// Counts, free disk, verification findings and the store's identity.
    pub async fn health(&self) -> ClientResult<NodeHealth> {
        let mut inner = self.inner.clone();
        let reply = self
            .answer(inner.node_stats(NodeStatsRequest {}))
            .await
            .map_err(|s| self.rpc(s))?
            .into_inner();
        Ok(NodeHealth {
            stats: NodeStats {
                file_count: reply.file_count,
                total_bytes: reply.total_bytes,
            },
            free_bytes: reply.free_bytes,
            disk_total_bytes: reply.disk_total_bytes,
            min_free_bytes: reply.min_free_bytes,
            quarantined_count: reply.quarantined_count,
            checksum_failures: reply.checksum_failures,
            store_id: reply.store_id,
            store_created_unix_ms: reply.store_created_unix_ms,
            store_recreated: reply.store_recreated,
            zone: reply.zone,
            key_listings_served: reply.key_listings_served,
            position_index_ready: reply.position_index_ready,
        })
    }

    /// The video ids the node holds files of; None when its position index is not built
    /// yet (or it predates the call).
    pub async fn held_videos(&self) -> ClientResult<Option<Vec<String>>> {
        let mut inner = self.inner.clone();
        match self.answer(inner.held_videos(HeldVideosRequest {})).await {
            Ok(reply) => {
                let reply = reply.into_inner();
                Ok(reply.index_ready.then_some(reply.video_ids))
            }
            Err(status) if status.code() == Code::Unimplemented => Ok(None),
            Err(status) => Err(self.rpc(status)),
        }
    }

    /// The node's digest of each arc (see RangeDigests in proto/storage.proto), asked in
    /// batches; None when its position index is not built yet (or it predates digests):
    /// list the keys instead.
    pub async fn range_digests(
        &self,
        ranges: &[KeyRange],
    ) -> ClientResult<Option<Vec<RangeDigest>>> {
        let mut digests = Vec::with_capacity(ranges.len());
        for batch in ranges.chunks(DIGEST_BATCH) {
            let mut inner = self.inner.clone();
            let request = RangeDigestsRequest {
                ranges: batch
                    .iter()
                    .map(|r| crate::proto::storage::KeyRange {
                        start: r.start,
                        end: r.end,
                    })
                    .collect(),
            };
            let reply = match self.answer(inner.range_digests(request)).await {
                Ok(reply) => reply.into_inner(),
                Err(status) if status.code() == Code::Unimplemented => return Ok(None),
                Err(status) => return Err(self.rpc(status)),
            };
            if !reply.index_ready {
                return Ok(None);
            }
            if reply.digests.len() != batch.len() {
                return Err(self.rpc(Status::internal(format!(
                    "{} digests for {} ranges",
                    reply.digests.len(),
                    batch.len()
                ))));
            }
            for digest in reply.digests {
                let xor: [u8; 16] = digest.xor[..]
                    .try_into()
                    .map_err(|_| self.rpc(Status::internal("a range digest is not 16 bytes")))?;
                digests.push(RangeDigest {
                    xor: u128::from_be_bytes(xor),
                    count: digest.count,
                });
            }
        }
        Ok(Some(digests))
    }

    /// The scrub's progress and findings; with `start_now`, starts a pass first.
    pub async fn scrub(&self, start_now: bool) -> ClientResult<ScrubResponse> {
        let mut inner = self.inner.clone();
        Ok(self
            .answer(inner.scrub(ScrubRequest { start_now }))
            .await
            .map_err(|s| self.rpc(s))?
            .into_inner())
    }

    /// The copies this node has quarantined, oldest first.
    pub async fn quarantine(&self) -> ClientResult<Vec<QuarantinedFile>> {
        let mut inner = self.inner.clone();
        Ok(self
            .answer(inner.list_quarantine(ListQuarantineRequest {}))
            .await
            .map_err(|s| self.rpc(s))?
            .into_inner()
            .files)
    }
}

async fn within<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(Status::deadline_exceeded(format!(
            "no answer within {} s",
            limit.as_secs()
        )))
    })
}

/// Splits a buffer into streaming chunks without copying.
fn chunked(mut data: Bytes) -> Vec<Bytes> {
    let mut chunks = Vec::with_capacity(data.len() / CHUNK_BYTES + 1);
    while data.len() > CHUNK_BYTES {
        chunks.push(data.split_to(CHUNK_BYTES));
    }
    if !data.is_empty() {
        chunks.push(data);
    }
    chunks
}
