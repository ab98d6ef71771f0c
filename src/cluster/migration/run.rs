//! One execution of a ring change's journal, arc by arc (DESIGN §3, §6). The keyspace is
//! cut into arcs of about `--range-keys` keys each, counted from the nodes' file counts
//! when the change starts and kept in its journal. For each arc in ring order the worker
//! lists what the nodes hold there, copies each file to the holders the target ring wants
//! (the receiving node verifies its SHA-256), deletes the surplus copies, and only then
//! marks the arc done in the journal. The web node holds one arc's inventory at a time,
//! and a change resumed after a crash starts at the first arc not done.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::{
    ArcProgress, DELETE_BATCH, DELETES_IN_FLIGHT, MigrationError, Migrator, Plan,
    SHARE_PROGRESS_EVERY, SHOW_PACE_EVERY, to_progress,
};
use crate::background::{Step, Worker, WorkerContext};
use crate::cluster::arcs::work_arcs;
use crate::cluster::inventory::Inventory;
use crate::cluster::inventory::{self, KeyWork, Unreachable};
use crate::cluster::journaled;
use crate::cluster::membership::Cluster;
use crate::cluster::state::{ArcsDone, ChangeKind, Journal, JournalProgress};
use crate::node::client::ClientError;
use crate::ring::{KeyRange, Ring};

/// How many arcs work over the keys of `nodes` takes: their file counts summed (an upper
/// bound on the keys) over the operator's bound per arc. A node in `may_skip` that does
/// not answer counts for nothing; any other stops the change, as its inventory would.
pub(super) async fn arc_count(
    cluster: &Cluster,
    nodes: &BTreeSet<String>,
    may_skip: Option<&str>,
) -> Result<u64, Unreachable> {
    let counts = futures::future::join_all(nodes.iter().map(|node| async move {
        let stats = match cluster.client(node) {
            Ok(client) => client.stats().await,
            Err(e) => Err(e),
        };
        (node, stats)
    }))
    .await;
    let mut copies = 0;
    for (node, stats) in counts {
        match stats {
            Ok((stats, _)) => copies += stats.file_count,
            Err(_) if may_skip == Some(node.as_str()) => {}
            Err(e) => {
                return Err(Unreachable {
                    node: node.clone(),
                    why: e.to_string(),
                });
            }
        }
    }
    Ok(work_arcs(copies, cluster.range_keys.get()).len() as u64)
}

/// What a change to `target` would move, listed arc by arc as the change itself lists.
pub(super) async fn plan(
    cluster: &Cluster,
    nodes: &BTreeSet<String>,
    target: &Ring,
) -> Result<Plan, MigrationError> {
    let mut plan = Plan::default();
    for arc in KeyRange::split_whole(arc_count(cluster, nodes, None).await?) {
        let inventory = inventory::take_in(cluster, nodes, None, arc).await?;
        plan.add(Plan::of(&inventory::work_list(&inventory, target)));
    }
    Ok(plan)
}

/// Where a run stands.
enum Phase {
    /// Waiting for earlier writes, counting the arcs, listing the first.
    Begin,
    /// Moving the files of arc `next`, while listing the one after it.
    Arcs,
    /// Every arc done: switching the ring.
    Switch,
}

/// One execution of a journal, as a background worker: one arc per step.
pub(super) struct ChangeWorker {
    migrator: Arc<Migrator>,
    journal: Journal,
    ctx: WorkerContext,
    started: Instant,
    last_shared: Instant,
    arcs: ArcProgress,
    phase: Phase,
    /// Every node that may hold a key: the current ring's and the target's.
    nodes: Arc<BTreeSet<String>>,
    /// A node being removed that no longer answers: its copies elsewhere are used.
    may_skip: Option<String>,
    arc_list: Vec<KeyRange>,
    /// The arc to move next.
    next: usize,
    /// The next arc's inventory, listed while the previous arc's files moved.
    listed: Option<Result<Inventory, Unreachable>>,
    /// Files that could not be moved, all arcs so far.
    failed: u64,
}

impl Worker for ChangeWorker {
    type Error = MigrationError;

    async fn work(&mut self) -> Result<Step, MigrationError> {
        let step = match self.phase {
            Phase::Begin => self.begin().await.map(|()| Step::Busy),
            Phase::Arcs => self.move_arc().await.map(|()| Step::Busy),
            Phase::Switch => self.switch().await.map(Step::Finished),
        };
        match step {
            Ok(Step::Finished(text)) => {
                self.publish_end(Ok(&text));
                Ok(Step::Finished(text))
            }
            Ok(step) => Ok(step),
            Err(e) => {
                self.publish_end(Err(&e));
                Err(e)
            }
        }
    }

    async fn wait_for_work(&mut self) {}

    async fn stop(&mut self) -> Result<String, MigrationError> {
        let reason = self.ctx.status.borrow().stop_reason.clone();
        let e = MigrationError::Interrupted(reason);
        self.publish_end(Err(&e));
        Err(e)
    }
}

impl ChangeWorker {
    pub fn new(migrator: Arc<Migrator>, journal: Journal, ctx: WorkerContext) -> Self {
        ctx.report(|s| s.throttle = format!("{} copies at once", migrator.parallelism));
        let mut nodes = migrator.cluster.snapshot().data_nodes();
        nodes.extend(journal.target.nodes().map(String::from));
        let may_skip = (journal.kind == ChangeKind::Remove && !journal.cancelled)
            .then(|| journal.node.clone());
        ChangeWorker {
            migrator,
            journal,
            ctx,
            started: Instant::now(),
            last_shared: Instant::now(),
            arcs: ArcProgress::default(),
            phase: Phase::Begin,
            nodes: Arc::new(nodes),
            may_skip,
            arc_list: Vec::new(),
            next: 0,
            listed: None,
            failed: 0,
        }
    }

    fn publish(&self) {
        let status = self.ctx.status.borrow().clone();
        self.migrator.progress.send_replace(Some(to_progress(
            &self.journal,
            &status,
            &self.arcs,
            false,
        )));
    }

    /// The finished report for watchers of the original shape (the runner records the
    /// final state itself).
    fn publish_end(&self, outcome: Result<&String, &MigrationError>) {
        let mut last = self.ctx.status.borrow().clone();
        let text = match outcome {
            Ok(text) => text.clone(),
            Err(e) => {
                last.errors = last.errors.max(1);
                last.last_error = e.to_string();
                e.to_string()
            }
        };
        last.event(format!(
            "{}: {text}",
            if outcome.is_ok() { "done" } else { "stopped" }
        ));
        self.migrator.progress.send_replace(Some(to_progress(
            &self.journal,
            &last,
            &self.arcs,
            true,
        )));
    }

    fn event(&self, text: String) {
        self.ctx.event(text);
        self.publish();
    }

    /// Lists the inventory of `arc`, owning what it needs so it can run beside a step.
    fn list(
        &self,
        arc: KeyRange,
    ) -> impl Future<Output = Result<Inventory, Unreachable>> + Send + 'static {
        let cluster = self.migrator.cluster.clone();
        let nodes = self.nodes.clone();
        let may_skip = self.may_skip.clone();
        async move { inventory::take_in(&cluster, &nodes, may_skip.as_deref(), arc).await }
    }

    async fn begin(&mut self) -> Result<(), MigrationError> {
        let cluster = self.migrator.cluster.clone();
        // Writes that placed files on the ring before this journal must land before the
        // inventory, or their files would be missed.
        let version = cluster.snapshot().version;
        let pending = cluster.writes_before(version);
        if pending > 0 {
            self.event(format!(
                "{}: waiting for {pending} writes on the previous ring",
                self.journal.describe()
            ));
            cluster.wait_for_writes_before(version).await;
        }
        let arcs_done = match self.journal.arcs {
            Some(arcs) => arcs,
            None => {
                let count = arc_count(&cluster, &self.nodes, self.may_skip.as_deref()).await?;
                let arcs = ArcsDone { count, done: 0 };
                self.save(arcs).await;
                arcs
            }
        };
        self.arc_list = KeyRange::split_whole(arcs_done.count);
        let total = self.arc_list.len() as u64;
        let first = arcs_done.done.min(total);
        self.arcs = ArcProgress {
            total,
            done: first,
            first,
            ..ArcProgress::default()
        };
        self.event(if first > 0 {
            format!(
                "{}: resuming at arc {}/{total} ({first} done before)",
                self.journal.describe(),
                first + 1,
            )
        } else {
            format!(
                "{}: {total} arcs of about {} keys",
                self.journal.describe(),
                cluster.range_keys.get()
            )
        });
        self.next = first as usize;
        match self.arc_list.get(self.next) {
            Some(arc) => {
                self.listed = Some(self.list(*arc).await);
                self.phase = Phase::Arcs;
            }
            None => self.phase = Phase::Switch,
        }
        Ok(())
    }

    /// Moves the files of the next arc while the one after it is listed, so the copies
    /// never wait for a listing: at most two arcs' keys are in memory.
    async fn move_arc(&mut self) -> Result<(), MigrationError> {
        let index = self.next;
        let total = self.arc_list.len();
        self.arcs.now = index as u64 + 1;
        let inventory = self
            .listed
            .take()
            .expect("each arc is listed before its turn")?;
        let keys = inventory.len() as u64;
        self.arcs.keys_max = self.arcs.keys_max.max(keys);
        self.arcs.keys_listed += keys;
        let work = inventory::work_list(&inventory, &self.journal.target);
        // Only the work list outlives the listing.
        drop(inventory);
        let files = work.len() as u64;
        let bytes: u64 = work.iter().map(|w| w.size * w.missing.len() as u64).sum();
        self.ctx.report(|s| {
            s.files_total += files;
            s.bytes_total += bytes;
            s.queue = files;
        });
        self.event(format!(
            "arc {}/{total}: {keys} keys, {files} files to move ({bytes} bytes to copy)",
            index + 1,
        ));
        let following = self.arc_list.get(index + 1).map(|arc| self.list(*arc));
        let (arc_failed, next) = tokio::join!(self.move_files(work), async move {
            match following {
                Some(listing) => Some(listing.await),
                None => None,
            }
        });
        self.listed = next;
        self.failed += arc_failed;
        if self.ctx.stop.is_cancelled() {
            // Not marked done: the runner sees the stop and the journal resumes here.
            return Ok(());
        }
        // An arc counts as done only when it and every arc before it moved every file.
        if self.failed == 0 {
            self.arcs.done = index as u64 + 1;
            self.save(ArcsDone {
                count: self.arcs.total,
                done: self.arcs.done,
            })
            .await;
        }
        self.next = index + 1;
        if self.next >= total {
            self.phase = Phase::Switch;
        }
        Ok(())
    }

    /// Copies, checks and deletes the files of one arc; returns how many failed. Stops
    /// taking new files when asked to stop; those in flight finish.
    async fn move_files(&mut self, work: Vec<KeyWork>) -> u64 {
        let migrator = self.migrator.clone();
        let cluster = &migrator.cluster;
        // A key's surplus copies are deleted once its new copies are durable and checked,
        // in batches per node (one call and one folder sync for many files).
        let stopping = self.ctx.stop.clone();
        let stop = &stopping;
        let items = work.into_iter().take_while(move |_| !stop.is_cancelled());
        let mut copies = futures::stream::iter(items.map(|item| async move {
            let outcome = inventory::copy_paced(cluster, &item, stop).await;
            (item, outcome)
        }))
        .buffer_unordered(migrator.parallelism);
        // The pace's state and the rate measured, shown even while nothing finishes.
        let mut show_pace = tokio::time::interval(SHOW_PACE_EVERY);
        let mut surplus: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut deleting = FuturesUnordered::new();
        let delete = |node: String, keys: Vec<String>| async move {
            let outcome = inventory::delete_surplus(cluster, &node, &keys).await;
            (node, keys, outcome)
        };
        let mut copying = true;
        let mut failed = 0u64;
        loop {
            tokio::select! {
                next = copies.next(), if copying && deleting.len() < DELETES_IN_FLIGHT => {
                    let Some((item, outcome)) = next else {
                        copying = false;
                        // A node's batch may be empty: it was just sent full.
                        for (node, keys) in std::mem::take(&mut surplus) {
                            if !keys.is_empty() {
                                deleting.push(delete(node, keys));
                            }
                        }
                        continue;
                    };
                    let copied = self.copied(&item, outcome).await;
                    if !copied {
                        failed += 1;
                        continue;
                    }
                    for node in item.extra {
                        let batch = surplus.entry(node.clone()).or_default();
                        batch.push(item.key.clone());
                        if batch.len() >= DELETE_BATCH {
                            deleting.push(delete(node, std::mem::take(batch)));
                        }
                    }
                }
                _ = show_pace.tick(), if copying => {
                    self.ctx.report(|s| s.throttle = cluster.throttle());
                }
                Some((node, keys, outcome)) = deleting.next() => {
                    if let Err(e) = outcome {
                        failed += keys.len() as u64;
                        let error = format!(
                            "{} surplus copies on {node} (first {}): {e}",
                            keys.len(),
                            keys[0]
                        );
                        self.ctx.report(|s| {
                            s.errors += keys.len() as u64;
                            s.last_error = error.clone();
                        });
                        self.event(format!("error: {error}"));
                    }
                }
                else => break,
            }
        }
        failed
    }

    /// Every arc is done: switches the ring if every file moved and the journal is still
    /// this one (a cancel replaces it). Returns what the change did.
    async fn switch(&mut self) -> Result<String, MigrationError> {
        let status = self.ctx.status.borrow().clone();
        if self.failed > 0 {
            return Err(MigrationError::Failed(format!(
                "{} of {} files could not be moved (last error: {}); the change stays journaled: run it again to finish",
                self.failed, status.files_total, status.last_error
            )));
        }
        let journal = &self.journal;
        let switched = journaled::finish(&self.migrator.cluster, journal, |next| {
            next.ring = journal.target.clone();
            match (journal.kind, journal.cancelled) {
                (ChangeKind::Add, false) => {
                    next.spares.remove(&journal.node);
                }
                (ChangeKind::Remove, false) => {
                    next.spares.insert(journal.node.clone());
                }
                (ChangeKind::Zone, false) => {}
                // A cancelled change leaves the ring and spares as they were.
                (_, true) => {}
            }
        })
        .await?;
        if !switched {
            return Err(MigrationError::Refused(format!(
                "{} was replaced in the journal before it could switch the ring",
                journal.describe()
            )));
        }
        Ok(format!(
            "{} files moved in {:.1} s",
            status.files_done,
            self.started.elapsed().as_secs_f64()
        ))
    }

    /// Counts one key's copies in the progress; false when they failed.
    async fn copied(&mut self, item: &KeyWork, outcome: Result<u64, ClientError>) -> bool {
        let elapsed = self.started.elapsed().as_secs_f64();
        let mut error = None;
        self.ctx.report(|s| {
            match &outcome {
                Ok(copied) => {
                    s.files_done += 1;
                    s.bytes_done += copied;
                }
                Err(e) => {
                    s.errors += 1;
                    s.last_error = format!("{}: {e}", item.key);
                    error = Some(s.last_error.clone());
                }
            }
            s.queue = s.queue.saturating_sub(1);
            s.current_item = item.key.clone();
            if elapsed > 0.0 {
                s.bytes_per_second = s.bytes_done as f64 / elapsed;
            }
        });
        match &error {
            Some(e) => self.event(format!("error: {e}")),
            None => self.publish(),
        }
        if self.last_shared.elapsed() >= SHARE_PROGRESS_EVERY {
            self.save_progress(None).await;
        }
        error.is_none()
    }

    /// Records in the journal how many arcs are done, with the progress: once per arc.
    async fn save(&mut self, arcs: ArcsDone) {
        self.save_progress(Some(arcs)).await;
        self.publish();
    }

    /// Saves the progress in the journal (and `arcs`, when given), so every web node
    /// sharing the store can show it and a restarted one resumes where it stood. Best
    /// effort: a failed save only means more work after a crash.
    async fn save_progress(&mut self, arcs: Option<ArcsDone>) {
        self.last_shared = Instant::now();
        let progress = JournalProgress::of(&self.ctx.status.borrow());
        let saved = journaled::save(&self.migrator.cluster, &self.journal, |stored| {
            stored.progress = Some(progress.clone());
            if arcs.is_some() {
                stored.arcs = arcs;
            }
        })
        .await;
        if let Err(e) = saved {
            tracing::warn!(error = %e, "could not save the change's progress in its journal");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_web_nodes_change_shows_the_arc_after_those_done() {
        let tally = ArcProgress::of_journal(Some(ArcsDone { count: 20, done: 6 }));
        assert_eq!((tally.total, tally.done, tally.now), (20, 6, 7));
        let finished = ArcProgress::of_journal(Some(ArcsDone {
            count: 20,
            done: 20,
        }));
        assert_eq!(finished.now, 20);
        // A journal from before arcs: nothing to show.
        assert_eq!(ArcProgress::of_journal(None).total, 0);
    }

    #[test]
    fn plans_of_arcs_add_up() {
        let mut plan = Plan::default();
        let pair = ("a:1".to_string(), "b:2".to_string());
        for (files, bytes) in [(2, 20), (3, 30)] {
            plan.add(Plan {
                files,
                bytes,
                moves: BTreeMap::from([(pair.clone(), (files, bytes))]),
            });
        }
        assert_eq!((plan.files, plan.bytes), (5, 50));
        assert_eq!(plan.moves[&pair], (5, 50));
    }
}
