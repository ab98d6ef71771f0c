//! Calls this process makes to storage nodes, by node, RPC and outcome, with their
//! latency until the last byte. Every [`crate::node::client::StorageClient`] goes through
//! [`metered`], so the web node, migration and node-to-node pulls are all counted without
//! touching each call. The figures are process-wide: clients are made in many places
//! (cluster, storage service, console) and all of them should count.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tonic::transport::Channel;

use crate::metrics::grpc::{CallObserver, Metered, Outcome, method_name};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    node: String,
    rpc: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallTimeLabels {
    node: String,
    rpc: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(crate::metrics::latency_buckets())
}

pub struct StorageCallMetrics {
    calls: Family<CallLabels, Counter>,
    duration: Family<CallTimeLabels, Histogram, fn() -> Histogram>,
}

impl StorageCallMetrics {
    /// Adds this process's storage-node call metrics to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "storage_calls",
            "Calls to storage nodes by node, RPC and outcome (gRPC status, transport_error or abandoned)",
            self.calls.clone(),
        );
        registry.register(
            "storage_call_duration_seconds",
            "Time from a call to storage node until its last byte (streams included)",
            self.duration.clone(),
        );
    }

    fn record(&self, node: &str, rpc: &str, outcome: Outcome, elapsed: Duration) {
        let labels = CallLabels {
            node: node.to_string(),
            rpc: rpc.to_string(),
            outcome: outcome.label(),
        };
        self.calls.get_or_create(&labels).inc();
        let labels = CallTimeLabels {
            node: labels.node,
            rpc: labels.rpc,
        };
        self.duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }
}

/// The process-wide storage-node call metrics.
pub fn metrics() -> &'static StorageCallMetrics {
    static METRICS: OnceLock<StorageCallMetrics> = OnceLock::new();
    METRICS.get_or_init(|| StorageCallMetrics {
        calls: Family::default(),
        duration: Family::new_with_constructor(latency_histogram),
    })
}

/// Records the calls of one node's client under its address.
#[derive(Clone, Debug)]
pub struct NodeCallObserver {
    node: Arc<str>,
}

impl CallObserver for NodeCallObserver {
    fn finished(&self, path: &str, outcome: Outcome, elapsed: Duration) {
        metrics().record(&self.node, method_name(path), outcome, elapsed);
    }
}

/// A channel to the node at `address` whose calls are counted.
pub type MeteredChannel = Metered<Channel, NodeCallObserver>;

pub fn metered(address: &str, channel: Channel) -> MeteredChannel {
    Metered::new(
        channel,
        NodeCallObserver {
            node: Arc::from(address),
        },
    )
}
