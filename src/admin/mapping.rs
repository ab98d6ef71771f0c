//! Between the domain's types and the admin service's wire: what the domain reports
//! (plans, workers, errors) as the proto messages and `Status` codes the clients read, and
//! what a request carries as the domain's types.

use tonic::Status;

use std::collections::BTreeMap;

use crate::background::WorkerStatus;
use crate::cluster::ClusterError;
use crate::cluster::health::HealthMonitor;
use crate::cluster::membership::Cluster;
use crate::cluster::migration::{ChangeProgress, MigrationError, Plan};
use crate::cluster::pace::PaceSettings;
use crate::cluster::repair::{RepairError, RepairPlan, Repairer, Tally};
use crate::cluster::resync::Resyncer;
use crate::cluster::state::ChangeKind;
use crate::meta::{Hint, MetaError};
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
        kind: status.kind.name().to_string(),
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
        current_item: status.current_item.clone(),
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

impl From<MigrationError> for Status {
    fn from(e: MigrationError) -> Self {
        let message = e.to_string();
        match e {
            MigrationError::Duplicate(_) => Status::already_exists(message),
            MigrationError::Unknown(_) => Status::not_found(message),
            MigrationError::Unreachable(_) | MigrationError::Interrupted(_) => {
                Status::unavailable(message)
            }
            MigrationError::Refused(_)
            | MigrationError::Busy(_)
            | MigrationError::NothingToCancel => Status::failed_precondition(message),
            MigrationError::Failed(_) => Status::aborted(message),
            MigrationError::Cluster(ClusterError::Meta(crate::meta::MetaError::Unavailable(_))) => {
                Status::unavailable(message)
            }
            MigrationError::Cluster(_) => Status::internal(message),
        }
    }
}

impl From<RepairError> for Status {
    fn from(e: RepairError) -> Self {
        let message = e.to_string();
        match e {
            RepairError::Busy(_) => Status::failed_precondition(message),
            RepairError::Incomplete { .. } => Status::aborted(message),
            RepairError::Interrupted(_) => Status::unavailable(message),
            RepairError::Cluster(ClusterError::Meta(MetaError::Unavailable(_))) => {
                Status::unavailable(message)
            }
            RepairError::Cluster(_) => Status::internal(message),
        }
    }
}

/// Queue entries listed in one reply; the length is always whole.
const LISTED: usize = 50;

/// Fills the at-risk fields of a health reply whose nodes are already listed.
pub fn fill_risk(
    reply: &mut admin::ClusterHealthResponse,
    resyncer: &Resyncer,
    repairer: &Repairer,
    health: &HealthMonitor,
    hints: &[Hint],
    next_scrubs: &BTreeMap<String, u64>,
) {
    let view = resyncer.view();
    reply.resync_queue_length = view.entries.len() as u64;
    reply.resync_healed = view.healed;
    reply.files_under_replicated = crate::cluster::risk::under_replicated(resyncer, repairer);
    reply.resync = view
        .entries
        .iter()
        .take(LISTED)
        .map(|e| admin::ResyncItem {
            key: e.key.clone(),
            reason: e.reason.clone(),
            attempts: e.attempts,
            last_error: e.last_error.clone(),
            queued_at_ms: e.queued_at.timestamp_millis(),
            next_at_ms: e.next_at.timestamp_millis(),
        })
        .collect();
    reply.next_repair_at_ms = health.next_repair_at().map_or(0, |t| t.timestamp_millis());
    for node in &mut reply.nodes {
        node.hinted = hints.iter().filter(|h| h.owner == node.address).count() as u64;
        node.scrub_next_pass_ms = next_scrubs.get(&node.address).copied().unwrap_or(0);
    }
}

/// The settings in force and the rate measured, as the admin service answers.
pub fn pace_reply(cluster: &Cluster) -> admin::PaceReply {
    let settings = cluster.snapshot().pace;
    admin::PaceReply {
        mbps: settings.mbps,
        paused: settings.paused,
        measured_bytes_per_sec: cluster.measured_move_rate(),
    }
}

/// Changes the settings in the journal; UNAVAILABLE when the metadata store cannot
/// save them (nothing changed then).
pub async fn set_pace(
    cluster: &Cluster,
    change: impl Fn(&mut PaceSettings),
) -> Result<admin::PaceReply, Status> {
    match cluster.set_pace(change).await {
        Ok(_) => Ok(pace_reply(cluster)),
        Err(ClusterError::Meta(MetaError::Unavailable(why))) => Err(Status::unavailable(format!(
            "the pace could not be saved: {why}"
        ))),
        Err(e) => Err(Status::internal(format!(
            "the pace could not be saved: {e}"
        ))),
    }
}

pub fn wire_kind(kind: ChangeKind) -> admin::ChangeKind {
    match kind {
        ChangeKind::Add => admin::ChangeKind::Add,
        ChangeKind::Remove => admin::ChangeKind::Remove,
        ChangeKind::Zone => admin::ChangeKind::Zone,
    }
}

pub fn migration_progress(p: &ChangeProgress) -> admin::MigrationProgress {
    admin::MigrationProgress {
        id: p.id.clone(),
        kind: wire_kind(p.kind) as i32,
        node_address: p.node.clone(),
        files_total: p.files_total,
        files_done: p.files_done,
        bytes_total: p.bytes_total,
        bytes_done: p.bytes_done,
        bytes_per_second: p.bytes_per_second,
        current_key: p.current_key.clone(),
        errors: p.errors,
        last_error: p.last_error.clone(),
        finished: p.finished,
        started_at_ms: p.started_at.timestamp_millis(),
        events: p.events.clone(),
        arcs_total: p.arcs.total,
        arcs_done: p.arcs.done,
        arc_now: p.arcs.now,
        arcs_first: p.arcs.first,
        arc_keys_max: p.arcs.keys_max,
        keys_listed: p.arcs.keys_listed,
    }
}

pub fn plan_change(plan: &Plan) -> admin::PlanChangeResponse {
    admin::PlanChangeResponse {
        files: plan.files,
        bytes: plan.bytes,
        moves: plan
            .moves
            .iter()
            .map(|((from, to), (files, bytes))| admin::PlanMove {
                from: from.clone(),
                to: to.clone(),
                files: *files,
                bytes: *bytes,
            })
            .collect(),
    }
}
