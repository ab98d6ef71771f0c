//! Between the domain's types and the admin service's wire: what the domain reports
//! (plans, workers, errors) as the proto messages and `Status` codes the clients read, and
//! what a request carries as the domain's types.

use tonic::Status;

use crate::cluster::repair::{RepairPlan, Tally};
use crate::cluster::state::ChangeKind;
use crate::cluster::worker::WorkerStatus;
use crate::metrics::traffic::TrafficReading;
use crate::node::address::validate_address;
use crate::proto::admin;

/// The node address of a request, refused with INVALID_ARGUMENT when malformed.
pub fn node_address(input: &str) -> Result<String, Status> {
    validate_address(input)
        .map_err(|why| Status::invalid_argument(format!("invalid node address {input:?}: {why}")))
}

pub fn count(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The kind of a requested change, with its node address checked for an add.
pub fn change_kind(kind: &admin::ChangeKind, node: &str) -> Result<ChangeKind, Status> {
    Ok(match kind {
        admin::ChangeKind::Add => {
            node_address(node)?;
            ChangeKind::Add
        }
        admin::ChangeKind::Remove => ChangeKind::Remove,
        admin::ChangeKind::Zone => ChangeKind::Zone,
    })
}

pub fn plan_proto(plan: &RepairPlan) -> admin::RepairPlan {
    let tally = |t: &Tally| admin::Tally {
        files: t.files,
        bytes: t.bytes,
    };
    admin::RepairPlan {
        missing: Some(tally(&plan.missing)),
        misplaced: Some(tally(&plan.misplaced)),
        orphans: Some(tally(&plan.orphans)),
        quarantined: plan.quarantined,
        deferred: Some(tally(&plan.deferred)),
        under_replicated: plan.under_replicated,
        unreachable: plan.unreachable.clone(),
        orphans_kept_because_stale: plan.orphans_kept_because_stale,
    }
}

pub fn worker_info(status: &WorkerStatus) -> admin::WorkerInfo {
    admin::WorkerInfo {
        id: status.id,
        kind: status.kind.clone(),
        description: status.description.clone(),
        state: status.state.name().to_string(),
        files_done: status.files_done,
        files_total: status.files_total,
        bytes_done: status.bytes_done,
        bytes_total: status.bytes_total,
        queue: status.queue,
        errors: status.errors,
        last_error: status.last_error.clone(),
        throttle: status.throttle.clone(),
        bytes_per_second: status.bytes_per_second,
        started_at_ms: status.started_at.timestamp_millis(),
        finished_at_ms: status.finished_at.map_or(0, |t| t.timestamp_millis()),
        outcome: status.outcome.clone(),
    }
}

pub fn traffic(reading: TrafficReading) -> admin::TrafficStatsResponse {
    admin::TrafficStatsResponse {
        requests: reading.requests,
        bytes_served: reading.bytes_served,
        cache_hits: reading.cache_hits,
        cache_misses: reading.cache_misses,
        server_errors: reading.server_errors,
        at_unix_ms: reading.at_unix_ms,
        started_at_unix_ms: reading.started_at_unix_ms,
    }
}
