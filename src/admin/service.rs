//! The admin gRPC service (VideoContentAdminService): the original's AddNode, RemoveNode
//! and ListNodes, plus what the console needs. Every call needs the operator's credential
//! (see [`crate::trust::credential`]): the token in the `x-tritontube-token` metadata or
//! the operator's client certificate.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use super::mapping::{
    change_kind, count, migration_progress, node_address, plan_proto, worker_info,
};
use crate::cluster::ControlPlane;
use crate::cluster::health::HealthMonitor;
use crate::cluster::migration::Migrator;
use crate::cluster::repair::Repairer;
use crate::metrics::traffic::TrafficReading;
use crate::proto::admin::video_content_admin_service_server::{
    VideoContentAdminService, VideoContentAdminServiceServer,
};
use crate::proto::admin::{self, MigrationProgress};
use crate::trust::credential::{AdminCredential, TOKEN_HEADER};
use crate::trust::tls::caller_role;

/// How long a node may take to answer a status probe.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a watcher of a change run by another web node is sent its saved progress.
const REMOTE_PROGRESS_EVERY: Duration = Duration::from_secs(1);

pub struct AdminService {
    pub migrator: Arc<Migrator>,
    pub repairer: Arc<Repairer>,
    pub health: Arc<HealthMonitor>,
    pub resyncer: Arc<crate::cluster::resync::Resyncer>,
    /// The web node's traffic counters, for the console's rates.
    pub traffic: TrafficSource,
}

/// Reads the serving node's traffic counters (the web node's HTTP side keeps them).
pub type TrafficSource = Arc<dyn Fn() -> TrafficReading + Send + Sync>;

impl AdminService {
    /// The service over a web node's control plane.
    pub fn new(plane: &ControlPlane, traffic: TrafficSource) -> Self {
        AdminService {
            migrator: plane.migrator.clone(),
            repairer: plane.repairer.clone(),
            health: plane.health.clone(),
            resyncer: plane.resyncer.clone(),
            traffic,
        }
    }
}

pub type AdminServer =
    InterceptedService<VideoContentAdminServiceServer<AdminService>, CredentialCheck>;

/// Refuses calls without the operator's credential (see [`AdminCredential`]).
#[derive(Clone)]
pub struct CredentialCheck {
    credential: Arc<AdminCredential>,
}

impl tonic::service::Interceptor for CredentialCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let token = request
            .metadata()
            .get(TOKEN_HEADER)
            .map(|v| v.to_str().unwrap_or("\u{0}"));
        match self.credential.check(token, caller_role(&request)) {
            Ok(()) => Ok(request),
            Err(refusal) => Err(Status::unauthenticated(refusal.to_string())),
        }
    }
}

/// The service, refusing calls without the operator's credential.
pub fn server(service: AdminService, credential: Arc<AdminCredential>) -> AdminServer {
    let service =
        VideoContentAdminServiceServer::new(service).max_decoding_message_size(4 * 1024 * 1024);
    InterceptedService::new(service, CredentialCheck { credential })
}

#[tonic::async_trait]
impl VideoContentAdminService for AdminService {
    async fn add_node(
        &self,
        request: Request<admin::AddNodeRequest>,
    ) -> Result<Response<admin::AddNodeResponse>, Status> {
        let node = node_address(&request.into_inner().node_address)?;
        let moved = self.migrator.add_node(&node).await?;
        Ok(Response::new(admin::AddNodeResponse {
            migrated_file_count: count(moved),
        }))
    }

    async fn remove_node(
        &self,
        request: Request<admin::RemoveNodeRequest>,
    ) -> Result<Response<admin::RemoveNodeResponse>, Status> {
        let node = request.into_inner().node_address;
        let moved = self.migrator.remove_node(&node).await?;
        Ok(Response::new(admin::RemoveNodeResponse {
            migrated_file_count: count(moved),
        }))
    }

    async fn list_nodes(
        &self,
        _request: Request<admin::ListNodesRequest>,
    ) -> Result<Response<admin::ListNodesResponse>, Status> {
        let state = self.migrator.cluster().snapshot();
        Ok(Response::new(admin::ListNodesResponse {
            nodes: state.ring.nodes().map(String::from).collect(),
        }))
    }

    async fn cluster_status(
        &self,
        _request: Request<admin::ClusterStatusRequest>,
    ) -> Result<Response<admin::ClusterStatusResponse>, Status> {
        let cluster = self.migrator.cluster();
        let state = cluster.snapshot();
        let shares = &state.ring.shares();
        let mut addresses = state.data_nodes();
        addresses.extend(state.spares.iter().cloned());
        let state = &state;
        let probes = addresses.iter().map(|address| async move {
            let mut status = admin::NodeStatus {
                address: address.clone(),
                share: shares.get(address).copied().unwrap_or(0.0),
                in_ring: state.ring.contains(address),
                zone: state.ring.zone(address).unwrap_or_default().to_string(),
                ..Default::default()
            };
            let probe = async {
                let client = cluster.client(address)?;
                client.stats().await
            };
            match tokio::time::timeout(STATUS_TIMEOUT, probe).await {
                Ok(Ok((stats, latency))) => {
                    status.healthy = true;
                    status.latency_us = latency.as_micros() as u64;
                    status.file_count = stats.file_count;
                    status.total_bytes = stats.total_bytes;
                }
                Ok(Err(e)) => status.error = e.to_string(),
                Err(_) => status.error = "no answer within 1 s".to_string(),
            }
            status
        });
        let nodes = futures::future::join_all(probes).await;
        Ok(Response::new(admin::ClusterStatusResponse {
            nodes,
            virtual_nodes: state.ring.virtual_nodes(),
            replicas: state.ring.replicas(),
            tokens: state
                .ring
                .tokens()
                .map(|(position, node)| admin::RingToken {
                    node_address: node.to_string(),
                    position,
                })
                .collect(),
            migration: self
                .migrator
                .latest_progress()
                .as_ref()
                .map(migration_progress),
            pace: Some(super::mapping::pace_reply(self.migrator.cluster())),
        }))
    }

    async fn plan_change(
        &self,
        request: Request<admin::PlanChangeRequest>,
    ) -> Result<Response<admin::PlanChangeResponse>, Status> {
        let request = request.into_inner();
        let kind = change_kind(&request.kind(), &request.node_address)?;
        let zone = Some(request.zone.as_str()).filter(|z| !z.is_empty());
        let plan = self
            .migrator
            .plan(kind, &request.node_address, zone)
            .await?;
        Ok(Response::new(super::mapping::plan_change(&plan)))
    }

    type WatchMigrationStream =
        Pin<Box<dyn Stream<Item = Result<MigrationProgress, Status>> + Send + 'static>>;

    async fn watch_migration(
        &self,
        _request: Request<admin::WatchMigrationRequest>,
    ) -> Result<Response<Self::WatchMigrationStream>, Status> {
        let migrator = self.migrator.clone();
        let mut updates = self.migrator.watch();
        let stream = async_stream::stream! {
            // A change run by another web node, as last seen: when its journal is gone
            // from the shared state, it is over.
            let mut remote: Option<MigrationProgress> = None;
            loop {
                updates.borrow_and_update();
                let latest = migrator.latest_progress().as_ref().map(migration_progress);
                if let Some(mut last) = remote.take() {
                    if latest.as_ref().is_none_or(|p| p.id != last.id) {
                        last.finished = true;
                        last.events.push("finished on the web node that ran it".to_string());
                        yield Ok(last);
                        break;
                    }
                }
                if let Some(progress) = latest {
                    let finished = progress.finished;
                    if !finished && !migrator.runs_change(&progress.id) {
                        remote = Some(progress.clone());
                    }
                    yield Ok(progress);
                    if finished {
                        break;
                    }
                }
                tokio::select! {
                    changed = updates.changed() => if changed.is_err() { break },
                    _ = tokio::time::sleep(REMOTE_PROGRESS_EVERY) => {}
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn start_change(
        &self,
        request: Request<admin::StartChangeRequest>,
    ) -> Result<Response<admin::StartChangeResponse>, Status> {
        let request = request.into_inner();
        let kind = change_kind(&request.kind(), &request.node_address)?;
        let zone = Some(request.zone.as_str()).filter(|z| !z.is_empty());
        let handle = self
            .migrator
            .start(kind, &request.node_address, zone)
            .await?;
        let change_id = self
            .migrator
            .cluster()
            .snapshot()
            .migration
            .as_ref()
            .map(|j| j.id.clone())
            .unwrap_or_default();
        Ok(Response::new(admin::StartChangeResponse {
            change_id,
            worker_id: handle.id,
        }))
    }

    async fn list_workers(
        &self,
        _request: Request<admin::ListWorkersRequest>,
    ) -> Result<Response<admin::ListWorkersResponse>, Status> {
        let workers = self.migrator.runner().statuses();
        let journal = self.migrator.cluster().snapshot().migration.clone();
        let journaled = journal.as_ref().and(
            self.migrator
                .latest_progress()
                .as_ref()
                .map(migration_progress),
        );
        Ok(Response::new(admin::ListWorkersResponse {
            workers: workers.iter().map(worker_info).collect(),
            journaled,
            journaled_runner: journal.map(|j| j.runner).unwrap_or_default(),
        }))
    }

    async fn start_repair(
        &self,
        request: Request<admin::StartRepairRequest>,
    ) -> Result<Response<admin::StartRepairResponse>, Status> {
        let request = request.into_inner();
        if request.dry_run {
            let plan = self.repairer.plan(request.verify).await?;
            return Ok(Response::new(admin::StartRepairResponse {
                plan: Some(plan_proto(&plan)),
                worker_id: 0,
            }));
        }
        let worker = self
            .repairer
            .start("asked by the operator", request.verify)
            .await?;
        Ok(Response::new(admin::StartRepairResponse {
            plan: None,
            worker_id: worker.id,
        }))
    }

    async fn cluster_health(
        &self,
        _request: Request<admin::ClusterHealthRequest>,
    ) -> Result<Response<admin::ClusterHealthResponse>, Status> {
        let cluster = self.migrator.cluster();
        let seen = self.health.nodes();
        let scrubs = futures::future::join_all(seen.iter().filter(|(_, s)| s.up).map(
            |(address, _)| async move {
                let scrub = match cluster.client(address) {
                    Ok(client) => tokio::time::timeout(STATUS_TIMEOUT, client.scrub(false))
                        .await
                        .ok()
                        .and_then(Result::ok),
                    Err(_) => None,
                };
                (address.clone(), scrub)
            },
        ))
        .await;
        let scrubs: std::collections::BTreeMap<_, _> = scrubs.into_iter().collect();
        let nodes: Vec<admin::NodeHealthInfo> = seen
            .iter()
            .map(|(address, seen)| {
                let mut info = admin::NodeHealthInfo {
                    address: address.clone(),
                    up: seen.up,
                    error: seen.error.clone(),
                    checked_at_ms: seen.checked_at.map_or(0, |t| t.timestamp_millis()),
                    ..Default::default()
                };
                if let Some(h) = &seen.health {
                    info.file_count = h.stats.file_count;
                    info.total_bytes = h.stats.total_bytes;
                    info.free_bytes = h.free_bytes;
                    info.disk_total_bytes = h.disk_total_bytes;
                    info.min_free_bytes = h.min_free_bytes;
                    info.quarantined = h.quarantined_count;
                    info.checksum_failures = h.checksum_failures;
                    info.store_id = h.store_id.clone();
                }
                if let Some(Some(scrub)) = scrubs.get(address) {
                    info.scrub_enabled = scrub.enabled;
                    info.scrub_running = scrub.running;
                    let pass = if scrub.running {
                        &scrub.current
                    } else {
                        &scrub.last
                    };
                    if let Some(pass) = pass {
                        info.scrub_files_checked = pass.files_checked;
                        info.scrub_files_total = pass.files_total;
                        info.scrub_corrupt_found = pass.corrupt_found;
                    }
                    info.scrub_last_finished_ms =
                        scrub.last.as_ref().map_or(0, |p| p.finished_unix_ms);
                }
                info
            })
            .collect();
        let hints = cluster.meta().hints().await.unwrap_or_default();
        let hinted = hints.len() as u64;
        let next_scrubs = scrubs
            .iter()
            .filter_map(|(node, s)| s.as_ref().map(|s| (node.clone(), s.next_pass_unix_ms)))
            .collect();
        let survey = self.repairer.last_survey();
        let repair = self
            .migrator
            .runner()
            .latest(crate::background::WorkerKind::Repair)
            .map(|h| worker_info(&h.status()));
        let mut reply = admin::ClusterHealthResponse {
            quarantined: nodes.iter().filter(|n| n.up).map(|n| n.quarantined).sum(),
            nodes,
            hinted,
            last_survey_at_ms: survey.as_ref().map_or(0, |(at, _)| at.timestamp_millis()),
            last_survey: survey.map(|(_, plan)| plan_proto(&plan)),
            last_repair: self.repairer.last_report().map(|r| admin::RepairReport {
                finished_at_ms: r.finished_at.timestamp_millis(),
                plan: Some(plan_proto(&r.plan)),
                fixed: r.fixed,
                failed: r.failed,
                outcome: r.outcome,
            }),
            repair,
            repair_wanted: self.health.pending_reason().unwrap_or_default(),
            replicas: cluster.snapshot().ring.replicas(),
            ..Default::default()
        };
        let (resyncer, repairer) = (&self.resyncer, &self.repairer);
        super::mapping::fill_risk(
            &mut reply,
            resyncer,
            repairer,
            &self.health,
            &hints,
            &next_scrubs,
        );
        Ok(Response::new(reply))
    }

    async fn traffic_stats(
        &self,
        _request: Request<admin::TrafficStatsRequest>,
    ) -> Result<Response<admin::TrafficStatsResponse>, Status> {
        Ok(Response::new(super::mapping::traffic((self.traffic)())))
    }

    async fn list_videos(
        &self,
        request: Request<admin::ListVideosRequest>,
    ) -> Result<Response<admin::ListVideosResponse>, Status> {
        let meta = self.migrator.cluster().meta();
        let reply = super::videos::list(meta, request.into_inner()).await?;
        Ok(Response::new(reply))
    }

    async fn delete_video(
        &self,
        request: Request<admin::DeleteVideoRequest>,
    ) -> Result<Response<admin::DeleteVideoResponse>, Status> {
        let cluster = self.migrator.cluster();
        let content = crate::library::content::Content::Ring(cluster.clone());
        let reply = super::videos::delete(cluster.meta(), &content, request.into_inner()).await?;
        Ok(Response::new(reply))
    }

    async fn cancel_change(
        &self,
        _request: Request<admin::CancelChangeRequest>,
    ) -> Result<Response<admin::CancelChangeResponse>, Status> {
        let description = self.migrator.cancel().await?;
        Ok(Response::new(admin::CancelChangeResponse { description }))
    }

    async fn set_pace(
        &self,
        request: Request<admin::SetPaceRequest>,
    ) -> Result<Response<admin::PaceReply>, Status> {
        let mbps = request.into_inner().mbps;
        let reply = super::mapping::set_pace(self.migrator.cluster(), |p| p.mbps = mbps).await?;
        Ok(Response::new(reply))
    }

    async fn pause_moves(
        &self,
        _request: Request<admin::PauseMovesRequest>,
    ) -> Result<Response<admin::PaceReply>, Status> {
        let reply = super::mapping::set_pace(self.migrator.cluster(), |p| p.paused = true).await?;
        Ok(Response::new(reply))
    }

    async fn resume_moves(
        &self,
        _request: Request<admin::ResumeMovesRequest>,
    ) -> Result<Response<admin::PaceReply>, Status> {
        let reply = super::mapping::set_pace(self.migrator.cluster(), |p| p.paused = false).await?;
        Ok(Response::new(reply))
    }
}
