//! `tritontube admin add|remove|list ADMIN …`: the scriptable admin client. Prints what the
//! original Tritontube's admin CLI printed and exits non-zero on any error.

use std::time::Duration;

use anyhow::Context;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::node::client::endpoint;
use crate::proto::admin::video_content_admin_service_client::VideoContentAdminServiceClient;
use crate::proto::admin::{AddNodeRequest, ListNodesRequest, RemoveNodeRequest};
use crate::web::admin::TOKEN_METADATA;

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
}

#[derive(clap::Subcommand, Debug)]
pub enum AdminCommand {
    /// Add a storage node to the ring and move its files onto it.
    Add { admin: String, node: String },
    /// Move a storage node's files to the others and drop it from the ring.
    Remove { admin: String, node: String },
    /// List the storage nodes in the ring.
    List { admin: String },
    /// Delete a video and every file of it on every node.
    Delete { admin: String, id: String },
}

/// An admin client that sends `token` with every call.
pub type AdminClient = VideoContentAdminServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, TokenInterceptor>,
>;

#[derive(Clone)]
pub struct TokenInterceptor(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for TokenInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert(TOKEN_METADATA, token.clone());
        }
        Ok(request)
    }
}

/// Connects lazily to the admin service at `address` (`host:port`).
pub fn connect(address: &str, token: Option<&str>) -> anyhow::Result<AdminClient> {
    let token = token
        .map(|t| t.parse().context("the admin token must be printable ASCII"))
        .transpose()?;
    let channel = endpoint(address)?.connect_lazy();
    Ok(VideoContentAdminServiceClient::with_interceptor(
        channel,
        TokenInterceptor(token),
    ))
}

pub async fn run_cli(args: AdminArgs) -> anyhow::Result<()> {
    let token = args.token.as_deref();
    // A ring change can take a while: AddNode/RemoveNode return once files are moved.
    let describe = |s: tonic::Status| anyhow::anyhow!("{} ({:?})", s.message(), s.code());
    match args.command {
        AdminCommand::Add { admin, node } => {
            let mut client = connect(&admin, token)?;
            let reply = client
                .add_node(AddNodeRequest {
                    node_address: node.clone(),
                })
                .await
                .map_err(describe)?
                .into_inner();
            println!("Successfully added node: {node}");
            println!("Number of files migrated: {}", reply.migrated_file_count);
        }
        AdminCommand::Remove { admin, node } => {
            let mut client = connect(&admin, token)?;
            let reply = client
                .remove_node(RemoveNodeRequest {
                    node_address: node.clone(),
                })
                .await
                .map_err(describe)?
                .into_inner();
            println!("Successfully removed node: {node}");
            println!("Number of files migrated: {}", reply.migrated_file_count);
        }
        AdminCommand::List { admin } => {
            let mut client = connect(&admin, token)?;
            let mut request = tonic::Request::new(ListNodesRequest {});
            request.set_timeout(Duration::from_secs(10));
            let reply = client
                .list_nodes(request)
                .await
                .map_err(describe)?
                .into_inner();
            println!("Nodes in cluster:");
            for node in reply.nodes {
                println!("{node}");
            }
        }
        AdminCommand::Delete { admin, id } => delete_video(&admin, token, &id).await?,
    }
    Ok(())
}

/// `tritontube admin delete ADMIN ID`.
async fn delete_video(admin: &str, token: Option<&str>, id: &str) -> anyhow::Result<()> {
    let mut client = connect(admin, token)?;
    let reply = client
        .delete_video(crate::proto::admin::DeleteVideoRequest { id: id.to_string() })
        .await
        .map_err(|s| anyhow::anyhow!("{} ({:?})", s.message(), s.code()))?
        .into_inner();
    println!("Successfully deleted video: {id}");
    println!("Number of files deleted: {}", reply.deleted_files);
    Ok(())
}
