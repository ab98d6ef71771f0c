//! The cluster as this web node sees it: the state saved in the metadata store, held as a
//! snapshot that readers take without waiting, changed only by compare-and-swap so that
//! of several web nodes sharing one store exactly one wins each change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio_util::sync::CancellationToken;

use super::pace::{PaceSettings, Pacer};
use super::pool::NodePool;
use super::resync::Suspects;
use super::state::{ClusterState, to_json};
use super::write_gate::{WriteGate, WriteTicket};
use crate::background::{Runner, Step, Worker, WorkerHandle, WorkerKind, WorkerStatus};
use crate::meta::{MetaError, MetaStore};
use crate::node::client::{ClientError, StorageClient};
use crate::ring::Ring;

/// How many times a change is recomputed when other web nodes keep changing the state.
const CAS_ATTEMPTS: usize = 8;
/// Time a seed node has to say its zone when the first ring is made.
const ZONE_ASK_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no storage node in the ring")]
    NoNodes,
    #[error("{0}")]
    Node(#[from] ClientError),
    #[error("copies of {key} disagree: {detail}")]
    Mismatch { key: String, detail: String },
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("cluster state in the metadata store is unreadable: {0}")]
    Corrupt(String),
    #[error("the cluster state kept changing under this web node; try again")]
    Contended,
    #[error("{key}: fewer than {wanted} storage nodes can take it (last error: {last_error})")]
    TooFewNodes {
        key: String,
        wanted: usize,
        last_error: String,
    },
    #[error("file of {0} bytes is larger than this read allows")]
    TooLarge(u64),
}

/// The state in use and the exact document it was read from (what a compare-and-swap
/// compares against).
struct Current {
    state: Arc<ClusterState>,
    stored: Option<String>,
}

pub struct Cluster {
    meta: MetaStore,
    current: RwLock<Current>,
    pool: NodePool,
    writes: WriteGate,
    suspects: Suspects,
    pacer: Pacer,
    /// Keys per arc of work over the whole keyspace.
    pub range_keys: super::arcs::RangeKeys,
}

impl Cluster {
    /// Loads the saved cluster state, or seeds it with `seed_nodes` when the store has
    /// none. A saved state wins over the seed: nodes changed at run time are kept.
    pub async fn load(
        meta: MetaStore,
        seed_nodes: &[String],
        virtual_nodes: u32,
        replicas: u32,
        tls: Option<crate::trust::tls::ClusterTls>,
    ) -> Result<Arc<Self>, ClusterError> {
        let cluster = Arc::new(Cluster {
            meta,
            current: RwLock::new(Current {
                state: Arc::new(ClusterState {
                    ring: Ring::new(virtual_nodes, replicas),
                    spares: BTreeSet::new(),
                    migration: None,
                    repair: None,
                    pace: Default::default(),
                    version: 0,
                }),
                stored: None,
            }),
            pool: NodePool::new(tls),
            writes: WriteGate::default(),
            suspects: Suspects::default(),
            pacer: Pacer::default(),
            range_keys: Default::default(),
        });
        cluster.reload().await?;
        let seed_zones = if cluster.snapshot().version == 0 {
            cluster.zones_of(seed_nodes).await
        } else {
            BTreeMap::new()
        };
        let seeded = cluster
            .update(|state| {
                if state.version > 0 {
                    return Ok::<_, ClusterError>(None);
                }
                let mut ring =
                    Ring::with_nodes(virtual_nodes, replicas, seed_nodes.iter().cloned());
                for (node, zone) in &seed_zones {
                    ring.set_zone(node, Some(zone));
                }
                Ok(Some(ClusterState {
                    ring,
                    spares: BTreeSet::new(),
                    migration: None,
                    repair: None,
                    pace: Default::default(),
                    version: 0,
                }))
            })
            .await?;
        let saved: BTreeSet<&str> = seeded.ring.nodes().collect();
        let seed: BTreeSet<&str> = seed_nodes.iter().map(String::as_str).collect();
        if saved != seed {
            tracing::warn!(
                ?saved,
                ?seed,
                "the saved ring differs from the command line; using the saved ring"
            );
        }
        if seeded.ring.virtual_nodes() != virtual_nodes || seeded.ring.replicas() != replicas {
            tracing::warn!(
                saved_v = seeded.ring.virtual_nodes(),
                saved_r = seeded.ring.replicas(),
                "virtual nodes / replicas differ from the saved ring; using the saved values"
            );
        }
        Ok(cluster)
    }

    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    /// The zones the seed nodes report (`--zone`), asked once when the first ring is
    /// made. A node that does not answer joins in no zone, and the log says how to set it.
    async fn zones_of(&self, nodes: &[String]) -> BTreeMap<String, String> {
        let asks = nodes.iter().map(|node| async move {
            let ask = async {
                let client = self.client(node).map_err(|e| e.to_string())?;
                client.health().await.map_err(|e| e.to_string())
            };
            let answer = tokio::time::timeout(ZONE_ASK_TIMEOUT, ask)
                .await
                .unwrap_or_else(|_| Err("no answer".into()));
            (node, answer)
        });
        let mut zones = BTreeMap::new();
        for (node, answer) in futures::future::join_all(asks).await {
            match answer {
                Ok(health) if !health.zone.is_empty() => {
                    if let Err(why) = crate::ring::check_zone_name(&health.zone) {
                        tracing::warn!(%node, %why, "ignoring the zone this node reports");
                        continue;
                    }
                    zones.insert(node.clone(), health.zone);
                }
                Ok(_) => {}
                Err(why) => tracing::warn!(
                    %node,
                    %why,
                    "seed node did not say its zone; it joins the ring in none (set one with `tritontube admin zone`)"
                ),
            }
        }
        zones
    }

    /// Waits until `bytes` of a ring change's or a repair's copy may move under the
    /// pace and pause in force (read again at every check). False when `stop` fires.
    pub async fn admit_move(&self, bytes: u64, stop: &CancellationToken) -> bool {
        self.pacer.admit(bytes, || self.snapshot().pace, stop).await
    }

    /// Counts bytes of a ring change's or a repair's copy that finished.
    pub fn moved(&self, bytes: u64) {
        self.pacer.moved(bytes);
    }

    /// The pace in force and the rate measured, for a worker's status.
    pub fn throttle(&self) -> String {
        self.pacer.throttle(self.snapshot().pace)
    }

    /// Bytes per second that ring changes and repairs moved lately (measured).
    pub fn measured_move_rate(&self) -> f64 {
        self.pacer.measured()
    }

    /// Sets the pace and pause (kept in the journal), waking the copies waiting.
    pub async fn set_pace(
        &self,
        change: impl Fn(&mut PaceSettings),
    ) -> Result<PaceSettings, ClusterError> {
        let saved = self
            .update(|current| {
                let mut next = current.clone();
                change(&mut next.pace);
                Ok::<_, ClusterError>((next.pace != current.pace).then_some(next))
            })
            .await?;
        self.pacer.settings_changed();
        Ok(saved.pace)
    }

    /// Where readers and copies name keys with a bad copy, for the resync worker.
    pub fn suspects(&self) -> &Suspects {
        &self.suspects
    }

    /// The state now. Never waits on I/O: a reader keeps its snapshot however long it
    /// needs it, while changes install newer ones.
    pub fn snapshot(&self) -> Arc<ClusterState> {
        self.current
            .read()
            .expect("cluster state lock")
            .state
            .clone()
    }

    /// The state to place a new file with, and a ticket that keeps a ring change from
    /// taking its inventory until the write is over.
    pub fn begin_write(&self) -> (Arc<ClusterState>, WriteTicket<'_>) {
        let current = self.current.read().expect("cluster state lock");
        let ticket = self.writes.enter(current.state.version);
        (current.state.clone(), ticket)
    }

    /// Waits until every write that placed its files on a state older than `version` is
    /// over (finished or failed).
    pub async fn wait_for_writes_before(&self, version: u64) {
        self.writes.wait_older_than(version).await
    }

    /// Writes still running on states older than `version`.
    pub fn writes_before(&self, version: u64) -> usize {
        self.writes.older_than(version)
    }

    pub fn client(&self, address: &str) -> Result<StorageClient, ClientError> {
        self.pool.client(address)
    }

    /// Changes the saved state: `change` gets the latest state and returns the next one
    /// (None: nothing to do). The save is a compare-and-swap on the document this node
    /// last read; when another web node saved in between, the state is read again and
    /// `change` runs on it, so its checks (one change at a time, …) see the truth.
    pub async fn update<E>(
        &self,
        mut change: impl FnMut(&ClusterState) -> Result<Option<ClusterState>, E>,
    ) -> Result<Arc<ClusterState>, E>
    where
        E: From<ClusterError>,
    {
        for _ in 0..CAS_ATTEMPTS {
            let (state, stored) = {
                let current = self.current.read().expect("cluster state lock");
                (current.state.clone(), current.stored.clone())
            };
            let Some(mut next) = change(&state)? else {
                return Ok(state);
            };
            next.version = state.version + 1;
            let json = to_json(&next);
            let swapped = self
                .meta
                .compare_and_swap_cluster_state(stored.as_deref(), &json)
                .await
                .map_err(ClusterError::from)?;
            if swapped {
                let next = Arc::new(next);
                self.install(next.clone(), json);
                return Ok(next);
            }
            tracing::info!("the cluster state changed elsewhere; reading it again");
            self.reload().await?;
        }
        Err(ClusterError::Contended.into())
    }

    /// Records nodes to offer the operator; those already in the ring are left alone.
    pub async fn register_spares(&self, spares: &[String]) -> Result<(), ClusterError> {
        self.update(|state| {
            let outside: Vec<&String> = spares
                .iter()
                .filter(|n| !state.ring.contains(n) && !state.spares.contains(*n))
                .collect();
            if outside.is_empty() {
                return Ok::<_, ClusterError>(None);
            }
            let mut next = state.clone();
            next.spares.extend(outside.into_iter().cloned());
            Ok(Some(next))
        })
        .await?;
        Ok(())
    }

    /// Reads the saved state again and uses it if it is newer.
    pub async fn reload(&self) -> Result<(), ClusterError> {
        if let Some(json) = self.meta.load_cluster_state().await? {
            self.adopt_saved_state(&json)?;
        }
        Ok(())
    }

    /// Adopts a state saved by another web node (seen through the store's watch) if it is
    /// newer than the one in use.
    pub fn adopt_saved_state(&self, json: &str) -> Result<(), ClusterError> {
        let next: ClusterState =
            serde_json::from_str(json).map_err(|e| ClusterError::Corrupt(e.to_string()))?;
        if self.install(Arc::new(next), json.to_string()) {
            tracing::debug!("adopted a cluster state saved elsewhere");
        }
        Ok(())
    }

    /// Makes `state` (saved as `json`) the one in use unless a newer one already is.
    fn install(&self, state: Arc<ClusterState>, json: String) -> bool {
        let mut current = self.current.write().expect("cluster state lock");
        let newer = state.version > current.state.version || current.stored.is_none();
        if newer {
            *current = Current {
                state,
                stored: Some(json),
            };
        }
        newer
    }

    /// Follows the changes other web nodes save to the shared store, as a worker of
    /// `runner`. The watch is set up before this returns, so no later change is missed.
    pub async fn follow_changes(
        self: &Arc<Self>,
        runner: &Runner,
    ) -> Result<WorkerHandle, ClusterError> {
        let changes = self.meta.watch_cluster_state().await?;
        Ok(runner.start(
            WorkerKind::MembershipWatch,
            "follows the cluster state other web nodes save",
            |_| Following {
                cluster: self.clone(),
                changes,
                received: None,
                adopted: 0,
            },
        ))
    }
}

/// The watch on the saved cluster state as a background worker.
struct Following {
    cluster: Arc<Cluster>,
    changes: BoxStream<'static, String>,
    /// What the last wait received: a state, or None when the watch ended.
    received: Option<Option<String>>,
    adopted: u64,
}

impl Worker for Following {
    type Error = ClusterError;

    async fn work(&mut self) -> Result<Step, ClusterError> {
        match self.received.take() {
            None => Ok(Step::Idle),
            Some(Some(json)) => {
                match self.cluster.adopt_saved_state(&json) {
                    Ok(()) => self.adopted += 1,
                    Err(e) => tracing::warn!(error = %e, "ignoring an unreadable cluster state"),
                }
                Ok(Step::Idle)
            }
            Some(None) => Err(ClusterError::Meta(MetaError::Unavailable(
                "the metadata store's watch on the cluster state ended".into(),
            ))),
        }
    }

    async fn wait_for_work(&mut self) {
        self.received = Some(self.changes.next().await);
    }

    fn status(&self, status: &mut WorkerStatus) {
        status.files_done = self.adopted;
        status.current_item = format!("state version {}", self.cluster.snapshot().version);
    }
}
