//! The console's state and `update(state, action)`: pure, no I/O (the Elm pattern).
//!
//! Everything the console knows arrives as an [`Action`] — a key press already mapped by
//! [`super::keys`], or a result from [`super::sources`] — and `update` answers with the
//! [`Command`]s the runtime should start. Tests drive it with plain values.

use std::collections::{BTreeMap, VecDeque};

/// Lines kept in the event log; older ones are dropped.
pub const LOG_CAPACITY: usize = 500;

/// Seconds without a successful ClusterStatus after which the data is called stale even
/// before a poll fails (the poll itself times out sooner).
pub const STALE_AFTER_TICKS: u64 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Add,
    Remove,
    /// A node moved into another zone (started with `tritontube admin zone`).
    Zone,
}

impl ChangeKind {
    pub fn verb(self) -> &'static str {
        match self {
            ChangeKind::Add => "add",
            ChangeKind::Remove => "remove",
            ChangeKind::Zone => "zone",
        }
    }
}

/// A refused or failed admin call: the gRPC status name and its message, as the operator
/// should read them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// gRPC status name (`UNAVAILABLE`, `ALREADY_EXISTS`, …).
    pub code: String,
    pub message: String,
}

impl Failure {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Failure {
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn is_unauthenticated(&self) -> bool {
        self.code == "UNAUTHENTICATED"
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} ({})", self.message, self.code)
        }
    }
}

/// One storage node as the admin service reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeInfo {
    pub address: String,
    pub in_ring: bool,
    pub healthy: bool,
    pub latency_us: u64,
    pub files: u64,
    pub bytes: u64,
    /// Fraction of the ring owned as first replica, 0..1.
    pub share: f64,
    /// Why the node is unhealthy; empty when healthy.
    pub error: String,
    /// The node's zone in the ring; empty for none.
    pub zone: String,
}

/// A ClusterStatus answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterInfo {
    pub nodes: Vec<NodeInfo>,
    /// (position, node address), as the ring places them.
    pub tokens: Vec<(u64, String)>,
    pub virtual_nodes: u32,
    pub replicas: u32,
    pub migration: Option<MigrationInfo>,
    /// The pace of ring changes and repairs (None from a web node without it).
    pub pace: Option<super::pace::PaceInfo>,
}

/// A migration's progress.
#[derive(Clone, Debug, PartialEq)]
pub struct MigrationInfo {
    pub id: String,
    pub kind: ChangeKind,
    pub node: String,
    pub files_total: u64,
    pub files_done: u64,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub bytes_per_second: f64,
    pub current_key: String,
    pub errors: u64,
    pub last_error: String,
    pub finished: bool,
    /// The service's events since the start, oldest first (bounded by the service).
    pub events: Vec<String>,
    /// The arcs of the ring the change works through (0 from a web node without arcs),
    /// those done, and the one being worked on (from 1). With several, the totals of files
    /// and bytes count only the arcs listed so far.
    pub arcs_total: u64,
    pub arcs_done: u64,
    pub arc_now: u64,
}

impl MigrationInfo {
    /// "arc 3/20" while a change works through several arcs.
    pub fn arc_label(&self) -> Option<String> {
        if self.arcs_total <= 1 {
            return None;
        }
        let now = if self.finished {
            self.arcs_done
        } else {
            self.arc_now.max(1)
        };
        Some(format!("arc {now}/{}", self.arcs_total))
    }

    /// Fraction of the arcs done, while several are worked through one after another.
    fn arcs_ratio(&self) -> Option<f64> {
        (self.arcs_total > 1 && !self.finished)
            .then(|| (self.arcs_done as f64 / self.arcs_total as f64).clamp(0.0, 1.0))
    }

    /// Fraction done, by arcs when there are several, else by bytes when there are bytes
    /// to move, else by files; 1 when there is nothing to move or it finished.
    pub fn ratio(&self) -> f64 {
        if let Some(r) = self.arcs_ratio() {
            return r;
        }
        let r = if self.bytes_total > 0 {
            self.bytes_done as f64 / self.bytes_total as f64
        } else if self.files_total > 0 {
            self.files_done as f64 / self.files_total as f64
        } else {
            1.0
        };
        if self.finished && self.errors == 0 {
            1.0
        } else {
            r.clamp(0.0, 1.0)
        }
    }

    pub fn files_ratio(&self) -> f64 {
        if let Some(r) = self.arcs_ratio() {
            return r;
        }
        if self.files_total == 0 {
            return if self.finished { 1.0 } else { 0.0 };
        }
        (self.files_done as f64 / self.files_total as f64).clamp(0.0, 1.0)
    }

    /// Seconds left at the current rate; None when unknown or finished (or when only the
    /// arcs listed so far are known).
    pub fn eta_seconds(&self) -> Option<u64> {
        if self.finished || self.bytes_per_second <= 0.0 || self.arcs_total > 1 {
            return None;
        }
        let left = self.bytes_total.saturating_sub(self.bytes_done) as f64;
        Some((left / self.bytes_per_second).ceil() as u64)
    }
}

/// One member's reply to a status probe.
#[derive(Clone, Debug, PartialEq)]
pub struct EtcdStatus {
    pub member_id: u64,
    /// 0 when the member knows no leader (it lost quorum).
    pub leader_id: u64,
    pub raft_term: u64,
    pub raft_index: u64,
    pub db_size: u64,
    pub latency_us: u64,
    /// The cluster's members as this one lists them: id, name, client URLs.
    pub members: Vec<EtcdMemberName>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdMemberName {
    pub id: u64,
    pub name: String,
    pub client_urls: Vec<String>,
}

/// The result of probing one configured endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct EtcdProbe {
    pub endpoint: String,
    pub result: Result<EtcdStatus, String>,
}

/// A row of the etcd table: the last probe of one endpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EtcdRow {
    pub endpoint: String,
    /// Member id, remembered from the last successful probe so a dead member keeps its name.
    pub member_id: Option<u64>,
    /// None until the first probe answers.
    pub probed: bool,
    pub status: Option<EtcdStatus>,
    pub error: Option<String>,
}

impl EtcdRow {
    /// Its last probe got an answer.
    pub fn answering(&self) -> bool {
        self.error.is_none() && self.status.is_some()
    }

    /// Answering and part of a cluster with a leader.
    pub fn healthy(&self) -> bool {
        self.answering() && self.status.as_ref().is_some_and(|s| s.leader_id != 0)
    }
}

/// Whether the admin service answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminLink {
    /// No answer yet.
    Connecting,
    Up,
    /// The last poll failed (unreachable, timed out, or refused the token).
    Down(Failure),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    Nodes,
    Etcd,
    Log,
}

impl Focus {
    fn next(self, etcd_shown: bool) -> Focus {
        match self {
            Focus::Nodes if etcd_shown => Focus::Etcd,
            Focus::Nodes | Focus::Etcd => Focus::Log,
            Focus::Log => Focus::Nodes,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlanMove {
    pub from: String,
    pub to: String,
    pub files: u64,
    pub bytes: u64,
}

/// What a change would move (PlanChange).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub files: u64,
    pub bytes: u64,
    pub moves: Vec<PlanMove>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum PlanView {
    Loading,
    Ready(Plan),
    Failed(Failure),
}

/// What has the keyboard.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    Normal,
    Help,
    /// The node filter being typed (its text is [`State::node_filter`], applied live).
    FilterNodes,
    /// The add-node prompt: the text typed and why it was refused, if it was.
    AddNode {
        input: String,
        error: Option<String>,
    },
    /// The confirmation before removing `node`, with the plan once it arrives.
    ConfirmRemove {
        node: String,
        plan: PlanView,
        /// The port typed so far: removing asks for it, not for a single key.
        typed: String,
    },
    /// The confirmation before cancelling the running change `change` (e.g. "add h:p").
    ConfirmCancelChange {
        change: String,
    },
    /// The confirmation before a repair, with its plan (lines) once it arrives.
    ConfirmRepair {
        plan: Option<Result<Vec<String>, Failure>>,
    },
    /// The videos view.
    Videos(super::videos::VideosView),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Success,
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Clock of the tick during which it happened (`HH:MM:SS`).
    pub at: String,
    pub level: Level,
    pub text: String,
}

/// Everything that can happen to the console.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    // Keys.
    Quit,
    Up,
    Down,
    FocusNext,
    Refresh,
    ToggleHelp,
    OpenAdd,
    OpenRemove,
    OpenCancelChange,
    OpenRepair,
    FasterPace,
    SlowerPace,
    TogglePause,
    /// `/`: type a filter for the focused list.
    OpenFilter,
    /// Show the data-at-risk panel in the etcd panel's room, or etcd again.
    ToggleRisk,
    Input(char),
    Backspace,
    Submit,
    Confirm,
    Cancel,
    // Time: once a second, with the wall clock as text (kept out of `update`).
    Tick {
        clock: String,
    },
    // Results of the data sources.
    Status(Result<ClusterInfo, Failure>),
    Migration(MigrationInfo),
    Etcd(EtcdProbe),
    Planned {
        node: String,
        result: Result<Plan, Failure>,
    },
    Changed {
        kind: ChangeKind,
        node: String,
        result: Result<u64, Failure>,
    },
    /// The answer to a cancel: what now runs (the roll-back), or why not.
    ChangeCancelled(Result<String, Failure>),
    /// A ClusterHealth answer (failures are left to the status poll to report).
    Health(HealthInfo),
    /// A TrafficStats reading (cumulative counters).
    Traffic(crate::admin::wire::TrafficStatsResponse),
    /// A repair's dry-run plan, as lines.
    RepairPlanned(Result<Vec<String>, Failure>),
    /// The repair's worker id, or why it did not start.
    RepairStarted(Result<u64, Failure>),
    /// The pace in force after a SetPace, PauseMoves or ResumeMoves, or why not.
    PaceSet(Result<super::pace::PaceInfo, Failure>),
    // The videos view.
    OpenVideos,
    VideosListed(Result<super::videos::VideoList, Failure>),
    VideoDeleted {
        id: String,
        result: Result<u64, Failure>,
    },
}

/// Work `update` asks the runtime to start; results come back as actions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Poll ClusterStatus and probe etcd now instead of at the next period.
    Refresh,
    AddNode(String),
    RemoveNode(String),
    PlanRemove(String),
    CancelChange,
    PlanRepair,
    StartRepair,
    ListVideos,
    DeleteVideo(String),
    /// MB/s; 0 = unlimited.
    SetPace(u64),
    PauseMoves,
    ResumeMoves,
}

#[derive(Clone, Debug, PartialEq)]
pub struct State {
    pub admin_address: String,
    /// Configured etcd endpoints, in the order given.
    pub etcd: Vec<EtcdRow>,
    pub admin: AdminLink,
    /// Last ClusterStatus answer, kept (and shown as stale) while the admin is down.
    pub cluster: Option<ClusterInfo>,
    pub migration: Option<MigrationInfo>,
    /// Last ClusterHealth answer.
    pub health: Option<HealthInfo>,
    /// The web node's traffic over the last minute.
    pub traffic: super::traffic::TrafficHistory,
    /// Names of etcd members by id, from the latest member list.
    pub etcd_names: BTreeMap<u64, String>,
    pub mode: Mode,
    pub focus: Focus,
    /// Index of the selected row among the nodes shown (see [`State::visible_nodes`]).
    pub node_selected: usize,
    /// Only nodes whose address contains this are shown (`/`); empty shows all.
    pub node_filter: String,
    /// With etcd configured, the data-at-risk panel is shown in the etcd panel's room.
    pub show_risk: bool,
    pub etcd_selected: usize,
    /// Lines scrolled up from the bottom of the event log.
    pub log_scroll: usize,
    pub log: VecDeque<LogLine>,
    /// The change this console started and is waiting for.
    pub pending: Option<(ChangeKind, String)>,
    /// Latest outcome, shown on the status line.
    pub message: Option<(Level, String)>,
    pub clock: String,
    pub ticks: u64,
    /// Tick of the last successful ClusterStatus.
    pub status_tick: Option<u64>,
    pub quit: bool,
    /// `--read-only`: action keys are refused (see [`super::read_only`]).
    pub read_only: bool,
    /// The repair this console started, reported when it ends even if it ended
    /// between two health polls.
    awaited_repair: Option<u64>,
    /// Last migration event copied into the log, so repeated updates add only new ones.
    seen_event: Option<(String, usize)>,
}

impl State {
    pub fn new(admin_address: impl Into<String>, etcd_endpoints: &[String]) -> Self {
        State {
            admin_address: admin_address.into(),
            etcd: etcd_endpoints
                .iter()
                .map(|e| EtcdRow {
                    endpoint: e.clone(),
                    ..EtcdRow::default()
                })
                .collect(),
            admin: AdminLink::Connecting,
            cluster: None,
            migration: None,
            health: None,
            traffic: Default::default(),
            etcd_names: BTreeMap::new(),
            mode: Mode::Normal,
            focus: Focus::Nodes,
            node_selected: 0,
            node_filter: String::new(),
            show_risk: false,
            etcd_selected: 0,
            log_scroll: 0,
            log: VecDeque::new(),
            pending: None,
            message: None,
            clock: String::new(),
            ticks: 0,
            status_tick: None,
            quit: false,
            read_only: false,
            awaited_repair: None,
            seen_event: None,
        }
    }

    pub fn etcd_configured(&self) -> bool {
        !self.etcd.is_empty()
    }

    pub fn nodes(&self) -> &[NodeInfo] {
        self.cluster.as_ref().map_or(&[], |c| &c.nodes)
    }

    /// The nodes the filter lets through, in the table's order.
    pub fn visible_nodes(&self) -> Vec<&NodeInfo> {
        self.nodes()
            .iter()
            .filter(|n| super::filter::matches(&self.node_filter, &n.address))
            .collect()
    }

    pub fn selected_node(&self) -> Option<&NodeInfo> {
        self.visible_nodes().get(self.node_selected).copied()
    }

    /// The etcd table is on screen (the data-at-risk panel can take its room).
    pub fn etcd_shown(&self) -> bool {
        self.etcd_configured() && !self.show_risk
    }

    /// Seconds since the last good ClusterStatus, when the data shown is old.
    pub fn stale_for(&self) -> Option<u64> {
        let age = self.ticks - self.status_tick?;
        let down = matches!(self.admin, AdminLink::Down(_));
        (down || age >= STALE_AFTER_TICKS).then_some(age)
    }

    pub fn etcd_healthy(&self) -> usize {
        self.etcd.iter().filter(|r| r.healthy()).count()
    }

    /// Members of the etcd cluster: the largest of the configured endpoints and the
    /// member list, so quorum is judged against the real cluster size.
    pub fn etcd_size(&self) -> usize {
        self.etcd.len().max(self.etcd_names.len())
    }

    /// True once every endpoint has been probed and fewer than a majority answer.
    /// Members that answer without a leader do count: that is an election (a second
    /// after the leader dies), not a lost quorum — unless too few answer to elect one.
    pub fn quorum_lost(&self) -> bool {
        if self.etcd.is_empty() || self.etcd.iter().any(|r| !r.probed) {
            return false;
        }
        self.etcd_answering() < self.etcd_size() / 2 + 1
    }

    pub fn etcd_answering(&self) -> usize {
        self.etcd.iter().filter(|r| r.answering()).count()
    }

    /// The leader's member id as the healthy members report it.
    pub fn etcd_leader(&self) -> Option<u64> {
        self.etcd
            .iter()
            .filter(|r| r.healthy())
            .filter_map(|r| r.status.as_ref())
            .max_by_key(|s| s.raft_term)
            .map(|s| s.leader_id)
    }

    pub fn etcd_name(&self, row: &EtcdRow) -> Option<&str> {
        row.member_id
            .and_then(|id| self.etcd_names.get(&id))
            .map(String::as_str)
            .filter(|n| !n.is_empty())
    }

    fn log(&mut self, level: Level, text: impl Into<String>) {
        if self.log.len() == LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(LogLine {
            at: self.clock.clone(),
            level,
            text: text.into(),
        });
    }

    /// `--read-only`: every action key is refused, saying why.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    pub(super) fn say(&mut self, level: Level, text: impl Into<String>) {
        let text = text.into();
        self.log(level, text.clone());
        self.message = Some((level, text));
    }
}

pub use super::health::HealthInfo;
pub use crate::node::address::validate_address;

/// Applies one action; returns the work to start. No I/O.
pub fn update(state: &mut State, action: Action) -> Vec<Command> {
    if state.read_only {
        if let Some(why) = super::read_only::refusal(&action) {
            state.message = Some((Level::Error, why));
            return vec![];
        }
    }
    match action {
        Action::Quit => {
            state.quit = true;
            vec![]
        }
        Action::Tick { clock } => {
            state.clock = clock;
            state.ticks += 1;
            vec![]
        }
        Action::Status(result) => on_status(state, result),
        Action::Migration(m) => {
            apply_migration(state, m);
            vec![]
        }
        Action::Etcd(probe) => {
            on_etcd(state, probe);
            vec![]
        }
        Action::Planned { node, result } => {
            if let Mode::ConfirmRemove { node: n, plan, .. } = &mut state.mode {
                // A plan for a popup since closed or reopened on another node is dropped.
                if *n == node {
                    *plan = match result {
                        Ok(p) => PlanView::Ready(p),
                        Err(f) => PlanView::Failed(f),
                    };
                }
            }
            vec![]
        }
        Action::Changed { kind, node, result } => {
            if state.pending.as_ref().is_some_and(|(_, n)| *n == node) {
                state.pending = None;
            }
            match result {
                Ok(count) => {
                    let done = match kind {
                        ChangeKind::Add => "added",
                        ChangeKind::Remove => "removed",
                        ChangeKind::Zone => "moved to its zone",
                    };
                    state.say(
                        Level::Success,
                        format!("{done} {node}: {count} files migrated"),
                    );
                }
                Err(f) => state.say(Level::Error, format!("{} {node} refused: {f}", kind.verb())),
            }
            vec![Command::Refresh]
        }
        Action::Health(health) => {
            on_health(state, health);
            vec![]
        }
        Action::Traffic(reading) => {
            state.traffic.record(reading);
            vec![]
        }
        Action::RepairPlanned(result) => {
            if let Mode::ConfirmRepair { plan } = &mut state.mode {
                *plan = Some(result);
            }
            vec![]
        }
        Action::RepairStarted(result) => {
            match result {
                Ok(worker) => {
                    state.awaited_repair = Some(worker);
                    state.say(Level::Info, format!("repair started (worker {worker})"))
                }
                Err(f) => state.say(Level::Error, format!("repair refused: {f}")),
            }
            vec![Command::Refresh]
        }
        Action::ChangeCancelled(result) => {
            match result {
                Ok(rollback) => state.say(
                    Level::Success,
                    format!("{rollback}: every file goes back where it was"),
                ),
                Err(f) => state.say(Level::Error, format!("cancel refused: {f}")),
            }
            vec![Command::Refresh]
        }
        Action::PaceSet(result) => super::pace::on_set(state, result),
        Action::VideosListed(result) => super::videos::on_listed(state, result),
        Action::VideoDeleted { id, result } => super::videos::on_deleted(state, id, result),
        key => on_key(state, key),
    }
}

fn on_key(state: &mut State, action: Action) -> Vec<Command> {
    match (&mut state.mode, action) {
        (Mode::FilterNodes, action) => {
            super::filter::on_node_key(state, action);
            vec![]
        }
        (Mode::Help, Action::ToggleHelp | Action::Cancel) => {
            state.mode = Mode::Normal;
            vec![]
        }
        (Mode::AddNode { input, error }, Action::Input(c)) => {
            if !c.is_control() {
                input.push(c);
                *error = None;
            }
            vec![]
        }
        (Mode::AddNode { input, error }, Action::Backspace) => {
            input.pop();
            *error = None;
            vec![]
        }
        (Mode::AddNode { .. }, Action::Cancel) => {
            state.mode = Mode::Normal;
            vec![]
        }
        (Mode::AddNode { input, error }, Action::Submit) => {
            let checked = validate_address(input).and_then(|addr| {
                let in_ring = state
                    .cluster
                    .as_ref()
                    .is_some_and(|c| c.nodes.iter().any(|n| n.address == addr && n.in_ring));
                if in_ring {
                    Err(format!("{addr} is already in the ring"))
                } else {
                    Ok(addr)
                }
            });
            match checked {
                Ok(addr) => {
                    state.mode = Mode::Normal;
                    state.pending = Some((ChangeKind::Add, addr.clone()));
                    state.say(Level::Info, format!("adding {addr}…"));
                    vec![Command::AddNode(addr)]
                }
                Err(e) => {
                    *error = Some(e);
                    vec![]
                }
            }
        }
        (Mode::ConfirmRemove { .. }, Action::Cancel) => {
            state.mode = Mode::Normal;
            vec![]
        }
        (Mode::ConfirmRemove { typed, .. }, Action::Input(c)) => {
            if c.is_ascii_digit() {
                typed.push(c);
            }
            vec![]
        }
        (Mode::ConfirmRemove { typed, .. }, Action::Backspace) => {
            typed.pop();
            vec![]
        }
        (Mode::ConfirmRemove { node, plan, typed }, Action::Confirm) => {
            // Confirming before the plan is known would be confirming blind.
            if *plan == PlanView::Loading {
                return vec![];
            }
            let port = port_of(node);
            if typed != port {
                let text = format!("type {node}'s port ({port}) to remove it");
                state.message = Some((Level::Error, text));
                return vec![];
            }
            let node = node.clone();
            state.mode = Mode::Normal;
            state.pending = Some((ChangeKind::Remove, node.clone()));
            state.say(Level::Info, format!("removing {node}…"));
            vec![Command::RemoveNode(node)]
        }
        (Mode::ConfirmRepair { .. }, Action::Cancel) => {
            state.mode = Mode::Normal;
            vec![]
        }
        (Mode::ConfirmRepair { plan }, Action::Confirm) => {
            // Confirming before the plan is known would be confirming blind.
            if !matches!(plan, Some(Ok(_))) {
                return vec![];
            }
            state.mode = Mode::Normal;
            state.say(Level::Info, "starting a repair…".to_string());
            vec![Command::StartRepair]
        }
        (Mode::ConfirmCancelChange { .. }, Action::Cancel) => {
            state.mode = Mode::Normal;
            vec![]
        }
        (Mode::ConfirmCancelChange { change }, Action::Confirm) => {
            let text = format!("cancelling {change}…");
            state.mode = Mode::Normal;
            state.say(Level::Info, text);
            vec![Command::CancelChange]
        }
        (Mode::Videos(_), action) => super::videos::on_key(state, action),
        (Mode::Normal, action) => on_normal_key(state, action),
        // Keys that mean nothing in the current mode.
        _ => vec![],
    }
}

fn on_normal_key(state: &mut State, action: Action) -> Vec<Command> {
    match action {
        Action::Cancel => {
            state.quit = true;
            vec![]
        }
        Action::ToggleHelp => {
            state.mode = Mode::Help;
            vec![]
        }
        Action::OpenVideos => super::videos::open(state),
        Action::FasterPace => super::pace::on_faster(state),
        Action::SlowerPace => super::pace::on_slower(state),
        Action::TogglePause => super::pace::on_toggle_pause(state),
        Action::OpenFilter => {
            state.focus = Focus::Nodes;
            state.mode = Mode::FilterNodes;
            vec![]
        }
        Action::ToggleRisk => {
            if !state.etcd_configured() {
                let text = "without etcd the data at risk is always shown";
                state.message = Some((Level::Info, text.into()));
                return vec![];
            }
            state.show_risk = !state.show_risk;
            if !state.etcd_shown() && state.focus == Focus::Etcd {
                state.focus = Focus::Nodes;
            }
            vec![]
        }
        Action::FocusNext => {
            state.focus = state.focus.next(state.etcd_shown());
            vec![]
        }
        Action::Up | Action::Down => {
            let down = action == Action::Down;
            match state.focus {
                Focus::Nodes => {
                    let shown = state.visible_nodes().len();
                    state.node_selected = step(state.node_selected, shown, down)
                }
                Focus::Etcd => {
                    state.etcd_selected = step(state.etcd_selected, state.etcd.len(), down)
                }
                Focus::Log => {
                    let max = state.log.len().saturating_sub(1);
                    state.log_scroll = if down {
                        state.log_scroll.saturating_sub(1)
                    } else {
                        (state.log_scroll + 1).min(max)
                    };
                }
            }
            vec![]
        }
        Action::Refresh => {
            state.message = Some((Level::Info, "refreshing…".into()));
            vec![Command::Refresh]
        }
        Action::OpenAdd => {
            if let Some(busy) = busy(state) {
                state.message = Some((Level::Error, busy));
                return vec![];
            }
            // A selected spare is the likely node to add: start with its address.
            let input = match state.selected_node() {
                Some(n) if state.focus == Focus::Nodes && !n.in_ring => n.address.clone(),
                _ => String::new(),
            };
            state.mode = Mode::AddNode { input, error: None };
            vec![]
        }
        Action::OpenRepair => {
            if let Some(busy) = busy(state) {
                state.message = Some((Level::Error, busy));
                return vec![];
            }
            if let Some(r) = state.health.as_ref().and_then(|h| h.repair.as_ref()) {
                if r.running() {
                    let text = format!(
                        "wait: a repair is running ({}/{} files)",
                        r.files_done, r.files_total
                    );
                    state.message = Some((Level::Error, text));
                    return vec![];
                }
            }
            state.mode = Mode::ConfirmRepair { plan: None };
            vec![Command::PlanRepair]
        }
        Action::OpenCancelChange => {
            match &state.migration {
                Some(m) if !m.finished => {
                    state.mode = Mode::ConfirmCancelChange {
                        change: format!("{} {}", m.kind.verb(), m.node),
                    };
                }
                _ => state.message = Some((Level::Error, "no ring change is running".into())),
            }
            vec![]
        }
        Action::OpenRemove => {
            if let Some(busy) = busy(state) {
                state.message = Some((Level::Error, busy));
                return vec![];
            }
            if state.focus != Focus::Nodes {
                state.message = Some((Level::Error, "select a node in the nodes table".into()));
                return vec![];
            }
            let Some(node) = state.selected_node() else {
                state.message = Some((Level::Error, "no node selected".into()));
                return vec![];
            };
            if !node.in_ring {
                let text = format!("{} is a spare, not in the ring", node.address);
                state.message = Some((Level::Error, text));
                return vec![];
            }
            let node = node.address.clone();
            state.mode = Mode::ConfirmRemove {
                node: node.clone(),
                plan: PlanView::Loading,
                typed: String::new(),
            };
            vec![Command::PlanRemove(node)]
        }
        _ => vec![],
    }
}

/// The port of a `host:port` address (what removing it asks to be typed).
pub fn port_of(node: &str) -> &str {
    node.rsplit_once(':').map_or(node, |(_, port)| port)
}

/// Keeps the health answer; logs a repair that has just finished.
fn on_health(state: &mut State, health: HealthInfo) {
    let was_running = state
        .health
        .as_ref()
        .and_then(|h| h.repair.as_ref())
        .is_some_and(|r| r.running());
    // A repair this console started is reported even when it ran and ended between two
    // polls, never seen running.
    let awaited = |r: &super::health::RepairInfo| state.awaited_repair == Some(r.worker_id);
    if let Some(r) = health
        .repair
        .as_ref()
        .filter(|r| !r.running() && (was_running || awaited(r)))
    {
        state.awaited_repair = None;
        let level = if r.state == "done" {
            Level::Success
        } else {
            Level::Error
        };
        state.log(level, format!("{}: {}", r.description, r.outcome));
    }
    state.health = Some(health);
}

/// Why a new change cannot start now, if it cannot.
fn busy(state: &State) -> Option<String> {
    if let Some((kind, node)) = &state.pending {
        return Some(format!("wait: {} {node} is still running", kind.verb()));
    }
    match &state.migration {
        Some(m) if !m.finished => Some(format!(
            "wait: a migration ({} {}) is still running",
            m.kind.verb(),
            m.node
        )),
        _ => None,
    }
}

pub(super) fn step(current: usize, len: usize, down: bool) -> usize {
    if len == 0 {
        0
    } else if down {
        (current + 1).min(len - 1)
    } else {
        current.saturating_sub(1).min(len - 1)
    }
}

fn on_status(state: &mut State, result: Result<ClusterInfo, Failure>) -> Vec<Command> {
    match result {
        Ok(mut info) => {
            if state.admin != AdminLink::Up && state.status_tick.is_some() {
                state.log(
                    Level::Success,
                    format!("admin {} is back", state.admin_address),
                );
            }
            state.admin = AdminLink::Up;
            state.status_tick = Some(state.ticks);
            if let Some(m) = info.migration.take() {
                apply_migration(state, m);
            }
            // Keep the selection on the same node when nodes come and go.
            let selected = state.selected_node().map(|n| n.address.clone());
            info.nodes.sort_by(|a, b| a.address.cmp(&b.address));
            state.cluster = Some(info);
            super::filter::reselect_node(state, selected.as_deref());
        }
        Err(f) => {
            let was = std::mem::replace(&mut state.admin, AdminLink::Down(f.clone()));
            // Log the transition once, not every second.
            if !matches!(&was, AdminLink::Down(old) if old.code == f.code) {
                let text = if f.is_unauthenticated() {
                    format!("admin {} refused the token: {}", state.admin_address, f)
                } else {
                    format!("admin {} unreachable: {}", state.admin_address, f)
                };
                state.log(Level::Error, text);
            }
        }
    }
    vec![]
}

fn apply_migration(state: &mut State, m: MigrationInfo) {
    // Copy into the log the events not seen yet: the service sends all of them each time.
    let start = match &state.seen_event {
        Some((id, n)) if *id == m.id && *n <= m.events.len() => *n,
        _ => 0,
    };
    for e in &m.events[start..] {
        // The service stamps its events with its own clock; one clock (ours) keeps the
        // log in order.
        let text = split_clock(e).map_or(e.as_str(), |(_, text)| text);
        state.log(Level::Info, text.to_string());
    }
    let was_running = state.migration.as_ref().is_some_and(|old| !old.finished);
    if m.finished && was_running {
        let level = if m.errors == 0 {
            Level::Success
        } else {
            Level::Error
        };
        state.log(
            level,
            format!(
                "migration for {} {} finished: {} files, {} errors",
                m.kind.verb(),
                m.node,
                m.files_done,
                m.errors
            ),
        );
    }
    state.seen_event = Some((m.id.clone(), m.events.len()));
    state.migration = Some(m);
}

fn on_etcd(state: &mut State, probe: EtcdProbe) {
    let Some(idx) = state.etcd.iter().position(|r| r.endpoint == probe.endpoint) else {
        return;
    };
    let was_answering = state.etcd[idx].probed.then(|| state.etcd[idx].answering());
    let lost_before = state.quorum_lost();
    match probe.result {
        Ok(status) => {
            for m in &status.members {
                state.etcd_names.insert(m.id, m.name.clone());
            }
            let row = &mut state.etcd[idx];
            row.member_id = Some(status.member_id);
            row.status = Some(status);
            row.error = None;
        }
        Err(e) => {
            let row = &mut state.etcd[idx];
            row.error = Some(e);
            // Keep the last figures (shown dimmed) but not the leader claim.
            if let Some(s) = &mut row.status {
                s.leader_id = 0;
            }
        }
    }
    let row = &mut state.etcd[idx];
    row.probed = true;
    // A member that never answered can still be named from another's member list.
    if row.member_id.is_none() {
        let ep = strip_scheme(&row.endpoint).to_string();
        let others = state.etcd.iter().filter_map(|r| r.status.as_ref());
        let found = others
            .flat_map(|s| s.members.iter())
            .find(|m| m.client_urls.iter().any(|u| strip_scheme(u) == ep))
            .map(|m| m.id);
        state.etcd[idx].member_id = found;
    }
    let now_answering = state.etcd[idx].answering();
    let label = state
        .etcd_name(&state.etcd[idx])
        .map(|n| format!("{n} ({})", state.etcd[idx].endpoint))
        .unwrap_or_else(|| state.etcd[idx].endpoint.clone());
    // Leaderless moments (elections) show in the table; the log keeps to members that
    // stop or start answering.
    match (was_answering, now_answering) {
        (Some(true) | None, false) => {
            let why = state.etcd[idx].error.clone().unwrap_or_default();
            state.log(Level::Error, format!("etcd {label} down: {why}"));
        }
        (Some(false), true) => state.log(Level::Success, format!("etcd {label} is back")),
        _ => {}
    }
    let lost_now = state.quorum_lost();
    if lost_now && !lost_before {
        let text = format!(
            "etcd quorum lost: {} of {} members answer",
            state.etcd_answering(),
            state.etcd_size()
        );
        state.log(Level::Error, text);
    } else if lost_before && !lost_now {
        state.log(Level::Success, "etcd quorum is back");
    }
}

/// `"HH:MM:SS rest"` → (`"HH:MM:SS"`, `"rest"`).
fn split_clock(line: &str) -> Option<(&str, &str)> {
    let (at, rest) = line.split_once(' ')?;
    let b = at.as_bytes();
    let is_clock = b.len() == 8
        && b[2] == b':'
        && b[5] == b':'
        && [0, 1, 3, 4, 6, 7].iter().all(|&i| b[i].is_ascii_digit());
    is_clock.then_some((at, rest))
}

pub fn strip_scheme(s: &str) -> &str {
    s.split_once("://").map_or(s, |(_, rest)| rest)
}
