//! The storage node server: StorageService and `grpc.health.v1.Health` on one listener,
//! Prometheus metrics on another when asked, and the `tritontube storage` command line.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use super::service::StorageService;
use super::store::{Store, StoreError};
use crate::metrics::node::NodeMetrics;
use crate::proto::storage::storage_service_server::StorageServiceServer;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("opening the storage folder: {0}")]
    Store(#[from] StoreError),
    #[error("serving gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("serving metrics: {0}")]
    Metrics(std::io::Error),
}

/// Serves the store in `dir` on `listener` until `shutdown` completes, then lets the
/// requests in flight finish.
pub async fn run(
    listener: TcpListener,
    dir: PathBuf,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    run_with_metrics(listener, None, dir, shutdown).await
}

/// As [`run`], and serves `GET /metrics` on `metrics_listener` when there is one.
pub async fn run_with_metrics(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    dir: PathBuf,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let store = Store::open(&dir).await?;
    let metrics = NodeMetrics::new();
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<StorageServiceServer<StorageService>>()
        .await;
    let stop = CancellationToken::new();
    let metrics_server = async {
        match metrics_listener {
            Some(listener) => crate::metrics::node::serve(
                listener,
                metrics.clone(),
                store.clone(),
                dir.clone(),
                stop.clone(),
            )
            .await
            .map_err(ServerError::Metrics),
            None => Ok(()),
        }
    };
    let grpc_server = async {
        let served = grpc_server(listener, store.clone(), health_service, &metrics, async {
            shutdown.await;
            stop.cancel();
        })
        .await;
        // A gRPC server that failed takes the metrics listener down with it.
        stop.cancel();
        served
    };
    let (grpc, metrics) = tokio::join!(grpc_server, metrics_server);
    grpc?;
    metrics
}

async fn grpc_server(
    listener: TcpListener,
    store: Store,
    health_service: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    metrics: &NodeMetrics,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    tonic::transport::Server::builder()
        .layer(metrics.layer())
        .tcp_nodelay(true)
        // Wider windows than the 64 KiB default so one stream can fill a fast link.
        .initial_stream_window_size(4 * 1024 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024)
        .add_service(health_service)
        .add_service(StorageService::new(store).into_server())
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

/// `tritontube storage --host H --port P DIR`
#[derive(clap::Args, Clone, Debug)]
pub struct StorageArgs {
    /// Host name or address to listen on.
    #[arg(long, env = "TRITONTUBE_HOST", default_value = "localhost")]
    pub host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "TRITONTUBE_PORT", default_value_t = 8090)]
    pub port: u16,
    /// Folder holding the files as DIR/{videoId}/{filename}; created if missing.
    #[arg(env = "TRITONTUBE_STORAGE_DIR")]
    pub dir: PathBuf,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (off when not given).
    #[arg(long, env = "TRITONTUBE_METRICS_PORT")]
    pub metrics_port: Option<u16>,
}

/// Resolves the listening address, preferring IPv4 as the original (Go) node did, so
/// `localhost` means 127.0.0.1 where both exist.
async fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("cannot resolve listening host {host:?}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .with_context(|| format!("listening host {host:?} has no address"))
}

pub async fn run_cli(args: StorageArgs) -> anyhow::Result<()> {
    let shutdown = crate::signals::shutdown_signal().context("installing signal handlers")?;
    tokio::fs::create_dir_all(&args.dir)
        .await
        .with_context(|| format!("cannot create storage folder {}", args.dir.display()))?;
    let addr = resolve(&args.host, args.port).await?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {}:{} ({addr})", args.host, args.port))?;
    let local = listener.local_addr().context("reading the bound address")?;
    tracing::info!(
        "storage node listening on {local}, serving {}",
        args.dir.display()
    );
    let metrics_listener = match args.metrics_port {
        Some(port) => {
            let addr = resolve(&args.host, port).await?;
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for metrics on {addr}"))?;
            let local = listener.local_addr().context("reading the bound address")?;
            tracing::info!("metrics at http://{local}/metrics");
            Some(listener)
        }
        None => None,
    };
    run_with_metrics(listener, metrics_listener, args.dir, shutdown).await?;
    tracing::info!("storage node stopped");
    Ok(())
}
