//! The storage node's registry and its `/metrics` listener (`--metrics-port`): files,
//! bytes and free disk (read when scraped), every RPC by operation and outcome with its
//! latency (a tower layer on the gRPC server), checksum failures and scrub progress.
//!
//! Checksum failures, quarantine and scrub progress are read from the store and the
//! scrubber when scraped, like files and free disk: nothing in the read path or the scrub
//! has to know about metrics.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::scrub::Scrubber;
use super::store::Store;
use crate::metrics::grpc::{CallObserver, MeterLayer, Outcome, method_name};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    op: &'static str,
    rpc: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcTimeLabels {
    op: &'static str,
    rpc: String,
}

/// What an RPC does to the store, for dashboards that want reads, writes and deletes.
fn operation_of(rpc: &str) -> &'static str {
    match rpc {
        // Copy: a file sent to another node outside gRPC (see node::transfer).
        "GetFile" | "DownloadFile" | "Copy" => "read",
        "PutFile" | "UploadFile" | "PullFile" => "write",
        "DeleteFile" => "delete",
        "ListFiles" | "StreamKeys" => "list",
        "StatFile" | "NodeStats" => "stat",
        "Check" | "Watch" => "health",
        _ => "other",
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(crate::metrics::latency_buckets())
}

#[derive(Debug)]
struct NodeInner {
    registry: Registry,
    rpcs: Family<RpcLabels, Counter>,
    rpc_duration: Family<RpcTimeLabels, Histogram, fn() -> Histogram>,
    files: Gauge,
    bytes: Gauge,
    disk_free: Gauge,
    disk_size: Gauge,
    checksum_failures: Counter,
    scrub_running: Gauge,
    scrub_files_done: Gauge,
    scrub_files_total: Gauge,
    scrub_bytes_done: Gauge,
    scrub_bytes_total: Gauge,
    scrub_passes: Counter,
}

#[derive(Clone, Debug)]
pub struct NodeMetrics {
    inner: Arc<NodeInner>,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl NodeMetrics {
    pub fn new() -> Self {
        let mut inner = NodeInner {
            registry: Registry::default(),
            rpcs: Family::default(),
            rpc_duration: Family::new_with_constructor(latency_histogram),
            files: Gauge::default(),
            bytes: Gauge::default(),
            disk_free: Gauge::default(),
            disk_size: Gauge::default(),
            checksum_failures: Counter::default(),
            scrub_running: Gauge::default(),
            scrub_files_done: Gauge::default(),
            scrub_files_total: Gauge::default(),
            scrub_bytes_done: Gauge::default(),
            scrub_bytes_total: Gauge::default(),
            scrub_passes: Counter::default(),
        };
        let r = inner
            .registry
            .sub_registry_with_prefix(crate::metrics::PREFIX);
        r.register(
            "node_rpcs",
            "RPCs served, by operation (read, write, delete, list, stat, health, other), \
             RPC and outcome",
            inner.rpcs.clone(),
        );
        r.register(
            "node_rpc_duration_seconds",
            "Time an RPC took until its last byte, by operation and RPC",
            inner.rpc_duration.clone(),
        );
        r.register("node_files", "Files stored", inner.files.clone());
        r.register(
            "node_bytes",
            "Bytes of the files stored",
            inner.bytes.clone(),
        );
        r.register(
            "node_disk_free_bytes",
            "Bytes free for this node on the file system of its folder",
            inner.disk_free.clone(),
        );
        r.register(
            "node_disk_size_bytes",
            "Size of the file system of the node's folder",
            inner.disk_size.clone(),
        );
        r.register(
            "node_checksum_failures",
            "Copies whose bytes did not match their SHA-256 (quarantined)",
            inner.checksum_failures.clone(),
        );
        r.register(
            "node_scrub_running",
            "1 while a scrub pass runs",
            inner.scrub_running.clone(),
        );
        r.register(
            "node_scrub_files_done",
            "Files re-hashed in the current or last scrub pass",
            inner.scrub_files_done.clone(),
        );
        r.register(
            "node_scrub_files_planned",
            "Files to re-hash in the current or last scrub pass",
            inner.scrub_files_total.clone(),
        );
        r.register(
            "node_scrub_bytes_done",
            "Bytes re-hashed in the current or last scrub pass",
            inner.scrub_bytes_done.clone(),
        );
        r.register(
            "node_scrub_bytes_planned",
            "Bytes to re-hash in the current or last scrub pass",
            inner.scrub_bytes_total.clone(),
        );
        r.register(
            "node_scrub_passes",
            "Scrub passes finished",
            inner.scrub_passes.clone(),
        );
        NodeMetrics {
            inner: Arc::new(inner),
        }
    }

    /// The tower layer that counts and times every RPC the node serves.
    pub fn layer(&self) -> MeterLayer<RpcObserver> {
        MeterLayer::new(RpcObserver {
            metrics: self.clone(),
        })
    }

    /// Brings the store, disk and scrub figures up to date and encodes the registry.
    pub async fn render(&self, store: &Store, scrubber: &Scrubber) -> String {
        let i = &self.inner;
        let health = match store.health().await {
            Ok(health) => health,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the store's health for the metrics");
                return crate::metrics::render(&i.registry);
            }
        };
        i.files.set(gauge(health.stats.file_count));
        i.bytes.set(gauge(health.stats.total_bytes));
        i.disk_free.set(gauge(health.disk.free_bytes));
        i.disk_size.set(gauge(health.disk.total_bytes));
        // Counters only go up: add what the store counted since the last scrape.
        let seen = i.checksum_failures.get();
        i.checksum_failures
            .inc_by(health.checksum_failures.saturating_sub(seen));
        let report = scrubber.report();
        let pass = report
            .current
            .clone()
            .or(report.last.clone())
            .unwrap_or_default();
        i.scrub_running.set(i64::from(report.running));
        i.scrub_files_done.set(gauge(pass.files_checked));
        i.scrub_files_total.set(gauge(pass.files_total));
        i.scrub_bytes_done.set(gauge(pass.bytes_checked));
        i.scrub_bytes_total.set(gauge(pass.bytes_total));
        let passes = i.scrub_passes.get();
        i.scrub_passes
            .inc_by(report.passes_completed.saturating_sub(passes));
        crate::metrics::render(&i.registry)
    }
}

/// Records the RPCs of the node's gRPC server.
#[derive(Clone, Debug)]
pub struct RpcObserver {
    metrics: NodeMetrics,
}

impl CallObserver for RpcObserver {
    fn finished(&self, path: &str, outcome: Outcome, elapsed: Duration) {
        // A path that names no RPC is answered UNIMPLEMENTED; one label for all of them
        // keeps a client from creating series.
        let rpc = match outcome {
            Outcome::Status(tonic::Code::Unimplemented) => "unknown",
            _ => method_name(path),
        };
        self.metrics.record_call(rpc, outcome, elapsed);
    }
}

impl NodeMetrics {
    /// Counts and times one call `rpc` the node served (an RPC, or a copy).
    pub fn record_call(&self, rpc: &str, outcome: Outcome, elapsed: Duration) {
        let op = operation_of(rpc);
        let i = &self.inner;
        i.rpcs
            .get_or_create(&RpcLabels {
                op,
                rpc: rpc.to_string(),
                outcome: outcome.label(),
            })
            .inc();
        i.rpc_duration
            .get_or_create(&RpcTimeLabels {
                op,
                rpc: rpc.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }
}

/// Serves `GET /metrics` for the node on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: NodeMetrics,
    store: Store,
    scrubber: Scrubber,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let scrape = move || {
        let (metrics, store, scrubber) = (metrics.clone(), store.clone(), scrubber.clone());
        async move { crate::metrics::scrape_response(metrics.render(&store, &scrubber).await) }
    };
    let app = Router::new().route("/metrics", get(scrape));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpcs_map_to_operations() {
        assert_eq!(operation_of("GetFile"), "read");
        assert_eq!(operation_of("PullFile"), "write");
        assert_eq!(operation_of("DeleteFile"), "delete");
        assert_eq!(operation_of("SomethingNew"), "other");
    }
}
