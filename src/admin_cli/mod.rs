//! `tritontube admin add|remove|zone|list|status|cancel|repair|delete|pace|pause|resume ADMIN …`: the scriptable admin client.
//! `add`, `remove` and `list` print what the original Tritontube's admin CLI printed (on
//! stdout) and exit non-zero on any error; progress goes to stderr.
//!
//! - [`progress`]: a change followed live: a bar on a terminal, plain lines otherwise.
//! - [`pace`]: `admin pace`, `admin pause` and `admin resume`.
//! - [`repair`]: `admin repair` and the storage health of `admin status`.
//! - [`output`]: stdout, with a closed pipe ending the CLI quietly.

#[macro_use]
pub mod output;
pub mod pace;
pub mod progress;
pub mod repair;

use std::time::Duration;

use anyhow::Context;

use crate::admin::wire::{
    AddNodeRequest, CancelChangeRequest, ChangeKind, ClusterHealthRequest, ClusterStatusRequest,
    ListNodesRequest, ListWorkersRequest, RemoveNodeRequest, StartChangeRequest,
};
pub use crate::admin::{AdminClient, connect as connect_client, connect_tls};
use crate::trust::tls::{ClusterTls, DEFAULT_CLIENT};

#[derive(clap::Args, Debug)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub command: AdminCommand,
    /// Shared secret of the admin service, when it has one.
    #[arg(
        long,
        global = true,
        env = "TRITONTUBE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Folder of the cluster's certificates: the admin service is called over mutual TLS
    /// with the operator's certificate (client.USER.crt).
    #[arg(long, global = true, env = "TRITONTUBE_CERTS_DIR")]
    pub certs_dir: Option<std::path::PathBuf>,
    /// The operator whose certificate is shown (with --certs-dir).
    #[arg(long, global = true, env = "TRITONTUBE_USER", default_value = DEFAULT_CLIENT)]
    pub user: String,
}

/// How this command reaches the admin service: the token and the operator's certificate.
pub struct Caller {
    pub token: Option<String>,
    pub tls: Option<ClusterTls>,
}

impl Caller {
    pub fn from_args(args: &AdminArgs) -> anyhow::Result<Caller> {
        let tls = match &args.certs_dir {
            Some(dir) => Some(ClusterTls::client(dir, &args.user)?),
            None => None,
        };
        Ok(Caller {
            token: args.token.clone(),
            tls,
        })
    }

    /// Connects lazily to the admin service at `address` (`host:port`).
    pub fn connect(&self, address: &str) -> anyhow::Result<AdminClient> {
        Ok(connect_tls(
            address,
            self.token.as_deref(),
            self.tls.as_ref(),
        )?)
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum AdminCommand {
    /// Add a storage node to the ring and move its files onto it.
    Add {
        admin: String,
        node: String,
        /// Put the node in this zone instead of the one it reports (its --zone).
        #[arg(long)]
        zone: Option<String>,
    },
    /// Move a storage node into another zone (none given: out of any zone) and move the
    /// files the zoned placement wants elsewhere.
    Zone {
        admin: String,
        node: String,
        zone: Option<String>,
    },
    /// Move a storage node's files to the others and drop it from the ring.
    Remove { admin: String, node: String },
    /// List the storage nodes in the ring.
    List { admin: String },
    /// Show the background work of a web node: ring changes running or finished.
    Status { admin: String },
    /// Cancel the running ring change: every file goes back to the ring as it was.
    Cancel { admin: String },
    /// Delete a video and every file of it on every node.
    Delete { admin: String, id: String },
    /// Set the pace of ring changes and repairs in MB/s (0: unlimited), live; kept in the
    /// journal, so a restarted web node keeps it.
    Pace { admin: String, mbps: u64 },
    /// Pause the copying of ring changes and repairs (the work stays journaled).
    Pause { admin: String },
    /// Resume the copying paused by `admin pause`.
    Resume { admin: String },
    /// Restore missing copies, move misplaced ones, delete orphans; prints the plan first.
    Repair {
        admin: String,
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Have every node read and check every copy first (reads all the data once).
        #[arg(long)]
        verify: bool,
    },
}

/// Connects lazily to the admin service at `address` (`host:port`).
pub fn connect(address: &str, token: Option<&str>) -> anyhow::Result<AdminClient> {
    Ok(connect_client(address, token)?)
}

pub(crate) fn describe(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", s.message(), s.code())
}

pub async fn run_cli(args: AdminArgs) -> anyhow::Result<()> {
    let caller = Caller::from_args(&args)?;
    let address = args.command.admin().to_string();
    let result = run_command(args.command, &caller).await;
    if let Err(error) = &result
        && error.is::<output::StdoutClosed>()
    {
        std::process::exit(output::BROKEN_PIPE_STATUS);
    }
    match (result, &caller.tls) {
        // Without certificates, a TLS admin service refuses the connection with a raw
        // HTTP/2 error: say what it wants instead.
        (Err(_), None) if crate::trust::probe::speaks_tls(&address).await => Err(
            crate::trust::probe::wants_tls_error("admin service", &address),
        ),
        // A certificate refused at the handshake shows as "transport error" or "operation
        // was canceled": say which side refused which certificate.
        (Err(error), Some(tls)) => {
            match crate::trust::handshake::check(&address, &tls.rustls_client()).await {
                Some(refusal) => Err(anyhow::anyhow!(refusal.explain(
                    "admin service",
                    &address,
                    tls.dir(),
                    tls.cert_path(),
                    &format!("tritontube cert create-client {}", args.user),
                ))),
                None => Err(error),
            }
        }
        (result, _) => result,
    }
}

impl AdminCommand {
    /// The admin service's address the command calls.
    pub fn admin(&self) -> &str {
        match self {
            AdminCommand::Add { admin, .. }
            | AdminCommand::Remove { admin, .. }
            | AdminCommand::Zone { admin, .. }
            | AdminCommand::List { admin }
            | AdminCommand::Status { admin }
            | AdminCommand::Cancel { admin }
            | AdminCommand::Delete { admin, .. }
            | AdminCommand::Pace { admin, .. }
            | AdminCommand::Pause { admin }
            | AdminCommand::Resume { admin }
            | AdminCommand::Repair { admin, .. } => admin,
        }
    }
}

async fn run_command(command: AdminCommand, caller: &Caller) -> anyhow::Result<()> {
    match command {
        AdminCommand::Add { admin, node, zone } => {
            let moved = change(&admin, caller, ChangeKind::Add, &node, zone.as_deref()).await?;
            outln!("Successfully added node: {node}")?;
            outln!("Number of files migrated: {moved}")?;
        }
        AdminCommand::Remove { admin, node } => {
            let moved = change(&admin, caller, ChangeKind::Remove, &node, None).await?;
            outln!("Successfully removed node: {node}")?;
            outln!("Number of files migrated: {moved}")?;
        }
        AdminCommand::Zone { admin, node, zone } => {
            let moved = change(&admin, caller, ChangeKind::Zone, &node, zone.as_deref()).await?;
            match &zone {
                Some(zone) => outln!("Node {node} is now in zone {zone}")?,
                None => outln!("Node {node} is now in no zone")?,
            }
            outln!("Number of files migrated: {moved}")?;
        }
        AdminCommand::List { admin } => {
            let mut client = caller.connect(&admin)?;
            let mut request = tonic::Request::new(ListNodesRequest {});
            request.set_timeout(Duration::from_secs(10));
            let reply = client
                .list_nodes(request)
                .await
                .map_err(describe)?
                .into_inner();
            outln!("Nodes in cluster:")?;
            for node in reply.nodes {
                outln!("{node}")?;
            }
        }
        AdminCommand::Status { admin } => {
            let mut client = caller.connect(&admin)?;
            let reply = client
                .list_workers(ListWorkersRequest {})
                .await
                .map_err(describe)?
                .into_inner();
            out!("{}", progress::status_report(&reply))?;
            let health = client
                .cluster_health(ClusterHealthRequest {})
                .await
                .map_err(describe)?
                .into_inner();
            out!("{}", repair::health_report(&health))?;
            let status = client
                .cluster_status(crate::admin::wire::ClusterStatusRequest {})
                .await
                .map_err(describe)?
                .into_inner();
            if let Some(pace) = &status.pace {
                outln!("{}", pace::describe_pace(pace))?;
            }
        }
        AdminCommand::Pace { admin, mbps } => {
            pace::run(&mut caller.connect(&admin)?, pace::PaceChange::Set(mbps)).await?;
        }
        AdminCommand::Pause { admin } => {
            pace::run(&mut caller.connect(&admin)?, pace::PaceChange::Pause).await?;
        }
        AdminCommand::Resume { admin } => {
            pace::run(&mut caller.connect(&admin)?, pace::PaceChange::Resume).await?;
        }
        AdminCommand::Delete { admin, id } => {
            let mut client = caller.connect(&admin)?;
            let reply = client
                .delete_video(crate::admin::wire::DeleteVideoRequest { id: id.clone() })
                .await
                .map_err(describe)?
                .into_inner();
            outln!("Successfully deleted video: {id}")?;
            outln!("Number of files deleted: {}", reply.deleted_files)?;
        }
        AdminCommand::Repair {
            admin,
            dry_run,
            verify,
        } => {
            let mut client = caller.connect(&admin)?;
            repair::run(&mut client, &admin, dry_run, verify).await?;
        }
        AdminCommand::Cancel { admin } => {
            let mut client = caller.connect(&admin)?;
            let reply = client
                .cancel_change(CancelChangeRequest {})
                .await
                .map_err(describe)?
                .into_inner();
            outln!(
                "{}: every file goes back where it was; follow it with `tritontube admin status {admin}`",
                reply.description
            )?;
        }
    }
    Ok(())
}

/// Listens for Ctrl-C from now on. Made before the work starts, so a Ctrl-C that comes as
/// soon as the first progress line shows is never taken by the default action (`ctrl_c()`
/// would install its handler only when first polled).
pub(super) fn interrupt_listener() -> anyhow::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("listening for Ctrl-C")
}

/// Starts a ring change and follows it to its end; returns the files moved. Ctrl-C stops
/// only the following: the change goes on in the web node.
async fn change(
    admin: &str,
    caller: &Caller,
    kind: ChangeKind,
    node: &str,
    zone: Option<&str>,
) -> anyhow::Result<u64> {
    if let Some(zone) = zone {
        crate::ring::check_zone_name(zone)
            .map_err(|why| anyhow::anyhow!("zone {zone:?}: {why}"))?;
    }
    let mut client = caller.connect(admin)?;
    let mut interrupted = interrupt_listener()?;
    let started = client
        .start_change(StartChangeRequest {
            kind: kind as i32,
            node_address: node.to_string(),
            zone: zone.unwrap_or_default().to_string(),
        })
        .await;
    let change_id = match started {
        Ok(reply) => reply.into_inner().change_id,
        // A web node of the original system: only the blocking RPCs.
        Err(status) if status.code() == tonic::Code::Unimplemented && zone.is_none() => {
            return blocking_change(&mut client, kind, node).await;
        }
        Err(status) => return Err(describe(status)),
    };
    let follow = progress::follow(&mut client, &change_id);
    let moved = tokio::select! {
        outcome = follow => outcome,
        _ = interrupted.recv() => {
            eprintln!(
                "\nStopped following. The change goes on in the web node: follow it with \
                 `tritontube admin status {admin}`, or roll it back with `tritontube admin cancel {admin}`."
            );
            std::process::exit(130);
        }
    }
    .context("the ring change did not finish")?;
    // A cancel rolls the change back under the same journal id, so the followed change
    // also "finishes" then: only the ring tells whether it took effect.
    let wanted = crate::node::address::validate_address(node).unwrap_or_else(|_| node.to_string());
    let took_effect = if kind == ChangeKind::Zone {
        let status = client
            .cluster_status(ClusterStatusRequest {})
            .await
            .map_err(describe)?
            .into_inner();
        status
            .nodes
            .iter()
            .any(|n| n.address == wanted && n.zone == zone.unwrap_or_default())
    } else {
        let ring = client
            .list_nodes(ListNodesRequest {})
            .await
            .map_err(describe)?
            .into_inner()
            .nodes;
        ring.contains(&wanted) == (kind == ChangeKind::Add)
    };
    if !took_effect {
        anyhow::bail!(
            "the change was cancelled: every file went back and the ring is as it was ({} moved back)",
            moved
        );
    }
    Ok(moved)
}

async fn blocking_change(
    client: &mut AdminClient,
    kind: ChangeKind,
    node: &str,
) -> anyhow::Result<u64> {
    let moved = match kind {
        ChangeKind::Add => {
            client
                .add_node(AddNodeRequest {
                    node_address: node.to_string(),
                })
                .await
                .map_err(describe)?
                .into_inner()
                .migrated_file_count
        }
        ChangeKind::Remove => {
            client
                .remove_node(RemoveNodeRequest {
                    node_address: node.to_string(),
                })
                .await
                .map_err(describe)?
                .into_inner()
                .migrated_file_count
        }
        ChangeKind::Zone => anyhow::bail!("this web node does not know zones"),
    };
    Ok(u64::try_from(moved).unwrap_or(0))
}
