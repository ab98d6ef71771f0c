//! Data sources: background tasks that talk to the admin service and to etcd and send
//! what they learn as [`Action`]s, so a slow or dead server never freezes the console.
//!
//! - ClusterStatus every second (or at once after [`Command::Refresh`]);
//! - WatchMigration followed as long as it streams, re-opened a second after it ends;
//! - every etcd endpoint probed on its own every 1.5 s (status, member list, latency);
//! - AddNode / RemoveNode / PlanChange, one task each, however long they take.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Code, Status};

use super::app::{
    Action, ChangeKind, ClusterInfo, Command, EtcdMemberName, EtcdProbe, EtcdStatus, Failure,
    MigrationInfo, NodeInfo, Plan, PlanMove,
};
use super::health;
use crate::admin::wire::{
    self, AddNodeRequest, ClusterStatusRequest, PlanChangeRequest, RemoveNodeRequest,
    WatchMigrationRequest,
};

const STATUS_PERIOD: Duration = Duration::from_secs(1);
const HEALTH_PERIOD: Duration = Duration::from_secs(2);
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
const ETCD_PERIOD: Duration = Duration::from_millis(1500);
const ETCD_TIMEOUT: Duration = Duration::from_secs(1);
const PLAN_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the console gets its data.
#[derive(Clone, Debug)]
pub struct Config {
    /// `host:port` of the web node's admin service (a scheme is accepted).
    pub admin: String,
    pub token: Option<String>,
    /// The operator's certificate: the admin service is called over mutual TLS.
    pub tls: Option<crate::trust::tls::ClusterTls>,
    pub etcd: Vec<String>,
}

pub use crate::admin::{
    AdminClient, AdminClientError as SourceError, connect as admin_client, connect_tls,
};

/// The running sources; dropping this stops them. Like the web node's workers, every
/// task is tracked and stops on one cancellation token.
pub struct Sources {
    admin: AdminClient,
    tx: mpsc::UnboundedSender<Action>,
    refresh: watch::Sender<u64>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Sources {
    pub fn start(config: &Config, tx: mpsc::UnboundedSender<Action>) -> Result<Self, SourceError> {
        let admin = connect_tls(&config.admin, config.token.as_deref(), config.tls.as_ref())?;
        let (refresh, _) = watch::channel(0u64);
        let sources = Sources {
            admin: admin.clone(),
            tx: tx.clone(),
            refresh,
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
        };
        let refresh = || sources.refresh.subscribe();
        sources.spawn(poll_status(admin.clone(), tx.clone(), refresh()));
        sources.spawn(poll_health(admin.clone(), tx.clone(), refresh()));
        sources.spawn(poll_traffic(admin.clone(), tx.clone(), refresh()));
        sources.spawn(follow_migration(admin.clone(), tx.clone(), refresh()));
        for endpoint in &config.etcd {
            sources.spawn(probe_etcd(
                endpoint.clone(),
                config.tls.clone(),
                tx.clone(),
                refresh(),
            ));
        }
        Ok(sources)
    }

    /// Starts the work `update` asked for; its result comes back as an action.
    pub fn run(&mut self, command: Command) {
        if let Command::Refresh = command {
            self.refresh.send_modify(|n| *n += 1);
            return;
        }
        let (admin, tx) = (self.admin.clone(), self.tx.clone());
        self.spawn(async move {
            if let Some(action) = execute(admin, command).await {
                let _ = tx.send(action);
            }
        });
    }

    /// Runs `task` until it ends or the console stops, whichever is first.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = task => {}
            }
        });
    }

    /// Stops every source and waits up to `deadline` for them to end.
    pub async fn shutdown(self, deadline: Duration) -> bool {
        self.stop.cancel();
        self.tasks.close();
        tokio::time::timeout(deadline, self.tasks.wait())
            .await
            .is_ok()
    }
}

impl Drop for Sources {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One command's call to the admin service, and the action its answer becomes.
async fn execute(mut admin: AdminClient, command: Command) -> Option<Action> {
    Some(match command {
        Command::Refresh => return None,
        Command::AddNode(node) => {
            // No deadline: the call returns when the migration is done, however long
            // that takes; progress arrives through WatchMigration meanwhile.
            let result = admin
                .add_node(AddNodeRequest {
                    node_address: node.clone(),
                })
                .await
                .map(|r| r.into_inner().migrated_file_count.max(0) as u64)
                .map_err(|s| failure(&s));
            Action::Changed {
                kind: ChangeKind::Add,
                node,
                result,
            }
        }
        Command::RemoveNode(node) => {
            let result = admin
                .remove_node(RemoveNodeRequest {
                    node_address: node.clone(),
                })
                .await
                .map(|r| r.into_inner().migrated_file_count.max(0) as u64)
                .map_err(|s| failure(&s));
            Action::Changed {
                kind: ChangeKind::Remove,
                node,
                result,
            }
        }
        Command::PlanRepair => {
            let request = wire::StartRepairRequest {
                dry_run: true,
                verify: false,
            };
            let result = match tokio::time::timeout(PLAN_TIMEOUT, admin.start_repair(request)).await
            {
                Err(_) => Err(timed_out("the repair plan", PLAN_TIMEOUT)),
                Ok(Err(status)) => Err(failure(&status)),
                Ok(Ok(reply)) => Ok(health::plan_lines(
                    &reply.into_inner().plan.unwrap_or_default(),
                )),
            };
            Action::RepairPlanned(result)
        }
        Command::StartRepair => {
            let request = wire::StartRepairRequest {
                dry_run: false,
                verify: false,
            };
            let result = admin
                .start_repair(request)
                .await
                .map(|r| r.into_inner().worker_id)
                .map_err(|s| failure(&s));
            Action::RepairStarted(result)
        }
        Command::CancelChange => Action::ChangeCancelled(
            admin
                .cancel_change(wire::CancelChangeRequest {})
                .await
                .map(|r| r.into_inner().description)
                .map_err(|s| failure(&s)),
        ),
        Command::ListVideos => Action::VideosListed(list_videos(admin).await),
        Command::DeleteVideo(id) => {
            let result = admin
                .delete_video(wire::DeleteVideoRequest { id: id.clone() })
                .await
                .map(|r| r.into_inner().deleted_files)
                .map_err(|s| failure(&s));
            Action::VideoDeleted { id, result }
        }
        Command::SetPace(mbps) => Action::PaceSet(pace_result(
            admin.set_pace(wire::SetPaceRequest { mbps }).await,
        )),
        Command::PauseMoves => Action::PaceSet(pace_result(
            admin.pause_moves(wire::PauseMovesRequest {}).await,
        )),
        Command::ResumeMoves => Action::PaceSet(pace_result(
            admin.resume_moves(wire::ResumeMovesRequest {}).await,
        )),
        Command::PlanRemove(node) => {
            let result = plan(admin, ChangeKind::Remove, &node).await;
            Action::Planned { node, result }
        }
    })
}

/// Sleeps for `period` or until a refresh is asked for. False when the console is gone.
async fn pause(period: Duration, refresh: &mut watch::Receiver<u64>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(period) => true,
        changed = refresh.changed() => changed.is_ok(),
    }
}

/// gRPC status name, as operators see it in logs and docs.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

pub fn failure(status: &Status) -> Failure {
    let mut message = status.message().to_string();
    // Transport failures carry the useful part ("Connection refused") at the root of
    // the source chain; the layers in between only repeat "transport error".
    let mut source = std::error::Error::source(status);
    let mut root = None;
    while let Some(s) = source {
        root = Some(s);
        source = s.source();
    }
    if let Some(root) = root {
        let detail = root.to_string();
        if !message.contains(&detail) {
            message = if message.is_empty() {
                detail
            } else {
                format!("{message}: {detail}")
            };
        }
    }
    Failure::new(code_name(status.code()), message)
}

fn timed_out(what: &str, after: Duration) -> Failure {
    Failure::new(
        "DEADLINE_EXCEEDED",
        format!("{what}: no answer within {} s", after.as_secs()),
    )
}

async fn poll_status(
    mut admin: AdminClient,
    tx: mpsc::UnboundedSender<Action>,
    mut refresh: watch::Receiver<u64>,
) {
    loop {
        let result = cluster_status(&mut admin).await;
        if tx.send(Action::Status(result)).is_err() || !pause(STATUS_PERIOD, &mut refresh).await {
            return;
        }
    }
}

pub async fn cluster_status(admin: &mut AdminClient) -> Result<ClusterInfo, Failure> {
    let call = admin.cluster_status(ClusterStatusRequest {});
    match tokio::time::timeout(STATUS_TIMEOUT, call).await {
        Err(_) => Err(timed_out("ClusterStatus", STATUS_TIMEOUT)),
        Ok(Err(status)) => Err(failure(&status)),
        Ok(Ok(response)) => Ok(cluster_info(response.into_inner())),
    }
}

/// ClusterHealth every period; failures are left to the status poll to report.
async fn poll_health(
    mut admin: AdminClient,
    tx: mpsc::UnboundedSender<Action>,
    mut refresh: watch::Receiver<u64>,
) {
    loop {
        let call = admin.cluster_health(wire::ClusterHealthRequest {});
        if let Ok(Ok(reply)) = tokio::time::timeout(STATUS_TIMEOUT, call).await {
            if tx
                .send(Action::Health(health::health_info(reply.into_inner())))
                .is_err()
            {
                return;
            }
        }
        if !pause(HEALTH_PERIOD, &mut refresh).await {
            return;
        }
    }
}

/// TrafficStats once a second, for the sparklines; failures are left to the status poll.
async fn poll_traffic(
    mut admin: AdminClient,
    tx: mpsc::UnboundedSender<Action>,
    mut refresh: watch::Receiver<u64>,
) {
    loop {
        let call = admin.traffic_stats(wire::TrafficStatsRequest {});
        if let Ok(Ok(reply)) = tokio::time::timeout(STATUS_TIMEOUT, call).await {
            if tx.send(Action::Traffic(reply.into_inner())).is_err() {
                return;
            }
        }
        if !pause(STATUS_PERIOD, &mut refresh).await {
            return;
        }
    }
}

async fn follow_migration(
    mut admin: AdminClient,
    tx: mpsc::UnboundedSender<Action>,
    mut refresh: watch::Receiver<u64>,
) {
    loop {
        let call = admin.watch_migration(WatchMigrationRequest {});
        // Failures are not reported here: the status poll already says the admin is down.
        if let Ok(Ok(response)) = tokio::time::timeout(STATUS_TIMEOUT, call).await {
            let mut stream = response.into_inner();
            while let Some(Ok(progress)) = stream.next().await {
                if tx
                    .send(Action::Migration(migration_info(progress)))
                    .is_err()
                {
                    return;
                }
            }
        }
        if !pause(STATUS_PERIOD, &mut refresh).await {
            return;
        }
    }
}

async fn plan(mut admin: AdminClient, kind: ChangeKind, node: &str) -> Result<Plan, Failure> {
    let request = PlanChangeRequest {
        kind: proto_kind(kind) as i32,
        node_address: node.to_string(),
        zone: String::new(),
    };
    match tokio::time::timeout(PLAN_TIMEOUT, admin.plan_change(request)).await {
        Err(_) => Err(timed_out("PlanChange", PLAN_TIMEOUT)),
        Ok(Err(status)) => Err(failure(&status)),
        Ok(Ok(response)) => {
            let p = response.into_inner();
            Ok(Plan {
                files: p.files,
                bytes: p.bytes,
                moves: p
                    .moves
                    .into_iter()
                    .map(|m| PlanMove {
                        from: m.from,
                        to: m.to,
                        files: m.files,
                        bytes: m.bytes,
                    })
                    .collect(),
            })
        }
    }
}

/// The newest videos, for the videos view.
pub async fn list_videos(mut admin: AdminClient) -> Result<super::videos::VideoList, Failure> {
    let mut request = tonic::Request::new(wire::ListVideosRequest {
        limit: super::videos::PAGE,
        after: String::new(),
    });
    request.set_timeout(PLAN_TIMEOUT);
    let reply = admin
        .list_videos(request)
        .await
        .map_err(|s| failure(&s))?
        .into_inner();
    let rows = reply
        .videos
        .into_iter()
        .map(|v| super::videos::VideoRow {
            id: v.id,
            state: v.state,
            bytes: v.bytes,
            files: v.files,
            duration_seconds: v.duration_seconds,
            height: v.height,
            renditions: v.renditions,
        })
        .collect();
    Ok(super::videos::VideoList {
        rows,
        more: !reply.next.is_empty(),
    })
}

fn proto_kind(kind: ChangeKind) -> wire::ChangeKind {
    match kind {
        ChangeKind::Add => wire::ChangeKind::Add,
        ChangeKind::Remove => wire::ChangeKind::Remove,
        ChangeKind::Zone => wire::ChangeKind::Zone,
    }
}

fn pace_result(
    result: Result<tonic::Response<wire::PaceReply>, tonic::Status>,
) -> Result<super::pace::PaceInfo, Failure> {
    result
        .map(|r| pace_info(r.into_inner()))
        .map_err(|s| failure(&s))
}

pub fn pace_info(p: wire::PaceReply) -> super::pace::PaceInfo {
    super::pace::PaceInfo {
        mbps: p.mbps,
        paused: p.paused,
        measured_bytes_per_sec: p.measured_bytes_per_sec,
    }
}

pub fn cluster_info(r: wire::ClusterStatusResponse) -> ClusterInfo {
    ClusterInfo {
        nodes: r
            .nodes
            .into_iter()
            .map(|n| NodeInfo {
                address: n.address,
                in_ring: n.in_ring,
                healthy: n.healthy,
                latency_us: n.latency_us,
                files: n.file_count,
                bytes: n.total_bytes,
                share: n.share,
                error: n.error,
                zone: n.zone,
            })
            .collect(),
        tokens: r
            .tokens
            .into_iter()
            .map(|t| (t.position, t.node_address))
            .collect(),
        virtual_nodes: r.virtual_nodes,
        replicas: r.replicas,
        migration: r.migration.map(migration_info),
        pace: r.pace.map(pace_info),
    }
}

pub fn migration_info(m: wire::MigrationProgress) -> MigrationInfo {
    MigrationInfo {
        kind: match m.kind() {
            wire::ChangeKind::Add => ChangeKind::Add,
            wire::ChangeKind::Remove => ChangeKind::Remove,
            wire::ChangeKind::Zone => ChangeKind::Zone,
        },
        id: m.id,
        node: m.node_address,
        files_total: m.files_total,
        files_done: m.files_done,
        bytes_total: m.bytes_total,
        bytes_done: m.bytes_done,
        bytes_per_second: m.bytes_per_second,
        current_key: m.current_key,
        errors: m.errors,
        last_error: m.last_error,
        finished: m.finished,
        events: m.events,
        arcs_total: m.arcs_total,
        arcs_done: m.arcs_done,
        arc_now: m.arc_now,
    }
}

/// Probes one etcd endpoint forever, each probe bounded by [`ETCD_TIMEOUT`].
async fn probe_etcd(
    endpoint: String,
    tls: Option<crate::trust::tls::ClusterTls>,
    tx: mpsc::UnboundedSender<Action>,
    mut refresh: watch::Receiver<u64>,
) {
    let mut client = None;
    loop {
        let result = probe_once(&endpoint, tls.as_ref(), &mut client).await;
        if result.is_err() {
            // A fresh client next time, rather than trusting a balancer that may be
            // stuck on a dead connection.
            client = None;
        }
        let probe = EtcdProbe {
            endpoint: endpoint.clone(),
            result,
        };
        if tx.send(Action::Etcd(probe)).is_err() || !pause(ETCD_PERIOD, &mut refresh).await {
            return;
        }
    }
}

/// One status + member-list round trip to `endpoint` alone; with `tls` (the operator's
/// certificate), over mutual TLS, as the web node reaches an etcd with `--client-cert-auth`.
pub async fn probe_once(
    endpoint: &str,
    tls: Option<&crate::trust::tls::ClusterTls>,
    client: &mut Option<etcd_client::Client>,
) -> Result<EtcdStatus, String> {
    let c = match client {
        Some(c) => c,
        None => {
            let mut options = etcd_client::ConnectOptions::new()
                .with_connect_timeout(ETCD_TIMEOUT)
                .with_timeout(ETCD_TIMEOUT);
            if let Some(tls) = tls {
                options = options.with_tls(tls.client_config());
            }
            let url = crate::trust::tls::url(endpoint, tls.is_some());
            let connect = etcd_client::Client::connect([url], Some(options));
            let c = tokio::time::timeout(ETCD_TIMEOUT, connect)
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| e.to_string())?;
            client.insert(c)
        }
    };
    let started = Instant::now();
    let status = tokio::time::timeout(ETCD_TIMEOUT, c.status())
        .await
        .map_err(|_| "no answer within 1 s".to_string())?
        .map_err(etcd_error)?;
    let latency_us = started.elapsed().as_micros() as u64;
    // The names are a nicety: a member that answers status but not the list (it lost
    // quorum, and the list needs a leader) is still shown with its figures.
    let members = match tokio::time::timeout(ETCD_TIMEOUT, c.member_list()).await {
        Ok(Ok(list)) => list
            .members()
            .iter()
            .map(|m| EtcdMemberName {
                id: m.id(),
                name: m.name().to_string(),
                client_urls: m.client_urls().to_vec(),
            })
            .collect(),
        _ => vec![],
    };
    Ok(EtcdStatus {
        member_id: status.header().map_or(0, |h| h.member_id()),
        leader_id: status.leader(),
        raft_term: status.raft_term(),
        raft_index: status.raft_index(),
        db_size: status.db_size().max(0) as u64,
        latency_us,
        members,
    })
}

fn etcd_error(e: etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => failure(&s).to_string(),
        other => other.to_string(),
    }
}
