//! Watches the storage nodes and starts repairs by itself: when a node answers again
//! after being down, when a node's store was re-created (a wiped folder, a replaced disk:
//! its store id changed, or it came up empty while the others hold files), and on a
//! schedule. What it sees (health, free disk, store identity) is also what the admin
//! service reports.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::membership::Cluster;
use super::repair::{RepairError, Repairer};
use crate::background::{Runner, Step, Worker, WorkerHandle, WorkerKind, WorkerStatus};
use crate::node::client::NodeHealth;

/// How often every node is probed; a node back from the dead is repaired within this.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);
/// Hinted copies whose owner answers start a repair at most this often, so one that
/// cannot be handed over does not start a repair every round.
const HINT_REPAIR_EVERY: Duration = Duration::from_secs(60);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the monitor last saw of one node.
#[derive(Clone, Debug, Default)]
pub struct NodeSeen {
    pub up: bool,
    pub health: Option<NodeHealth>,
    pub error: String,
    pub checked_at: Option<DateTime<Utc>>,
}

pub struct HealthMonitor {
    cluster: Arc<Cluster>,
    repairer: Arc<Repairer>,
    /// Time between scheduled repairs; None: only on demand and on node events.
    repair_every: Option<Duration>,
    seen: Mutex<BTreeMap<String, NodeSeen>>,
    /// Why a repair is wanted and not yet started (one was running, or a change).
    wanted: Mutex<Option<String>>,
    last_repair_at: Mutex<Option<tokio::time::Instant>>,
    last_hint_repair_at: Mutex<Option<tokio::time::Instant>>,
}

impl HealthMonitor {
    pub fn new(
        cluster: Arc<Cluster>,
        repairer: Arc<Repairer>,
        repair_every: Option<Duration>,
    ) -> Arc<Self> {
        Arc::new(HealthMonitor {
            cluster,
            repairer,
            repair_every,
            seen: Mutex::new(BTreeMap::new()),
            wanted: Mutex::new(None),
            last_repair_at: Mutex::new(None),
            last_hint_repair_at: Mutex::new(None),
        })
    }

    /// Starts probing every [`PROBE_EVERY`], as a worker of `runner`.
    pub fn start(self: &Arc<Self>, runner: &Runner) -> WorkerHandle {
        *self.last_repair_at.lock().expect("monitor lock") = Some(tokio::time::Instant::now());
        // The first round runs at once; the next ones every PROBE_EVERY.
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + PROBE_EVERY, PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        runner.start(
            WorkerKind::HealthMonitor,
            "probes the storage nodes; starts repairs when one comes back or is wiped",
            |_| Probing {
                monitor: self.clone(),
                tick,
            },
        )
    }

    /// What the monitor last saw of each node.
    pub fn nodes(&self) -> BTreeMap<String, NodeSeen> {
        self.seen.lock().expect("monitor lock").clone()
    }

    /// When the next scheduled repair is due; None when repairs are not scheduled.
    pub fn next_repair_at(&self) -> Option<DateTime<Utc>> {
        let every = self.repair_every?;
        let last = (*self.last_repair_at.lock().expect("monitor lock"))?;
        let left = every.saturating_sub(last.elapsed());
        Some(Utc::now() + chrono::Duration::from_std(left).unwrap_or_default())
    }

    /// A repair wanted and waiting for the running work to end, and why.
    pub fn pending_reason(&self) -> Option<String> {
        self.wanted.lock().expect("monitor lock").clone()
    }

    async fn round(&self) {
        let nodes = self.cluster.snapshot().data_nodes();
        let probes = futures::future::join_all(nodes.iter().map(|node| async move {
            let health = match self.cluster.client(node) {
                Ok(client) => match tokio::time::timeout(PROBE_TIMEOUT, client.health()).await {
                    Ok(result) => result.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
                },
                Err(e) => Err(e.to_string()),
            };
            (node.clone(), health)
        }))
        .await;
        let others_hold_files = probes
            .iter()
            .any(|(_, h)| h.as_ref().is_ok_and(|h| h.stats.file_count > 0));
        let mut reasons = Vec::new();
        {
            let mut seen = self.seen.lock().expect("monitor lock");
            seen.retain(|node, _| nodes.contains(node));
            for (node, result) in probes {
                let before = seen.get(&node).cloned();
                let now = Some(Utc::now());
                match result {
                    Ok(health) => {
                        if let Some(reason) =
                            repair_reason(&node, before.as_ref(), &health, others_hold_files)
                        {
                            reasons.push(reason);
                        }
                        seen.insert(
                            node,
                            NodeSeen {
                                up: true,
                                health: Some(health),
                                error: String::new(),
                                checked_at: now,
                            },
                        );
                    }
                    Err(error) => {
                        if before.as_ref().is_none_or(|b| b.up) {
                            tracing::warn!(%node, %error, "storage node does not answer");
                        }
                        let health = before.and_then(|b| b.health);
                        seen.insert(
                            node,
                            NodeSeen {
                                up: false,
                                health,
                                error,
                                checked_at: now,
                            },
                        );
                    }
                }
            }
        }
        if let Some(reason) = self.hints_to_hand_over().await {
            reasons.push(reason);
        }
        let scheduled = self.repair_every.is_some_and(|every| {
            self.last_repair_at
                .lock()
                .expect("monitor lock")
                .is_none_or(|at| at.elapsed() >= every)
        });
        if scheduled {
            reasons.push("scheduled".to_string());
        }
        if !reasons.is_empty() {
            let mut wanted = self.wanted.lock().expect("monitor lock");
            let joined = reasons.join("; ");
            *wanted = Some(match wanted.take() {
                Some(earlier) if !earlier.contains(&joined) => format!("{earlier}; {joined}"),
                Some(earlier) => earlier,
                None => joined,
            });
        }
        self.start_wanted_repair().await;
    }

    /// Hinted copies whose owner answers now: a node may have been down between two
    /// probes, so its return is not always seen; the hints it missed are.
    async fn hints_to_hand_over(&self) -> Option<String> {
        let recent = self
            .last_hint_repair_at
            .lock()
            .expect("monitor lock")
            .is_some_and(|at| at.elapsed() < HINT_REPAIR_EVERY);
        if recent {
            return None;
        }
        let hints = match self.cluster.meta().hints().await {
            Ok(hints) => hints,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the hinted copies");
                return None;
            }
        };
        let seen = self.seen.lock().expect("monitor lock");
        let owners: std::collections::BTreeSet<&str> = hints
            .iter()
            .filter(|h| seen.get(&h.owner).is_some_and(|s| s.up))
            .map(|h| h.owner.as_str())
            .collect();
        if owners.is_empty() {
            return None;
        }
        *self.last_hint_repair_at.lock().expect("monitor lock") = Some(tokio::time::Instant::now());
        Some(format!(
            "hinted copies wait for {}",
            owners.into_iter().collect::<Vec<_>>().join(", ")
        ))
    }

    async fn start_wanted_repair(&self) {
        let Some(reason) = self.pending_reason() else {
            return;
        };
        let state = self.cluster.snapshot();
        if state.migration.is_some() || state.repair.is_some() || self.repairer.running().is_some()
        {
            return;
        }
        match self.repairer.start(&reason, false).await {
            Ok(worker) => {
                tracing::info!(worker = worker.id, %reason, "started a repair by itself");
                *self.wanted.lock().expect("monitor lock") = None;
                *self.last_repair_at.lock().expect("monitor lock") =
                    Some(tokio::time::Instant::now());
            }
            Err(RepairError::Busy(what)) => {
                tracing::debug!(%what, "repair wanted; waiting for the running work");
            }
            Err(e) => tracing::warn!(error = %e, "could not start a repair"),
        }
    }
}

/// Why what a node shows now calls for a repair, if it does.
fn repair_reason(
    node: &str,
    before: Option<&NodeSeen>,
    now: &NodeHealth,
    others_hold_files: bool,
) -> Option<String> {
    match before {
        Some(b) if !b.up => Some(format!("{node} answers again")),
        Some(b) => {
            let old_id = b.health.as_ref().map(|h| h.store_id.as_str()).unwrap_or("");
            (!old_id.is_empty() && !now.store_id.is_empty() && old_id != now.store_id)
                .then(|| format!("{node} has a new store (wiped folder or replaced disk)"))
        }
        // First sight since this web node started: a store that was just re-created
        // empty while other nodes hold files lost what it held.
        None => (now.store_recreated && now.stats.file_count == 0 && others_hold_files)
            .then(|| format!("{node} came up with an empty, new store")),
    }
}

/// The monitor as a background worker: one round of probes per step.
struct Probing {
    monitor: Arc<HealthMonitor>,
    tick: tokio::time::Interval,
}

impl Worker for Probing {
    type Error = std::convert::Infallible;

    async fn work(&mut self) -> Result<Step, Self::Error> {
        self.monitor.round().await;
        Ok(Step::Idle)
    }

    async fn wait_for_work(&mut self) {
        self.tick.tick().await;
    }

    fn status(&self, status: &mut WorkerStatus) {
        let seen = self.monitor.seen.lock().expect("monitor lock");
        let down: Vec<&str> = seen
            .iter()
            .filter(|(_, s)| !s.up)
            .map(|(node, _)| node.as_str())
            .collect();
        status.files_total = seen.len() as u64;
        status.files_done = (seen.len() - down.len()) as u64;
        status.current_item = if down.is_empty() {
            format!("{} nodes up", seen.len())
        } else {
            format!("down: {}", down.join(", "))
        };
        status.queue = u64::from(self.monitor.pending_reason().is_some());
    }
}
