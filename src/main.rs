//! The `tritontube` binary: parses the command line, starts tracing, dispatches.

use clap::{CommandFactory, Parser, Subcommand};

/// jemalloc keeps freed memory for reuse in a few arenas (returning it after a while):
/// segments of a few hundred KB are allocated and dropped on every cache miss, which with
/// the system allocator costs fresh pages and page faults each time.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "tritontube", version, about = "A distributed video service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a headless storage node serving DIR.
    Storage(tritontube::node::server::StorageArgs),
    /// Run a web node: METADATA_TYPE METADATA_OPTIONS CONTENT_TYPE CONTENT_OPTIONS.
    Web(tritontube::web::WebArgs),
    /// Add, remove or list storage nodes through a web node's admin service.
    Admin(tritontube::admin_cli::AdminArgs),
    /// Run the whole system locally: SQLite, storage nodes and a web node, in one process.
    Up(tritontube::up::UpArgs),
    /// Open the operator console on a web node's admin service.
    Tui(tritontube::tui::TuiArgs),
    /// Make the cluster's certificates: its CA, a host's, an operator's.
    Cert(tritontube::trust::cli::CertArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = std::env::args_os().collect();
    let cli = Cli::parse_from(tritontube::cli::go_flags::double_dash_long_flags(
        &Cli::command(),
        args,
    ));
    // The console draws on the terminal, so it logs to a file (set up in its run_cli).
    if !matches!(cli.command, Command::Tui(_)) {
        tritontube::telemetry::init_stderr();
    }
    match cli.command {
        Command::Storage(args) => tritontube::node::server::run_cli(args).await,
        Command::Web(args) => tritontube::web::run_cli(args).await,
        Command::Admin(args) => tritontube::admin_cli::run_cli(args).await,
        Command::Up(args) => tritontube::up::run_cli(args).await,
        Command::Tui(args) => tritontube::tui::run_cli(args).await,
        Command::Cert(args) => tritontube::trust::cli::run_cli(args).await,
    }
}
