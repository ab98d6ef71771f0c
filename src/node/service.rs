//! The StorageService gRPC implementation over the [`Store`].
//!
//! Keys are validated before anything touches the disk (INVALID_ARGUMENT with the rule
//! broken); a missing file is `found = false` on the compatible DownloadFile and NOT_FOUND
//! on the new RPCs; internal failures are logged here and answered with INTERNAL, never
//! with a path. A copy that fails verification is DATA_LOSS, a full disk
//! RESOURCE_EXHAUSTED (see the self-healing block in proto/storage.proto).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status, Streaming};

use super::address::validate_address;
use super::client::{ClientError, MAX_MESSAGE_BYTES, StorageClient};
use super::identity::StoreIdentity;
use super::keys::split_key;
use super::scrub::{PassProgress, Scrubber};
use super::stat::FileStat;
use super::store::{Store, StoreError, parse_expected_sha256};
use super::transfer::{CopyClient, CopyFailure};
use super::verify::SmallRead;
use super::write::Arrival;
use crate::proto::storage::storage_service_server::{self, StorageServiceServer};
use crate::proto::storage::{
    DeleteFilesRequest, DeleteFilesResponse, DeleteRequest, DeleteResponse, DownloadRequest,
    DownloadResponse, GetFileChunk, GetFileRequest, HeldVideosRequest, HeldVideosResponse,
    KeyBatch, KeyInfo, ListFilesRequest, ListFilesResponse, ListQuarantineRequest,
    ListQuarantineResponse, NodeStatsRequest, NodeStatsResponse, PullFileRequest, PutFileChunk,
    PutFileResponse, QuarantinedFile, RangeDigest, RangeDigestsRequest, RangeDigestsResponse,
    ScrubFinding, ScrubPass, ScrubRequest, ScrubResponse, StatFileRequest, StatFileResponse,
    StreamKeysRequest, UploadRequest, UploadResponse,
};
use crate::ring::KeyRange;
use crate::trust::tls::ClusterTls;

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Status {
        match error {
            StoreError::BadKey(e) => Status::invalid_argument(format!("invalid key: {e}")),
            StoreError::BadChecksum => Status::invalid_argument(error.to_string()),
            StoreError::NotFound => Status::not_found("no such file"),
            StoreError::ChecksumMismatch { .. } | StoreError::CopyMismatch { .. } => {
                Status::data_loss(error.to_string())
            }
            StoreError::OutOfRange { .. } => Status::out_of_range(error.to_string()),
            StoreError::Corrupt { .. } => Status::data_loss(error.to_string()),
            StoreError::DiskFull(_) => {
                tracing::warn!(error = %error, "write refused");
                Status::resource_exhausted(format!("storage node {error}"))
            }
            StoreError::Io { .. } | StoreError::Task(_) => {
                // The details (paths, OS errors) stay in the node's log.
                tracing::error!(error = %error, "storage failure");
                Status::internal("storage node failure")
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct StorageService {
    store: Store,
    scrubber: Scrubber,
    identity: StoreIdentity,
    /// Clients of the nodes this one pulls files from, one connection each.
    sources: Arc<Mutex<HashMap<String, StorageClient>>>,
    /// Direct copies from other nodes (PullFile; see [`super::transfer`]).
    copies: Arc<CopyClient>,
    /// Bounds the memory of whole-file reads in flight (see [`WHOLE_READ_BYTES`]).
    whole_reads: Arc<tokio::sync::Semaphore>,
    /// With the cluster's certificates, pulls (direct copies and GetFile) run over
    /// mutual TLS.
    tls: Option<ClusterTls>,
    /// The failure domain reported to web nodes (`--zone`).
    zone: Option<String>,
    /// StreamKeys calls served, reported by NodeStats.
    key_listings: Arc<AtomicU64>,
}

/// A GetFile of a whole file up to this size is read, verified and sent as one message:
/// one hand-off to the blocking pool and no chunking (a DASH segment is 0.1–3 MB). Larger
/// files, ranges, and reads beyond [`WHOLE_READS_IN_FLIGHT`] stream chunk by chunk.
pub const WHOLE_READ_BYTES: u64 = 4 * 1024 * 1024;
/// At most this many whole-file reads are held in memory at once (64 MiB at most).
const WHOLE_READS_IN_FLIGHT: usize = 16;
/// Ranges one RangeDigests may ask for.
pub const MAX_DIGEST_RANGES: usize = 65_536;
/// Keys one DeleteFiles may carry.
pub const MAX_DELETE_KEYS: usize = 1024;

impl StorageService {
    /// The service over `store` alone: no scrub, and no store identity to report (as
    /// the original system's nodes, which have none).
    pub fn new(store: Store) -> Self {
        let scrubber = Scrubber::off(store.clone());
        Self::with_healing(store, scrubber, StoreIdentity::default())
    }

    /// The service over `store`, reporting its scrub and identity.
    pub fn with_healing(store: Store, scrubber: Scrubber, identity: StoreIdentity) -> Self {
        StorageService {
            store,
            scrubber,
            identity,
            sources: Arc::default(),
            copies: Arc::default(),
            whole_reads: Arc::new(tokio::sync::Semaphore::new(WHOLE_READS_IN_FLIGHT)),
            tls: None,
            zone: None,
            key_listings: Arc::default(),
        }
    }

    /// Reports `zone` as the node's failure domain.
    pub fn with_zone(mut self, zone: Option<String>) -> Self {
        self.zone = zone;
        self
    }

    /// Pulls from other nodes over mutual TLS with `tls` (none: plain).
    pub fn with_cluster_tls(mut self, tls: Option<ClusterTls>) -> Self {
        self.copies = Arc::new(CopyClient::new(tls.as_ref().map(ClusterTls::rustls_client)));
        self.tls = tls;
        self
    }

    fn source(&self, address: &str) -> Result<StorageClient, Status> {
        let address = validate_address(address).map_err(|why| {
            Status::invalid_argument(format!("invalid source address {address:?}: {why}"))
        })?;
        let mut sources = self.sources.lock().expect("source clients lock");
        if let Some(client) = sources.get(&address) {
            return Ok(client.clone());
        }
        let client = StorageClient::connect_lazy_tls(&address, self.tls.as_ref())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        sources.insert(address, client.clone());
        Ok(client)
    }

    async fn pull(&self, request: PullFileRequest) -> Result<PutFileResponse, Status> {
        let PullFileRequest {
            key,
            source_address,
            expected_sha256,
        } = request;
        split_key(&key).map_err(|e| Status::invalid_argument(format!("invalid key: {e}")))?;
        let expected = parse_expected_sha256(&expected_sha256)?
            .ok_or_else(|| Status::invalid_argument("a pull needs the expected SHA-256"))?;
        let source = self.source(&source_address)?;
        match self.copy(&key, &source_address, &expected).await? {
            Some(stat) => {
                tracing::debug!(key, source = source_address, size = stat.size, "copied");
                return Ok(PutFileResponse {
                    size: stat.size,
                    sha256: stat.sha256,
                });
            }
            None => tracing::debug!(key, source = source_address, "pulling through GetFile"),
        }
        // A corrupt source copy is DATA_LOSS, as a mismatch on arrival is: the caller
        // should pull from another holder. Anything else is the source being unreachable.
        let source_failed = |e: ClientError| {
            if e.is_data_loss() {
                Status::data_loss(format!("the source's copy is corrupt: {e}"))
            } else {
                Status::unavailable(format!("reading the source: {e}"))
            }
        };
        let Some((source_stat, body)) =
            source.get_stream(&key, 0, 0).await.map_err(source_failed)?
        else {
            return Err(Status::not_found(format!(
                "{source_address} does not hold {key}"
            )));
        };
        // The source's record is the one asked for: its CRC-32C checks the copy (see
        // Arrival::Copy). Otherwise (an old node, a v1 record) the copy is hashed.
        let arrival = match source_stat.crc32c {
            Some(crc32c) if source_stat.sha256 == expected => Arrival::Copy {
                sha256: expected,
                crc32c,
            },
            _ => Arrival::Hashed(Some(expected)),
        };
        let mut body = std::pin::pin!(body);
        let first = body.next().await.transpose().map_err(source_failed)?;
        let first = first.unwrap_or_default();
        let stat = if first.len() as u64 == source_stat.size {
            // The whole file came as one message (a segment): once the reply has ended
            // well, it is stored in one hand-off to the blocking pool.
            if let Some(more) = body.next().await {
                let extra = more.map_err(source_failed)?;
                return Err(Status::data_loss(format!(
                    "{source_address} sent {} bytes more than the {} of {key}",
                    extra.len(),
                    source_stat.size
                )));
            }
            self.store.put(&key, first, arrival).await?
        } else {
            let mut pending = self.store.begin_write(&key, arrival).await?;
            pending.write(first).await?;
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(chunk) => pending.write(chunk).await?,
                    Err(e) => {
                        // Nothing of a failed pull stays, not even the folder it made.
                        pending.abandon().await;
                        return Err(source_failed(e));
                    }
                }
            }
            pending.commit().await?
        };
        tracing::debug!(key, source = source_address, size = stat.size, "pulled");
        Ok(PutFileResponse {
            size: stat.size,
            sha256: stat.sha256,
        })
    }

    /// A direct copy of `key` from `source` (see [`super::transfer`]); None when it has
    /// to go through GetFile: the source does not serve copies, or the bytes failed their
    /// check (GetFile's verified read then quarantines a rotted source copy).
    async fn copy(
        &self,
        key: &str,
        source: &str,
        expected: &str,
    ) -> Result<Option<FileStat>, Status> {
        let (copies, store) = (Arc::clone(&self.copies), self.store.clone());
        let (key, source, expected) = (key.to_string(), source.to_string(), expected.to_string());
        tokio::task::spawn_blocking(
            move || match copies.pull(&store, &source, &key, &expected) {
                Ok(stat) => Ok(Some(stat)),
                Err(
                    CopyFailure::Unsupported | CopyFailure::Store(StoreError::CopyMismatch { .. }),
                ) => Ok(None),
                Err(CopyFailure::Source(busy)) if busy.code() == Code::ResourceExhausted => {
                    Ok(None)
                }
                Err(CopyFailure::Source(status)) if status.code() == Code::NotFound => {
                    Err(Status::not_found(format!("{source} does not hold {key}")))
                }
                Err(CopyFailure::Source(status)) => Err(status),
                Err(CopyFailure::Store(e)) => Err(e.into()),
            },
        )
        .await
        .map_err(|e| Status::internal(format!("copy task: {e}")))?
    }

    /// The tonic service, with message limits raised so the compatible whole-file RPCs
    /// carry large files.
    pub fn into_server(self) -> StorageServiceServer<StorageService> {
        StorageServiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    async fn put_stream(
        &self,
        mut chunks: Streaming<PutFileChunk>,
    ) -> Result<PutFileResponse, Status> {
        let first = chunks.message().await?.ok_or_else(|| {
            Status::invalid_argument("empty stream: the first chunk names the key")
        })?;
        let expected = parse_expected_sha256(&first.expected_sha256)?;
        let mut pending = self
            .store
            .begin_write(&first.key, Arrival::Hashed(expected))
            .await?;
        pending.write(first.data).await?;
        // Nothing of a partial upload stays: a failed stream abandons the write here, a
        // failed write has cleaned up after itself, and a dropped request drops `pending`.
        loop {
            let chunk = match chunks.message().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(status) => {
                    pending.abandon().await;
                    return Err(status);
                }
            };
            if !chunk.key.is_empty() && chunk.key != pending.key() {
                pending.abandon().await;
                return Err(Status::invalid_argument(
                    "only the first chunk may name the key",
                ));
            }
            pending.write(chunk.data).await?;
        }
        let stat = pending.commit().await?;
        tracing::debug!(key = first.key, size = stat.size, "stored (stream)");
        Ok(PutFileResponse {
            size: stat.size,
            sha256: stat.sha256,
        })
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl storage_service_server::StorageService for StorageService {
    async fn upload_file(
        &self,
        request: Request<UploadRequest>,
    ) -> Result<Response<UploadResponse>, Status> {
        let UploadRequest { key, data } = request.into_inner();
        let stat = self.store.put(&key, data, Arrival::Hashed(None)).await?;
        tracing::debug!(key, size = stat.size, "stored");
        Ok(Response::new(UploadResponse { success: true }))
    }

    async fn download_file(
        &self,
        request: Request<DownloadRequest>,
    ) -> Result<Response<DownloadResponse>, Status> {
        let key = request.into_inner().key;
        let reply = match self.store.read(&key).await {
            Ok(data) => DownloadResponse { found: true, data },
            Err(StoreError::NotFound) => DownloadResponse {
                found: false,
                data: Default::default(),
            },
            Err(e) => return Err(e.into()),
        };
        Ok(Response::new(reply))
    }

    async fn delete_file(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let key = request.into_inner().key;
        self.store.delete(&key).await?;
        tracing::debug!(key, "deleted");
        Ok(Response::new(DeleteResponse { success: true }))
    }

    async fn delete_files(
        &self,
        request: Request<DeleteFilesRequest>,
    ) -> Result<Response<DeleteFilesResponse>, Status> {
        let keys = request.into_inner().keys;
        if keys.len() > MAX_DELETE_KEYS {
            return Err(Status::invalid_argument(format!(
                "{} keys in one DeleteFiles; at most {MAX_DELETE_KEYS}",
                keys.len()
            )));
        }
        let asked = keys.len();
        let deleted = self.store.delete_many(keys).await?;
        tracing::debug!(asked, deleted, "deleted");
        Ok(Response::new(DeleteFilesResponse { deleted }))
    }

    async fn list_files(
        &self,
        _request: Request<ListFilesRequest>,
    ) -> Result<Response<ListFilesResponse>, Status> {
        // The original contract is one reply; StreamKeys is the scalable way.
        let mut keys = Vec::new();
        let mut batches = std::pin::pin!(self.store.list(false));
        while let Some(batch) = batches.next().await {
            keys.extend(batch?.into_iter().map(|listed| listed.key));
        }
        Ok(Response::new(ListFilesResponse { keys }))
    }

    async fn pull_file(
        &self,
        request: Request<PullFileRequest>,
    ) -> Result<Response<PutFileResponse>, Status> {
        self.pull(request.into_inner()).await.map(Response::new)
    }

    async fn put_file(
        &self,
        request: Request<Streaming<PutFileChunk>>,
    ) -> Result<Response<PutFileResponse>, Status> {
        self.put_stream(request.into_inner())
            .await
            .map(Response::new)
    }

    type GetFileStream = BoxStream<GetFileChunk>;

    async fn get_file(
        &self,
        request: Request<GetFileRequest>,
    ) -> Result<Response<Self::GetFileStream>, Status> {
        let GetFileRequest {
            key,
            offset,
            length,
        } = request.into_inner();
        let whole = offset == 0 && length == 0;
        let permit = whole
            .then(|| Arc::clone(&self.whole_reads).try_acquire_owned().ok())
            .flatten();
        let file = match permit {
            Some(permit) => match self.store.open_small(&key, WHOLE_READ_BYTES).await? {
                SmallRead::Whole(stat, data) => {
                    let reply = GetFileChunk {
                        data,
                        total_size: stat.size,
                        sha256: stat.sha256,
                        crc32c: stat.crc32c,
                    };
                    // The permit is held until the message has been taken for sending.
                    let stream = futures::stream::once(async move {
                        let _permit = permit;
                        Ok(reply)
                    });
                    return Ok(Response::new(Box::pin(stream) as Self::GetFileStream));
                }
                SmallRead::Large(file) => file,
            },
            None => self.store.open_read(&key).await?,
        };
        let stat = file.stat.clone();
        let mut data = Box::pin(file.range(offset, length)?);
        let stream = async_stream::try_stream! {
            // The first message always goes out, even for an empty range, because it
            // carries the whole file's size and hash.
            let first = match data.next().await {
                Some(chunk) => chunk?,
                None => Default::default(),
            };
            yield GetFileChunk {
                data: first,
                total_size: stat.size,
                sha256: stat.sha256,
                // Only a whole file's bytes can be checked against it.
                crc32c: stat.crc32c.filter(|_| whole),
            };
            while let Some(chunk) = data.next().await {
                yield GetFileChunk {
                    data: chunk?,
                    ..Default::default()
                };
            }
        };
        Ok(Response::new(Box::pin(stream) as Self::GetFileStream))
    }

    async fn stat_file(
        &self,
        request: Request<StatFileRequest>,
    ) -> Result<Response<StatFileResponse>, Status> {
        let StatFileRequest { key, verify } = request.into_inner();
        let stat = if verify {
            self.store.verify(&key).await?
        } else {
            self.store.stat(&key).await?
        };
        Ok(Response::new(StatFileResponse {
            size: stat.size,
            sha256: stat.sha256,
        }))
    }

    type StreamKeysStream = BoxStream<KeyBatch>;

    async fn stream_keys(
        &self,
        request: Request<StreamKeysRequest>,
    ) -> Result<Response<Self::StreamKeysStream>, Status> {
        let request = request.into_inner();
        let with_stat = request.with_stat;
        let range = request
            .range
            .map(|r| KeyRange::new(r.start, r.end))
            .unwrap_or(KeyRange::WHOLE);
        self.key_listings.fetch_add(1, Ordering::Relaxed);
        let batches = match range.is_whole() {
            true => self.store.list(with_stat).boxed(),
            false => self.store.list_in(with_stat, range).boxed(),
        };
        let stream = batches.map(move |batch| {
            let keys = batch?
                .into_iter()
                .map(|listed| {
                    let (size, sha256) = listed
                        .stat
                        .map(|stat| (stat.size, stat.sha256))
                        .unwrap_or_default();
                    KeyInfo {
                        key: listed.key,
                        size,
                        sha256,
                    }
                })
                .collect();
            Ok::<_, Status>(KeyBatch { keys })
        });
        Ok(Response::new(Box::pin(stream) as Self::StreamKeysStream))
    }

    async fn node_stats(
        &self,
        _request: Request<NodeStatsRequest>,
    ) -> Result<Response<NodeStatsResponse>, Status> {
        let health = self.store.health().await?;
        Ok(Response::new(NodeStatsResponse {
            file_count: health.stats.file_count,
            total_bytes: health.stats.total_bytes,
            free_bytes: health.disk.free_bytes,
            disk_total_bytes: health.disk.total_bytes,
            min_free_bytes: health.min_free_bytes,
            quarantined_count: health.quarantined,
            checksum_failures: health.checksum_failures,
            store_id: self.identity.id.clone(),
            store_created_unix_ms: self.identity.created_unix_ms,
            store_recreated: self.identity.recreated,
            zone: self.zone.clone().unwrap_or_default(),
            key_listings_served: self.key_listings.load(Ordering::Relaxed),
            position_index_ready: self.store.index_ready(),
        }))
    }

    async fn scrub(
        &self,
        request: Request<ScrubRequest>,
    ) -> Result<Response<ScrubResponse>, Status> {
        let started = if request.into_inner().start_now {
            self.scrubber
                .start_now()
                .map_err(|e| Status::failed_precondition(e.to_string()))?
        } else {
            false
        };
        let report = self.scrubber.report();
        let pass = |p: PassProgress| ScrubPass {
            started_unix_ms: p.started_unix_ms,
            finished_unix_ms: p.finished_unix_ms,
            files_checked: p.files_checked,
            bytes_checked: p.bytes_checked,
            files_total: p.files_total,
            bytes_total: p.bytes_total,
            corrupt_found: p.corrupt_found,
            errors: p.errors,
        };
        Ok(Response::new(ScrubResponse {
            enabled: report.enabled,
            rate_bytes_per_sec: report.rate_bytes_per_sec,
            interval_secs: report.interval.as_secs(),
            running: report.running || started,
            current: report.current.map(pass),
            last: report.last.map(pass),
            last_finding: report.last_finding.map(|f| ScrubFinding {
                key: f.key,
                found_unix_ms: f.found_unix_ms,
                reason: f.reason,
            }),
            next_pass_unix_ms: report.next_pass_unix_ms,
            passes_completed: report.passes_completed,
            started,
        }))
    }

    async fn list_quarantine(
        &self,
        _request: Request<ListQuarantineRequest>,
    ) -> Result<Response<ListQuarantineResponse>, Status> {
        let files = self
            .store
            .quarantined()
            .into_iter()
            .map(|copy| QuarantinedFile {
                key: copy.key,
                size: copy.size,
                quarantined_unix_ms: copy.quarantined_unix_ms,
                reason: copy.reason,
                expected_sha256: copy.expected_sha256,
                actual_sha256: copy.actual_sha256,
                found_by: copy.found_by.as_str().to_string(),
            })
            .collect();
        Ok(Response::new(ListQuarantineResponse { files }))
    }

    async fn held_videos(
        &self,
        _request: Request<HeldVideosRequest>,
    ) -> Result<Response<HeldVideosResponse>, Status> {
        let store = self.store.clone();
        let ids = tokio::task::spawn_blocking(move || store.held_videos())
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(HeldVideosResponse {
            index_ready: ids.is_some(),
            video_ids: ids.unwrap_or_default().into_iter().collect(),
        }))
    }

    async fn range_digests(
        &self,
        request: Request<RangeDigestsRequest>,
    ) -> Result<Response<RangeDigestsResponse>, Status> {
        let ranges: Vec<KeyRange> = request
            .into_inner()
            .ranges
            .into_iter()
            .map(|r| KeyRange::new(r.start, r.end))
            .collect();
        if ranges.len() > MAX_DIGEST_RANGES {
            return Err(Status::invalid_argument(format!(
                "{} ranges asked for; at most {MAX_DIGEST_RANGES} per call",
                ranges.len()
            )));
        }
        let store = self.store.clone();
        let digests = tokio::task::spawn_blocking(move || store.range_digests(&ranges))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(match digests {
            Some(digests) => RangeDigestsResponse {
                index_ready: true,
                digests: digests
                    .into_iter()
                    .map(|d| RangeDigest {
                        xor: bytes::Bytes::copy_from_slice(&d.xor.to_be_bytes()),
                        count: d.count,
                    })
                    .collect(),
            },
            None => RangeDigestsResponse {
                index_ready: false,
                digests: Vec::new(),
            },
        }))
    }
}
