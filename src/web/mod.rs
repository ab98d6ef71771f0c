//! The web node: HTTP for viewers, the admin gRPC service for operators.
//!
//! - [`routes`]: the router, shared state and error responses.
//! - [`pages`]: the index and player pages.
//! - [`upload`]: `POST /upload` (stream to disk, probe, transcode, store, record);
//!   `rollback`: a failed upload's files and claim removed, the claim until the store takes it.
//! - [`transcode`]: ffprobe and ffmpeg as child processes; [`publish`]: the lowest
//!   rendition first (playable), the higher ones after; [`storyboard`]: seek previews.
//! - [`serve`]: `GET /content/…` with ranges, ETags and a hot-segment cache.
//! - [`tus`]: resumable uploads (tus 1.0.0) at `/api/tus/`; [`captions`]: WebVTT tracks.
//! - [`api`]: the JSON API; [`progress`]: uploads being processed; [`assets`]: the pages'
//!   script and style sheet.
//!
//! Content, listing and deletes are the video library's ([`crate::library`]); the ring
//! and ring changes are the control plane's ([`crate::cluster`]); the web node also
//! serves the admin façade ([`crate::admin`]) beside its HTTP.

pub mod api;
pub mod assets;
pub mod captions;
pub mod hardening;
pub mod https;
pub mod metrics;
pub mod pages;
pub mod processing;
pub mod progress;
pub mod publish;
mod rollback;
pub mod routes;
pub mod serve;
pub mod storyboard;
pub mod transcode;
pub mod tus;
pub mod upload;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::background::{DRAIN_DEADLINE, Runner, WorkerKind};
use crate::cluster::{Cluster, ControlPlane, Seed};
use crate::library::content::Content;
use crate::meta::MetaStore;
use crate::node::store::Store;
use crate::ring::{DEFAULT_REPLICAS, DEFAULT_VIRTUAL_NODES};
use crate::trust::credential::AdminCredential;
use crate::trust::listen::TrustArgs;
use crate::trust::tls::ClusterTls;
use crate::web::metrics::{RingFacts, RingFactsSource, WebMetrics};

/// Settings of the HTTP side.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// Largest accepted upload, bytes.
    pub max_upload_bytes: u64,
    /// Where uploads and ffmpeg output are kept while they are processed.
    pub work_dir: PathBuf,
    /// Memory for hot segments, bytes.
    pub cache_bytes: u64,
    /// How long an upload may send nothing before it is given up.
    pub upload_idle_timeout: std::time::Duration,
    /// Time between scheduled repairs of the ring; None: only on demand and when a node
    /// comes back or shows a new store.
    pub repair_every: Option<std::time::Duration>,
    /// Time between two looks at the nodes' quarantine lists, whose findings the resync
    /// queue copies again.
    pub resync_poll: std::time::Duration,
    /// Pace of ring changes and repairs in MB/s (0 = unlimited) set at start; None keeps
    /// the one in the journal (unlimited on a new cluster).
    pub move_mbps: Option<u64>,
    /// The renditions uploads are encoded to.
    pub ladder: transcode::Ladder,
    /// How long a partial resumable upload is kept after its last byte arrived.
    pub partial_upload_expiry: std::time::Duration,
    /// Bytes set aside for partial resumable uploads (their declared lengths) in the work
    /// folder; a creation beyond it is refused.
    pub partial_upload_bytes: u64,
    /// Uploads one client address may have in progress at once (429 beyond).
    pub uploads_per_client: usize,
    /// The cluster's certificates: storage nodes and the admin service's callers speak
    /// mutual TLS (the viewers' listener stays as it is).
    pub cluster_tls: Option<ClusterTls>,
    /// HTTPS for viewers (and HSTS); plain HTTP without it, e.g. behind a load balancer
    /// that terminates TLS.
    pub viewer_tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// When set, uploads need this token (uploads are open to anyone by default).
    pub upload_token: Option<String>,
    /// Keys per arc when ring changes and repairs work through the keyspace.
    pub range_keys: u64,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            max_upload_bytes: 4 * 1024 * 1024 * 1024,
            work_dir: std::env::temp_dir(),
            cache_bytes: 128 * 1024 * 1024,
            upload_idle_timeout: std::time::Duration::from_secs(60),
            repair_every: Some(crate::cluster::DEFAULT_REPAIR_EVERY),
            resync_poll: crate::cluster::resync::DEFAULT_POLL_EVERY,
            move_mbps: None,
            ladder: transcode::Ladder::default(),
            partial_upload_expiry: tus::DEFAULT_EXPIRY,
            partial_upload_bytes: 16 * 1024 * 1024 * 1024,
            uploads_per_client: hardening::DEFAULT_UPLOADS_PER_CLIENT,
            cluster_tls: None,
            viewer_tls: None,
            upload_token: None,
            range_keys: crate::cluster::arcs::DEFAULT_RANGE_KEYS,
        }
    }
}

/// Where the DASH files go.
#[derive(Clone, Debug)]
pub enum ContentSpec {
    /// One local folder.
    Local(PathBuf),
    /// The ring; the nodes seed it only when the metadata store has no ring yet.
    Ring {
        seed_nodes: Vec<String>,
        /// Nodes to offer the operator without putting them in the ring.
        spares: Vec<String>,
        virtual_nodes: u32,
        replicas: u32,
        admin_token: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum MetadataKind {
    Sqlite,
    Etcd,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ContentKind {
    Fs,
    Nw,
}

/// `tritontube web [--host H] [--port P] METADATA_TYPE METADATA_OPTIONS CONTENT_TYPE
/// CONTENT_OPTIONS`, the original's positional shape.
#[derive(clap::Args, Debug)]
pub struct WebArgs {
    /// Address the HTTP server listens on.
    #[arg(long, env = "TRITONTUBE_HOST", default_value = "localhost")]
    pub host: String,
    #[arg(long, env = "TRITONTUBE_PORT", default_value_t = 8080)]
    pub port: u16,
    /// `sqlite` (OPTIONS: a file path) or `etcd` (OPTIONS: endpoints, comma-separated).
    #[arg(value_enum)]
    pub metadata_type: MetadataKind,
    pub metadata_options: String,
    /// `fs` (OPTIONS: a folder) or `nw` (OPTIONS: ADMIN_ADDRESS,NODE1,NODE2,…).
    #[arg(value_enum)]
    pub content_type: ContentKind,
    pub content_options: String,
    /// Largest accepted upload, bytes.
    #[arg(long, env = "TRITONTUBE_MAX_UPLOAD_BYTES", default_value_t = WebConfig::default().max_upload_bytes)]
    pub max_upload_bytes: u64,
    /// Memory for the hot-segment cache, bytes.
    #[arg(long, env = "TRITONTUBE_CACHE_BYTES", default_value_t = WebConfig::default().cache_bytes)]
    pub cache_bytes: u64,
    /// Folder for uploads being processed (default: the system temp folder).
    #[arg(long, env = "TRITONTUBE_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Tokens per storage node on the ring (used when the ring is first created).
    #[arg(long, env = "TRITONTUBE_VIRTUAL_NODES", default_value_t = DEFAULT_VIRTUAL_NODES)]
    pub virtual_nodes: u32,
    /// Copies of each file (used when the ring is first created).
    #[arg(long, env = "TRITONTUBE_REPLICAS", default_value_t = DEFAULT_REPLICAS)]
    pub replicas: u32,
    /// Shared secret the admin service requires from its clients.
    #[arg(long, env = "TRITONTUBE_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Seconds between scheduled repairs of the ring (0: only on demand and when a node
    /// comes back or shows a new store).
    #[arg(long, env = "TRITONTUBE_REPAIR_EVERY_SECS", default_value_t = crate::cluster::DEFAULT_REPAIR_EVERY.as_secs())]
    pub repair_every_secs: u64,
    /// Pace of ring changes and repairs, MB/s (0: unlimited). Without the flag the pace
    /// kept in the journal holds (unlimited on a new cluster); change it live with
    /// `tritontube admin pace ADMIN MBPS`.
    #[arg(long, env = "TRITONTUBE_MOVE_MBPS")]
    pub move_mbps: Option<u64>,
    /// Keys per arc of the ring when ring changes, repairs and surveys work through the
    /// keyspace: the web node holds one arc's inventory at a time (~1 KB per key).
    #[arg(long, env = "TRITONTUBE_RANGE_KEYS", default_value_t = crate::cluster::arcs::DEFAULT_RANGE_KEYS)]
    pub range_keys: u64,
    /// Renditions each upload is encoded to, `HEIGHT:BITRATE,…`; a source gets those no
    /// taller than itself (README: "Viewing and uploading").
    #[arg(long, env = "TRITONTUBE_LADDER", default_value = transcode::DEFAULT_LADDER)]
    pub ladder: transcode::Ladder,
    /// Seconds a partial resumable upload is kept after its last byte arrived.
    #[arg(long, env = "TRITONTUBE_PARTIAL_UPLOAD_EXPIRY_SECS", default_value_t = tus::DEFAULT_EXPIRY.as_secs())]
    pub partial_upload_expiry_secs: u64,
    /// Bytes of the work folder set aside for partial resumable uploads.
    #[arg(long, env = "TRITONTUBE_PARTIAL_UPLOAD_BYTES", default_value_t = WebConfig::default().partial_upload_bytes)]
    pub partial_upload_bytes: u64,
    /// Uploads one client address may have in progress at once; more answer 429.
    #[arg(long, env = "TRITONTUBE_UPLOADS_PER_CLIENT", default_value_t = hardening::DEFAULT_UPLOADS_PER_CLIENT)]
    pub uploads_per_client: usize,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Serve viewers over HTTPS with this certificate chain (PEM), and send HSTS.
    #[arg(long, env = "TRITONTUBE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "TRITONTUBE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require this token for uploads (`Authorization: Bearer TOKEN`); open by default.
    #[arg(long, env = "TRITONTUBE_UPLOAD_TOKEN", hide_env_values = true)]
    pub upload_token: Option<String>,
}

/// Splits a comma-separated list, dropping empty items and surrounding spaces.
pub fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Opens the metadata store; etcd is reached over mutual TLS with `tls`.
pub async fn open_meta(
    kind: MetadataKind,
    options: &str,
    tls: Option<&ClusterTls>,
) -> anyhow::Result<MetaStore> {
    Ok(match kind {
        MetadataKind::Sqlite => {
            let path = PathBuf::from(options);
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            MetaStore::sqlite(&path)
                .await
                .with_context(|| format!("opening SQLite metadata at {options}"))?
        }
        MetadataKind::Etcd => MetaStore::etcd_tls(&split_list(options), tls)
            .await
            .with_context(|| format!("connecting to etcd at {options}"))?,
    })
}

async fn bind(address: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))
}

pub async fn run_cli(args: WebArgs) -> anyhow::Result<()> {
    transcode::check_tools().await?;
    // The host's certificate, when given, also opens etcd.
    let etcd_tls = match &args.trust.certs_dir {
        Some(dir) => Some(ClusterTls::node(dir)?),
        None => None,
    };
    let meta = open_meta(
        args.metadata_type,
        &args.metadata_options,
        etcd_tls.as_ref(),
    )
    .await?;
    let config = WebConfig {
        max_upload_bytes: args.max_upload_bytes,
        work_dir: args.work_dir.unwrap_or_else(std::env::temp_dir),
        cache_bytes: args.cache_bytes,
        repair_every: (args.repair_every_secs > 0)
            .then(|| std::time::Duration::from_secs(args.repair_every_secs)),
        ladder: args.ladder,
        partial_upload_expiry: std::time::Duration::from_secs(args.partial_upload_expiry_secs),
        partial_upload_bytes: args.partial_upload_bytes,
        uploads_per_client: args.uploads_per_client,
        move_mbps: args.move_mbps,
        range_keys: args.range_keys,
        viewer_tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(https::server_config(cert, key)?),
            _ => None,
        },
        upload_token: args.upload_token,
        ..WebConfig::default()
    };
    let (content, admin_listener) = match args.content_type {
        ContentKind::Fs => (
            ContentSpec::Local(PathBuf::from(&args.content_options)),
            None,
        ),
        ContentKind::Nw => {
            let mut list = split_list(&args.content_options).into_iter();
            let admin = list
                .next()
                .context("nw needs ADMIN_ADDRESS,NODE1,NODE2,…")?;
            let spec = ContentSpec::Ring {
                seed_nodes: list.collect(),
                spares: Vec::new(),
                virtual_nodes: args.virtual_nodes,
                replicas: args.replicas,
                admin_token: args.admin_token,
            };
            (spec, Some(bind(&admin).await?))
        }
    };
    let http = bind(&format!("{}:{}", args.host, args.port)).await?;
    let mut listening = vec![http.local_addr()?];
    if let Some(admin) = &admin_listener {
        listening.push(admin.local_addr()?);
    }
    let config = WebConfig {
        cluster_tls: args.trust.node_tls(&listening)?,
        ..config
    };
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone())?;
    run(http, admin_listener, meta, content, config, shutdown).await
}

/// Cancels `token` on Ctrl-C or SIGTERM; the handlers are installed before this returns.
pub fn cancel_on_signal(token: CancellationToken) -> anyhow::Result<()> {
    let signal = crate::signals::shutdown_signal().context("installing signal handlers")?;
    tokio::spawn(async move {
        signal.await;
        token.cancel();
    });
    Ok(())
}

/// Serves HTTP on `http` and, for a ring, the admin service on `admin`, until `shutdown`.
pub async fn run(
    http: TcpListener,
    admin: Option<TcpListener>,
    meta: MetaStore,
    content: ContentSpec,
    config: WebConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.work_dir)
        .with_context(|| format!("creating {}", config.work_dir.display()))?;
    // Owns every background worker of this web node (DESIGN §9: one shape for all).
    let runner = Arc::new(Runner::default());
    let metrics = WebMetrics::new(meta.kind(), config.cache_bytes);
    let admin_token = match &content {
        ContentSpec::Ring { admin_token, .. } => admin_token.clone(),
        ContentSpec::Local(_) => None,
    };
    // Without a credential only on loopback and without certificates (DESIGN.md §6c).
    let loopback_only = http.local_addr()?.ip().is_loopback()
        && match &admin {
            Some(listener) => listener.local_addr()?.ip().is_loopback(),
            None => true,
        };
    let credential = Arc::new(AdminCredential::new(
        admin_token.clone(),
        loopback_only && config.cluster_tls.is_none(),
    ));
    let (content, admin_server) = match content {
        ContentSpec::Local(dir) => {
            let store = Store::open(&dir)
                .await
                .with_context(|| format!("opening {}", dir.display()))?;
            (Content::Local(Arc::new(store)), None)
        }
        ContentSpec::Ring {
            seed_nodes,
            spares,
            virtual_nodes,
            replicas,
            admin_token: _,
        } => {
            let seed = Seed {
                nodes: &seed_nodes,
                spares: &spares,
                virtual_nodes,
                replicas,
                repair_every: config.repair_every,
                resync_poll: config.resync_poll,
                move_mbps: config.move_mbps,
                tls: config.cluster_tls.clone(),
                range_keys: config.range_keys,
            };
            let plane = ControlPlane::start(meta.clone(), seed, runner.clone()).await?;
            let listener = admin.context("the ring needs an admin address")?;
            tracing::info!(address = %listener.local_addr()?, "admin service listening");
            metrics.watch_ring(ring_facts(plane.cluster.clone()));
            metrics.watch_migration(plane.migrator.watch());
            metrics.watch_repair({
                let runner = plane.migrator.runner().clone();
                Box::new(move || {
                    let status = runner.latest(WorkerKind::Repair)?.status();
                    Some(crate::web::metrics::WorkerProgress {
                        running: !status.state.is_finished(),
                        files_done: status.files_done,
                        files_total: status.files_total,
                        bytes_done: status.bytes_done,
                        bytes_total: status.bytes_total,
                        errors: status.errors,
                    })
                })
            });
            metrics.watch_risk(crate::web::metrics::risk::facts_source(&plane));
            let traffic = {
                let metrics = metrics.clone();
                Arc::new(move || metrics.traffic_stats())
            };
            let server = crate::admin::server(
                crate::admin::AdminService::new(&plane, traffic),
                credential.clone(),
            );
            let content = Content::Ring(plane.cluster.clone());
            (content, Some((listener, server)))
        }
    };
    abandon_stale_uploads(&meta, &content).await;
    crate::library::deletes::start(&runner, meta.clone(), content.clone()).await;
    let cache = serve::new_cache(config.cache_bytes, &metrics.cache);
    metrics.watch_cache({
        let cache = cache.clone();
        Box::new(move || {
            let cache = cache.clone();
            Box::pin(async move {
                // The sizes lag behind inserts until moka's housekeeping has run.
                cache.run_pending_tasks().await;
                (cache.weighted_size(), cache.entry_count())
            })
        })
    });
    let cluster_tls = config.cluster_tls.clone();
    let state = Arc::new(routes::AppState {
        meta,
        content,
        cache,
        versions: serve::new_version_cache(),
        uploads: progress::Uploads::default(),
        tus: tus::Partials::default(),
        admin_token,
        credential,
        upload_slots: hardening::UploadSlots::new(config.uploads_per_client),
        config,
        metrics,
        runner: runner.clone(),
    });
    tracing::info!(address = %http.local_addr()?, "web node listening");
    let viewer_tls = state.config.viewer_tls.clone();
    let app = routes::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let stop = shutdown.clone().cancelled_owned();
    let http_server: std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> =
        match viewer_tls {
            // Nagle off, as for the storage nodes: a response must not wait for a delayed ACK.
            None => {
                let http = http.tap_io(|stream| {
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "cannot turn off Nagle's algorithm on a connection");
                    }
                });
                Box::pin(async move { axum::serve(http, app).with_graceful_shutdown(stop).await })
            }
            Some(config) => {
                // The tap (a no-op) gives the listener the connection's address.
                let https = https::TlsListener::new(http, config).tap_io(|_| {});
                Box::pin(async move { axum::serve(https, app).with_graceful_shutdown(stop).await })
            }
        };
    match admin_server {
        None => http_server.await?,
        Some((listener, server)) => {
            let router = tonic::transport::Server::builder().add_service(server);
            let stop = shutdown.clone().cancelled_owned();
            let admin_future: std::pin::Pin<
                Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>,
            > = match &cluster_tls {
                // The handshake is done here rather than by tonic, so that the handshakes
                // it refuses are logged.
                Some(tls) => Box::pin(router.serve_with_incoming_shutdown(
                    crate::trust::accept::tls_incoming(
                        listener,
                        tls.rustls_server(),
                        "admin service",
                    ),
                    stop,
                )),
                None => Box::pin(router.serve_with_incoming_shutdown(
                    crate::node::server::no_delay_incoming(listener),
                    stop,
                )),
            };
            let (http_result, admin_result) = tokio::join!(http_server, admin_future);
            http_result?;
            admin_result?;
        }
    }
    if !runner.shutdown(DRAIN_DEADLINE).await {
        tracing::warn!("workers still busy at the drain deadline; journaled work resumes on start");
    }
    Ok(())
}

/// How long an upload may stay in processing before another web node on the same etcd
/// cluster treats it as abandoned.
const STALE_CLAIM: chrono::TimeDelta = chrono::TimeDelta::hours(6);

/// Removes the claims (and any files) of uploads that a crashed web node left in
/// processing, so their ids can be uploaded again. On SQLite this node is the only writer,
/// so every processing claim is abandoned; on etcd another web node may still be working,
/// so only old claims are.
async fn abandon_stale_uploads(meta: &MetaStore, content: &Content) {
    let videos = match meta.list_videos().await {
        Ok(listing) if !listing.stale => listing.value,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(error = %e, "cannot look for abandoned uploads");
            return;
        }
    };
    let cutoff = chrono::Utc::now() - STALE_CLAIM;
    let abandoned: Vec<String> = videos
        .into_iter()
        .filter(|v| v.status.in_upload())
        .filter(|v| matches!(meta, MetaStore::Sqlite(_)) || v.uploaded_at < cutoff)
        .map(|v| v.id)
        .collect();
    for id in abandoned {
        match content.delete_video_files(&id).await {
            Ok(files) => {
                if let Err(e) = meta.remove_video(&id).await {
                    tracing::warn!(%id, error = %e, "cannot remove an abandoned upload");
                } else {
                    tracing::info!(%id, files, "removed an upload abandoned by a crash");
                }
            }
            Err(e) => tracing::warn!(%id, error = %e, "cannot remove an abandoned upload's files"),
        }
    }
}

/// The ring's size, R and V for the metrics, read from the cluster state when scraped.
fn ring_facts(cluster: Arc<Cluster>) -> RingFactsSource {
    Box::new(move || {
        let cluster = cluster.clone();
        Box::pin(async move {
            // A snapshot: a scrape never waits for a ring change.
            let state = cluster.snapshot();
            RingFacts {
                nodes: state.ring.nodes().count() as u64,
                spares: state.spares.len() as u64,
                replicas: state.ring.replicas(),
                virtual_nodes: state.ring.virtual_nodes(),
            }
        })
    })
}
