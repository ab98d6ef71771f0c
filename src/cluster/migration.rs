//! Changing the ring without losing a file (DESIGN §6), as a background worker (§6a).
//!
//! A change is journaled in the metadata store before anything moves, with a
//! compare-and-swap, so of several web nodes asked at once exactly one starts it; from
//! then on new files go to the target ring and reads fall back to the old holders. The
//! worker waits for writes placed on the old ring, takes an inventory of what the nodes
//! really hold, copies each file to the holders that lack it (the receiving node verifies
//! its SHA-256) and only then deletes it where it is no longer wanted, one arc of the ring
//! at a time ([`run`]). The ring switches when every file is in place. The worker belongs to the web node, not to the request:
//! a client that goes away cancels nothing, and a web node that stops leaves the journal
//! for the next start to finish.

mod progress;
mod run;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use super::inventory::{KeyWork, Unreachable};
use super::journaled::{self, NotTaken};
use super::membership::{Cluster, ClusterError};
use super::state::{ChangeKind, ClusterState, Journal, RepairJournal};
use crate::background::{Runner, WorkerHandle, WorkerKind, WorkerState, WorkerStatus};
use crate::ring::{Ring, check_zone_name};
pub use progress::{ArcProgress, ChangeProgress};
use run::ChangeWorker;

/// Files copied at once. Each copy waits on its fsync, so more of them in flight keep
/// the disk and the CPUs busy: 32 moved 10–15 % more files per second than 16.
pub const DEFAULT_PARALLELISM: usize = 32;
/// How often a running change refreshes the pace it shows.
const SHOW_PACE_EVERY: Duration = Duration::from_millis(500);
/// Surplus copies deleted per call to a node.
const DELETE_BATCH: usize = 64;
/// Delete calls under way at once; copies wait while this many are.
const DELETES_IN_FLIGHT: usize = 4;
/// How long a node may take to answer before it counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a running change saves its progress for the other web nodes to show.
const SHARE_PROGRESS_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("node {0} is already in the ring")]
    Duplicate(String),
    #[error("node {0} is not in the ring")]
    Unknown(String),
    #[error(transparent)]
    Unreachable(#[from] Unreachable),
    #[error("{0}")]
    Refused(String),
    #[error("a ring change is already running ({0})")]
    Busy(String),
    #[error("no ring change is running")]
    NothingToCancel,
    #[error("{0}")]
    Failed(String),
    #[error("stopped: {0}")]
    Interrupted(String),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// What a change would do: files (keys whose holders change) and bytes copied, grouped
/// by source → target.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub files: u64,
    pub bytes: u64,
    pub moves: BTreeMap<(String, String), (u64, u64)>,
}

impl Plan {
    fn of(work: &[KeyWork]) -> Plan {
        let mut plan = Plan::default();
        for item in work {
            plan.files += 1;
            let source = item.sources.first().cloned().unwrap_or_default();
            for to in &item.missing {
                plan.bytes += item.size;
                let entry = plan.moves.entry((source.clone(), to.clone())).or_default();
                entry.0 += 1;
                entry.1 += item.size;
            }
        }
        plan
    }

    /// Adds the moves of `other` (another arc's) to these.
    fn add(&mut self, other: Plan) {
        self.files += other.files;
        self.bytes += other.bytes;
        for (pair, (files, bytes)) in other.moves {
            let entry = self.moves.entry(pair).or_default();
            entry.0 += files;
            entry.1 += bytes;
        }
    }
}

/// Starts, resumes and cancels ring changes; each one runs as a worker of `runner`.
pub struct Migrator {
    cluster: Arc<Cluster>,
    runner: Arc<Runner>,
    parallelism: usize,
    /// Names this web node in the journals it runs, so a cancel is only accepted where
    /// the change really runs.
    instance: String,
    /// The latest change's progress in the original admin shape, for WatchMigration.
    progress: watch::Sender<Option<ChangeProgress>>,
    /// Serialises the checks and the journal write of changes asked of this web node.
    starting: tokio::sync::Mutex<()>,
    /// The change this node runs now, with the journal it runs.
    current: Mutex<Option<(WorkerHandle, Journal)>>,
}

impl Migrator {
    pub fn new(
        cluster: Arc<Cluster>,
        runner: Arc<Runner>,
        parallelism: usize,
        instance: String,
    ) -> Arc<Self> {
        Arc::new(Migrator {
            cluster,
            runner,
            parallelism: parallelism.max(1),
            instance,
            progress: watch::channel(None).0,
            starting: tokio::sync::Mutex::new(()),
            current: Mutex::new(None),
        })
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    pub fn runner(&self) -> &Arc<Runner> {
        &self.runner
    }

    /// The latest progress, then every update. A change run by another web node sharing
    /// the store shows here too, from the progress it saves in the journal.
    pub fn watch(&self) -> watch::Receiver<Option<ChangeProgress>> {
        self.progress.subscribe()
    }

    /// The latest progress: this node's change, else one another web node runs.
    pub fn latest_progress(&self) -> Option<ChangeProgress> {
        let local = self.progress.borrow().clone();
        match (&local, &self.cluster.snapshot().migration) {
            (Some(p), _) if !p.finished => local,
            // This node ran the journaled change and it ended short (it stays journaled,
            // to be run again): its own final report, not "running elsewhere".
            (Some(p), Some(journal)) if p.id == journal.id && journal.runner == self.instance => {
                local
            }
            (_, Some(journal)) if !self.runs(journal) => Some(remote_progress(journal)),
            _ => local,
        }
    }

    fn runs(&self, journal: &Journal) -> bool {
        self.runs_change(&journal.id)
    }

    /// Whether this web node runs the change `id` now.
    pub fn runs_change(&self, id: &str) -> bool {
        self.current
            .lock()
            .expect("current change lock")
            .as_ref()
            .is_some_and(|(h, j)| j.id == id && !h.status().state.is_finished())
    }

    /// Adds `node` and moves onto it the files it now owns; returns the files moved.
    /// Waits for the change, but the change does not wait for the caller.
    pub async fn add_node(self: &Arc<Self>, node: &str) -> Result<u64, MigrationError> {
        let handle = self.start(ChangeKind::Add, node, None).await?;
        outcome(handle.finished().await)
    }

    /// Moves the files of `node` to their new holders, then drops it from the ring.
    pub async fn remove_node(self: &Arc<Self>, node: &str) -> Result<u64, MigrationError> {
        let handle = self.start(ChangeKind::Remove, node, None).await?;
        outcome(handle.finished().await)
    }

    /// Journals a change and starts its worker; returns as soon as it runs. Asking for
    /// the change that is journaled but not running (left by a crash) resumes it.
    /// `zone`: for Zone, the node's new zone (None: out of any); for Add, a zone to use
    /// instead of the one the node reports; for Remove, None.
    pub async fn start(
        self: &Arc<Self>,
        kind: ChangeKind,
        node: &str,
        zone: Option<&str>,
    ) -> Result<WorkerHandle, MigrationError> {
        let _starting = self.starting.lock().await;
        if let Some((handle, journal)) = self.running() {
            return Err(MigrationError::Busy(format!(
                "{}, worker {}",
                journal.describe(),
                handle.id
            )));
        }
        let state = self.cluster.snapshot();
        if let Some(journal) = &state.migration {
            let same_zone = kind != ChangeKind::Zone || journal.target.zone(node) == zone;
            if journal.kind == kind && journal.node == node && !journal.cancelled && same_zone {
                return self.take_over(journal.clone()).await;
            }
            return Err(busy(journal));
        }
        if let Some(repair) = &state.repair {
            return Err(repair_busy(repair));
        }
        let target = self.target(&state.ring, kind, node, zone).await?;
        let journal = Journal {
            id: format!(
                "{}-{}",
                Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
                kind.name()
            ),
            kind,
            node: node.to_string(),
            target,
            started_at: Utc::now(),
            cancelled: false,
            runner: self.instance.clone(),
            progress: None,
            arcs: None,
        };
        // Journal first, and only if nobody journaled a change meanwhile (another web node
        // on the same store): from here on new files go to the target ring.
        journaled::record(&self.cluster, &journal, |current: &ClusterState| {
            if let Some(other) = &current.migration {
                return Err(busy(other));
            }
            if let Some(repair) = &current.repair {
                return Err(repair_busy(repair));
            }
            if kind == ChangeKind::Add && current.ring.contains(node) {
                return Err(MigrationError::Duplicate(node.to_string()));
            }
            if current.ring != state.ring {
                return Err(MigrationError::Busy(
                    "the ring changed while this change was checked; ask again".into(),
                ));
            }
            Ok(())
        })
        .await?;
        Ok(self.spawn(journal))
    }

    /// Finishes, in the background, a change journaled but not running here (left by a
    /// web node that stopped or crashed). None when there is none.
    pub async fn resume_pending(self: &Arc<Self>) -> Result<Option<WorkerHandle>, MigrationError> {
        let _starting = self.starting.lock().await;
        if self.running().is_some() {
            return Ok(None);
        }
        let Some(journal) = self.cluster.snapshot().migration.clone() else {
            return Ok(None);
        };
        tracing::info!(id = %journal.id, change = %journal.describe(), "resuming an unfinished ring change");
        self.take_over(journal).await.map(Some)
    }

    /// Cancels the change this web node runs by moving every file back to the ring as it
    /// was before it: safe for an add and for a remove alike, because nothing has left
    /// the old ring's nodes for good until the switch. Refused when a node of the old
    /// ring does not answer (the files could not all go back), when the change runs on
    /// another web node (two workers moving files in opposite directions could delete the
    /// last copy), and for a cancel already under way.
    pub async fn cancel(self: &Arc<Self>) -> Result<String, MigrationError> {
        let _starting = self.starting.lock().await;
        let state = self.cluster.snapshot();
        let Some(journal) = state.migration.clone() else {
            return Err(MigrationError::NothingToCancel);
        };
        if journal.cancelled {
            return Err(MigrationError::Refused(format!(
                "{} is already being cancelled",
                journal.describe()
            )));
        }
        let running_here = self.running().filter(|(_, j)| j.id == journal.id);
        if running_here.is_none() && journal.runner != self.instance {
            return Err(MigrationError::Refused(format!(
                "{} runs on another web node ({}); cancel it there",
                journal.describe(),
                journal.runner
            )));
        }
        for node in state.ring.nodes() {
            self.probe(node).await.map_err(|e| {
                MigrationError::Refused(format!(
                    "cannot cancel: every file must go back to {node}, which does not answer ({e})"
                ))
            })?;
        }
        // Stop the forward copies before anything moves back.
        if let Some((handle, _)) = running_here {
            handle.stop("cancelled by the operator: every file goes back where it was");
            handle.finished().await;
        }
        let rollback = Journal {
            cancelled: true,
            target: state.ring.clone(),
            runner: self.instance.clone(),
            progress: None,
            // Every arc goes back, those done first.
            arcs: None,
            ..journal.clone()
        };
        self.cluster
            .update(|current: &ClusterState| match &current.migration {
                Some(j) if j.id == journal.id && !j.cancelled => {
                    let mut next = current.clone();
                    next.migration = Some(rollback.clone());
                    Ok(Some(next))
                }
                _ => Err(MigrationError::Refused(
                    "the change finished or was replaced meanwhile".into(),
                )),
            })
            .await?;
        let description = rollback.describe();
        self.spawn(rollback);
        Ok(description)
    }

    /// What a change would move, changing nothing (`zone` as for [`Migrator::start`]).
    pub async fn plan(
        &self,
        kind: ChangeKind,
        node: &str,
        zone: Option<&str>,
    ) -> Result<Plan, MigrationError> {
        let state = self.cluster.snapshot();
        let target = self.target(state.write_ring(), kind, node, zone).await?;
        let mut nodes = state.data_nodes();
        nodes.extend(target.nodes().map(String::from));
        run::plan(&self.cluster, &nodes, &target).await
    }

    fn running(&self) -> Option<(WorkerHandle, Journal)> {
        self.current
            .lock()
            .expect("current change lock")
            .clone()
            .filter(|(h, _)| !h.status().state.is_finished())
    }

    /// Marks `journal` as run by this web node (so exactly one of several web nodes
    /// resuming it at once does), then runs it.
    async fn take_over(self: &Arc<Self>, journal: Journal) -> Result<WorkerHandle, MigrationError> {
        match journaled::take_over(&self.cluster, &journal, &self.instance).await? {
            Ok(mine) => Ok(self.spawn(mine)),
            Err(NotTaken::TakenBy(runner)) => Err(MigrationError::Busy(format!(
                "{} was taken over by {runner}",
                journal.describe()
            ))),
            Err(NotTaken::Replaced(other)) => Err(MigrationError::Busy(format!(
                "{other} is journaled; finish it (ask for it again) or cancel it first"
            ))),
            Err(NotTaken::Gone) => Err(MigrationError::Refused(
                "the change finished meanwhile".into(),
            )),
        }
    }

    fn spawn(self: &Arc<Self>, journal: Journal) -> WorkerHandle {
        let handle = self
            .runner
            .start(WorkerKind::RingChange, &journal.describe(), |context| {
                ChangeWorker::new(self.clone(), journal.clone(), context)
            });
        *self.current.lock().expect("current change lock") = Some((handle.clone(), journal));
        handle
    }

    /// The ring `current` becomes with the change.
    async fn target(
        &self,
        current: &Ring,
        kind: ChangeKind,
        node: &str,
        zone: Option<&str>,
    ) -> Result<Ring, MigrationError> {
        if let Some(zone) = zone {
            check_zone_name(zone).map_err(MigrationError::Refused)?;
        }
        match kind {
            ChangeKind::Add => {
                if current.contains(node) {
                    return Err(MigrationError::Duplicate(node.to_string()));
                }
                let reported = self.probe(node).await?;
                let mut target = current.clone();
                target.add(node);
                target.set_zone(node, zone.or(reported.as_deref()));
                Ok(target)
            }
            ChangeKind::Remove if zone.is_some() => Err(MigrationError::Refused(
                "removing a node takes no zone".into(),
            )),
            ChangeKind::Remove => removal_target(current, node),
            ChangeKind::Zone => {
                if !current.contains(node) {
                    return Err(MigrationError::Unknown(node.to_string()));
                }
                let mut target = current.clone();
                if !target.set_zone(node, zone) {
                    return Err(MigrationError::Refused(match zone {
                        Some(zone) => format!("{node} is already in zone {zone}"),
                        None => format!("{node} is in no zone already"),
                    }));
                }
                Ok(target)
            }
        }
    }

    /// Checks that `node` answers, and returns the zone it reports.
    async fn probe(&self, node: &str) -> Result<Option<String>, MigrationError> {
        let unreachable = |why: String| Unreachable {
            node: node.to_string(),
            why,
        };
        let client = self
            .cluster
            .client(node)
            .map_err(|e| unreachable(e.to_string()))?;
        match tokio::time::timeout(PROBE_TIMEOUT, client.health()).await {
            Ok(Ok(health)) => Ok(Some(health.zone).filter(|z| !z.is_empty())),
            Ok(Err(e)) => Err(unreachable(e.to_string()).into()),
            Err(_) => Err(unreachable("no answer within 3 s".to_string()).into()),
        }
    }
}

/// What the original admin RPCs return for a finished worker: the files moved, or why not.
fn outcome(status: WorkerStatus) -> Result<u64, MigrationError> {
    match status.state {
        WorkerState::Done => Ok(status.files_done),
        WorkerState::Interrupted => Err(MigrationError::Interrupted(status.stop_reason)),
        _ => Err(MigrationError::Failed(status.outcome)),
    }
}

fn busy(journal: &Journal) -> MigrationError {
    MigrationError::Busy(format!(
        "{} is journaled{}; finish it (ask for it again) or cancel it first",
        journal.describe(),
        if journal.runner.is_empty() {
            String::new()
        } else {
            format!(" by {}", journal.runner)
        }
    ))
}

fn repair_busy(repair: &RepairJournal) -> MigrationError {
    MigrationError::Busy(format!(
        "a repair ({}) is running on {}; change the ring when it is over",
        repair.reason, repair.runner
    ))
}

/// The ring without `node`, refused if that leaves fewer nodes than replicas (or none).
fn removal_target(ring: &Ring, node: &str) -> Result<Ring, MigrationError> {
    if !ring.contains(node) {
        return Err(MigrationError::Unknown(node.to_string()));
    }
    let left = ring.len() - 1;
    if left == 0 {
        return Err(MigrationError::Refused(format!(
            "{node} is the last node in the ring; removing it would leave nowhere to store files"
        )));
    }
    if left < ring.replicas() as usize {
        return Err(MigrationError::Refused(format!(
            "removing {node} would leave {left} nodes, fewer than the {} replicas each file needs",
            ring.replicas()
        )));
    }
    let mut target = ring.clone();
    target.remove(node);
    Ok(target)
}

/// A worker's status in the original admin shape.
fn to_progress(
    journal: &Journal,
    status: &WorkerStatus,
    arcs: &ArcProgress,
    finished: bool,
) -> ChangeProgress {
    ChangeProgress {
        id: journal.id.clone(),
        kind: journal.kind,
        node: journal.node.clone(),
        files_total: status.files_total,
        files_done: status.files_done,
        bytes_total: status.bytes_total,
        bytes_done: status.bytes_done,
        bytes_per_second: status.bytes_per_second,
        current_key: status.current_item.clone(),
        errors: status.errors,
        last_error: status.last_error.clone(),
        finished,
        started_at: journal.started_at,
        events: status.events.iter().cloned().collect(),
        arcs: *arcs,
    }
}

/// A change another web node runs, from the progress it saved in the journal.
fn remote_progress(journal: &Journal) -> ChangeProgress {
    let p = journal.progress.clone().unwrap_or_default();
    let arcs = ArcProgress::of_journal(journal.arcs);
    ChangeProgress {
        id: journal.id.clone(),
        kind: journal.kind,
        node: journal.node.clone(),
        files_total: p.files_total,
        files_done: p.files_done,
        bytes_total: p.bytes_total,
        bytes_done: p.bytes_done,
        bytes_per_second: p.bytes_per_second,
        current_key: String::new(),
        errors: p.errors,
        last_error: p.last_error,
        finished: false,
        started_at: journal.started_at,
        events: vec![format!(
            "{} runs on web node {}",
            journal.describe(),
            journal.runner
        )],
        arcs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_refuses_unknown_last_and_below_replicas() {
        let ring = Ring::with_nodes(4, 2, ["a:1", "b:2"]);
        assert!(matches!(
            removal_target(&ring, "c:3"),
            Err(MigrationError::Unknown(_))
        ));
        assert!(matches!(
            removal_target(&ring, "a:1"),
            Err(MigrationError::Refused(_))
        ));
        let single = Ring::with_nodes(4, 1, ["a:1"]);
        assert!(matches!(
            removal_target(&single, "a:1"),
            Err(MigrationError::Refused(_))
        ));
        let three = Ring::with_nodes(4, 2, ["a:1", "b:2", "c:3"]);
        assert!(!removal_target(&three, "a:1").unwrap().contains("a:1"));
    }
}
