//! Changing the ring without losing a file (DESIGN §6).
//!
//! A change is journaled in the metadata store before anything moves; from then on new
//! files go to the target ring and reads fall back to the old holders. The inventory is
//! what the nodes really hold, so running a change again after a crash finishes it: copy
//! each file to the holders that lack it (the receiving node verifies its SHA-256), and
//! only then delete it where it is no longer wanted. The ring switches when every file is
//! in place; a removed node leaves the ring only after its files are safe elsewhere.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use tokio::sync::watch;

use super::cluster::{
    ChangeKind, Cluster, ClusterError, ClusterState, Journal, with_transfer_deadline,
};
use crate::node::client::ClientError;
use crate::proto::admin::{self, MigrationProgress};
use crate::ring::Ring;

/// Files copied at once.
pub const DEFAULT_PARALLELISM: usize = 16;
/// Events kept for the console.
const MAX_EVENTS: usize = 50;
/// How long a node may take to answer before it counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("node {0} is already in the ring")]
    Duplicate(String),
    #[error("node {0} is not in the ring")]
    Unknown(String),
    #[error("node {node} is unreachable: {why}")]
    Unreachable { node: String, why: String },
    #[error("{0}")]
    Refused(String),
    #[error("a ring change is already running ({0})")]
    Busy(String),
    #[error(
        "{failed} of {total} files could not be moved (last error: {last}); the change stays journaled: run it again to finish"
    )]
    Incomplete {
        failed: u64,
        total: u64,
        last: String,
    },
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

impl From<MigrationError> for tonic::Status {
    fn from(e: MigrationError) -> Self {
        let message = e.to_string();
        match e {
            MigrationError::Duplicate(_) => tonic::Status::already_exists(message),
            MigrationError::Unknown(_) => tonic::Status::not_found(message),
            MigrationError::Unreachable { .. } => tonic::Status::unavailable(message),
            MigrationError::Refused(_) | MigrationError::Busy(_) => {
                tonic::Status::failed_precondition(message)
            }
            MigrationError::Incomplete { .. } => tonic::Status::aborted(message),
            MigrationError::Cluster(ClusterError::Meta(crate::meta::MetaError::Unavailable(_))) => {
                tonic::Status::unavailable(message)
            }
            MigrationError::Cluster(_) => tonic::Status::internal(message),
        }
    }
}

/// One file as the nodes hold it.
#[derive(Clone, Debug)]
struct Holding {
    size: u64,
    sha256: String,
    holders: Vec<String>,
}

/// The work for one key: copy to `missing`, then delete from `extra`.
#[derive(Clone, Debug)]
struct KeyWork {
    key: String,
    size: u64,
    sha256: String,
    sources: Vec<String>,
    missing: Vec<String>,
    extra: Vec<String>,
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
    pub fn to_proto(&self) -> admin::PlanChangeResponse {
        admin::PlanChangeResponse {
            files: self.files,
            bytes: self.bytes,
            moves: self
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
}

/// One change's progress and its event log, as watchers see it.
struct Report {
    progress: MigrationProgress,
    events: VecDeque<String>,
    started: Instant,
}

impl Report {
    fn new(journal: &Journal) -> Self {
        Report {
            progress: MigrationProgress {
                id: journal.id.clone(),
                kind: proto_kind(journal.kind) as i32,
                node_address: journal.node.clone(),
                started_at_ms: journal.started_at.timestamp_millis(),
                ..Default::default()
            },
            events: VecDeque::new(),
            started: Instant::now(),
        }
    }

    /// Logs `text` and keeps it (time-stamped) among the last [`MAX_EVENTS`] events.
    fn event(&mut self, text: String) {
        tracing::info!(migration = %self.progress.id, "{text}");
        self.events
            .push_back(format!("{} {text}", Utc::now().format("%H:%M:%S")));
        if self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
        self.progress.events = self.events.iter().cloned().collect();
    }
}

pub struct Migrator {
    cluster: Arc<Cluster>,
    /// Held for the whole of a change: one at a time.
    running: tokio::sync::Mutex<()>,
    progress: watch::Sender<Option<MigrationProgress>>,
    parallelism: usize,
}

impl Migrator {
    pub fn new(cluster: Arc<Cluster>, parallelism: usize) -> Arc<Self> {
        Arc::new(Migrator {
            cluster,
            running: tokio::sync::Mutex::new(()),
            progress: watch::channel(None).0,
            parallelism: parallelism.max(1),
        })
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// The latest progress, then every update.
    pub fn watch(&self) -> watch::Receiver<Option<MigrationProgress>> {
        self.progress.subscribe()
    }

    /// Adds `node` and moves onto it the files it now owns. Returns the files moved.
    pub async fn add_node(&self, node: &str) -> Result<u64, MigrationError> {
        let _running = self.lock()?;
        let state = self.cluster.snapshot().await;
        if let Some(resumed) = self.resume_same(&state, ChangeKind::Add, node).await {
            return resumed;
        }
        if state.ring.contains(node) {
            return Err(MigrationError::Duplicate(node.to_string()));
        }
        self.probe(node).await?;
        let mut target = state.ring.clone();
        target.add(node);
        self.start(state, ChangeKind::Add, node, target).await
    }

    /// Moves the files of `node` to their new holders, then drops it from the ring.
    pub async fn remove_node(&self, node: &str) -> Result<u64, MigrationError> {
        let _running = self.lock()?;
        let state = self.cluster.snapshot().await;
        if let Some(resumed) = self.resume_same(&state, ChangeKind::Remove, node).await {
            return resumed;
        }
        let target = removal_target(&state.ring, node)?;
        self.start(state, ChangeKind::Remove, node, target).await
    }

    /// What adding or removing `node` would move, changing nothing.
    pub async fn plan(&self, kind: ChangeKind, node: &str) -> Result<Plan, MigrationError> {
        let state = self.cluster.snapshot().await;
        let current = state.migration.as_ref().map_or(&state.ring, |j| &j.target);
        let target = match kind {
            ChangeKind::Add => {
                if current.contains(node) {
                    return Err(MigrationError::Duplicate(node.to_string()));
                }
                self.probe(node).await?;
                let mut target = current.clone();
                target.add(node);
                target
            }
            ChangeKind::Remove => removal_target(current, node)?,
        };
        let mut nodes: BTreeSet<String> = current.nodes().map(String::from).collect();
        nodes.extend(target.nodes().map(String::from));
        let inventory = self.inventory(&nodes, None).await?;
        let work = work_list(&inventory, &target);
        let mut plan = Plan::default();
        for item in &work {
            plan.files += 1;
            let source = item.sources.first().cloned().unwrap_or_default();
            for to in &item.missing {
                plan.bytes += item.size;
                let entry = plan.moves.entry((source.clone(), to.clone())).or_default();
                entry.0 += 1;
                entry.1 += item.size;
            }
        }
        Ok(plan)
    }

    /// Finishes a change a previous run journaled but did not finish (after a crash).
    pub async fn resume_pending(&self) -> Result<Option<u64>, MigrationError> {
        let _running = self.lock()?;
        let state = self.cluster.snapshot().await;
        let Some(journal) = state.migration.clone() else {
            return Ok(None);
        };
        tracing::info!(id = %journal.id, node = %journal.node, "resuming an unfinished ring change");
        self.execute(journal).await.map(Some)
    }

    fn lock(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, MigrationError> {
        self.running.try_lock().map_err(|_| {
            let what = self
                .progress
                .borrow()
                .as_ref()
                .map(|p| {
                    let kind = match p.kind() {
                        admin::ChangeKind::Add => ChangeKind::Add,
                        admin::ChangeKind::Remove => ChangeKind::Remove,
                    };
                    format!("{} {}", kind_name(kind), p.node_address)
                })
                .unwrap_or_else(|| "starting".to_string());
            MigrationError::Busy(what)
        })
    }

    /// A journaled change blocks every other one; asking for the same change again
    /// finishes it.
    async fn resume_same(
        &self,
        state: &ClusterState,
        kind: ChangeKind,
        node: &str,
    ) -> Option<Result<u64, MigrationError>> {
        let journal = state.migration.as_ref()?;
        if journal.kind == kind && journal.node == node {
            return Some(self.execute(journal.clone()).await);
        }
        Some(Err(MigrationError::Busy(format!(
            "an unfinished {} of {} is journaled; run it again to finish it first",
            match journal.kind {
                ChangeKind::Add => "add",
                ChangeKind::Remove => "removal",
            },
            journal.node
        ))))
    }

    async fn probe(&self, node: &str) -> Result<(), MigrationError> {
        let unreachable = |why: String| MigrationError::Unreachable {
            node: node.to_string(),
            why,
        };
        let client = self
            .cluster
            .client(node)
            .map_err(|e| unreachable(e.to_string()))?;
        match tokio::time::timeout(PROBE_TIMEOUT, client.stats()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(unreachable(e.to_string())),
            Err(_) => Err(unreachable("no answer within 3 s".to_string())),
        }
    }

    async fn start(
        &self,
        mut state: ClusterState,
        kind: ChangeKind,
        node: &str,
        target: Ring,
    ) -> Result<u64, MigrationError> {
        let journal = Journal {
            id: format!(
                "{}-{}",
                Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
                kind_name(kind)
            ),
            kind,
            node: node.to_string(),
            target,
            started_at: Utc::now(),
        };
        state.migration = Some(journal.clone());
        // Journal first: from here on new files go to the target ring.
        self.cluster.replace_state(state).await?;
        self.execute(journal).await
    }

    /// Runs a journaled change to the end: inventory, copy, verify, delete, switch.
    async fn execute(&self, journal: Journal) -> Result<u64, MigrationError> {
        let mut report = Report::new(&journal);
        let outcome = self.run(&journal, &mut report).await;
        match &outcome {
            Ok(_) => {
                report.progress.current_key.clear();
                report.progress.finished = true;
                let text = format!(
                    "done: {} files moved in {:.1} s",
                    report.progress.files_done,
                    report.started.elapsed().as_secs_f64()
                );
                report.event(text);
            }
            Err(e) => {
                report.progress.errors = report.progress.errors.max(1);
                report.progress.last_error = e.to_string();
                report.progress.finished = true;
                report.event(format!("stopped: {e}"));
            }
        }
        self.publish(&report);
        outcome
    }

    fn publish(&self, report: &Report) {
        self.progress.send_replace(Some(report.progress.clone()));
    }

    async fn run(&self, journal: &Journal, report: &mut Report) -> Result<u64, MigrationError> {
        report.event(format!(
            "{} {}: taking inventory",
            kind_name(journal.kind),
            journal.node
        ));
        self.publish(report);

        let mut nodes = self.cluster.snapshot().await.data_nodes();
        nodes.extend(journal.target.nodes().map(String::from));
        // A node being removed that no longer answers: its copies elsewhere are used.
        let may_skip = (journal.kind == ChangeKind::Remove).then_some(journal.node.as_str());
        let inventory = self.inventory(&nodes, may_skip).await?;
        let work = work_list(&inventory, &journal.target);
        report.progress.files_total = work.len() as u64;
        report.progress.bytes_total = work.iter().map(|w| w.size * w.missing.len() as u64).sum();
        report.event(format!(
            "{} files to move ({} bytes to copy)",
            report.progress.files_total, report.progress.bytes_total
        ));
        self.publish(report);

        let mut results = futures::stream::iter(work.into_iter().map(|item| async move {
            let outcome = self.move_key(&item).await;
            (item, outcome)
        }))
        .buffer_unordered(self.parallelism);
        let mut failed = 0u64;
        while let Some((item, outcome)) = results.next().await {
            match outcome {
                Ok(copied) => {
                    report.progress.files_done += 1;
                    report.progress.bytes_done += copied;
                }
                Err(e) => {
                    failed += 1;
                    report.progress.errors += 1;
                    report.progress.last_error = format!("{}: {e}", item.key);
                    report.event(format!("error: {}", report.progress.last_error));
                }
            }
            report.progress.current_key = item.key;
            let elapsed = report.started.elapsed().as_secs_f64();
            if elapsed > 0.0 {
                report.progress.bytes_per_second = report.progress.bytes_done as f64 / elapsed;
            }
            self.publish(report);
        }
        drop(results);
        if failed > 0 {
            return Err(MigrationError::Incomplete {
                failed,
                total: report.progress.files_total,
                last: report.progress.last_error.clone(),
            });
        }

        // Every file is where the target ring wants it: switch.
        let mut next = self.cluster.snapshot().await;
        next.ring = journal.target.clone();
        next.migration = None;
        match journal.kind {
            ChangeKind::Add => {
                next.spares.remove(&journal.node);
            }
            ChangeKind::Remove => {
                next.spares.insert(journal.node.clone());
            }
        }
        self.cluster.replace_state(next).await?;
        Ok(report.progress.files_done)
    }

    /// What every node holds, key → size, hash and holders (in ring-walk order of nodes).
    async fn inventory(
        &self,
        nodes: &BTreeSet<String>,
        may_skip: Option<&str>,
    ) -> Result<BTreeMap<String, Holding>, MigrationError> {
        let listings = futures::future::join_all(nodes.iter().map(|node| async move {
            let listing = match self.cluster.client(node) {
                Ok(client) => client.keys(true).await,
                Err(e) => Err(e),
            };
            (node.clone(), listing)
        }))
        .await;
        let mut inventory: BTreeMap<String, Holding> = BTreeMap::new();
        for (node, listing) in listings {
            let keys = match listing {
                Ok(keys) => keys,
                Err(e) if may_skip == Some(node.as_str()) => {
                    tracing::warn!(%node, error = %e, "node being removed does not answer; using other copies");
                    continue;
                }
                Err(e) => {
                    return Err(MigrationError::Unreachable {
                        node,
                        why: e.to_string(),
                    });
                }
            };
            for info in keys {
                let holding = inventory.entry(info.key).or_insert_with(|| Holding {
                    size: info.size,
                    sha256: info.sha256.clone(),
                    holders: Vec::new(),
                });
                if holding.sha256 == info.sha256 {
                    holding.holders.push(node.clone());
                } else {
                    // A copy that disagrees is treated as absent, so a good copy overwrites it.
                    tracing::warn!(%node, "copy differs from another node's; it will be replaced");
                }
            }
        }
        Ok(inventory)
    }

    /// Copies one key to the holders that lack it, then deletes it where it is no longer
    /// wanted. Returns the bytes copied.
    async fn move_key(&self, item: &KeyWork) -> Result<u64, ClientError> {
        let mut copied = 0;
        for target in &item.missing {
            let to = self.cluster.client(target)?;
            let mut last_error = None;
            let mut done = false;
            for source in &item.sources {
                match self.copy(source, &to, item).await {
                    Ok(()) => {
                        done = true;
                        break;
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            if !done {
                return Err(last_error.unwrap_or_else(|| ClientError::Rpc {
                    node: target.clone(),
                    status: tonic::Status::not_found("no copy left to read from"),
                }));
            }
            copied += item.size;
        }
        for node in &item.extra {
            self.cluster.client(node)?.delete(&item.key).await?;
        }
        Ok(copied)
    }

    /// Copies one key from `source` to `to`: the target pulls it straight from the source
    /// (the bytes never pass through this node); a node without that RPC (the original
    /// system's) gets it relayed through here instead. Either way the target keeps the
    /// copy only if it has the inventory's SHA-256.
    async fn copy(
        &self,
        source: &str,
        to: &crate::node::client::StorageClient,
        item: &KeyWork,
    ) -> Result<(), ClientError> {
        let pulled = to.pull(&item.key, source, &item.sha256);
        match with_transfer_deadline(to.address(), item.size, pulled).await {
            Err(e) if e.code() == Some(tonic::Code::Unimplemented) => {}
            other => return other.map(|_| ()),
        }
        let from = self.cluster.client(source)?;
        let Some((_, body)) = from.get_stream(&item.key, 0, 0).await? else {
            return Err(ClientError::Rpc {
                node: source.to_string(),
                status: tonic::Status::not_found("file vanished during the change"),
            });
        };
        // Chunks that fail to read end the stream; the target then refuses the copy,
        // because its hash no longer matches.
        let chunks = body.take_while(|chunk| futures::future::ready(chunk.is_ok()));
        let chunks = chunks.filter_map(|chunk| futures::future::ready(chunk.ok()));
        let put = to.put_stream(&item.key, Some(&item.sha256), chunks);
        with_transfer_deadline(to.address(), item.size, put).await?;
        Ok(())
    }
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

/// Every key whose holders differ from what `target` wants.
fn work_list(inventory: &BTreeMap<String, Holding>, target: &Ring) -> Vec<KeyWork> {
    inventory
        .iter()
        .filter_map(|(key, holding)| {
            let wanted = target.owners(key);
            let missing: Vec<String> = wanted
                .iter()
                .filter(|n| !holding.holders.iter().any(|h| h == *n))
                .map(|n| n.to_string())
                .collect();
            let extra: Vec<String> = holding
                .holders
                .iter()
                .filter(|h| !wanted.contains(&h.as_str()))
                .cloned()
                .collect();
            if missing.is_empty() && extra.is_empty() {
                return None;
            }
            // Read from holders that stay first: they are the healthy part of the cluster.
            let mut sources = holding.holders.clone();
            sources.sort_by_key(|h| !wanted.contains(&h.as_str()));
            Some(KeyWork {
                key: key.clone(),
                size: holding.size,
                sha256: holding.sha256.clone(),
                sources,
                missing,
                extra,
            })
        })
        .collect()
}

fn proto_kind(kind: ChangeKind) -> admin::ChangeKind {
    match kind {
        ChangeKind::Add => admin::ChangeKind::Add,
        ChangeKind::Remove => admin::ChangeKind::Remove,
    }
}

fn kind_name(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Add => "add",
        ChangeKind::Remove => "remove",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holding(holders: &[&str]) -> Holding {
        Holding {
            size: 10,
            sha256: "ab".into(),
            holders: holders.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn work_list_copies_missing_and_deletes_extra() {
        let target = Ring::with_nodes(1, 1, ["localhost:8090", "localhost:8091", "localhost:8092"]);
        let mut inventory = BTreeMap::new();
        // Owned by 8091: held by 8090 only → copy to 8091, delete from 8090.
        inventory.insert("v1/manifest.mpd".to_string(), holding(&["localhost:8090"]));
        // Owned by 8092 and held there: nothing to do.
        inventory.insert(
            "v1/chunk-0-00001.m4s".to_string(),
            holding(&["localhost:8092"]),
        );
        let work = work_list(&inventory, &target);
        assert_eq!(work.len(), 1);
        assert_eq!(work[0].key, "v1/manifest.mpd");
        assert_eq!(work[0].missing, ["localhost:8091"]);
        assert_eq!(work[0].extra, ["localhost:8090"]);
    }

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
