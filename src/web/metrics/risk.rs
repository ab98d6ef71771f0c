//! Data at risk, as gauges that read zero on a healthy cluster (the shipped alert rules
//! fire on anything else): files below R good copies, quarantined copies, hinted copies
//! and the resync queue. Read at scrape time from a source the web node registers.

use futures::future::BoxFuture;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::cluster::ControlPlane;
use crate::cluster::risk::under_replicated;

/// What is at risk now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RiskFacts {
    pub files_under_replicated: u64,
    pub quarantined_copies: u64,
    pub hinted_copies: u64,
    pub resync_queue_length: u64,
}

/// Reads the facts when a scrape needs them.
pub type RiskSource = Box<dyn Fn() -> BoxFuture<'static, RiskFacts> + Send + Sync>;

#[derive(Debug, Default)]
pub struct RiskGauges {
    files_under_replicated: Gauge,
    quarantined_copies: Gauge,
    hinted_copies: Gauge,
    resync_queue_length: Gauge,
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl RiskGauges {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "files_under_replicated",
            "Files below R good copies (the resync queue and the last survey's unrepaired finds)",
            self.files_under_replicated.clone(),
        );
        registry.register(
            "quarantined_copies",
            "Copies the storage nodes moved aside because their bytes failed verification",
            self.quarantined_copies.clone(),
        );
        registry.register(
            "hinted_copies",
            "Copies written to a stand-in node while their owner was down, waiting to be handed over",
            self.hinted_copies.clone(),
        );
        registry.register(
            "resync_queue_length",
            "Keys waiting to be copied again from a good copy",
            self.resync_queue_length.clone(),
        );
    }

    pub fn set(&self, facts: RiskFacts) {
        self.files_under_replicated
            .set(gauge(facts.files_under_replicated));
        self.quarantined_copies.set(gauge(facts.quarantined_copies));
        self.hinted_copies.set(gauge(facts.hinted_copies));
        self.resync_queue_length
            .set(gauge(facts.resync_queue_length));
    }
}

/// What the risk gauges read at each scrape.
pub fn facts_source(plane: &ControlPlane) -> RiskSource {
    let (resyncer, repairer, health) = (
        plane.resyncer.clone(),
        plane.repairer.clone(),
        plane.health.clone(),
    );
    let cluster = plane.cluster.clone();
    Box::new(move || {
        let (resyncer, repairer, health) = (resyncer.clone(), repairer.clone(), health.clone());
        let cluster = cluster.clone();
        Box::pin(async move {
            let hinted = match cluster.meta().hints().await {
                Ok(hints) => hints.len() as u64,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot count hinted copies for the metrics");
                    0
                }
            };
            let quarantined = health
                .nodes()
                .values()
                .filter_map(|seen| seen.health.as_ref())
                .map(|h| h.quarantined_count)
                .sum();
            RiskFacts {
                files_under_replicated: under_replicated(&resyncer, &repairer),
                quarantined_copies: quarantined,
                hinted_copies: hinted,
                resync_queue_length: resyncer.view().entries.len() as u64,
            }
        })
    })
}
