//! What the console knows: the cluster, etcd, a change in progress, the mode and the
//! event log. Plain data; [`super::update`] is the only code that changes it.

use std::collections::{BTreeMap, VecDeque};

use crate::tui::health::HealthInfo;

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
    pub pace: Option<crate::tui::pace::PaceInfo>,
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
    pub(in crate::tui) fn next(self, etcd_shown: bool) -> Focus {
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
    Videos(crate::tui::videos::VideosView),
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
    PaceSet(Result<crate::tui::pace::PaceInfo, Failure>),
    // The videos view.
    OpenVideos,
    VideosListed(Result<crate::tui::videos::VideoList, Failure>),
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
    pub traffic: crate::tui::traffic::TrafficHistory,
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
    pub(in crate::tui) awaited_repair: Option<u64>,
    /// Last migration event copied into the log, so repeated updates add only new ones.
    pub(in crate::tui) seen_event: Option<(String, usize)>,
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
            .filter(|n| crate::tui::filter::matches(&self.node_filter, &n.address))
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

    pub(in crate::tui) fn log(&mut self, level: Level, text: impl Into<String>) {
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

    pub(in crate::tui) fn say(&mut self, level: Level, text: impl Into<String>) {
        let text = text.into();
        self.log(level, text.clone());
        self.message = Some((level, text));
    }
}
