//! The admin gRPC service (VideoContentAdminService): the original's AddNode, RemoveNode
//! and ListNodes, plus what the console needs. With a token configured, every call must
//! carry it in the `x-tritontube-token` metadata.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use super::cluster::ChangeKind;
use super::migration::Migrator;
use crate::node::address::validate_address;
use crate::proto::admin::video_content_admin_service_server::{
    VideoContentAdminService, VideoContentAdminServiceServer,
};
use crate::proto::admin::{self, MigrationProgress};

pub const TOKEN_METADATA: &str = "x-tritontube-token";
/// How long a node may take to answer a status probe.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

pub struct AdminService {
    migrator: Arc<Migrator>,
}

pub type AdminServer = InterceptedService<VideoContentAdminServiceServer<AdminService>, TokenCheck>;

/// Refuses calls without the configured token; lets everything through when none is set.
#[derive(Clone)]
pub struct TokenCheck {
    token: Option<Arc<str>>,
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.token else {
            return Ok(request);
        };
        match request.metadata().get(TOKEN_METADATA).map(|v| v.to_str()) {
            Some(Ok(given)) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => {
                Ok(request)
            }
            Some(_) => Err(Status::unauthenticated("admin token refused")),
            None => Err(Status::unauthenticated(
                "this admin service needs a token (--token or TRITONTUBE_ADMIN_TOKEN)",
            )),
        }
    }
}

/// The service, refusing calls without `token` when one is set.
pub fn server(migrator: Arc<Migrator>, token: Option<String>) -> AdminServer {
    let service = VideoContentAdminServiceServer::new(AdminService { migrator })
        .max_decoding_message_size(4 * 1024 * 1024);
    InterceptedService::new(
        service,
        TokenCheck {
            token: token.map(Arc::from),
        },
    )
}

/// Compares without an early exit, so timing does not reveal how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The node address of a request, refused with INVALID_ARGUMENT when malformed.
fn node_address(input: &str) -> Result<String, Status> {
    validate_address(input)
        .map_err(|why| Status::invalid_argument(format!("invalid node address {input:?}: {why}")))
}

fn count(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
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
        let state = self.migrator.cluster().snapshot().await;
        Ok(Response::new(admin::ListNodesResponse {
            nodes: state.ring.nodes().map(String::from).collect(),
        }))
    }

    async fn cluster_status(
        &self,
        _request: Request<admin::ClusterStatusRequest>,
    ) -> Result<Response<admin::ClusterStatusResponse>, Status> {
        let cluster = self.migrator.cluster();
        let state = cluster.snapshot().await;
        let shares = &state.ring.shares();
        let mut addresses = state.data_nodes();
        addresses.extend(state.spares.iter().cloned());
        let state = &state;
        let probes = addresses.iter().map(|address| async move {
            let mut status = admin::NodeStatus {
                address: address.clone(),
                share: shares.get(address).copied().unwrap_or(0.0),
                in_ring: state.ring.contains(address),
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
            migration: self.migrator.watch().borrow().clone(),
        }))
    }

    async fn plan_change(
        &self,
        request: Request<admin::PlanChangeRequest>,
    ) -> Result<Response<admin::PlanChangeResponse>, Status> {
        let request = request.into_inner();
        let kind = match request.kind() {
            admin::ChangeKind::Add => {
                node_address(&request.node_address)?;
                ChangeKind::Add
            }
            admin::ChangeKind::Remove => ChangeKind::Remove,
        };
        let plan = self.migrator.plan(kind, &request.node_address).await?;
        Ok(Response::new(plan.to_proto()))
    }

    type WatchMigrationStream =
        Pin<Box<dyn Stream<Item = Result<MigrationProgress, Status>> + Send + 'static>>;

    async fn watch_migration(
        &self,
        _request: Request<admin::WatchMigrationRequest>,
    ) -> Result<Response<Self::WatchMigrationStream>, Status> {
        let mut updates = self.migrator.watch();
        let stream = async_stream::stream! {
            loop {
                let current = updates.borrow_and_update().clone();
                if let Some(progress) = current {
                    let finished = progress.finished;
                    yield Ok(progress);
                    if finished {
                        break;
                    }
                }
                if updates.changed().await.is_err() {
                    break;
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_videos(
        &self,
        request: Request<admin::ListVideosRequest>,
    ) -> Result<Response<admin::ListVideosResponse>, Status> {
        let meta = self.migrator.cluster().meta();
        let reply = super::video_admin::list(meta, request.into_inner()).await?;
        Ok(Response::new(reply))
    }

    async fn delete_video(
        &self,
        request: Request<admin::DeleteVideoRequest>,
    ) -> Result<Response<admin::DeleteVideoResponse>, Status> {
        let cluster = self.migrator.cluster();
        let content = super::content::Content::Ring(cluster.clone());
        let reply =
            super::video_admin::delete(cluster.meta(), &content, request.into_inner()).await?;
        Ok(Response::new(reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secre"));
    }
}
