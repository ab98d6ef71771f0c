//! The storage node server: StorageService and `grpc.health.v1.Health` on one listener
//! (which also serves other nodes' direct copies, see [`super::transfer`]), Prometheus
//! metrics on another when asked, and the `tritontube storage` command line.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::identity::StoreIdentity;
use super::scrub::{DEFAULT_SCRUB_MBPS, ScrubConfig, Scrubber};
use super::service::StorageService;
use super::store::{DEFAULT_MIN_FREE_BYTES, Store, StoreError, StoreOptions};
use crate::background::{DRAIN_DEADLINE, Runner};
use crate::node::metrics::NodeMetrics;
use crate::proto::storage::storage_service_server::StorageServiceServer;
use crate::trust::Role;
use crate::trust::listen::TrustArgs;
use crate::trust::tls::{ClusterTls, require_role};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("opening the storage folder: {0}")]
    Store(#[from] StoreError),
    #[error("serving gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("serving metrics: {0}")]
    Metrics(std::io::Error),
}

/// How a storage node runs, beyond where.
#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
    pub store: StoreOptions,
    pub scrub: ScrubConfig,
    /// The failure domain the node reports (`--zone`).
    pub zone: Option<String>,
    /// RPCs answered UNIMPLEMENTED, as by an older node (compatibility tests).
    pub withheld_rpcs: Vec<String>,
}

/// Serves the store in `dir` on `listener` with the default options until `shutdown`
/// completes, then lets the requests in flight finish.
pub async fn run(
    listener: TcpListener,
    dir: PathBuf,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    run_with(listener, dir, NodeOptions::default(), shutdown).await
}

/// Serves the store in `dir` on `listener`, with its scrub, until `shutdown` completes;
/// then lets the requests in flight finish and stops the scrub (saving where it got to).
pub async fn run_with(
    listener: TcpListener,
    dir: PathBuf,
    options: NodeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    run_with_metrics(listener, None, dir, options, shutdown).await
}

/// As [`run_with`], and serves `GET /metrics` on `metrics_listener` when there is one.
pub async fn run_with_metrics(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    dir: PathBuf,
    options: NodeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    run_secure(listener, metrics_listener, dir, options, None, shutdown).await
}

/// As [`run_with_metrics`]; with `tls`, the node's port speaks only mutual TLS, every
/// call and direct copy needs a node certificate from the cluster CA, and the node pulls
/// from others over TLS (see [`super::secure_listen`]).
pub async fn run_secure(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    dir: PathBuf,
    options: NodeOptions,
    tls: Option<ClusterTls>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let metrics = NodeMetrics::new();
    let store = Store::open_with(dir, options.store).await?;
    let root = store.root().to_path_buf();
    let identity = tokio::task::spawn_blocking(move || StoreIdentity::load_or_create(&root))
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
        .unwrap_or_else(|e| {
            // A folder the node cannot write to can still be served; it then reports no
            // identity, as the original system's nodes do.
            tracing::warn!(error = %e, "cannot keep a store marker; reporting no store identity");
            StoreIdentity::default()
        });
    if identity.recreated && store.stats().file_count > 0 {
        tracing::info!(
            "adopting a folder with files and no store marker (the original system's layout)"
        );
    }
    // Arc requests walk the disk until the position index is built.
    let indexing = store.clone();
    tokio::spawn(async move {
        match indexing.build_index().await {
            Ok(keys) => tracing::info!(keys, "position index built"),
            Err(e) => {
                tracing::error!(error = %e, "cannot build the position index; arc requests walk the disk")
            }
        }
    });
    // The node's background work (its scrub) runs on a runner of its own.
    let runner = Runner::default();
    let scrubber = Scrubber::start(store.clone(), options.scrub, &runner).await;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<StorageServiceServer<StorageService>>()
        .await;
    let stop = CancellationToken::new();
    let scrub_for_metrics = scrubber.clone();
    let metrics_server = async {
        match metrics_listener {
            Some(listener) => crate::node::metrics::serve(
                listener,
                metrics.clone(),
                store.clone(),
                scrub_for_metrics,
                stop.clone(),
            )
            .await
            .map_err(ServerError::Metrics),
            None => Ok(()),
        }
    };
    let tls_on = tls.is_some();
    // With certificates the listener terminates TLS itself (secure_listen), so that it
    // can serve direct copies on the port too; tonic sees the decrypted streams.
    let tls_server = tls.as_ref().map(ClusterTls::rustls_server);
    let builder = tonic::transport::Server::builder();
    let members_only = tonic::service::InterceptorLayer::new(move |request: tonic::Request<()>| {
        require_role(&request, tls_on, &[Role::Node]).map(|()| request)
    });
    let copy = CopyServer {
        store: store.clone(),
        stop: stop.clone(),
        metrics: metrics.clone(),
    };
    let grpc_server = async {
        let router = builder
            .layer(metrics.layer())
            .layer(members_only)
            .layer(super::older_version::WithholdLayer::new(
                options.withheld_rpcs.clone(),
            ))
            // Wider windows than the 64 KiB default so one stream can fill a fast link.
            .initial_stream_window_size(4 * 1024 * 1024)
            .initial_connection_window_size(16 * 1024 * 1024)
            .add_service(health_service)
            .add_service(
                StorageService::with_healing(store.clone(), scrubber, identity)
                    .with_cluster_tls(tls)
                    .with_zone(options.zone.clone())
                    .into_server(),
            );
        let shutdown = async {
            shutdown.await;
            stop.cancel();
        };
        let served = match tls_server {
            Some(config) => {
                let incoming = super::secure_listen::incoming(listener, config, copy);
                router
                    .serve_with_incoming_shutdown(incoming, shutdown)
                    .await
            }
            None => {
                router
                    .serve_with_incoming_shutdown(node_incoming(listener, copy), shutdown)
                    .await
            }
        };
        // A gRPC server that failed takes the metrics listener down with it.
        stop.cancel();
        served
    };
    let (served, metrics_served) = tokio::join!(grpc_server, metrics_server);
    if !runner.shutdown(DRAIN_DEADLINE).await {
        tracing::warn!("the scrub did not stop within the drain deadline");
    }
    served?;
    metrics_served
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
    /// Scrub rate in MB/s: every file is re-read and re-hashed in the background at most
    /// this fast, and corrupt copies quarantined. 0 turns the scrub off.
    #[arg(long, env = "TRITONTUBE_SCRUB_MBPS", default_value_t = DEFAULT_SCRUB_MBPS)]
    pub scrub_mbps: u64,
    /// Time from the end of one scrub pass to the start of the next (e.g. 24h, 90m, 3600s).
    #[arg(long, env = "TRITONTUBE_SCRUB_INTERVAL", default_value = "24h", value_parser = parse_duration)]
    pub scrub_interval: Duration,
    /// Free space to keep on the disk: writes that would leave less are refused with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "TRITONTUBE_MIN_FREE_BYTES", default_value_t = DEFAULT_MIN_FREE_BYTES)]
    pub min_free_bytes: u64,
    /// Serve reads without checking them against the recorded SHA-256: only to measure
    /// what verification costs. Rotted bytes are then served.
    #[arg(long, hide = true)]
    pub unverified_reads: bool,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (off when not given).
    #[arg(long, env = "TRITONTUBE_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// The failure domain this node stands in (a rack, a room, a power feed): web nodes
    /// place the copies of a file in distinct zones where they can.
    #[arg(long, env = "TRITONTUBE_ZONE", value_parser = parse_zone)]
    pub zone: Option<String>,
    /// Answer these RPCs (comma-separated proto names, e.g. PullFile,RangeDigests) with
    /// UNIMPLEMENTED, as a node of an older version would: to test that callers fall back.
    #[arg(long, hide = true, value_delimiter = ',')]
    pub answer_as_older_without: Vec<String>,
    #[command(flatten)]
    pub trust: TrustArgs,
}

fn parse_zone(text: &str) -> Result<String, String> {
    crate::ring::check_zone_name(text).map(|()| text.to_string())
}

impl StorageArgs {
    pub fn options(&self) -> NodeOptions {
        NodeOptions {
            store: StoreOptions {
                min_free_bytes: self.min_free_bytes,
                verify_reads: !self.unverified_reads,
            },
            scrub: ScrubConfig {
                rate_bytes_per_sec: self.scrub_mbps.saturating_mul(1_000_000),
                interval: self.scrub_interval,
            },
            zone: self.zone.clone(),
            withheld_rpcs: self.answer_as_older_without.clone(),
        }
    }
}

/// `90s`, `15m`, `24h`, `2d` or a number of seconds; at least one second.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let count: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 15m, 24h or 2d"))?;
    let seconds = match unit {
        "s" => count,
        "m" => count.saturating_mul(60),
        "h" => count.saturating_mul(3600),
        "d" => count.saturating_mul(86_400),
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    if seconds == 0 {
        return Err("the interval must be at least one second".into());
    }
    Ok(Duration::from_secs(seconds))
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
    let addr = resolve(&args.host, args.port).await?;
    // Refused before anything is made on disk.
    let tls = args.trust.node_tls(&[addr])?;
    tokio::fs::create_dir_all(&args.dir)
        .await
        .with_context(|| format!("cannot create storage folder {}", args.dir.display()))?;
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
    let options = args.options();
    run_secure(listener, metrics_listener, args.dir, options, tls, shutdown).await?;
    tracing::info!("storage node stopped");
    Ok(())
}

/// The node's accepted connections, Nagle's algorithm off: HTTP/2 ones are handed to the
/// gRPC server through the returned stream, direct copies are served on the blocking pool
/// until `stop`. Accepting ends when the gRPC server drops the stream (the port closes).
fn node_incoming(
    listener: TcpListener,
    copy: CopyServer,
) -> ReceiverStream<std::io::Result<TcpStream>> {
    let (grpc, incoming) = mpsc::channel(64);
    let copy_slots = Arc::new(Semaphore::new(super::transfer::MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = grpc.closed() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let route = route_connection(
                        stream,
                        grpc.clone(),
                        Arc::clone(&copy_slots),
                        copy.clone(),
                    );
                    tokio::spawn(route);
                }
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    ReceiverStream::new(incoming)
}

/// What serving a copy connection needs.
#[derive(Clone)]
pub(super) struct CopyServer {
    pub(super) store: Store,
    pub(super) stop: CancellationToken,
    pub(super) metrics: NodeMetrics,
}

/// Tells a copy connection from an HTTP/2 one by its first byte. Each copy connection
/// holds a thread of the blocking pool, which the store needs too: beyond
/// [`super::transfer::MAX_CONNECTIONS`] the puller is told to use GetFile.
async fn route_connection(
    mut stream: TcpStream,
    grpc: mpsc::Sender<std::io::Result<TcpStream>>,
    copy_slots: Arc<Semaphore>,
    copy: CopyServer,
) {
    let mut first = [0u8; 1];
    // An HTTP/2 client sends its preface at once; a silent connection is dropped.
    match tokio::time::timeout(Duration::from_secs(10), stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == super::transfer::FIRST_BYTE => {
            let Ok(slot) = copy_slots.try_acquire_owned() else {
                let _ = stream.write_all(super::transfer::BUSY).await;
                return;
            };
            let blocking = stream.into_std().and_then(|s| {
                s.set_nonblocking(false)?;
                Ok(s)
            });
            match blocking {
                Ok(s) => {
                    tokio::task::spawn_blocking(move || {
                        let _slot = slot;
                        let stream = super::copy_stream::CopyStream::Plain(s);
                        super::transfer::serve(copy.store, stream, false, copy.stop, copy.metrics)
                    });
                }
                Err(e) => tracing::debug!(error = %e, "a copy connection failed"),
            }
        }
        Ok(Ok(_)) => {
            let _ = grpc.send(Ok(stream)).await;
        }
        Ok(Err(_)) | Err(_) => {}
    }
}

/// Accepted connections with Nagle's algorithm off. The builder's `tcp_nodelay` applies
/// only to listeners tonic binds itself; without it a reply's last frame waits for the
/// peer's delayed ACK (40 ms on Linux) whenever a read ends on a partly filled packet.
pub fn no_delay_incoming(
    listener: tokio::net::TcpListener,
) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_operators_write_them() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        for bad in ["", "h", "0s", "-5s", "5w", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
