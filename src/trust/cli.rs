//! `tritontube cert …`: prints the paths it wrote, never a key.

use std::path::PathBuf;

use super::certs::{self, Created};

#[derive(clap::Args, Debug)]
pub struct CertArgs {
    #[command(subcommand)]
    pub command: CertCommand,
    /// Folder of the cluster's certificates (made if missing).
    #[arg(long, global = true, env = "TRITONTUBE_CERTS_DIR")]
    pub certs_dir: Option<PathBuf>,
}

#[derive(clap::Subcommand, Debug)]
pub enum CertCommand {
    /// Make the cluster CA (ca.crt, ca.key). Keep ca.key off the servers once done.
    CreateCa {
        /// A name for the cluster, shown in the CA's subject beside an id of its key
        /// (every CA's subject differs even without it).
        #[arg(long)]
        name: Option<String>,
    },
    /// Make this host's certificate (node.crt, node.key) for every name and IP it is reached by.
    CreateNode {
        #[arg(required = true)]
        hosts: Vec<String>,
    },
    /// Make an operator's certificate (client.NAME.crt, client.NAME.key).
    CreateClient { name: String },
}

pub async fn run_cli(args: CertArgs) -> anyhow::Result<()> {
    let Some(dir) = args.certs_dir else {
        anyhow::bail!("pass --certs-dir DIR (or set TRITONTUBE_CERTS_DIR)");
    };
    let created: Created = match &args.command {
        CertCommand::CreateCa { name } => certs::create_named_ca(&dir, name.as_deref())?,
        CertCommand::CreateNode { hosts } => certs::create_node(&dir, hosts)?,
        CertCommand::CreateClient { name } => certs::create_client(&dir, name)?,
    };
    println!("wrote {}", created.cert.display());
    println!("wrote {}", created.key.display());
    Ok(())
}
