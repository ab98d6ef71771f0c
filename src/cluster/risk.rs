//! Data at risk, as the admin service and the metrics report it: files below R good copies, the resync
//! queue, hinted copies per owner, the next scrub per node and the next repair.

use super::repair::Repairer;
use super::resync::Resyncer;

/// Files below R good copies: every queued key, plus what the last survey found if no
/// repair has finished since it (a repair that ran after it leaves only what it failed).
pub fn under_replicated(resyncer: &Resyncer, repairer: &Repairer) -> u64 {
    let queued = resyncer.view().entries.len() as u64;
    let surveyed = match (repairer.last_survey(), repairer.last_report()) {
        (Some((at, _)), Some(report)) if report.finished_at >= at => report.failed,
        (Some((_, plan)), _) => plan.under_replicated,
        (None, _) => 0,
    };
    queued + surveyed
}

/// What the risk gauges read at each scrape.
pub fn facts_source(plane: &super::ControlPlane) -> crate::metrics::risk::RiskSource {
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
            crate::metrics::risk::RiskFacts {
                files_under_replicated: under_replicated(&resyncer, &repairer),
                quarantined_copies: quarantined,
                hinted_copies: hinted,
                resync_queue_length: resyncer.view().entries.len() as u64,
            }
        })
    })
}
