//! The metadata store in an etcd v3 cluster.
//!
//! Keys:
//! - `videos/{id}` → upload time, RFC 3339 with nanoseconds: the original system's key.
//!   It exists only for Ready videos, so the original never lists a half-uploaded one.
//! - `tritontube/videos/{id}` → [`Record`] as JSON: status, upload time, details.
//! - `tritontube/by-time/{inverted time}/{id}` → "": the newest-first index, so a page of
//!   the listing is one short range read instead of the whole library. The inverted time
//!   (`i64::MAX` − upload time in ns, 20 digits) sorts newest first, and equal times by id,
//!   as the listing does. Written with the record; videos without it (the original's, or
//!   records from before the index) are indexed the first time a page is asked for.
//! - `tritontube/cluster` → the cluster state document.
//! - `tritontube/resync/{key}` → a key waiting to be copied again (see `resync`).
//!
//! Each member gets its own clients, and this module does the failing over: it tries the
//! member that answered last, then the others, until a deadline. Writes and linearizable
//! reads go through clients that require a leader, so a member cut off from the quorum
//! says so at once instead of letting the request wait; reads then fall back to
//! serializable reads from any member still up, marked stale.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, KvClient, Txn,
    TxnOp, TxnOpResponse, TxnResponse, WatchClient, WatchOptions,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use super::{Caption, Claim, Hint, MetaError, MetaResult, Read, Video, VideoDetails, VideoStatus};
use crate::node::address::with_scheme;

mod delete;
mod pages;
mod resync;
use pages::time_key;

/// The original system's prefix.
const LEGACY_PREFIX: &str = "videos/";
const RECORD_PREFIX: &str = "tritontube/videos/";

const CLUSTER_KEY: &str = "tritontube/cluster";
const FENCE_PREFIX: &str = "tritontube/released/";
/// `tritontube/hints/{owner}/{key}` → the stand-in and when (an owner has no `/`).
const HINT_PREFIX: &str = "tritontube/hints/";

/// Time to open a TCP connection to one member.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(800);
/// Time one request to one member may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1500);
/// Time a write may take in all, failing over included: long enough to ride out the
/// election that follows the loss of a leader on a loaded machine, where one fsync can
/// take longer than an attempt.
const WRITE_DEADLINE: Duration = Duration::from_secs(8);
/// A write gives up sooner when, after this long, every member still either refuses the
/// connection or says it has no leader: the quorum is gone, not slow. Longer than an
/// election (etcd's default election timeout is 1 s).
const NO_LEADER_GRACE: Duration = Duration::from_millis(2500);
const LINEARIZABLE_READ_DEADLINE: Duration = Duration::from_secs(2);
/// Time the serializable fallback may take in all.
const STALE_READ_DEADLINE: Duration = Duration::from_secs(2);
/// A watch quiet for this long is asked to prove it is alive and in sync.
const WATCH_QUIET_CHECK: Duration = Duration::from_secs(5);
/// A member that failed within this long is tried after the others.
const SUSPECT_FOR: Duration = Duration::from_secs(5);
/// Replies can hold every video; the default 4 MiB would cap the index at ~20 000.
const MAX_REPLY_BYTES: usize = 256 * 1024 * 1024;

/// What `tritontube/videos/{id}` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    uploaded_at: DateTime<Utc>,
    status: VideoStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    details: Option<VideoDetails>,
    /// Names the claim that created the record, so a claim retried after an ambiguous
    /// failure can tell its own earlier success from someone else's.
    #[serde(default)]
    claim: String,
}

struct Member {
    endpoint: String,
    /// Requires a leader: for writes and linearizable reads.
    strict: KvClient,
    /// No leader needed: for serializable reads from a member cut off from the quorum.
    relaxed: KvClient,
    watch: WatchClient,
    /// Milliseconds since `Inner::epoch` of the last failure, 0 if none.
    failed_at: AtomicU64,
}

struct Inner {
    members: Vec<Member>,
    /// Whether every video has its time key (checked once per process).
    indexed: std::sync::atomic::AtomicBool,
    /// The member that answered last.
    preferred: AtomicUsize,
    epoch: Instant,
}

/// A handle on an etcd cluster; clones share the connections.
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints())
            .finish()
    }
}

/// Which of a member's clients an operation uses.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Strict,
    Relaxed,
}

/// Why an operation gave up.
enum Failure {
    /// No member answered in time; `no_leader` if some member said it had no leader.
    Exhausted { no_leader: bool, detail: String },
    /// An answer that retrying cannot change.
    Fatal(MetaError),
}

impl Failure {
    fn into_meta(self, what: &str) -> MetaError {
        match self {
            Failure::Fatal(e) => e,
            Failure::Exhausted { no_leader, detail } => {
                let why = if no_leader {
                    "the etcd cluster has no leader (quorum lost?)"
                } else {
                    "no etcd member answered"
                };
                MetaError::Unavailable(format!("{what}: {why}; {detail}"))
            }
        }
    }
}

/// How an etcd client error is handled.
enum ErrorKind {
    NoLeader,
    Retry,
    Fatal,
}

fn classify(e: &etcd_client::Error) -> ErrorKind {
    use tonic::Code;
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            if s.message().contains("no leader") {
                return ErrorKind::NoLeader;
            }
            match s.code() {
                Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Cancelled
                | Code::Unknown
                | Code::Aborted
                | Code::ResourceExhausted
                | Code::Internal => ErrorKind::Retry,
                _ => ErrorKind::Fatal,
            }
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => ErrorKind::Retry,
        _ => ErrorKind::Fatal,
    }
}

fn describe(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.message().to_owned(),
        other => other.to_string(),
    }
}

impl EtcdStore {
    /// Connects to the cluster at `endpoints` (`host:port` or with a scheme) and checks
    /// that at least one member answers.
    pub async fn connect(endpoints: &[String]) -> MetaResult<Self> {
        Self::connect_tls(endpoints, None).await
    }

    /// As [`Self::connect`]; with `tls`, over mutual TLS (etcd with `--client-cert-auth`).
    pub async fn connect_tls(
        endpoints: &[String],
        tls: Option<etcd_client::TlsOptions>,
    ) -> MetaResult<Self> {
        let endpoints: Vec<String> = endpoints
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
            .map(|e| match tls {
                None => with_scheme(e),
                Some(_) => crate::trust::tls::url(e, true),
            })
            .collect();
        if endpoints.is_empty() {
            return Err(MetaError::Internal("no etcd endpoint given".into()));
        }
        let mut members = Vec::with_capacity(endpoints.len());
        for endpoint in &endpoints {
            let mut options = ConnectOptions::new();
            if let Some(tls) = &tls {
                options = options.with_tls(tls.clone());
            }
            let options = options
                .with_connect_timeout(CONNECT_TIMEOUT)
                .with_timeout(ATTEMPT_TIMEOUT)
                // etcd refuses pings more often than every 5 s.
                .with_keep_alive(Duration::from_secs(10), Duration::from_secs(3));
            let connect = |options: ConnectOptions| async {
                Client::connect([endpoint.as_str()], Some(options))
                    .await
                    .map_err(|e| MetaError::Internal(format!("bad etcd endpoint {endpoint}: {e}")))
            };
            let strict = connect(options.clone().with_require_leader(true)).await?;
            let relaxed = connect(options).await?;
            members.push(Member {
                endpoint: endpoint.clone(),
                strict: strict
                    .kv_client()
                    .max_decoding_message_size(MAX_REPLY_BYTES),
                relaxed: relaxed
                    .kv_client()
                    .max_decoding_message_size(MAX_REPLY_BYTES),
                watch: strict.watch_client(),
                failed_at: AtomicU64::new(0),
            });
        }
        let store = EtcdStore {
            inner: Arc::new(Inner {
                members,
                preferred: AtomicUsize::new(0),
                indexed: std::sync::atomic::AtomicBool::new(false),
                epoch: Instant::now(),
            }),
        };
        // Fail at start-up, with the endpoints named, rather than on the first upload.
        store
            .run(Mode::Relaxed, WRITE_DEADLINE, None, |mut kv| async move {
                kv.get(CLUSTER_KEY, Some(GetOptions::new().with_serializable()))
                    .await
            })
            .await
            .map_err(|f| f.into_meta(&format!("connecting to etcd at {}", endpoints.join(","))))?;
        tracing::info!(endpoints = %endpoints.join(","), "metadata store: etcd");
        Ok(store)
    }

    /// The members' endpoints, as URLs.
    pub fn endpoints(&self) -> Vec<String> {
        self.inner
            .members
            .iter()
            .map(|m| m.endpoint.clone())
            .collect()
    }

    /// Members in the order to try them: the last one that answered, then those that have
    /// not failed lately, then the rest.
    fn order(&self) -> Vec<usize> {
        let n = self.inner.members.len();
        let first = self.inner.preferred.load(Ordering::Relaxed) % n;
        let now = self.inner.epoch.elapsed().as_millis() as u64;
        let suspect = |i: usize| {
            let at = self.inner.members[i].failed_at.load(Ordering::Relaxed);
            at != 0 && now.saturating_sub(at) < SUSPECT_FOR.as_millis() as u64
        };
        let mut order: Vec<usize> = (0..n).map(|k| (first + k) % n).collect();
        // Stable: keeps the rotation within each group.
        order.sort_by_key(|&i| suspect(i));
        order
    }

    fn mark_failed(&self, i: usize) {
        let now = (self.inner.epoch.elapsed().as_millis() as u64).max(1);
        self.inner.members[i]
            .failed_at
            .store(now, Ordering::Relaxed);
    }

    fn mark_ok(&self, i: usize) {
        self.inner.members[i].failed_at.store(0, Ordering::Relaxed);
        self.inner.preferred.store(i, Ordering::Relaxed);
    }

    /// Runs `op` against one member after another until one answers or `deadline` passes.
    /// With `no_leader_grace`, gives up sooner: after a whole round, ending at least that
    /// long after the start, in which some member said it had no leader and none answered.
    async fn run<T, F, Fut>(
        &self,
        mode: Mode,
        deadline: Duration,
        no_leader_grace: Option<Duration>,
        mut op: F,
    ) -> Result<T, Failure>
    where
        F: FnMut(KvClient) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let start = Instant::now();
        let mut no_leader = false;
        let mut last = String::from("no attempt made");
        let mut round = 0u32;
        loop {
            let mut round_no_leader = false;
            for i in self.order() {
                let Some(remaining) = deadline.checked_sub(start.elapsed()) else {
                    return Err(Failure::Exhausted {
                        no_leader,
                        detail: format!("gave up after {deadline:?}; last: {last}"),
                    });
                };
                let member = &self.inner.members[i];
                let kv = match mode {
                    Mode::Strict => member.strict.clone(),
                    Mode::Relaxed => member.relaxed.clone(),
                };
                let limit = remaining.min(ATTEMPT_TIMEOUT);
                match tokio::time::timeout(limit, op(kv)).await {
                    Ok(Ok(v)) => {
                        self.mark_ok(i);
                        return Ok(v);
                    }
                    Ok(Err(e)) => {
                        let text = describe(&e);
                        match classify(&e) {
                            ErrorKind::Fatal => {
                                return Err(Failure::Fatal(MetaError::Internal(format!(
                                    "etcd {}: {text}",
                                    member.endpoint
                                ))));
                            }
                            ErrorKind::NoLeader => {
                                no_leader = true;
                                round_no_leader = true;
                            }
                            ErrorKind::Retry => {}
                        }
                        tracing::debug!(endpoint = %member.endpoint, error = %text, "etcd attempt failed");
                        self.mark_failed(i);
                        last = format!("{}: {text}", member.endpoint);
                    }
                    Err(_) => {
                        tracing::debug!(endpoint = %member.endpoint, "etcd attempt timed out");
                        self.mark_failed(i);
                        last = format!("{}: no answer within {limit:?}", member.endpoint);
                    }
                }
            }
            if round_no_leader && no_leader_grace.is_some_and(|grace| start.elapsed() >= grace) {
                return Err(Failure::Exhausted {
                    no_leader,
                    detail: format!("last: {last}"),
                });
            }
            // Every member failed: back off a little (an election takes about a second).
            let pause = Duration::from_millis(50 << round.min(3));
            let Some(remaining) = deadline.checked_sub(start.elapsed()) else {
                continue;
            };
            tokio::time::sleep(pause.min(remaining)).await;
            round += 1;
        }
    }

    /// A write (or anything needing the quorum), failed over until [`WRITE_DEADLINE`].
    async fn txn(&self, what: &str, txn: Txn) -> MetaResult<TxnResponse> {
        self.run(
            Mode::Strict,
            WRITE_DEADLINE,
            Some(NO_LEADER_GRACE),
            |mut kv| {
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            },
        )
        .await
        .map_err(|f| f.into_meta(what))
    }

    /// A read-only transaction of gets, linearizable if the quorum answers, otherwise
    /// serializable from any member (stale).
    async fn read(&self, what: &str, gets: &[(String, bool)]) -> MetaResult<(TxnResponse, bool)> {
        self.read_with(what, |serializable: bool| {
            let ops: Vec<TxnOp> = gets
                .iter()
                .map(|(key, prefix)| {
                    let mut opts = GetOptions::new();
                    if *prefix {
                        opts = opts.with_prefix();
                    }
                    if serializable {
                        opts = opts.with_serializable();
                    }
                    TxnOp::get(key.as_str(), Some(opts))
                })
                .collect();
            Txn::new().and_then(ops)
        })
        .await
    }

    /// A read-only transaction built by `build(serializable)`: linearizable if the quorum
    /// answers, otherwise serializable from any member (stale).
    async fn read_with(
        &self,
        what: &str,
        build: impl Fn(bool) -> Txn,
    ) -> MetaResult<(TxnResponse, bool)> {
        let fresh = build(false);
        let first = self
            .run(
                Mode::Strict,
                LINEARIZABLE_READ_DEADLINE,
                Some(Duration::ZERO),
                |mut kv| {
                    let txn = fresh.clone();
                    async move { kv.txn(txn).await }
                },
            )
            .await;
        let why = match first {
            Ok(resp) => return Ok((resp, false)),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(f) => f.into_meta(what),
        };
        tracing::warn!(error = %why, "{what}: serving a possibly stale read");
        let stale = build(true);
        let resp = self
            .run(Mode::Relaxed, STALE_READ_DEADLINE, None, |mut kv| {
                let txn = stale.clone();
                async move { kv.txn(txn).await }
            })
            .await
            .map_err(|f| f.into_meta(what))?;
        Ok((resp, true))
    }

    pub async fn claim_video(&self, claim: &Claim) -> MetaResult<()> {
        let (id, at) = (claim.id.as_str(), claim.at);
        let record = Record {
            uploaded_at: at,
            status: VideoStatus::Processing,
            details: None,
            claim: claim.token.clone(),
        };
        let rkey = record_key(id);
        let txn = Txn::new()
            .when([
                Compare::create_revision(legacy_key(id), CompareOp::Equal, 0),
                Compare::create_revision(rkey.as_str(), CompareOp::Equal, 0),
                // Released already: this is an attempt delivered late, and must not land.
                Compare::create_revision(fence_key(&claim.token), CompareOp::Equal, 0),
            ])
            .and_then([
                TxnOp::put(rkey.as_str(), to_json(&record)?, None),
                TxnOp::put(time_key(id, at), "", None),
            ])
            .or_else([TxnOp::get(rkey.as_str(), None)]);
        let resp = self.txn(&format!("claiming video {id:?}"), txn).await?;
        if resp.succeeded() {
            return Ok(());
        }
        // An attempt that timed out may have landed before the retry that lost.
        let ours = first_kvs(&resp)
            .first()
            .and_then(|kv| serde_json::from_slice::<Record>(kv.value()).ok())
            .is_some_and(|r| r.claim == claim.token);
        if ours {
            Ok(())
        } else {
            Err(MetaError::AlreadyExists(id.to_owned()))
        }
    }

    /// Moves an upload's record to `status` (Playable or Ready) with `details`; the
    /// original's `videos/{id}` key appears only with Ready.
    pub async fn set_details(
        &self,
        id: &str,
        status: VideoStatus,
        details: &VideoDetails,
    ) -> MetaResult<()> {
        let what = format!("finishing video {id:?}");
        self.update_record(id, &what, |record| {
            if !record.status.in_upload() {
                // Finished already, or deleted while it was being stored.
                return Err(MetaError::NotFound(id.to_owned()));
            }
            record.status = status;
            // Caption tracks are set on their own; an upload's details never drop them.
            let captions = record
                .details
                .take()
                .map(|d| d.captions)
                .unwrap_or_default();
            record.details = Some(VideoDetails {
                captions,
                ..details.clone()
            });
            let mut also = Vec::new();
            if status == VideoStatus::Ready {
                also.push(TxnOp::put(
                    legacy_key(id),
                    format_time(record.uploaded_at),
                    None,
                ));
            }
            Ok(((), also))
        })
        .await
    }

    pub async fn set_caption(
        &self,
        id: &str,
        lang: &str,
        caption: Option<&Caption>,
    ) -> MetaResult<Option<Caption>> {
        let what = format!("setting a caption of video {id:?}");
        self.update_record(id, &what, |record| {
            if !record.status.watchable() {
                return Err(MetaError::NotFound(id.to_owned()));
            }
            let Some(details) = record.details.as_mut() else {
                return Err(MetaError::NotFound(id.to_owned()));
            };
            let old = super::replace_caption(&mut details.captions, lang, caption);
            Ok((old, Vec::new()))
        })
        .await
    }

    /// The one read–compare–swap loop: reads `keys` in one transaction, lets `decide`
    /// choose from what it read either a final answer or a transaction guarded by what it
    /// read (and the answer to give if it commits), and commits that; a lost race (a
    /// guard that no longer holds) reads again. An error from `decide` is final.
    async fn read_compare_swap<T>(
        &self,
        what: &str,
        keys: &[&str],
        mut decide: impl FnMut(&TxnResponse) -> MetaResult<Swap<T>>,
    ) -> MetaResult<T> {
        let gets: Vec<TxnOp> = keys.iter().map(|k| TxnOp::get(*k, None)).collect();
        for _ in 0..5 {
            let read = self.txn(what, Txn::new().and_then(gets.clone())).await?;
            match decide(&read)? {
                Swap::Done(answer) => return Ok(answer),
                Swap::Write { txn, answer } => {
                    if self.txn(what, txn).await?.succeeded() {
                        return Ok(answer);
                    }
                }
            }
        }
        Err(MetaError::Unavailable(format!(
            "{what}: the record kept changing"
        )))
    }

    /// Reads a video's record, lets `change` edit it (naming any other writes of the same
    /// transaction), and writes it back only if it is unchanged since the read; a lost
    /// race (a concurrent writer or remove) reads again. An error from `change` is final.
    async fn update_record<T>(
        &self,
        id: &str,
        what: &str,
        mut change: impl FnMut(&mut Record) -> MetaResult<(T, Vec<TxnOp>)>,
    ) -> MetaResult<T> {
        let rkey = record_key(id);
        self.read_compare_swap(what, &[rkey.as_str()], |read| {
            let kvs = first_kvs(read);
            let Some(kv) = kvs.first() else {
                return Err(MetaError::NotFound(id.to_owned()));
            };
            let mut record: Record = serde_json::from_slice(kv.value())
                .map_err(|e| MetaError::Internal(format!("bad record for {id:?}: {e}")))?;
            let (answer, also) = change(&mut record)?;
            let mut puts = vec![TxnOp::put(rkey.as_str(), to_json(&record)?, None)];
            puts.extend(also);
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    rkey.as_str(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then(puts);
            Ok(Swap::Write { txn, answer })
        })
        .await
    }

    pub async fn get_video(&self, id: &str) -> MetaResult<Read<Option<Video>>> {
        let (resp, stale) = self
            .read(
                &format!("reading video {id:?}"),
                &[(legacy_key(id), false), (record_key(id), false)],
            )
            .await?;
        let (legacy, records) = two_gets(&resp);
        let mut videos = merge(&legacy, &records);
        Ok(Read {
            value: videos.pop(),
            stale,
        })
    }

    pub async fn list_videos(&self) -> MetaResult<Read<Vec<Video>>> {
        let (resp, stale) = self
            .read(
                "listing videos",
                &[
                    (LEGACY_PREFIX.to_owned(), true),
                    (RECORD_PREFIX.to_owned(), true),
                ],
            )
            .await?;
        let (legacy, records) = two_gets(&resp);
        let mut videos = merge(&legacy, &records);
        super::sort_newest_first(&mut videos);
        Ok(Read {
            value: videos,
            stale,
        })
    }

    pub async fn load_cluster_state(&self) -> MetaResult<Option<String>> {
        let (resp, stale) = self
            .read(
                "loading the cluster state",
                &[(CLUSTER_KEY.to_owned(), false)],
            )
            .await?;
        if stale {
            tracing::warn!("loaded the cluster state from a member without quorum");
        }
        first_kvs(&resp).first().map(value_string).transpose()
    }

    pub async fn save_cluster_state(&self, json: &str) -> MetaResult<()> {
        let txn = Txn::new().and_then([TxnOp::put(CLUSTER_KEY, json, None)]);
        self.txn("saving the cluster state", txn).await?;
        Ok(())
    }

    /// Replaces the document only if its value still is `expected` (None: the key is
    /// absent), in one transaction; false when another web node changed it first. The
    /// document carries a version raised by every save, so comparing values compares
    /// revisions without holding one.
    pub async fn compare_and_swap_cluster_state(
        &self,
        expected: Option<&str>,
        json: &str,
    ) -> MetaResult<bool> {
        let unchanged = match expected {
            Some(value) => Compare::value(CLUSTER_KEY, CompareOp::Equal, value),
            None => Compare::create_revision(CLUSTER_KEY, CompareOp::Equal, 0),
        };
        let txn = Txn::new()
            .when([unchanged])
            .and_then([TxnOp::put(CLUSTER_KEY, json, None)]);
        let resp = self.txn("saving the cluster state", txn).await?;
        Ok(resp.succeeded())
    }

    pub async fn record_hint(&self, hint: &Hint) -> MetaResult<()> {
        let value = serde_json::to_string(&HintRecord {
            stand_in: hint.stand_in.clone(),
            at: hint.at,
        })
        .map_err(|e| MetaError::Internal(e.to_string()))?;
        let txn = Txn::new().and_then([TxnOp::put(hint_key(&hint.key, &hint.owner), value, None)]);
        self.txn("recording a hinted copy", txn).await?;
        Ok(())
    }

    pub async fn hints(&self) -> MetaResult<Vec<Hint>> {
        let (resp, _) = self
            .read("listing hinted copies", &[(HINT_PREFIX.to_owned(), true)])
            .await?;
        let mut hints = Vec::new();
        for kv in first_kvs(&resp) {
            let name = String::from_utf8_lossy(kv.key());
            let Some((owner, key)) = name
                .strip_prefix(HINT_PREFIX)
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            match serde_json::from_slice::<HintRecord>(kv.value()) {
                Ok(record) => hints.push(Hint {
                    key: key.to_string(),
                    owner: owner.to_string(),
                    stand_in: record.stand_in,
                    at: record.at,
                }),
                Err(e) => tracing::warn!(%name, error = %e, "unreadable hint; ignored"),
            }
        }
        Ok(hints)
    }

    pub async fn remove_hint(&self, key: &str, owner: &str) -> MetaResult<()> {
        let txn = Txn::new().and_then([TxnOp::delete(hint_key(key, owner), None)]);
        self.txn("removing a hinted copy", txn).await?;
        Ok(())
    }

    /// Every change of `tritontube/cluster` after this call, through an etcd watch that is
    /// re-established (on any member, from the last revision seen) whenever it breaks.
    pub async fn watch_cluster_state(&self) -> MetaResult<BoxStream<'static, String>> {
        // The revision now, so that no change made after this call is missed even though
        // the watch itself starts when the stream is first polled.
        let (resp, _) = self
            .read(
                "watching the cluster state",
                &[(CLUSTER_KEY.to_owned(), false)],
            )
            .await?;
        let start = resp.header().map(|h| h.revision()).unwrap_or(0) + 1;
        let store = self.clone();
        let stream = async_stream::stream! {
            let mut next = start;
            let mut failures = 0u32;
            loop {
                match store.watch_once(&mut next).await {
                    Ok(values) => {
                        failures = 0;
                        for v in values {
                            yield v;
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::debug!(error = %e, "cluster state watch broke; re-establishing");
                        let pause = Duration::from_millis(100 << failures.min(4));
                        tokio::time::sleep(pause).await;
                    }
                }
            }
        };
        Ok(stream.boxed())
    }

    /// Opens a watch from revision `*next` on one member and returns the first batch of
    /// values it delivers (advancing `*next`), or why it broke.
    async fn watch_once(&self, next: &mut i64) -> Result<Vec<String>, String> {
        let order = self.order();
        let i = order[0];
        let member = &self.inner.members[i];
        let mut client = member.watch.clone();
        let opened = tokio::time::timeout(
            ATTEMPT_TIMEOUT,
            client.watch(
                CLUSTER_KEY,
                Some(WatchOptions::new().with_start_revision(*next)),
            ),
        )
        .await;
        let mut stream = match opened {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                self.mark_failed(i);
                return Err(format!("{}: {}", member.endpoint, describe(&e)));
            }
            Err(_) => {
                self.mark_failed(i);
                return Err(format!("{}: no answer", member.endpoint));
            }
        };
        let mut progress_asked = false;
        loop {
            // A quiet watch is asked for its progress; a member that cannot answer (its
            // connection half-dead, or too far behind to be in sync) is left for another.
            let wait = if progress_asked {
                ATTEMPT_TIMEOUT * 2
            } else {
                WATCH_QUIET_CHECK
            };
            let Ok(next_msg) = tokio::time::timeout(wait, stream.message()).await else {
                if progress_asked {
                    self.mark_failed(i);
                    return Err(format!("{}: watch silent", member.endpoint));
                }
                progress_asked = true;
                if let Err(e) = stream.request_progress().await {
                    self.mark_failed(i);
                    return Err(format!("{}: {}", member.endpoint, describe(&e)));
                }
                continue;
            };
            progress_asked = false;
            let msg = match next_msg {
                Ok(Some(msg)) => msg,
                Ok(None) => return Err(format!("{}: watch ended", member.endpoint)),
                Err(e) => {
                    self.mark_failed(i);
                    return Err(format!("{}: {}", member.endpoint, describe(&e)));
                }
            };
            if msg.compact_revision() > 0 {
                // Changes were compacted away: the current value stands for them.
                let (resp, _) = self
                    .read(
                        "reloading the cluster state",
                        &[(CLUSTER_KEY.to_owned(), false)],
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                *next = resp.header().map(|h| h.revision()).unwrap_or(*next - 1) + 1;
                let values = first_kvs(&resp)
                    .first()
                    .and_then(|kv| value_string(kv).ok())
                    .into_iter()
                    .collect();
                return Ok(values);
            }
            if msg.canceled() {
                return Err(format!(
                    "{}: watch canceled: {}",
                    member.endpoint,
                    msg.cancel_reason()
                ));
            }
            let mut values = Vec::new();
            for event in msg.events() {
                let Some(kv) = event.kv() else { continue };
                *next = (*next).max(kv.mod_revision() + 1);
                if event.event_type() == EventType::Put
                    && let Ok(v) = value_string(kv)
                {
                    values.push(v);
                }
            }
            if !values.is_empty() {
                // The watch is dropped and re-opened from `next` on the next poll;
                // cheap, and it keeps the stream free of a borrowed watch.
                return Ok(values);
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct HintRecord {
    stand_in: String,
    at: DateTime<Utc>,
}

fn hint_key(key: &str, owner: &str) -> String {
    format!("{HINT_PREFIX}{owner}/{key}")
}

/// `tritontube/released/{claim token}` → the video id: written when a claim whose write
/// had an unknown outcome is released, so that the claim cannot land afterward.
fn fence_key(token: &str) -> String {
    format!("{FENCE_PREFIX}{token}")
}

fn legacy_key(id: &str) -> String {
    format!("{LEGACY_PREFIX}{id}")
}

fn record_key(id: &str) -> String {
    format!("{RECORD_PREFIX}{id}")
}

/// The original's layout: Go's `time.RFC3339Nano` reads it.
fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn to_json(record: &Record) -> MetaResult<String> {
    serde_json::to_string(record).map_err(|e| MetaError::Internal(format!("encoding: {e}")))
}

fn value_string(kv: &KeyValue) -> MetaResult<String> {
    kv.value_str()
        .map(str::to_owned)
        .map_err(|e| MetaError::Internal(format!("etcd value is not UTF-8: {e}")))
}

/// What a read–compare–swap does after its read.
enum Swap<T> {
    /// Nothing to write: the answer as read.
    Done(T),
    /// Commit `txn` (guarded by what was read); `answer` is the outcome if it commits.
    Write { txn: Txn, answer: T },
}

fn first_kvs(resp: &TxnResponse) -> Vec<KeyValue> {
    match resp.op_responses().into_iter().next() {
        Some(TxnOpResponse::Get(mut g)) => g.take_kvs(),
        _ => Vec::new(),
    }
}

/// The key-values of a read transaction of exactly two gets.
fn two_gets(resp: &TxnResponse) -> (Vec<KeyValue>, Vec<KeyValue>) {
    let mut gets = resp.op_responses().into_iter().filter_map(|r| match r {
        TxnOpResponse::Get(mut g) => Some(g.take_kvs()),
        _ => None,
    });
    let a = gets.next().unwrap_or_default();
    let b = gets.next().unwrap_or_default();
    (a, b)
}

/// Joins the original's keys and the records into videos (in no particular order).
fn merge(legacy: &[KeyValue], records: &[KeyValue]) -> Vec<Video> {
    let mut by_id: std::collections::HashMap<String, Video> = std::collections::HashMap::new();
    for kv in legacy {
        let Some(id) = kv
            .key_str()
            .ok()
            .and_then(|k| k.strip_prefix(LEGACY_PREFIX))
        else {
            continue;
        };
        let text = String::from_utf8_lossy(kv.value());
        let uploaded_at = super::parse_time(&text).unwrap_or_else(|| {
            tracing::warn!(id, value = %text, "unreadable upload time; shown as 1970");
            DateTime::UNIX_EPOCH
        });
        by_id.insert(
            id.to_owned(),
            Video {
                id: id.to_owned(),
                uploaded_at,
                status: VideoStatus::Ready,
                details: None,
            },
        );
    }
    for kv in records {
        let Some(id) = kv
            .key_str()
            .ok()
            .and_then(|k| k.strip_prefix(RECORD_PREFIX))
        else {
            continue;
        };
        match serde_json::from_slice::<Record>(kv.value()) {
            Ok(r) => {
                by_id.insert(
                    id.to_owned(),
                    Video {
                        id: id.to_owned(),
                        uploaded_at: r.uploaded_at,
                        status: r.status,
                        details: if r.status == VideoStatus::Processing {
                            None
                        } else {
                            r.details
                        },
                    },
                );
            }
            Err(e) => tracing::warn!(id, error = %e, "unreadable video record; ignored"),
        }
    }
    by_id.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_has_nanoseconds_and_z() {
        let t = DateTime::from_timestamp(1_700_000_000, 5).unwrap();
        assert_eq!(format_time(t), "2023-11-14T22:13:20.000000005Z");
    }
}
