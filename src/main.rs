//! The `tritontube` binary: parses the command line, starts tracing, dispatches.

use clap::{Parser, Subcommand};

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
    /// Open the operator console on a web node's admin service.
    Tui(tritontube::tui::TuiArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The console draws on the terminal, so it logs to a file (set up in its run_cli).
    if !matches!(cli.command, Command::Tui(_)) {
        tritontube::telemetry::init_stderr();
    }
    match cli.command {
        Command::Storage(args) => tritontube::node::server::run_cli(args).await,
        Command::Tui(args) => tritontube::tui::run_cli(args).await,
    }
}
