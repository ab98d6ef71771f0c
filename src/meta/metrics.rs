//! Metadata store operations (by store, operation and outcome, with latency) and whether
//! the store has its quorum. Recorded once, where [`super::MetaStore`] dispatches to
//! its backend, so every backend is covered without touching it. Process-wide, like the
//! store handles themselves (clones of one store share its connections).

use std::future::Future;
use std::sync::OnceLock;
use std::time::Instant;

use futures::stream::BoxStream;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::{MetaError, MetaResult, Read};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    store: &'static str,
    op: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationTimeLabels {
    store: &'static str,
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    store: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(crate::metrics::latency_buckets())
}

pub struct MetaMetrics {
    operations: Family<OperationLabels, Counter>,
    errors: Family<OperationLabels, Counter>,
    duration: Family<OperationTimeLabels, Histogram, fn() -> Histogram>,
    quorum: Family<StoreLabels, Gauge>,
}

/// The process-wide metadata store metrics.
pub fn metrics() -> &'static MetaMetrics {
    static METRICS: OnceLock<MetaMetrics> = OnceLock::new();
    METRICS.get_or_init(|| MetaMetrics {
        operations: Family::default(),
        errors: Family::default(),
        duration: Family::new_with_constructor(latency_histogram),
        quorum: Family::default(),
    })
}

impl MetaMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "metadata_operations",
            "Metadata store operations by store, operation and outcome",
            self.operations.clone(),
        );
        registry.register(
            "metadata_errors",
            "Metadata store operations that failed (unavailable or internal), by operation",
            self.errors.clone(),
        );
        registry.register(
            "metadata_operation_duration_seconds",
            "Time a metadata store operation took",
            self.duration.clone(),
        );
        registry.register(
            "metadata_quorum",
            "1 while the metadata store answers with its quorum (etcd: linearizable; SQLite: \
             the file answers), 0 while it is unreachable or only serves stale reads",
            self.quorum.clone(),
        );
    }

    /// Records what the last look at `store` showed.
    pub fn set_quorum(&self, store: &'static str, has_quorum: bool) {
        self.quorum
            .get_or_create(&StoreLabels { store })
            .set(i64::from(has_quorum));
    }

    /// The quorum gauge of `store`: None before any operation.
    pub fn quorum(&self, store: &'static str) -> Option<bool> {
        self.quorum
            .get(&StoreLabels { store })
            .map(|gauge| gauge.get() == 1)
    }
}

/// What a successful result says about the quorum, when it says anything.
pub trait QuorumEvidence {
    fn shows_quorum(&self) -> Option<bool>;
}

/// A write that succeeded was committed by a quorum.
impl QuorumEvidence for () {
    fn shows_quorum(&self) -> Option<bool> {
        Some(true)
    }
}

impl<T> QuorumEvidence for Read<T> {
    fn shows_quorum(&self) -> Option<bool> {
        Some(!self.stale)
    }
}

/// The cluster state document may come from a lagging member: no evidence either way.
impl QuorumEvidence for Option<String> {
    fn shows_quorum(&self) -> Option<bool> {
        None
    }
}

/// A delete's tombstone was written (or refused) by a quorum.
impl QuorumEvidence for super::VideoStatus {
    fn shows_quorum(&self) -> Option<bool> {
        Some(true)
    }
}

/// A caption set or removed was written by a quorum.
impl QuorumEvidence for Option<super::Caption> {
    fn shows_quorum(&self) -> Option<bool> {
        Some(true)
    }
}

/// A compare-and-swap answered either way was decided by a quorum.
impl QuorumEvidence for bool {
    fn shows_quorum(&self) -> Option<bool> {
        Some(true)
    }
}

/// The hints are read like the cluster state: possibly from a lagging member.
impl QuorumEvidence for Vec<super::Hint> {
    fn shows_quorum(&self) -> Option<bool> {
        None
    }
}

/// Read serializably on etcd, like the hints.
impl QuorumEvidence for Vec<super::ResyncEntry> {
    fn shows_quorum(&self) -> Option<bool> {
        None
    }
}

impl QuorumEvidence for BoxStream<'static, String> {
    fn shows_quorum(&self) -> Option<bool> {
        None
    }
}

fn outcome_label(result: &MetaError) -> &'static str {
    match result {
        MetaError::AlreadyExists(_) => "already_exists",
        MetaError::NotFound(_) => "not_found",
        MetaError::Unavailable(_) => "unavailable",
        MetaError::Internal(_) => "internal",
    }
}

/// Runs `call`, operation `op` on `store`, and records it.
pub async fn observe<T: QuorumEvidence>(
    store: &'static str,
    op: &'static str,
    call: impl Future<Output = MetaResult<T>>,
) -> MetaResult<T> {
    let started = Instant::now();
    let result = call.await;
    let m = metrics();
    m.duration
        .get_or_create(&OperationTimeLabels { store, op })
        .observe(started.elapsed().as_secs_f64());
    let outcome = match &result {
        Ok(value) => {
            if let Some(has_quorum) = value.shows_quorum() {
                m.set_quorum(store, has_quorum);
            }
            "ok"
        }
        Err(e) => {
            if matches!(e, MetaError::Unavailable(_)) {
                m.set_quorum(store, false);
            }
            outcome_label(e)
        }
    };
    let labels = OperationLabels { store, op, outcome };
    m.operations.get_or_create(&labels).inc();
    if matches!(
        result,
        Err(MetaError::Unavailable(_) | MetaError::Internal(_))
    ) {
        m.errors.get_or_create(&labels).inc();
    }
    result
}
