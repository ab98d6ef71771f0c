//! One execution of a ring change's journal, arc by arc (DESIGN §3, §6). The keyspace is
//! cut into arcs of about `--range-keys` keys each, counted from the nodes' file counts
//! when the change starts and kept in its journal. For each arc in ring order the worker
//! lists what the nodes hold there, copies each file to the holders the target ring wants
//! (the receiving node verifies its SHA-256), deletes the surplus copies, and only then
//! marks the arc done in the journal. The web node holds one arc's inventory at a time,
//! and a change resumed after a crash starts at the first arc not done.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::{
    DELETE_BATCH, DELETES_IN_FLIGHT, MigrationError, Migrator, Plan, SHARE_PROGRESS_EVERY,
    SHOW_PACE_EVERY, to_progress,
};
use crate::cluster::arcs::work_arcs;
use crate::cluster::inventory::{self, KeyWork, Unreachable};
use crate::cluster::membership::{Cluster, ClusterError};
use crate::cluster::state::{ArcsDone, ChangeKind, ClusterState, Journal, JournalProgress};
use crate::cluster::worker::WorkerContext;
use crate::node::client::ClientError;
use crate::ring::{KeyRange, Ring};

/// Where a run stands among the arcs, for the progress it publishes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct ArcTally {
    pub total: u64,
    /// Arcs done, as the journal records them (a prefix in ring order).
    pub done: u64,
    /// The arc being worked on, counted from 1 (0 before the first).
    pub now: u64,
    /// The arc this run started at, counted from 0.
    pub first: u64,
    /// The most keys one arc's inventory held.
    pub keys_max: u64,
    /// Keys listed, all arcs together.
    pub keys_listed: u64,
}

impl ArcTally {
    /// As another web node's journal records it.
    pub fn of_journal(arcs: Option<ArcsDone>) -> Self {
        let arcs = arcs.unwrap_or_default();
        ArcTally {
            total: arcs.count,
            done: arcs.done,
            now: (arcs.done + 1).min(arcs.count),
            first: arcs.done,
            ..ArcTally::default()
        }
    }
}

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

/// One execution of a journal.
pub(super) struct Run<'a> {
    pub migrator: &'a Migrator,
    pub journal: &'a Journal,
    pub ctx: &'a WorkerContext,
    pub started: Instant,
    pub last_shared: Instant,
    pub arcs: ArcTally,
}

impl Run<'_> {
    fn publish(&self) {
        let status = self.ctx.status.borrow().clone();
        self.migrator.progress.send_replace(Some(to_progress(
            self.journal,
            &status,
            &self.arcs,
            false,
        )));
    }

    fn event(&self, text: String) {
        self.ctx.report(|s| s.event(text));
        self.publish();
    }

    pub async fn go(&mut self) -> Result<u64, MigrationError> {
        let cluster = &self.migrator.cluster;
        let journal = self.journal;
        // Writes that placed files on the ring before this journal must land before the
        // inventory, or their files would be missed.
        let version = cluster.snapshot().version;
        let pending = cluster.writes_before(version);
        if pending > 0 {
            self.event(format!(
                "{}: waiting for {pending} writes on the previous ring",
                journal.describe()
            ));
            cluster.wait_for_writes_before(version).await;
        }

        let mut nodes = cluster.snapshot().data_nodes();
        nodes.extend(journal.target.nodes().map(String::from));
        // A node being removed that no longer answers: its copies elsewhere are used.
        let may_skip = (journal.kind == ChangeKind::Remove && !journal.cancelled)
            .then_some(journal.node.as_str());
        let arcs_done = match journal.arcs {
            Some(arcs) => arcs,
            None => {
                let count = arc_count(cluster, &nodes, may_skip).await?;
                let arcs = ArcsDone { count, done: 0 };
                self.save(arcs).await;
                arcs
            }
        };
        let arcs = KeyRange::split_whole(arcs_done.count);
        let first = arcs_done.done.min(arcs.len() as u64);
        self.arcs = ArcTally {
            total: arcs.len() as u64,
            done: first,
            first,
            ..ArcTally::default()
        };
        self.event(if first > 0 {
            format!(
                "{}: resuming at arc {}/{} ({first} done before)",
                journal.describe(),
                first + 1,
                arcs.len()
            )
        } else {
            format!(
                "{}: {} arcs of about {} keys",
                journal.describe(),
                arcs.len(),
                cluster.range_keys.get()
            )
        });

        // The next arc is listed while this one's files move, so the copies never wait
        // for a listing: at most two arcs' keys are in memory, one listed, one moving.
        let migrator = self.migrator;
        let list = |arc: KeyRange| inventory::take_in(&migrator.cluster, &nodes, may_skip, arc);
        let mut listed = match arcs.get(first as usize) {
            Some(arc) => Some(list(*arc).await),
            None => None,
        };
        let mut failed = 0u64;
        for index in first as usize..arcs.len() {
            if self.ctx.stop.is_cancelled() {
                break;
            }
            self.arcs.now = index as u64 + 1;
            let inventory = listed.take().expect("each arc is listed before its turn")?;
            let keys = inventory.len() as u64;
            self.arcs.keys_max = self.arcs.keys_max.max(keys);
            self.arcs.keys_listed += keys;
            let work = inventory::work_list(&inventory, &journal.target);
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
                "arc {}/{}: {keys} keys, {files} files to move ({bytes} bytes to copy)",
                index + 1,
                arcs.len()
            ));
            let following = arcs.get(index + 1).copied();
            let (arc_failed, next) = tokio::join!(self.move_files(work), async move {
                match following {
                    Some(arc) => Some(list(arc).await),
                    None => None,
                }
            });
            listed = next;
            failed += arc_failed;
            if self.ctx.stop.is_cancelled() {
                break;
            }
            // An arc counts as done only when it and every arc before it moved every file.
            if failed == 0 {
                self.arcs.done = index as u64 + 1;
                self.save(ArcsDone {
                    count: self.arcs.total,
                    done: self.arcs.done,
                })
                .await;
            }
        }
        let status = self.ctx.status.borrow().clone();
        if self.ctx.stop.is_cancelled() {
            return Err(MigrationError::Interrupted(status.stop_reason));
        }
        if failed > 0 {
            return Err(MigrationError::Failed(format!(
                "{failed} of {} files could not be moved (last error: {}); the change stays journaled: run it again to finish",
                status.files_total, status.last_error
            )));
        }
        self.switch().await?;
        Ok(status.files_done)
    }

    /// Copies, checks and deletes the files of one arc; returns how many failed. Stops
    /// taking new files when asked to stop; those in flight finish.
    async fn move_files(&mut self, work: Vec<KeyWork>) -> u64 {
        let cluster = &self.migrator.cluster;
        // A key's surplus copies are deleted once its new copies are durable and checked,
        // in batches per node (one call and one folder sync for many files).
        let stop = self.ctx.stop.clone();
        let items = work.into_iter().take_while(move |_| !stop.is_cancelled());
        let stop = &self.ctx.stop;
        let mut copies = futures::stream::iter(items.map(|item| async move {
            let outcome = inventory::copy_paced(cluster, &item, stop).await;
            (item, outcome)
        }))
        .buffer_unordered(self.migrator.parallelism);
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

    /// Every file is where the target ring wants it: switches, if the journal is still
    /// this one (a cancel replaces it).
    async fn switch(&self) -> Result<(), MigrationError> {
        let journal = self.journal;
        self.migrator
            .cluster
            .update(|current: &ClusterState| match &current.migration {
                Some(j) if j.id == journal.id && j.cancelled == journal.cancelled => {
                    let mut next = current.clone();
                    next.ring = journal.target.clone();
                    next.migration = None;
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
                    Ok(Some(next))
                }
                _ => Err(MigrationError::Refused(format!(
                    "{} was replaced in the journal before it could switch the ring",
                    journal.describe()
                ))),
            })
            .await?;
        Ok(())
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
        let status = self.ctx.status.borrow().clone();
        let progress = JournalProgress::of(&status);
        let journal = self.journal;
        let saved = self
            .migrator
            .cluster
            .update(|current: &ClusterState| match &current.migration {
                Some(j) if j.id == journal.id && j.cancelled == journal.cancelled => {
                    let mut next = current.clone();
                    if let Some(j) = next.migration.as_mut() {
                        j.progress = Some(progress.clone());
                        if arcs.is_some() {
                            j.arcs = arcs;
                        }
                    }
                    Ok::<_, ClusterError>(Some(next))
                }
                _ => Ok(None),
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
        let tally = ArcTally::of_journal(Some(ArcsDone { count: 20, done: 6 }));
        assert_eq!((tally.total, tally.done, tally.now), (20, 6, 7));
        let finished = ArcTally::of_journal(Some(ArcsDone {
            count: 20,
            done: 20,
        }));
        assert_eq!(finished.now, 20);
        // A journal from before arcs: nothing to show.
        assert_eq!(ArcTally::of_journal(None).total, 0);
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
