//! Heal at once: a key with a copy found bad is copied again from a good copy, within a
//! minute, instead of waiting for the next repair.
//!
//! Every detection ends in a node's quarantine (a verified read, a pull through GetFile,
//! the scrub), so the worker polls the nodes' quarantine lists; reads and copies that
//! meet a bad copy also name the key at once ([`Suspects`]). Keys go on a queue kept in
//! the metadata store (a restart forgets nothing; web nodes on one etcd share it). Each
//! key is tried when due: every node that may hold it verifies its copy, and each owner
//! without a good one gets it from one that has it. A failed try waits twice as long as
//! the last (from [`RETRY_FIRST`] up to [`RETRY_MAX`]) and keeps its error for the
//! operator. Nothing is ever deleted here. The shape is Garage's block resync queue.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::inventory::{self, KeyWork};
use super::membership::Cluster;
use crate::background::{Runner, Step, Worker, WorkerContext, WorkerHandle, WorkerKind};
use crate::meta::{ResyncEntry, VideoStatus};

/// Default time between two looks at the nodes' quarantine lists.
pub const DEFAULT_POLL_EVERY: Duration = Duration::from_secs(10);
/// Wait before the first retry of a key that failed; doubled at each failure.
pub const RETRY_FIRST: Duration = Duration::from_secs(5);
pub const RETRY_MAX: Duration = Duration::from_secs(600);
/// Longest sleep between two rounds when nothing wakes the worker.
const IDLE_ROUND: Duration = Duration::from_secs(2);

/// Keys that readers and copies found bad, waiting for the worker to queue them. Held by
/// the cluster so any reader can name one without knowing the worker.
#[derive(Default)]
pub struct Suspects {
    keys: Mutex<BTreeMap<String, String>>,
    wake: Notify,
}

impl Suspects {
    /// Names `key` as having a bad copy, and why.
    pub fn add(&self, key: &str, why: String) {
        self.keys
            .lock()
            .expect("suspects lock")
            .entry(key.to_string())
            .or_insert(why);
        self.wake.notify_one();
    }

    fn take(&self) -> BTreeMap<String, String> {
        std::mem::take(&mut *self.keys.lock().expect("suspects lock"))
    }
}

/// The wait before the try after `attempts` failed ones.
pub fn backoff(attempts: u32) -> Duration {
    let doubled = RETRY_FIRST.saturating_mul(1u32 << attempts.saturating_sub(1).min(16));
    doubled.min(RETRY_MAX)
}

/// What one try did to a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Healed {
    /// Every owner holds a good copy (`copied` of them just got one).
    Whole { copied: usize },
    /// Its video is gone (deleted, or never recorded): nothing to keep.
    Gone,
}

/// The queue as last seen, for the admin service and the metrics.
#[derive(Clone, Debug, Default)]
pub struct QueueView {
    pub entries: Vec<ResyncEntry>,
    pub healed: u64,
    pub read_at: Option<DateTime<Utc>>,
}

pub struct Resyncer {
    cluster: Arc<Cluster>,
    poll_every: Duration,
    view: Mutex<QueueView>,
}

impl Resyncer {
    pub fn new(cluster: Arc<Cluster>, poll_every: Duration) -> Arc<Self> {
        Arc::new(Resyncer {
            cluster,
            poll_every,
            view: Mutex::new(QueueView::default()),
        })
    }

    /// The queue as the worker last read it.
    pub fn view(&self) -> QueueView {
        self.view.lock().expect("resync view lock").clone()
    }

    /// Starts the worker; it runs until the runner shuts down.
    pub fn start(self: &Arc<Self>, runner: &Runner) -> WorkerHandle {
        runner.start(
            WorkerKind::Resync,
            "copies again the keys whose copies were found bad",
            |context| ResyncWorker {
                resyncer: self.clone(),
                context,
                seen: HashMap::new(),
                next_poll: tokio::time::Instant::now(),
                wait: Duration::ZERO,
            },
        )
    }

    async fn queue(&self, key: &str, reason: String) {
        let now = Utc::now();
        let entry = ResyncEntry {
            key: key.to_string(),
            reason,
            queued_at: now,
            attempts: 0,
            next_at: now,
            last_error: String::new(),
        };
        match self.cluster.meta().queue_resync(&entry).await {
            Ok(true) => tracing::info!(%key, reason = %entry.reason, "queued for resync"),
            Ok(false) => {}
            // The node's quarantine keeps the finding: the next start's poll queues it.
            Err(e) => tracing::warn!(%key, error = %e, "could not queue a resync"),
        }
    }

    /// Queues every copy the nodes quarantined since the last look.
    async fn poll_quarantines(&self, seen: &mut HashMap<String, u64>) {
        let nodes = self.cluster.snapshot().data_nodes();
        for node in nodes {
            let Ok(client) = self.cluster.client(&node) else {
                continue;
            };
            let Ok(Ok(found)) =
                tokio::time::timeout(Duration::from_secs(5), client.quarantine()).await
            else {
                // Down, or an older node without the RPC: its reads still name keys.
                continue;
            };
            let last = seen.get(&node).copied().unwrap_or(0);
            let mut newest = last;
            for copy in found.iter().filter(|c| c.quarantined_unix_ms > last) {
                newest = newest.max(copy.quarantined_unix_ms);
                let why = format!(
                    "quarantined on {node} by {}: {}",
                    copy.found_by, copy.reason
                );
                self.queue(&copy.key, why).await;
            }
            seen.insert(node, newest);
        }
    }

    /// Tries every due key once; returns the time until the next one is due.
    async fn round(&self, context: &WorkerContext) -> Result<Duration, String> {
        let meta = self.cluster.meta();
        let entries = meta.resync_queue().await.map_err(|e| e.to_string())?;
        let changing = self.cluster.snapshot().migration.is_some();
        let now = Utc::now();
        let mut healed = 0u64;
        if !changing {
            for entry in entries.iter().filter(|e| e.next_at <= now) {
                if context.stop.is_cancelled() {
                    break;
                }
                context.report(|s| s.current_item = entry.key.clone());
                match heal(&self.cluster, &entry.key).await {
                    Ok(outcome) => {
                        tracing::info!(key = %entry.key, ?outcome, "resync done");
                        meta.remove_resync(&entry.key)
                            .await
                            .map_err(|e| e.to_string())?;
                        healed += 1;
                    }
                    Err(why) => {
                        let mut failed = entry.clone();
                        failed.attempts += 1;
                        let wait = backoff(failed.attempts);
                        failed.next_at =
                            Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                        failed.last_error = why.clone();
                        tracing::warn!(key = %entry.key, attempts = failed.attempts, error = %why, "resync failed; retried later");
                        meta.update_resync(&failed)
                            .await
                            .map_err(|e| e.to_string())?;
                        context.report(|s| {
                            s.errors += 1;
                            s.last_error = format!("{}: {why}", entry.key);
                        });
                    }
                }
            }
        }
        let entries = if healed > 0 || entries.iter().any(|e| e.next_at <= now) {
            meta.resync_queue().await.map_err(|e| e.to_string())?
        } else {
            entries
        };
        let next_due = entries
            .iter()
            .map(|e| (e.next_at - Utc::now()).to_std().unwrap_or_default())
            .min()
            .unwrap_or(IDLE_ROUND);
        let failing = entries.iter().filter(|e| !e.last_error.is_empty()).count();
        context.report(|s| {
            s.current_item.clear();
            s.files_done += healed;
            s.files_total = progress_total(s.files_done, entries.len());
            s.queue = entries.len() as u64;
            s.throttle = if changing && !entries.is_empty() {
                "waits for the ring change to finish".into()
            } else {
                String::new()
            };
            if failing == 0 {
                s.last_error.clear();
            }
        });
        let mut view = self.view.lock().expect("resync view lock");
        view.entries = entries;
        view.healed += healed;
        view.read_at = Some(Utc::now());
        Ok(next_due)
    }
}

/// Puts a good copy of `key` on every owner lacking one. Err says why not (a node does
/// not answer, no good copy is left, a copy failed), for a retry later.
pub async fn heal(cluster: &Cluster, key: &str) -> Result<Healed, String> {
    let state = cluster.snapshot();
    let owners: Vec<String> = state
        .ring
        .owners(key)
        .into_iter()
        .map(String::from)
        .collect();
    let nodes = state.data_nodes();
    let checks = futures::future::join_all(nodes.iter().map(|node| async move {
        let verified = match cluster.client(node) {
            Ok(client) => client.verify(key).await,
            Err(e) => Err(e),
        };
        (node.clone(), verified)
    }))
    .await;
    let mut good = Vec::new();
    let mut silent = Vec::new();
    for (node, verified) in checks {
        match verified {
            Ok(Some(stat)) => good.push((node, stat)),
            Ok(None) => {}
            // Bad: the node has just quarantined it, so the owner lacks it now.
            Err(e) if e.is_data_loss() => {}
            Err(e) => silent.push(format!("{node}: {e}")),
        }
    }
    if good.is_empty() {
        if !silent.is_empty() {
            return Err(format!(
                "no good copy on the nodes that answer ({})",
                silent.join("; ")
            ));
        }
        let video = key.split_once('/').map_or(key, |(id, _)| id);
        let record = cluster
            .meta()
            .get_video(video)
            .await
            .map_err(|e| e.to_string())?;
        return match record.value {
            Some(v) if v.status != VideoStatus::Deleting => {
                Err("no good copy left on any node".to_string())
            }
            _ => Ok(Healed::Gone),
        };
    }
    // An owner's good copy first; every good copy has the hash recorded at its store.
    good.sort_by_key(|(node, _)| !owners.contains(node));
    let (size, sha256) = (good[0].1.size, good[0].1.sha256.clone());
    let holders: Vec<String> = good
        .iter()
        .filter(|(_, stat)| stat.sha256 == sha256)
        .map(|(node, _)| node.clone())
        .collect();
    let missing: Vec<String> = owners
        .iter()
        .filter(|o| !holders.contains(o))
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(Healed::Whole { copied: 0 });
    }
    let work = KeyWork {
        key: key.to_string(),
        size,
        sha256,
        sources: holders,
        missing,
        extra: Vec::new(),
    };
    inventory::copy_missing(cluster, &work)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Healed::Whole {
        copied: work.missing.len(),
    })
}

/// The worker's files total: what it healed plus what still waits, so the status never
/// reads "1/0 files" (done above total).
fn progress_total(healed: u64, queued: usize) -> u64 {
    healed + queued as u64
}

/// The resync queue as a background worker: one round per step.
struct ResyncWorker {
    resyncer: Arc<Resyncer>,
    context: WorkerContext,
    /// Newest quarantine time seen per node: each finding is queued once per start.
    seen: HashMap<String, u64>,
    next_poll: tokio::time::Instant,
    /// How long to sleep after this round when nothing wakes the worker.
    wait: Duration,
}

impl Worker for ResyncWorker {
    type Error = std::convert::Infallible;

    async fn work(&mut self) -> Result<Step, Self::Error> {
        let resyncer = &self.resyncer;
        for (key, why) in resyncer.cluster.suspects().take() {
            resyncer.queue(&key, why).await;
        }
        if tokio::time::Instant::now() >= self.next_poll {
            resyncer.poll_quarantines(&mut self.seen).await;
            self.next_poll = tokio::time::Instant::now() + resyncer.poll_every;
        }
        let wait = match resyncer.round(&self.context).await {
            Ok(next_due) => next_due.min(IDLE_ROUND),
            Err(e) => {
                self.context.report(|s| s.error(e));
                IDLE_ROUND
            }
        };
        self.wait = wait.min(
            self.next_poll
                .saturating_duration_since(tokio::time::Instant::now()),
        );
        Ok(Step::Idle)
    }

    async fn wait_for_work(&mut self) {
        let suspects = self.resyncer.cluster.suspects();
        tokio::select! {
            _ = suspects.wake.notified() => {}
            _ = tokio::time::sleep(self.wait) => {}
        }
    }

    async fn stop(&mut self) -> Result<String, Self::Error> {
        Ok(format!("{} keys healed", self.resyncer.view().healed))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_progress_total_is_never_below_what_was_healed() {
        assert_eq!(progress_total(1, 0), 1);
        assert_eq!(progress_total(1, 3), 4);
        assert_eq!(progress_total(0, 0), 0);
    }

    use super::*;

    #[test]
    fn retries_wait_twice_as_long_each_time_up_to_the_cap() {
        assert_eq!(backoff(1), RETRY_FIRST);
        assert_eq!(backoff(2), RETRY_FIRST * 2);
        assert_eq!(backoff(4), RETRY_FIRST * 8);
        assert_eq!(backoff(30), RETRY_MAX);
        assert_eq!(backoff(u32::MAX), RETRY_MAX);
    }

    #[test]
    fn a_suspect_is_taken_once() {
        let suspects = Suspects::default();
        suspects.add("v/a.m4s", "read on n1".into());
        suspects.add("v/a.m4s", "read on n2".into());
        let taken = suspects.take();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken["v/a.m4s"], "read on n1");
        assert!(suspects.take().is_empty());
    }
}
