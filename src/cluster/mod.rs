//! The control plane of a web node: the cluster state shared through the metadata store
//! and the background workers that change it. The façades above it — the HTTP side
//! (`web`) and the admin service (`admin`) — drive it; it knows nothing of HTTP or gRPC.
//!
//! - [`state`]: what the cluster is made of (ring, spares, the journaled change), pure.
//! - [`membership`]: that state as this node holds it: snapshots for readers,
//!   compare-and-swap changes, following other web nodes' changes.
//! - [`write_gate`]: writes counted per state version, so a change waits for them.
//! - [`files`]: files on the ring: write to every holder, read with fallback, delete.
//! - [`pool`]: one client per storage node.
//! - [`journaled`]: the one path of journaled work (ring changes, repairs): record,
//!   take over, save, finish.
//! - [`inventory`]: what the nodes hold, and the copy → verify → delete of one file.
//! - [`migration`]: ring changes as workers: start, resume, cancel, plan.
//! - [`pace`]: pace and pause for what ring changes and repairs move.
//! - [`repair`]: anti-entropy as a worker: restore, move, remove orphans; its survey
//!   (`survey`) goes arc by arc and lists only where [`digests`] differ.
//! - [`resync`]: keys with a copy found bad, copied again from a good one at once.
//! - [`risk`]: data at risk as the admin service reports it.
//! - [`health`]: watches the nodes; starts repairs by itself.

pub mod arcs;
pub mod digests;
pub mod files;
pub mod health;
pub mod inventory;
pub mod journaled;
pub mod membership;
pub mod migration;
pub mod pace;
pub mod pool;
pub mod repair;
pub mod resync;
pub mod risk;
pub mod state;
mod survey;
pub mod write_gate;

use std::sync::Arc;
use std::time::Duration;

use crate::background::Runner;
use crate::meta::MetaStore;
use health::HealthMonitor;
pub use membership::{Cluster, ClusterError};
use migration::Migrator;
use repair::Repairer;
use resync::Resyncer;

/// Default time between scheduled repairs.
pub const DEFAULT_REPAIR_EVERY: Duration = Duration::from_secs(6 * 3600);

/// The ring, its workers, and what starts them, of one web node.
pub struct ControlPlane {
    pub cluster: Arc<Cluster>,
    pub runner: Arc<Runner>,
    pub migrator: Arc<Migrator>,
    pub repairer: Arc<Repairer>,
    pub health: Arc<HealthMonitor>,
    pub resyncer: Arc<Resyncer>,
}

/// How the ring is seeded when the metadata store has none yet.
pub struct Seed<'a> {
    pub nodes: &'a [String],
    /// Nodes to offer the operator without putting them in the ring.
    pub spares: &'a [String],
    pub virtual_nodes: u32,
    pub replicas: u32,
    /// Time between scheduled repairs; None: only on demand and when a node comes back.
    pub repair_every: Option<Duration>,
    /// Time between two looks at the nodes' quarantine lists (the resync queue's feed).
    pub resync_poll: Duration,
    /// A pace (MB/s, 0 = unlimited) to put in the journal at start; None keeps its own.
    pub move_mbps: Option<u64>,
    /// The cluster's certificates: storage nodes are called over mutual TLS.
    pub tls: Option<crate::trust::tls::ClusterTls>,
    /// Keys per arc of work over the whole keyspace (memory bound of changes and repairs).
    pub range_keys: u64,
}

impl ControlPlane {
    /// Loads (or seeds) the cluster state and starts, as workers of `runner`, what
    /// follows other web nodes' changes, watches the nodes and heals; resumes in the
    /// background a change or a repair left unfinished.
    pub async fn start(
        meta: MetaStore,
        seed: Seed<'_>,
        runner: Arc<Runner>,
    ) -> Result<Self, ClusterError> {
        let cluster = Cluster::load(
            meta,
            seed.nodes,
            seed.virtual_nodes,
            seed.replicas,
            seed.tls,
        )
        .await?;
        cluster.range_keys.set(seed.range_keys);
        cluster.register_spares(seed.spares).await?;
        if let Some(mbps) = seed.move_mbps {
            cluster.set_pace(|pace| pace.mbps = mbps).await?;
        }
        cluster.follow_changes(&runner).await?;
        // Names this web node in the journals it runs.
        let instance = format!(
            "web-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        );
        let migrator = Migrator::new(
            cluster.clone(),
            runner.clone(),
            migration::DEFAULT_PARALLELISM,
            instance.clone(),
        );
        let repairer = Repairer::new(cluster.clone(), runner.clone(), instance);
        let health = HealthMonitor::new(cluster.clone(), repairer.clone(), seed.repair_every);
        // A change or a repair left journaled by a web node that stopped: taken over
        // here (its worker then runs in the background).
        match migrator.resume_pending().await {
            Ok(Some(worker)) => {
                tracing::info!(worker = worker.id, "resumed an interrupted ring change")
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "could not resume the interrupted ring change"),
        }
        match repairer.resume_pending().await {
            Ok(Some(worker)) => tracing::info!(worker = worker.id, "resumed an interrupted repair"),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "could not resume the interrupted repair"),
        }
        health.start(&runner);
        let resyncer = Resyncer::new(cluster.clone(), seed.resync_poll);
        resyncer.start(&runner);
        Ok(ControlPlane {
            cluster,
            runner,
            migrator,
            repairer,
            health,
            resyncer,
        })
    }
}
