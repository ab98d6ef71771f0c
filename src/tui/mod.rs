//! The operator console: `tritontube tui ADMIN [--etcd EP1,…] [--token TOKEN]`.
//!
//! - [`app`]: the state and `update(state, action)`, pure (the Elm pattern).
//! - [`view`]: `view(&state, frame)`, draws and changes nothing.
//! - [`filter`]: `/` narrows the node list or the video list.
//! - [`health`]: the storage's health and the repair started from the console.
//! - [`risk`]: the data-at-risk panel (in the etcd panel's room without etcd).
//! - [`keys`]: the one key table, for handling keys and drawing the help.
//! - [`traffic`]: the web node's request rate, bytes/s and cache hit ratio, as sparklines.
//! - [`sources`]: background tasks polling the admin service and etcd, and running changes.
//! - [`videos`]: the videos view (list, delete).
//!
//! This module owns the terminal: raw mode and the alternate screen on start, and their
//! restoration on exit, on error and on panic.

pub mod app;
pub mod filter;
pub mod health;
pub mod keys;
pub mod pace;
pub mod read_only;
pub mod risk;
pub mod sources;
pub mod traffic;
pub mod videos;
pub mod view;

use std::io::{self, Stdout};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use crossterm::event::{Event, EventStream};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::sync::mpsc;

use app::{Action, State, update};
use sources::{Config, Sources};

#[derive(clap::Args, Debug)]
pub struct TuiArgs {
    /// Admin service of the web node, host:port.
    #[arg(env = "TRITONTUBE_ADMIN")]
    pub admin: String,
    /// etcd endpoints to watch, comma-separated (host:port).
    #[arg(long, env = "TRITONTUBE_ETCD", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// Token the admin service requires, if it requires one.
    #[arg(long, env = "TRITONTUBE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Folder of the cluster's certificates: the admin service and the --etcd endpoints
    /// are called over mutual TLS with the operator's certificate (client.USER.crt).
    #[arg(long, env = "TRITONTUBE_CERTS_DIR")]
    pub certs_dir: Option<PathBuf>,
    /// The operator whose certificate is shown (with --certs-dir).
    #[arg(long, env = "TRITONTUBE_USER", default_value = crate::trust::tls::DEFAULT_CLIENT)]
    pub user: String,
    /// Log file: the console draws on the terminal, so its logs go here.
    #[arg(long, env = "TRITONTUBE_CONSOLE_LOG", default_value_os_t = default_log_file())]
    pub log_file: PathBuf,
    /// Show everything, change nothing: every action key is refused, saying why.
    #[arg(long)]
    pub read_only: bool,
}

fn default_log_file() -> PathBuf {
    std::env::temp_dir().join("tritontube-console.log")
}

pub async fn run_cli(args: TuiArgs) -> anyhow::Result<()> {
    let _log = crate::telemetry::init_file(&args.log_file)
        .with_context(|| format!("opening the log file {}", args.log_file.display()))?;
    let etcd: Vec<String> = args
        .etcd
        .iter()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    let config = Config {
        admin: args.admin.clone(),
        token: args.token.clone(),
        tls: match &args.certs_dir {
            Some(dir) => Some(crate::trust::tls::ClusterTls::client(dir, &args.user)?),
            None => None,
        },
        etcd: etcd.clone(),
    };
    // Without certificates a TLS admin service shows only as raw HTTP/2 errors in the
    // panels: say what it wants before the screen is taken.
    if config.tls.is_none() && crate::trust::probe::speaks_tls(&args.admin).await {
        return Err(crate::trust::probe::wants_tls_error(
            "admin service",
            &args.admin,
        ));
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let sources = Sources::start(&config, tx.clone())?;
    tracing::info!(admin = %args.admin, etcd = ?etcd, "console started");

    let mut terminal = enter_terminal().context("setting up the terminal")?;
    let result = run(
        &mut terminal,
        State::new(&args.admin, &etcd).read_only(args.read_only),
        sources,
        tx,
        rx,
    )
    .await;
    restore_terminal();
    tracing::info!("console stopped");
    result
}

type Term = Terminal<CrosstermBackend<Stdout>>;

/// How long the console waits at exit for its sources to stop.
const SOURCES_DRAIN: Duration = Duration::from_millis(500);

/// Raw mode, alternate screen, hidden cursor; and a panic hook that undoes them first so
/// a panic message lands on a usable terminal.
fn enter_terminal() -> io::Result<Term> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));
    enable_raw_mode()?;
    let mut stdout = io::stdout();
    if let Err(e) = execute!(stdout, EnterAlternateScreen) {
        restore_terminal();
        return Err(e);
    }
    let mut terminal = Terminal::new(CrosstermBackend::new(stdout))?;
    terminal.hide_cursor()?;
    terminal.clear()?;
    Ok(terminal)
}

/// Safe to call more than once (exit after a panic hook already ran it).
fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, crossterm::cursor::Show);
}

async fn run(
    terminal: &mut Term,
    mut state: State,
    mut sources: Sources,
    tx: mpsc::UnboundedSender<Action>,
    mut rx: mpsc::UnboundedReceiver<Action>,
) -> anyhow::Result<()> {
    let mut events = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Keep a sender so the channel stays open even if every source task ends.
    let _tx = tx;
    loop {
        terminal.draw(|frame| view::view(&state, frame))?;
        let action = tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) => keys::action_for(&state.mode, key),
                // A resize only needs the redraw at the top of the loop.
                Some(Ok(_)) => None,
                Some(Err(e)) => return Err(e).context("reading the terminal"),
                None => Some(Action::Quit),
            },
            Some(action) = rx.recv() => Some(action),
            _ = tick.tick() => Some(Action::Tick {
                clock: chrono::Local::now().format("%H:%M:%S").to_string(),
            }),
        };
        let mut pending: Vec<Action> = action.into_iter().collect();
        // Apply everything already queued before drawing again.
        while let Ok(a) = rx.try_recv() {
            pending.push(a);
        }
        for action in pending {
            for command in update(&mut state, action) {
                tracing::debug!(?command, "command");
                sources.run(command);
            }
        }
        if state.quit {
            // Calls in flight (a delete, a ring change's own call) are dropped; the work
            // they started runs on in the web node.
            if !sources.shutdown(SOURCES_DRAIN).await {
                tracing::debug!("console sources still running at exit");
            }
            return Ok(());
        }
    }
}
