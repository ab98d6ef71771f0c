//! Repair (anti-entropy, DESIGN §6b): compares what every node holds with where the ring
//! wants each file and with the metadata store, then, with the copy → verify → delete
//! discipline of ring changes, restores missing copies (a wiped disk, a quarantined
//! copy), moves misplaced ones (hinted copies whose owner is back) and deletes orphans.
//!
//! It never deletes the last good copy of anything: a copy is deleted from a node only
//! after every owner holds one (verified by the receiving node), and a file one of whose
//! owners does not answer is left exactly as it is until a later pass.
//!
//! The survey ([`super::survey`]) works arc by arc, and lists keys only where the nodes'
//! digests disagree with the ring ([`super::digests`]; docs/repair.md says why that is
//! sound): a repair of a healthy cluster moves no key list. Orphans and the race with
//! uploads are described there.
//!
//! A delete's tombstone is removed by a repair that reached every node and removed every
//! file of that video, so a delete made while a holder was down ends when it returns.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::inventory;
use super::journaled::{self, NotTaken};
use super::membership::{Cluster, ClusterError};
use super::state::{ClusterState, RepairJournal};
use super::survey::{self, PARALLELISM, Scope, Task};
use crate::background::{Runner, Step, Worker, WorkerContext, WorkerHandle, WorkerKind};
use crate::meta::{MetaError, VideoStatus};

/// Files and bytes of one kind of finding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub files: u64,
    pub bytes: u64,
}

impl Tally {
    pub(super) fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }
}

/// What a repair finds, and so what it will do (or, after a run, what it did).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RepairPlan {
    /// Copies an owner lacks (lost disk, quarantined copy, failed write): restored.
    pub missing: Tally,
    /// Copies on a node that is not an owner (hinted copies, interrupted moves): moved.
    pub misplaced: Tally,
    /// Files of a video id without any record: deleted everywhere.
    pub orphans: Tally,
    /// Copies the nodes have quarantined since they started (failed verification); their
    /// owners lack them now, so they are among `missing`.
    pub quarantined: u64,
    /// Files left as they are because an owner does not answer.
    pub deferred: Tally,
    /// Files with fewer than R good copies on their owners before the repair.
    pub under_replicated: u64,
    /// Nodes that did not answer.
    pub unreachable: Vec<String>,
    /// Orphans are not deleted when the records could only be read stale.
    pub orphans_kept_because_stale: bool,
}

impl RepairPlan {
    /// Adds what one arc's survey found.
    fn absorb(&mut self, arc: RepairPlan) {
        for (total, part) in [
            (&mut self.missing, arc.missing),
            (&mut self.misplaced, arc.misplaced),
            (&mut self.orphans, arc.orphans),
            (&mut self.deferred, arc.deferred),
        ] {
            total.files += part.files;
            total.bytes += part.bytes;
        }
        self.quarantined += arc.quarantined;
        self.under_replicated += arc.under_replicated;
        for node in arc.unreachable {
            if !self.unreachable.contains(&node) {
                self.unreachable.push(node);
            }
        }
        self.orphans_kept_because_stale |= arc.orphans_kept_because_stale;
    }

    pub fn is_clean(&self) -> bool {
        self.missing.files == 0
            && self.misplaced.files == 0
            && self.orphans.files == 0
            && self.deferred.files == 0
            && self.unreachable.is_empty()
    }
}

/// The last finished repair, kept for the operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RepairReport {
    pub finished_at: DateTime<Utc>,
    pub plan: RepairPlan,
    pub fixed: u64,
    pub failed: u64,
    pub outcome: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error("{0} is journaled; repair runs when it is over")]
    Busy(String),
    #[error("{failed} of {total} files could not be repaired (last error: {last})")]
    Incomplete {
        failed: u64,
        total: u64,
        last: String,
    },
    #[error("stopped: {0}")]
    Interrupted(String),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

impl From<MetaError> for RepairError {
    fn from(e: MetaError) -> Self {
        RepairError::Cluster(ClusterError::Meta(e))
    }
}

/// Starts repairs (one at a time, and never beside a ring change) and keeps the last
/// report.
pub struct Repairer {
    cluster: Arc<Cluster>,
    runner: Arc<Runner>,
    instance: String,
    starting: tokio::sync::Mutex<()>,
    last: std::sync::Mutex<Option<RepairReport>>,
    last_survey: std::sync::Mutex<Option<(DateTime<Utc>, RepairPlan)>>,
}

impl Repairer {
    pub fn new(cluster: Arc<Cluster>, runner: Arc<Runner>, instance: String) -> Arc<Self> {
        Arc::new(Repairer {
            cluster,
            runner,
            instance,
            starting: tokio::sync::Mutex::new(()),
            last: std::sync::Mutex::new(None),
            last_survey: std::sync::Mutex::new(None),
        })
    }

    /// What a repair would do now, changing nothing.
    pub async fn plan(&self, verify: bool) -> Result<RepairPlan, RepairError> {
        let scope = survey::scope(&self.cluster, verify).await?;
        let mut plan = RepairPlan::default();
        for arc in &scope.arcs {
            plan.absorb(
                survey::survey_arc(&self.cluster, &scope, *arc, verify)
                    .await?
                    .plan,
            );
        }
        plan.quarantined =
            survey::quarantined(&self.cluster, &scope.nodes, &plan.unreachable).await;
        self.remember_survey(&plan);
        Ok(plan)
    }

    /// What the last survey (a dry run or a repair) found, and when.
    pub fn last_survey(&self) -> Option<(DateTime<Utc>, RepairPlan)> {
        self.last_survey.lock().expect("repair survey lock").clone()
    }

    fn remember_survey(&self, plan: &RepairPlan) {
        *self.last_survey.lock().expect("repair survey lock") = Some((Utc::now(), plan.clone()));
    }

    /// The last finished repair on this web node.
    pub fn last_report(&self) -> Option<RepairReport> {
        self.last.lock().expect("repair report lock").clone()
    }

    pub fn running(&self) -> Option<WorkerHandle> {
        self.runner.running(WorkerKind::Repair)
    }

    /// Journals a repair and starts its worker; returns at once. Refused while a ring
    /// change or another repair is journaled (on any web node sharing the store).
    pub async fn start(
        self: &Arc<Self>,
        why: &str,
        verify: bool,
    ) -> Result<WorkerHandle, RepairError> {
        let _starting = self.starting.lock().await;
        if let Some(running) = self.running() {
            return Ok(running);
        }
        let journal = RepairJournal {
            id: format!("{}-repair", Utc::now().format("%Y%m%dT%H%M%S%.3fZ")),
            started_at: Utc::now(),
            runner: self.instance.clone(),
            reason: why.to_string(),
            verify,
        };
        journaled::record(&self.cluster, &journal, |current: &ClusterState| {
            if let Some(change) = &current.migration {
                return Err(RepairError::Busy(change.describe()));
            }
            if let Some(other) = &current.repair {
                return Err(RepairError::Busy(format!(
                    "a repair (started {} by {})",
                    other.started_at, other.runner
                )));
            }
            Ok(())
        })
        .await?;
        Ok(self.spawn(journal))
    }

    /// Runs again a repair journaled by a web node that stopped before it finished.
    pub async fn resume_pending(self: &Arc<Self>) -> Result<Option<WorkerHandle>, RepairError> {
        let _starting = self.starting.lock().await;
        let Some(journal) = self.cluster.snapshot().repair.clone() else {
            return Ok(None);
        };
        if self.running().is_some() {
            return Ok(None);
        }
        match journaled::take_over(&self.cluster, &journal, &self.instance).await? {
            Ok(mine) => {
                tracing::info!(id = %journal.id, "resuming an unfinished repair");
                Ok(Some(self.spawn(mine)))
            }
            Err(NotTaken::TakenBy(_) | NotTaken::Replaced(_) | NotTaken::Gone) => Err(
                RepairError::Busy("the repair was taken over or finished".into()),
            ),
        }
    }

    fn spawn(self: &Arc<Self>, journal: RepairJournal) -> WorkerHandle {
        let description = format!("repair ({})", journal.reason);
        self.runner
            .start(WorkerKind::Repair, &description, |ctx| RepairWorker {
                repairer: self.clone(),
                journal,
                ctx,
                started: Instant::now(),
                scope: None,
                next: 0,
                plan: RepairPlan::default(),
                fixed: 0,
                failed: 0,
            })
    }

    /// What is left once every arc is repaired: the quarantines, the hints, the
    /// tombstones, and the report.
    async fn conclude(
        &self,
        scope: &Scope,
        mut plan: RepairPlan,
        (fixed, failed): (u64, u64),
        ctx: &WorkerContext,
        started: Instant,
    ) -> Result<String, RepairError> {
        plan.quarantined =
            survey::quarantined(&self.cluster, &scope.nodes, &plan.unreachable).await;
        self.remember_survey(&plan);
        ctx.report(|s| {
            s.event(format!(
                "{} missing, {} misplaced, {} orphans, {} deferred, {} quarantined copies{}",
                plan.missing.files,
                plan.misplaced.files,
                plan.orphans.files,
                plan.deferred.files,
                plan.quarantined,
                if plan.unreachable.is_empty() {
                    String::new()
                } else {
                    format!("; not answering: {}", plan.unreachable.join(", "))
                }
            ))
        });
        let status = ctx.status.borrow().clone();
        if ctx.stop.is_cancelled() {
            return Err(RepairError::Interrupted(status.stop_reason));
        }
        self.forget_delivered_hints().await;
        let files_total = status.files_total;
        let outcome = if failed > 0 {
            Err(RepairError::Incomplete {
                failed,
                total: files_total,
                last: status.last_error.clone(),
            })
        } else if !plan.unreachable.is_empty() {
            Err(RepairError::Incomplete {
                failed: plan.deferred.files,
                total: files_total + plan.deferred.files,
                last: format!(
                    "{} files wait for {} to answer",
                    plan.deferred.files,
                    plan.unreachable.join(", ")
                ),
            })
        } else {
            self.finish_tombstones(scope).await;
            Ok(format!(
                "{fixed} files repaired in {:.1} s ({} restored, {} moved, {} orphans removed; {})",
                started.elapsed().as_secs_f64(),
                plan.missing.files,
                plan.misplaced.files,
                plan.orphans.files,
                scope.summary
            ))
        };
        *self.last.lock().expect("repair report lock") = Some(RepairReport {
            finished_at: Utc::now(),
            plan,
            fixed,
            failed,
            outcome: match &outcome {
                Ok(text) => text.clone(),
                Err(e) => e.to_string(),
            },
        });
        outcome
    }

    /// Runs one arc's tasks, reporting each; returns (fixed, failed).
    async fn run_tasks(
        &self,
        tasks: Vec<Task>,
        ctx: &WorkerContext,
        started: Instant,
    ) -> (u64, u64) {
        let cluster = &self.cluster;
        let stop = ctx.stop.clone();
        let items = tasks.into_iter().take_while(move |_| !stop.is_cancelled());
        let stop = &ctx.stop;
        let mut results = futures::stream::iter(items.map(|task| async move {
            let outcome = match &task {
                Task::Place(work) => inventory::move_key(cluster, work, stop).await,
                Task::Orphan { key, holders } => delete_everywhere(cluster, key, holders).await,
            };
            (task, outcome)
        }))
        .buffer_unordered(PARALLELISM);
        let (mut fixed, mut failed) = (0u64, 0u64);
        while let Some((task, outcome)) = results.next().await {
            let elapsed = started.elapsed().as_secs_f64();
            ctx.report(|s| {
                match outcome {
                    Ok(bytes) => {
                        fixed += 1;
                        s.files_done += 1;
                        s.bytes_done += bytes;
                    }
                    Err(e) => {
                        failed += 1;
                        s.errors += 1;
                        s.last_error = format!("{}: {e}", task.key());
                        s.event(format!("error: {}", s.last_error));
                    }
                }
                s.queue = s.queue.saturating_sub(1);
                s.current_item = task.key().to_string();
                if elapsed > 0.0 {
                    s.bytes_per_second = s.bytes_done as f64 / elapsed;
                }
            });
        }
        (fixed, failed)
    }

    /// Removes the tombstones of deletes whose files this repair has seen gone from every
    /// node (each was listed, and each file of a tombstoned video was deleted as an orphan).
    /// A tombstone removed meanwhile (a delete request finished it) is left alone.
    async fn finish_tombstones(&self, scope: &Scope) {
        let meta = self.cluster.meta();
        for id in &scope.tombstones {
            let still_deleting = match meta.get_video(id).await {
                Ok(read) if !read.stale => read
                    .value
                    .is_some_and(|v| v.status == VideoStatus::Deleting),
                Ok(_) => false,
                Err(e) => {
                    tracing::warn!(%id, error = %e, "cannot read a tombstone");
                    false
                }
            };
            if !still_deleting {
                continue;
            }
            match meta.remove_video(id).await {
                Ok(()) => {
                    tracing::info!(%id, "finished a delete: its files are gone from every node")
                }
                Err(e) => tracing::warn!(%id, error = %e, "cannot remove a tombstone"),
            }
        }
    }

    /// Drops the hints whose copy has reached its owner (or whose file is gone).
    async fn forget_delivered_hints(&self) {
        let hints = match self.cluster.meta().hints().await {
            Ok(hints) => hints,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the hinted copies");
                return;
            }
        };
        for hint in hints {
            let on_owner = match self.cluster.client(&hint.owner) {
                Ok(client) => client.stat(&hint.key).await.map(|s| s.is_some()),
                Err(e) => Err(e),
            };
            let on_stand_in = match self.cluster.client(&hint.stand_in) {
                Ok(client) => client.stat(&hint.key).await.map(|s| s.is_some()),
                Err(e) => Err(e),
            };
            if let (Ok(owner_has), Ok(false)) = (on_owner, on_stand_in) {
                let _ = owner_has;
                if let Err(e) = self
                    .cluster
                    .meta()
                    .remove_hint(&hint.key, &hint.owner)
                    .await
                {
                    tracing::warn!(key = %hint.key, error = %e, "cannot forget a delivered hint");
                }
            }
        }
    }
}

/// Deletes an orphan from every node holding it; returns 0 bytes copied.
async fn delete_everywhere(
    cluster: &Cluster,
    key: &str,
    holders: &[String],
) -> Result<u64, crate::node::client::ClientError> {
    for node in holders {
        cluster.client(node)?.delete(key).await?;
    }
    Ok(0)
}

/// One repair as a background worker: the survey's scope, then one arc per step, then
/// what is left (quarantines, hints, tombstones) and the report.
struct RepairWorker {
    repairer: Arc<Repairer>,
    journal: RepairJournal,
    ctx: WorkerContext,
    started: Instant,
    /// What the repair covers, once compared.
    scope: Option<Scope>,
    /// The arc to survey and repair next.
    next: usize,
    plan: RepairPlan,
    fixed: u64,
    failed: u64,
}

impl Worker for RepairWorker {
    type Error = RepairError;

    async fn work(&mut self) -> Result<Step, RepairError> {
        let step = self.step().await;
        // The journal goes whatever the outcome, unless the web node is stopping: then
        // the next start runs the repair again.
        let over = match &step {
            Ok(Step::Finished(_)) => true,
            Ok(_) => false,
            Err(_) => !self.ctx.stop.is_cancelled(),
        };
        if over {
            let repairer = &self.repairer;
            if let Err(e) = journaled::finish(&repairer.cluster, &self.journal, |_| {}).await {
                tracing::warn!(error = %e, "could not clear the repair journal");
            }
        }
        step
    }

    async fn wait_for_work(&mut self) {}

    async fn stop(&mut self) -> Result<String, RepairError> {
        Err(RepairError::Interrupted(
            self.ctx.status.borrow().stop_reason.clone(),
        ))
    }
}

impl RepairWorker {
    async fn step(&mut self) -> Result<Step, RepairError> {
        let repairer = self.repairer.clone();
        let Some(scope) = &self.scope else {
            let reason = &self.journal.reason;
            self.ctx.report(|s| {
                s.throttle = format!(
                    "{PARALLELISM} files at once; {}",
                    repairer.cluster.throttle()
                );
                s.event(format!("repair ({reason}): comparing the nodes"));
            });
            let scope = survey::scope(&repairer.cluster, self.journal.verify).await?;
            self.ctx.event(scope.summary.clone());
            self.scope = Some(scope);
            return Ok(Step::Busy);
        };
        if let Some(arc) = scope.arcs.get(self.next) {
            let found =
                survey::survey_arc(&repairer.cluster, scope, *arc, self.journal.verify).await?;
            let count = found.tasks.len() as u64;
            let bytes = found.plan.missing.bytes + found.plan.misplaced.bytes;
            self.plan.absorb(found.plan);
            self.ctx.report(|s| {
                s.files_total += count;
                s.bytes_total += bytes;
                s.queue += count;
            });
            let (fixed, failed) = repairer
                .run_tasks(found.tasks, &self.ctx, self.started)
                .await;
            self.fixed += fixed;
            self.failed += failed;
            self.next += 1;
            return Ok(Step::Busy);
        }
        repairer
            .conclude(
                scope,
                std::mem::take(&mut self.plan),
                (self.fixed, self.failed),
                &self.ctx,
                self.started,
            )
            .await
            .map(Step::Finished)
    }
}
