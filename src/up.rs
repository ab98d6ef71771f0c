//! `tritontube up`: the whole system on one machine in one process — SQLite metadata,
//! three storage nodes in the ring, one spare node to add from the console, and the web
//! node with its admin service. Ctrl-C stops all of it. Every server serves Prometheus
//! metrics: the web node at `/metrics` on its HTTP port, each storage node on its own port
//! plus [`METRICS_PORT_OFFSET`].

use std::path::PathBuf;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::meta::MetaStore;
use crate::ring::{DEFAULT_REPLICAS, DEFAULT_VIRTUAL_NODES};
use crate::trust::certs;
use crate::trust::tls::{ClusterTls, DEFAULT_CLIENT};
use crate::web::{self, ContentSpec, WebConfig};

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Folder for the metadata, the storage nodes' files and uploads in progress.
    #[arg(long, env = "TRITONTUBE_DATA", default_value = "data")]
    pub data: PathBuf,
    /// Address every server listens on.
    #[arg(long, env = "TRITONTUBE_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// HTTP port of the web node.
    #[arg(long, env = "TRITONTUBE_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Port of the admin service (the console connects here).
    #[arg(long, env = "TRITONTUBE_ADMIN_PORT", default_value_t = 8081)]
    pub admin_port: u16,
    /// Port of the first storage node; the others follow it (0: any free ports).
    #[arg(long, env = "TRITONTUBE_STORAGE_PORT", default_value_t = 8090)]
    pub storage_port: u16,
    /// Storage nodes in the ring; one more is started as a spare.
    #[arg(long, default_value_t = 3)]
    pub nodes: u16,
    /// Copies of each file.
    #[arg(long, env = "TRITONTUBE_REPLICAS", default_value_t = DEFAULT_REPLICAS)]
    pub replicas: u32,
    /// Shared secret the admin service requires.
    #[arg(long, env = "TRITONTUBE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Make the cluster's certificates in DATA/certs (once) and run every internal link
    /// over mutual TLS, as a cluster across machines does.
    #[arg(long)]
    pub secure: bool,
}

/// The certificates of `tritontube up --secure`, made on first use: a CA, one node
/// certificate for every server here, and the operator's (`root`) for the console.
fn local_certs(dir: &std::path::Path, host: &str) -> anyhow::Result<ClusterTls> {
    if !dir.join(certs::CA_CERT).exists() {
        certs::create_ca(dir)?;
    }
    if !dir.join(certs::NODE_CERT).exists() {
        let mut names = vec![host.to_string()];
        for name in ["localhost", "127.0.0.1"] {
            if name != host {
                names.push(name.to_string());
            }
        }
        certs::create_node(dir, &names)?;
    }
    if !dir.join(certs::client_cert_file(DEFAULT_CLIENT)).exists() {
        certs::create_client(dir, DEFAULT_CLIENT)?;
    }
    Ok(ClusterTls::node(dir)?)
}

/// `up` without `--secure` is the zero-configuration loopback cluster only.
fn check_loopback(host: &str) -> anyhow::Result<()> {
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    anyhow::ensure!(
        loopback,
        "refusing to listen on {host} without certificates: pass --secure (or listen on 127.0.0.1)"
    );
    Ok(())
}

/// A storage node on port P serves its metrics on P + this (8090 → 8190).
pub const METRICS_PORT_OFFSET: u16 = 100;

async fn bind(host: &str, port: u16) -> anyhow::Result<TcpListener> {
    TcpListener::bind((host, port))
        .await
        .with_context(|| format!("cannot listen on {host}:{port} (is another Tritontube running?)"))
}

pub async fn run_cli(args: UpArgs) -> anyhow::Result<()> {
    web::transcode::check_tools().await?;
    if !args.secure {
        check_loopback(&args.host)?;
    }
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("cannot create the data folder {}", args.data.display()))?;
    let certs_dir = args.data.join("certs");
    let tls = if args.secure {
        Some(local_certs(&certs_dir, &args.host)?)
    } else {
        None
    };
    let shutdown = CancellationToken::new();
    web::cancel_on_signal(shutdown.clone())?;

    let mut servers = tokio::task::JoinSet::new();
    let mut ring_nodes = Vec::new();
    let mut spare = String::new();
    let mut node_metrics = Vec::new();
    for i in 0..=args.nodes {
        let (port, metrics_port) = match args.storage_port {
            0 => (0, 0),
            first => {
                let port = first
                    .checked_add(i)
                    .context("storage ports run past 65535")?;
                let metrics_port = port
                    .checked_add(METRICS_PORT_OFFSET)
                    .context("storage metrics ports run past 65535")?;
                (port, metrics_port)
            }
        };
        let listener = bind(&args.host, port).await?;
        let metrics_listener = bind(&args.host, metrics_port).await?;
        let address = format!("{}:{}", args.host, listener.local_addr()?.port());
        node_metrics.push(format!(
            "http://{}:{}/metrics",
            args.host,
            metrics_listener.local_addr()?.port()
        ));
        let dir = args.data.join(format!("storage-{i}"));
        let stop = shutdown.clone().cancelled_owned();
        let node_tls = tls.clone();
        servers.spawn(async move {
            crate::node::server::run_secure(
                listener,
                Some(metrics_listener),
                dir,
                crate::node::server::NodeOptions::default(),
                node_tls,
                stop,
            )
            .await
            .context("storage node")
        });
        if i < args.nodes {
            ring_nodes.push(address);
        } else {
            spare = address;
        }
    }

    let http = bind(&args.host, args.port).await?;
    let admin = bind(&args.host, args.admin_port).await?;
    let meta = MetaStore::sqlite(&args.data.join("metadata.db"))
        .await
        .context("opening the metadata database")?;
    let config = WebConfig {
        work_dir: args.data.join("uploads"),
        cluster_tls: tls.clone(),
        ..WebConfig::default()
    };
    let content = ContentSpec::Ring {
        seed_nodes: ring_nodes.clone(),
        spares: vec![spare.clone()],
        virtual_nodes: DEFAULT_VIRTUAL_NODES,
        replicas: args.replicas,
        admin_token: args.admin_token.clone(),
    };
    let web_address = format!("http://{}:{}", args.host, http.local_addr()?.port());
    let admin_address = format!("{}:{}", args.host, admin.local_addr()?.port());
    let stop = shutdown.clone();
    servers.spawn(async move {
        web::run(http, Some(admin), meta, content, config, stop)
            .await
            .context("web node")
    });

    println!("Tritontube is up (Ctrl-C stops it).");
    println!("  web:      {web_address}");
    println!("  admin:    {admin_address}   console: tritontube tui {admin_address}");
    println!(
        "  storage:  {} (ring), {spare} (spare)",
        ring_nodes.join(" ")
    );
    println!("  metrics:  {web_address}/metrics (web)");
    println!("            {} (storage)", node_metrics.join(" "));
    println!("  data:     {}", args.data.display());
    if tls.is_some() {
        println!(
            "  certs:    {}   console: tritontube tui {admin_address} --certs-dir {}",
            certs_dir.display(),
            certs_dir.display()
        );
    }

    // The first server to stop (or fail) stops the rest.
    let mut result = Ok(());
    while let Some(finished) = servers.join_next().await {
        shutdown.cancel();
        if let Ok(Err(e)) = finished {
            if result.is_ok() {
                result = Err(e);
            }
        }
    }
    result
}
