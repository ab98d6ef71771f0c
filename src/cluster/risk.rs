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
