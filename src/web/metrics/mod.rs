//! The web node's registry, served at `GET /metrics`, and the cumulative traffic counters
//! behind the admin service's TrafficStats.
//!
//! Counters move as requests, uploads and calls happen. Facts owned elsewhere (the ring,
//! a migration's progress, the cache's size, the library) are read when scraped, through
//! sources the web node registers at start-up, so this module needs no cluster internals.
//!
//! - [`http`]: the tower layer that counts and times HTTP requests by route and status.
//! - [`upload`]: upload outcomes and the duration of each stage.
//! - [`risk`]: data at risk (under-replicated, quarantined, hinted, resync queue).

pub mod http;
pub mod risk;
pub mod upload;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::State;
use axum::response::Response;
use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use super::routes::SharedState;
use crate::cluster::migration::ChangeProgress;
use crate::meta::{MetaStore, VideoStatus};
use crate::metrics::traffic::TrafficReading;
use crate::metrics::{render, scrape_response, unix_ms};
use http::HttpMetrics;
use upload::UploadMetrics;

/// How long a count of the library is reused before it is taken again: listing every
/// video on each scrape would cost the metadata store too much on a large library.
const LIBRARY_REFRESH: Duration = Duration::from_secs(30);
/// How long a scrape waits for the metadata store's quorum probe.
const QUORUM_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the ring looks like now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingFacts {
    pub nodes: u64,
    pub spares: u64,
    pub replicas: u32,
    pub virtual_nodes: u32,
}

/// Reads the ring's facts when a scrape needs them.
pub type RingFactsSource = Box<dyn Fn() -> BoxFuture<'static, RingFacts> + Send + Sync>;
/// Reads the cache's weighted size (bytes) and entry count.
pub type CacheSizeSource = Box<dyn Fn() -> BoxFuture<'static, (u64, u64)> + Send + Sync>;
/// Reads the progress of the latest repair (None before the first).
pub type RepairProgressSource = Box<dyn Fn() -> Option<WorkerProgress> + Send + Sync>;

/// Where a cluster worker stands, as the gauges show it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerProgress {
    pub running: bool,
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub errors: u64,
}

impl From<&ChangeProgress> for WorkerProgress {
    fn from(p: &ChangeProgress) -> Self {
        WorkerProgress {
            running: !p.finished,
            files_done: p.files_done,
            files_total: p.files_total,
            bytes_done: p.bytes_done,
            bytes_total: p.bytes_total,
            errors: p.errors,
        }
    }
}

/// The segment cache's counters; hits and misses are per request, a miss being a request
/// that had to read the file from storage.
#[derive(Clone, Debug, Default)]
pub struct CacheMetrics {
    hits: Counter,
    misses: Counter,
    evictions: Counter,
    bytes: Gauge,
    entries: Gauge,
    capacity: Gauge,
}

impl CacheMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "cache_hits",
            "Segment requests answered from the web node's memory",
            self.hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Segment requests that read the file from storage",
            self.misses.clone(),
        );
        registry.register(
            "cache_evictions",
            "Files dropped from the segment cache to make room",
            self.evictions.clone(),
        );
        registry.register(
            "cache_bytes",
            "Bytes held by the segment cache",
            self.bytes.clone(),
        );
        registry.register(
            "cache_entries",
            "Files held by the segment cache",
            self.entries.clone(),
        );
        registry.register(
            "cache_capacity_bytes",
            "Most bytes the segment cache may hold",
            self.capacity.clone(),
        );
    }

    /// Counts one request: `fetched` when it had to read from storage.
    pub fn record_lookup(&self, fetched: bool) {
        if fetched {
            self.misses.inc();
        } else {
            self.hits.inc();
        }
    }

    /// A moka eviction listener counting entries removed for room or age; entries
    /// replaced or removed on purpose are not evictions.
    pub fn eviction_listener<K, V>(
        &self,
    ) -> impl Fn(Arc<K>, V, moka::notification::RemovalCause) + Send + Sync + 'static {
        let evictions = self.evictions.clone();
        move |_key, _value, cause| {
            if cause.was_evicted() {
                evictions.inc();
            }
        }
    }

    pub fn hits(&self) -> u64 {
        self.hits.get()
    }

    pub fn misses(&self) -> u64 {
        self.misses.get()
    }

    pub fn evictions(&self) -> u64 {
        self.evictions.get()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: &'static str,
}

#[derive(Debug, Default)]
struct LibraryGauges {
    videos: Family<StatusLabels, Gauge>,
    stored_bytes: Gauge,
}

#[derive(Debug, Default)]
struct RingGauges {
    nodes: Gauge,
    spares: Gauge,
    replicas: Gauge,
    virtual_nodes: Gauge,
}

/// Progress of long cluster work, by worker: `migration` (a ring change, here or on
/// another web node sharing the store) and `repair`.
#[derive(Debug, Default)]
struct WorkerGauges {
    running: Family<WorkerLabels, Gauge>,
    files_done: Family<WorkerLabels, Gauge>,
    files_planned: Family<WorkerLabels, Gauge>,
    bytes_done: Family<WorkerLabels, Gauge>,
    bytes_planned: Family<WorkerLabels, Gauge>,
    errors: Family<WorkerLabels, Gauge>,
}

#[derive(Default)]
struct Sources {
    ring: Option<Arc<RingFactsSource>>,
    migration: Option<watch::Receiver<Option<ChangeProgress>>>,
    repair: Option<Arc<RepairProgressSource>>,
    cache: Option<Arc<CacheSizeSource>>,
    risk: Option<Arc<risk::RiskSource>>,
    /// When the library was last counted; None forces a count at the next scrape.
    library_counted: Option<Instant>,
}

pub struct WebMetrics {
    registry: Registry,
    store_kind: &'static str,
    pub http: HttpMetrics,
    pub cache: CacheMetrics,
    pub uploads: UploadMetrics,
    library: LibraryGauges,
    ring: RingGauges,
    workers: WorkerGauges,
    risk: risk::RiskGauges,
    sources: Mutex<Sources>,
    /// Serializes scrapes, so two at once do not both list the library.
    scrape: tokio::sync::Mutex<()>,
    started_at: SystemTime,
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl WebMetrics {
    /// The registry of a web node on a `store_kind` ("sqlite" or "etcd") metadata store
    /// with a segment cache of `cache_capacity` bytes.
    pub fn new(store_kind: &'static str, cache_capacity: u64) -> Arc<Self> {
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix(crate::metrics::PREFIX);
        let http = HttpMetrics::new(registry);
        let uploads = UploadMetrics::new(registry);
        let cache = CacheMetrics::default();
        cache.capacity.set(gauge(cache_capacity));
        cache.register(registry);
        crate::node::call_metrics::metrics().register(registry);
        crate::meta::metrics::metrics().register(registry);

        let library = LibraryGauges::default();
        registry.register(
            "library_videos",
            "Videos in the library by status (ready, processing)",
            library.videos.clone(),
        );
        registry.register(
            "library_stored_bytes",
            "Bytes of DASH files stored for the ready videos (one copy)",
            library.stored_bytes.clone(),
        );
        let ring = RingGauges::default();
        registry.register(
            "ring_nodes",
            "Storage nodes in the ring",
            ring.nodes.clone(),
        );
        registry.register(
            "ring_spare_nodes",
            "Known storage nodes outside the ring",
            ring.spares.clone(),
        );
        registry.register(
            "ring_replicas",
            "Copies of each file (R)",
            ring.replicas.clone(),
        );
        registry.register(
            "ring_virtual_nodes",
            "Tokens per storage node on the ring (V)",
            ring.virtual_nodes.clone(),
        );
        let workers = WorkerGauges::default();
        registry.register(
            "worker_running",
            "1 while the cluster worker runs (migration: a ring change; repair)",
            workers.running.clone(),
        );
        registry.register(
            "worker_files_done",
            "Files the worker has handled in its current or last run",
            workers.files_done.clone(),
        );
        registry.register(
            "worker_files_planned",
            "Files the worker's current or last run has to handle",
            workers.files_planned.clone(),
        );
        registry.register(
            "worker_bytes_done",
            "Bytes the worker has moved in its current or last run",
            workers.bytes_done.clone(),
        );
        registry.register(
            "worker_bytes_planned",
            "Bytes the worker's current or last run has to move",
            workers.bytes_planned.clone(),
        );
        registry.register(
            "worker_errors",
            "Errors in the worker's current or last run",
            workers.errors.clone(),
        );
        let risk = risk::RiskGauges::default();
        risk.register(registry);

        Arc::new(WebMetrics {
            registry: root,
            store_kind,
            http,
            cache,
            uploads,
            library,
            ring,
            workers,
            risk,
            sources: Mutex::default(),
            scrape: tokio::sync::Mutex::new(()),
            started_at: SystemTime::now(),
        })
    }

    fn sources(&self) -> std::sync::MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where to read the ring from (a web node on a ring calls this at start-up).
    pub fn watch_ring(&self, source: RingFactsSource) {
        self.sources().ring = Some(Arc::new(source));
    }

    /// The migrator's progress channel.
    pub fn watch_migration(&self, progress: watch::Receiver<Option<ChangeProgress>>) {
        self.sources().migration = Some(progress);
    }

    /// Where to read the latest repair's progress from.
    pub fn watch_repair(&self, source: RepairProgressSource) {
        self.sources().repair = Some(Arc::new(source));
    }

    /// Where to read what is at risk from.
    pub fn watch_risk(&self, source: risk::RiskSource) {
        self.sources().risk = Some(Arc::new(source));
    }

    /// Where to read the cache's size from.
    pub fn watch_cache(&self, source: CacheSizeSource) {
        self.sources().cache = Some(Arc::new(source));
    }

    /// A video was added or removed here: count the library again at the next scrape.
    pub fn library_changed(&self) {
        self.sources().library_counted = None;
    }

    /// Brings the scrape-time gauges up to date and encodes the registry.
    pub async fn render(&self, meta: &MetaStore) -> String {
        let _one_at_a_time = self.scrape.lock().await;
        let mut risk_source = None;
        let (ring, cache, migration, repair, library_due) = {
            let sources = self.sources();
            if let Some(risk) = &sources.risk {
                // Read below, outside the lock.
                risk_source = Some(risk.clone());
            }
            (
                sources.ring.clone(),
                sources.cache.clone(),
                sources.migration.as_ref().map(|rx| rx.borrow().clone()),
                sources.repair.clone(),
                sources
                    .library_counted
                    .is_none_or(|at| at.elapsed() >= LIBRARY_REFRESH),
            )
        };
        if let Some(ring) = ring {
            let facts = ring().await;
            self.ring.nodes.set(gauge(facts.nodes));
            self.ring.spares.set(gauge(facts.spares));
            self.ring.replicas.set(i64::from(facts.replicas));
            self.ring.virtual_nodes.set(i64::from(facts.virtual_nodes));
        }
        if let Some(cache) = cache {
            let (bytes, entries) = cache().await;
            self.cache.bytes.set(gauge(bytes));
            self.cache.entries.set(gauge(entries));
        }
        if let Some(progress) = migration {
            self.record_worker("migration", progress.as_ref().map(WorkerProgress::from));
        }
        if let Some(repair) = repair {
            self.record_worker("repair", repair());
        }
        if let Some(risk) = risk_source {
            self.risk.set(risk().await);
        }
        self.probe_quorum(meta).await;
        if library_due {
            self.count_library(meta).await;
        }
        render(&self.registry)
    }

    fn record_worker(&self, worker: &'static str, progress: Option<WorkerProgress>) {
        let labels = WorkerLabels { worker };
        let w = &self.workers;
        let p = progress.unwrap_or_default();
        w.running.get_or_create(&labels).set(i64::from(p.running));
        w.files_done.get_or_create(&labels).set(gauge(p.files_done));
        w.files_planned
            .get_or_create(&labels)
            .set(gauge(p.files_total));
        w.bytes_done.get_or_create(&labels).set(gauge(p.bytes_done));
        w.bytes_planned
            .get_or_create(&labels)
            .set(gauge(p.bytes_total));
        w.errors.get_or_create(&labels).set(gauge(p.errors));
    }

    /// Asks the metadata store the cheapest question that needs its quorum; the answer
    /// (or its absence) sets the quorum gauge.
    async fn probe_quorum(&self, meta: &MetaStore) {
        let probe = meta.get_video(".metrics-probe");
        if tokio::time::timeout(QUORUM_PROBE_TIMEOUT, probe)
            .await
            .is_err()
        {
            crate::meta::metrics::metrics().set_quorum(self.store_kind, false);
        }
    }

    async fn count_library(&self, meta: &MetaStore) {
        let listing = match meta.list_videos().await {
            Ok(listing) => listing.value,
            Err(e) => {
                tracing::warn!(error = %e, "cannot count the library for the metrics");
                return;
            }
        };
        let (mut ready, mut processing, mut bytes) = (0u64, 0u64, 0u64);
        for video in &listing {
            match video.status {
                VideoStatus::Ready => {
                    ready += 1;
                    bytes += video.details.as_ref().map_or(0, |d| d.stored_bytes);
                }
                VideoStatus::Processing | VideoStatus::Playable => processing += 1,
                // Being deleted: no longer part of the library.
                VideoStatus::Deleting => {}
            }
        }
        let videos = &self.library.videos;
        videos
            .get_or_create(&StatusLabels { status: "ready" })
            .set(gauge(ready));
        videos
            .get_or_create(&StatusLabels {
                status: "processing",
            })
            .set(gauge(processing));
        self.library.stored_bytes.set(gauge(bytes));
        self.sources().library_counted = Some(Instant::now());
    }

    /// Cumulative counters since this web node started; a client takes rates by
    /// differencing two replies.
    pub fn traffic_stats(&self) -> TrafficReading {
        let totals = self.http.totals();
        TrafficReading {
            requests: totals.requests.load(Ordering::Relaxed),
            bytes_served: totals.bytes_served.load(Ordering::Relaxed),
            cache_hits: self.cache.hits(),
            cache_misses: self.cache.misses(),
            server_errors: totals.server_errors.load(Ordering::Relaxed),
            at_unix_ms: unix_ms(SystemTime::now()),
            started_at_unix_ms: unix_ms(self.started_at),
        }
    }
}

/// `GET /metrics`.
pub async fn scrape(State(state): State<SharedState>) -> Response {
    scrape_response(state.metrics.render(&state.meta).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn evictions_for_room_are_counted_and_replacements_are_not() {
        let metrics = CacheMetrics::default();
        let cache: moka::future::Cache<String, Vec<u8>> = moka::future::Cache::builder()
            .max_capacity(100)
            .weigher(|_key: &String, value: &Vec<u8>| value.len() as u32)
            .eviction_listener(metrics.eviction_listener())
            .build();
        cache.insert("a".into(), vec![0; 60]).await;
        cache.insert("a".into(), vec![1; 60]).await;
        cache.run_pending_tasks().await;
        assert_eq!(metrics.evictions(), 0, "a replacement is no eviction");
        cache.insert("b".into(), vec![0; 60]).await;
        cache.insert("c".into(), vec![0; 60]).await;
        cache.run_pending_tasks().await;
        assert!(metrics.evictions() >= 1);
        assert!(cache.weighted_size() <= 100);
    }

    #[test]
    fn lookups_count_as_hits_or_misses() {
        let metrics = CacheMetrics::default();
        metrics.record_lookup(true);
        metrics.record_lookup(false);
        metrics.record_lookup(false);
        assert_eq!((metrics.hits(), metrics.misses()), (2, 1));
    }
}
