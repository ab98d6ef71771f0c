//! The one key table: which key does what in which mode. It maps key presses to actions
//! and also draws the help bar and the help popup, so the two never disagree.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::app::{Action, Mode};

/// Which part of the console has the keyboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    Normal,
    AddPrompt,
    Confirm,
    ConfirmCancel,
    ConfirmRepair,
    Help,
    Videos,
    ConfirmDelete,
    /// A list's filter being typed (`/`).
    Filter,
}

impl Context {
    pub fn of(mode: &Mode) -> Context {
        match mode {
            Mode::Normal => Context::Normal,
            Mode::Help => Context::Help,
            Mode::FilterNodes => Context::Filter,
            Mode::AddNode { .. } => Context::AddPrompt,
            Mode::ConfirmRemove { .. } => Context::Confirm,
            Mode::ConfirmCancelChange { .. } => Context::ConfirmCancel,
            Mode::ConfirmRepair { .. } => Context::ConfirmRepair,
            Mode::Videos(view) => super::videos::context(view),
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Context::Normal => "Console",
            Context::AddPrompt => "Add-node prompt",
            Context::Confirm => "Remove confirmation",
            Context::ConfirmCancel => "Cancel confirmation",
            Context::ConfirmRepair => "Repair confirmation",
            Context::Help => "Help",
            Context::Videos => "Videos view",
            Context::ConfirmDelete => "Delete confirmation",
            Context::Filter => "Filter",
        }
    }
}

/// One row of the table.
pub struct Binding {
    pub context: Context,
    pub keys: &'static [(KeyCode, KeyModifiers)],
    /// How the keys are written in the help bar and popup.
    pub label: &'static str,
    pub help: &'static str,
    /// None for a row that only documents behaviour handled in [`action_for`] (typing).
    pub action: Option<Action>,
    /// Short text for the one-line help bar; empty keeps the row out of the bar (the
    /// popup shows every row).
    pub short: &'static str,
}

const NONE: KeyModifiers = KeyModifiers::NONE;
const CTRL: KeyModifiers = KeyModifiers::CONTROL;

pub static BINDINGS: &[Binding] = &[
    Binding {
        context: Context::Normal,
        keys: &[(KeyCode::Char('a'), NONE)],
        label: "a",
        help: "add a storage node (prompts for host:port)",
        action: Some(Action::OpenAdd),
        short: "add",
    },
    Binding {
        context: Context::Normal,
        keys: &[(KeyCode::Char('d'), NONE), (KeyCode::Delete, NONE)],
        label: "d/Del",
        help: "remove the selected node (shows the plan first)",
        action: Some(Action::OpenRemove),
        short: "remove",
    },
    Binding {
        context: Context::Normal,
        keys: &[(KeyCode::Char('x'), NONE)],
        label: "x",
        help: "cancel the running ring change (asks first)",
        action: Some(Action::OpenCancelChange),
        short: "",
    },
    Binding {
        context: Context::Normal,
        keys: &[
            (KeyCode::Char('R'), NONE),
            (KeyCode::Char('R'), KeyModifiers::SHIFT),
        ],
        label: "R",
        help: "repair the storage (shows the plan first)",
        action: Some(Action::OpenRepair),
        short: "",
    },
    Binding {
        context: Context::Normal,
        keys: &[(KeyCode::Up, NONE), (KeyCode::Char('k'), NONE)],
        label: "↑/k",
        help: "select the row above (scroll the log up)",
        action: Some(Action::Up),
        short: "",
    },
    Binding {
        context: Context::Normal,
        keys: &[(KeyCode::Down, NONE), (KeyCode::Char('j'), NONE)],
        label: "↓/j",
        help: "select the row below (scroll the log down)",
        action: Some(Action::Down),
        short: "",
    },
    Binding {
        context: Context::Normal,
        keys: &[(KeyCode::Tab, NONE)],
        label: "Tab",
        help: "move focus: nodes → etcd → log",
        action: Some(Action::FocusNext),
        short: "focus",
    },
    Binding {
        context: Context::Normal,
        keys: &[(KeyCode::Char('r'), NONE)],
        label: "r",
        help: "refresh now",
        action: Some(Action::Refresh),
        short: "refresh",
    },
    Binding {
        context: Context::Normal,
        keys: &[(KeyCode::Char('/'), NONE)],
        label: "/",
        help: "filter the nodes by their address",
        action: Some(Action::OpenFilter),
        short: "filter",
    },
    Binding {
        context: Context::Normal,
        keys: &[(KeyCode::Char('h'), NONE)],
        label: "h",
        help: "show the data at risk in etcd's place, or etcd",
        action: Some(Action::ToggleRisk),
        short: "risk",
    },
    Binding {
        context: Context::Normal,
        keys: &[(KeyCode::Char('v'), NONE)],
        label: "v",
        help: "videos: list them, delete one",
        action: Some(Action::OpenVideos),
        short: "",
    },
    Binding {
        context: Context::Normal,
        keys: &[(KeyCode::Char('?'), NONE)],
        label: "?",
        help: "show or hide this help",
        action: Some(Action::ToggleHelp),
        short: "help",
    },
    Binding {
        context: Context::Normal,
        keys: &[
            (KeyCode::Char('+'), NONE),
            (KeyCode::Char('+'), KeyModifiers::SHIFT),
            (KeyCode::Char('='), NONE),
        ],
        label: "+",
        help: "faster: double the pace of ring changes, repairs",
        action: Some(Action::FasterPace),
        short: "",
    },
    Binding {
        context: Context::Normal,
        keys: &[(KeyCode::Char('-'), NONE)],
        label: "-",
        help: "slower: halve the pace of ring changes, repairs",
        action: Some(Action::SlowerPace),
        short: "",
    },
    Binding {
        context: Context::Normal,
        keys: &[(KeyCode::Char('p'), NONE)],
        label: "p",
        help: "pause or resume ring changes and repairs",
        action: Some(Action::TogglePause),
        short: "",
    },
    Binding {
        context: Context::Normal,
        keys: &[(KeyCode::Char('q'), NONE), (KeyCode::Esc, NONE)],
        label: "q/Esc",
        help: "quit",
        action: Some(Action::Quit),
        short: "quit",
    },
    Binding {
        context: Context::AddPrompt,
        keys: &[],
        label: "type",
        help: "the node's address, host:port",
        action: None,
        short: "host:port",
    },
    Binding {
        context: Context::AddPrompt,
        keys: &[(KeyCode::Backspace, NONE)],
        label: "⌫",
        help: "delete the last character",
        action: Some(Action::Backspace),
        short: "",
    },
    Binding {
        context: Context::AddPrompt,
        keys: &[(KeyCode::Enter, NONE)],
        label: "Enter",
        help: "add the node (starts the migration)",
        action: Some(Action::Submit),
        short: "add",
    },
    Binding {
        context: Context::AddPrompt,
        keys: &[(KeyCode::Esc, NONE)],
        label: "Esc",
        help: "cancel",
        action: Some(Action::Cancel),
        short: "cancel",
    },
    Binding {
        context: Context::Confirm,
        keys: &[],
        label: "type",
        help: "the node's port, to say it is the one to remove",
        action: None,
        short: "port",
    },
    Binding {
        context: Context::Confirm,
        keys: &[(KeyCode::Enter, NONE)],
        label: "Enter",
        help: "remove the node (once the plan is shown and its port typed)",
        action: Some(Action::Confirm),
        short: "remove",
    },
    Binding {
        context: Context::Confirm,
        keys: &[(KeyCode::Backspace, NONE)],
        label: "⌫",
        help: "delete the last digit",
        action: Some(Action::Backspace),
        short: "",
    },
    Binding {
        context: Context::Confirm,
        keys: &[(KeyCode::Esc, NONE)],
        label: "Esc",
        help: "keep the node",
        action: Some(Action::Cancel),
        short: "keep",
    },
    Binding {
        context: Context::ConfirmCancel,
        keys: &[(KeyCode::Char('y'), NONE), (KeyCode::Enter, NONE)],
        label: "y/Enter",
        help: "cancel the change: every file goes back to the ring as it was",
        action: Some(Action::Confirm),
        short: "cancel it",
    },
    Binding {
        context: Context::ConfirmCancel,
        keys: &[(KeyCode::Char('n'), NONE), (KeyCode::Esc, NONE)],
        label: "n/Esc",
        help: "let the change run",
        action: Some(Action::Cancel),
        short: "let it run",
    },
    Binding {
        context: Context::ConfirmRepair,
        keys: &[(KeyCode::Char('y'), NONE), (KeyCode::Enter, NONE)],
        label: "y/Enter",
        help: "start the repair (once the plan is shown)",
        action: Some(Action::Confirm),
        short: "repair",
    },
    Binding {
        context: Context::ConfirmRepair,
        keys: &[(KeyCode::Char('n'), NONE), (KeyCode::Esc, NONE)],
        label: "n/Esc",
        help: "do nothing",
        action: Some(Action::Cancel),
        short: "close",
    },
    Binding {
        context: Context::Videos,
        keys: &[(KeyCode::Up, NONE), (KeyCode::Char('k'), NONE)],
        label: "↑/k",
        help: "select the video above",
        action: Some(Action::Up),
        short: "",
    },
    Binding {
        context: Context::Videos,
        keys: &[(KeyCode::Down, NONE), (KeyCode::Char('j'), NONE)],
        label: "↓/j",
        help: "select the video below",
        action: Some(Action::Down),
        short: "",
    },
    Binding {
        context: Context::Videos,
        keys: &[(KeyCode::Char('x'), NONE), (KeyCode::Delete, NONE)],
        label: "x/Del",
        help: "delete the selected video (asks first)",
        action: Some(Action::OpenRemove),
        short: "delete",
    },
    Binding {
        context: Context::Videos,
        keys: &[(KeyCode::Char('/'), NONE)],
        label: "/",
        help: "filter the videos by id (Enter keeps, Esc clears)",
        action: Some(Action::OpenFilter),
        short: "filter",
    },
    Binding {
        context: Context::Videos,
        keys: &[(KeyCode::Char('r'), NONE)],
        label: "r",
        help: "list the videos again",
        action: Some(Action::Refresh),
        short: "refresh",
    },
    Binding {
        context: Context::Videos,
        keys: &[
            (KeyCode::Esc, NONE),
            (KeyCode::Char('v'), NONE),
            (KeyCode::Char('q'), NONE),
        ],
        label: "Esc/v/q",
        help: "back to the cluster",
        action: Some(Action::Cancel),
        short: "back",
    },
    Binding {
        context: Context::ConfirmDelete,
        keys: &[(KeyCode::Char('y'), NONE), (KeyCode::Enter, NONE)],
        label: "y/Enter",
        help: "delete the video",
        action: Some(Action::Confirm),
        short: "delete",
    },
    Binding {
        context: Context::ConfirmDelete,
        keys: &[(KeyCode::Char('n'), NONE), (KeyCode::Esc, NONE)],
        label: "n/Esc",
        help: "keep it",
        action: Some(Action::Cancel),
        short: "keep",
    },
    Binding {
        context: Context::Filter,
        keys: &[],
        label: "type",
        help: "text the rows must contain (any case); they narrow as you type",
        action: None,
        short: "text",
    },
    Binding {
        context: Context::Filter,
        keys: &[(KeyCode::Up, NONE)],
        label: "↑",
        help: "select the row above",
        action: Some(Action::Up),
        short: "",
    },
    Binding {
        context: Context::Filter,
        keys: &[(KeyCode::Down, NONE)],
        label: "↓",
        help: "select the row below",
        action: Some(Action::Down),
        short: "",
    },
    Binding {
        context: Context::Filter,
        keys: &[(KeyCode::Backspace, NONE)],
        label: "⌫",
        help: "delete the last character",
        action: Some(Action::Backspace),
        short: "",
    },
    Binding {
        context: Context::Filter,
        keys: &[(KeyCode::Enter, NONE)],
        label: "Enter",
        help: "keep the filter",
        action: Some(Action::Submit),
        short: "keep",
    },
    Binding {
        context: Context::Filter,
        keys: &[(KeyCode::Esc, NONE)],
        label: "Esc",
        help: "clear the filter: every row again",
        action: Some(Action::Cancel),
        short: "clear",
    },
    Binding {
        context: Context::Help,
        keys: &[
            (KeyCode::Char('?'), NONE),
            (KeyCode::Esc, NONE),
            (KeyCode::Char('q'), NONE),
        ],
        label: "?/Esc/q",
        help: "close the help",
        action: Some(Action::ToggleHelp),
        short: "close",
    },
];

/// Ctrl-C quits from anywhere, as in any terminal program.
pub static QUIT_ANYWHERE: Binding = Binding {
    context: Context::Normal,
    keys: &[(KeyCode::Char('c'), CTRL)],
    label: "Ctrl-C",
    help: "quit from anywhere",
    action: Some(Action::Quit),
    short: "",
};

/// The rows for one context, in table order.
pub fn bindings(context: Context) -> impl Iterator<Item = &'static Binding> {
    BINDINGS.iter().filter(move |b| b.context == context)
}

/// The action a key press means in `mode`, if any.
pub fn action_for(mode: &Mode, key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let matches = |b: &Binding| {
        b.keys.iter().any(|(code, mods)| {
            // Shift is part of the character itself ('?' is Shift-/ on most layouts).
            *code == key.code && *mods == (key.modifiers - KeyModifiers::SHIFT)
        })
    };
    if matches(&QUIT_ANYWHERE) {
        return QUIT_ANYWHERE.action.clone();
    }
    let context = Context::of(mode);
    if let Some(b) = bindings(context).find(|b| matches(b)) {
        return b.action.clone();
    }
    match (context, key.code) {
        (Context::AddPrompt | Context::Confirm | Context::Filter, KeyCode::Char(c))
            if !key
                .modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
        {
            Some(Action::Input(c))
        }
        _ => None,
    }
}
