//! `/` filters the node list and the videos list: keys through the key table and
//! `update` (pure), and what the panels draw.

mod tui_support;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tritontube::tui::app::{Action, ClusterInfo, Command, Focus, Mode, State, update};
use tritontube::tui::keys::action_for;
use tritontube::tui::videos::{VideoList, VideoRow};
use tritontube::tui::view::view;
use tui_support::*;

/// The key, mapped by the key table in the current mode, then applied.
fn press(state: &mut State, code: KeyCode) -> Vec<Command> {
    let action = action_for(&state.mode, KeyEvent::new(code, KeyModifiers::NONE))
        .unwrap_or_else(|| panic!("{code:?} means nothing in {:?}", state.mode));
    update(state, action)
}

fn type_text(state: &mut State, text: &str) {
    for c in text.chars() {
        press(state, KeyCode::Char(c));
    }
}

fn shown(state: &State) -> Vec<String> {
    state
        .visible_nodes()
        .iter()
        .map(|n| n.address.clone())
        .collect()
}

fn selected(state: &State) -> Option<String> {
    state.selected_node().map(|n| n.address.clone())
}

fn screen(state: &State, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| view(state, frame)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..height {
        for x in 0..width {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

/// A cluster whose addresses have letters, to show the filter ignores case.
fn named_cluster() -> ClusterInfo {
    cluster(
        &["rack-A.lan:7000", "rack-a.lan:7001"],
        &["rack-B.lan:7000"],
    )
}

#[test]
fn slash_narrows_the_nodes_live_and_the_selection_follows_the_rows_shown() {
    let mut s = normal();
    s.focus = Focus::Log;
    press(&mut s, KeyCode::Down);
    // `/` takes the node list, whatever had the focus.
    assert!(press(&mut s, KeyCode::Char('/')).is_empty());
    assert_eq!(s.mode, Mode::FilterNodes);
    assert_eq!(s.focus, Focus::Nodes);
    press(&mut s, KeyCode::Down);
    assert_eq!(selected(&s).as_deref(), Some(NODES[1]));

    // Typed letters narrow the rows at once, even the ones that are keys elsewhere.
    type_text(&mut s, "8091");
    assert_eq!(shown(&s), [NODES[1]]);
    assert_eq!(selected(&s).as_deref(), Some(NODES[1]));
    press(&mut s, KeyCode::Backspace);
    assert_eq!(shown(&s).len(), 4);
    assert_eq!(
        selected(&s).as_deref(),
        Some(NODES[1]),
        "the same node stays selected while it is shown"
    );
    type_text(&mut s, "3");
    assert_eq!(shown(&s), [NEW_NODE]);
    assert_eq!(
        selected(&s).as_deref(),
        Some(NEW_NODE),
        "the selection moves to a row that is shown"
    );

    // Enter keeps the filter; the keys act on the row shown.
    press(&mut s, KeyCode::Enter);
    assert_eq!(s.mode, Mode::Normal);
    assert_eq!(s.node_filter, "8093");
    press(&mut s, KeyCode::Char('a'));
    assert!(
        matches!(&s.mode, Mode::AddNode { input, .. } if input == NEW_NODE),
        "{:?}",
        s.mode
    );
    press(&mut s, KeyCode::Esc);
    // A status answer keeps the filter and a valid selection.
    update(&mut s, Action::Status(Ok(cluster(&NODES, &[NEW_NODE]))));
    assert_eq!(shown(&s), [NEW_NODE]);
    assert_eq!(s.node_selected, 0);
    press(&mut s, KeyCode::Down);
    assert_eq!(s.node_selected, 0, "one row: nowhere to go");

    // Esc while typing clears the filter: every node again, the selection kept.
    press(&mut s, KeyCode::Char('/'));
    press(&mut s, KeyCode::Esc);
    assert_eq!(s.mode, Mode::Normal);
    assert!(s.node_filter.is_empty());
    assert_eq!(shown(&s).len(), 4);
    assert_eq!(selected(&s).as_deref(), Some(NEW_NODE));
    assert!(!s.quit, "Esc in the filter does not quit");
}

#[test]
fn a_filter_that_matches_nothing_leaves_nothing_to_act_on() {
    let mut s = normal();
    press(&mut s, KeyCode::Char('/'));
    type_text(&mut s, "no-such-node");
    assert!(shown(&s).is_empty());
    assert_eq!(selected(&s), None);
    press(&mut s, KeyCode::Up);
    press(&mut s, KeyCode::Enter);
    assert!(press(&mut s, KeyCode::Char('d')).is_empty());
    assert_eq!(s.mode, Mode::Normal, "no removal without a row");
    let drawn = screen(&s, 80, 24);
    assert!(
        drawn.contains("Storage nodes (0 of 4) · /no-such-node"),
        "{drawn}"
    );
}

#[test]
fn the_filter_ignores_case() {
    let mut s = State::new(ADMIN, &[]);
    update(&mut s, Action::Status(Ok(named_cluster())));
    press(&mut s, KeyCode::Char('/'));
    type_text(&mut s, "RACK-a");
    assert_eq!(shown(&s), ["rack-A.lan:7000", "rack-a.lan:7001"]);
    type_text(&mut s, ".LAN:7001");
    assert_eq!(shown(&s), ["rack-a.lan:7001"]);
}

#[test]
fn the_nodes_panel_title_shows_the_filter_and_only_its_rows() {
    let mut s = normal();
    press(&mut s, KeyCode::Char('/'));
    type_text(&mut s, "809");
    for (w, h) in [(80, 24), (120, 40)] {
        let drawn = screen(&s, w, h);
        assert!(drawn.contains("Storage nodes (4) · /809▏"), "{drawn}");
    }
    type_text(&mut s, "2");
    press(&mut s, KeyCode::Enter);
    for (w, h) in [(80, 24), (120, 40)] {
        let drawn = screen(&s, w, h);
        assert!(drawn.contains("Storage nodes (1 of 4) · /8092 "), "{drawn}");
        assert!(drawn.contains(&format!("▶ ● {}", NODES[2])), "{drawn}");
        for other in [NODES[0], NODES[1], NEW_NODE] {
            // A table row names the node and its role; the ring's legend does not.
            let in_table = drawn.lines().any(|l| {
                l.contains(&format!("● {other}")) && (l.contains(" ring ") || l.contains(" spare "))
            });
            assert!(!in_table, "{other} still in the table:\n{drawn}");
        }
    }
    // While typing, the help bar shows the filter's keys.
    press(&mut s, KeyCode::Char('/'));
    let bar = screen(&s, 80, 24).lines().last().unwrap().to_string();
    assert!(
        bar.contains("Enter keep") && bar.contains("Esc clear"),
        "{bar}"
    );
}

fn row(id: &str) -> VideoRow {
    VideoRow {
        id: id.into(),
        state: "ready".into(),
        ..Default::default()
    }
}

fn videos_state() -> State {
    let mut s = normal();
    assert_eq!(press(&mut s, KeyCode::Char('v')), [Command::ListVideos]);
    let list = VideoList {
        rows: ["Lecture-01", "lecture-02", "trailer"]
            .into_iter()
            .map(row)
            .collect(),
        more: false,
    };
    update(&mut s, Action::VideosListed(Ok(list)));
    s
}

fn videos_shown(s: &State) -> Vec<String> {
    match &s.mode {
        Mode::Videos(v) => v.visible_rows().iter().map(|r| r.id.clone()).collect(),
        other => panic!("not in the videos view: {other:?}"),
    }
}

fn video_selected(s: &State) -> Option<String> {
    match &s.mode {
        Mode::Videos(v) => v.selected_row().map(|r| r.id.clone()),
        other => panic!("not in the videos view: {other:?}"),
    }
}

#[test]
fn slash_narrows_the_videos_and_delete_acts_on_the_row_shown() {
    let mut s = videos_state();
    press(&mut s, KeyCode::Down);
    press(&mut s, KeyCode::Down);
    assert_eq!(video_selected(&s).as_deref(), Some("trailer"));
    press(&mut s, KeyCode::Char('/'));
    // `q`, `x`, `v` are typed, not acted on.
    type_text(&mut s, "LECTURE");
    assert_eq!(videos_shown(&s), ["Lecture-01", "lecture-02"]);
    assert_eq!(video_selected(&s).as_deref(), Some("lecture-02"));
    assert!(screen(&s, 80, 24).contains("Videos (2 of 3) · /LECTURE▏"));
    type_text(&mut s, "-01");
    press(&mut s, KeyCode::Enter);
    assert_eq!(videos_shown(&s), ["Lecture-01"]);
    assert!(screen(&s, 80, 24).contains("Videos (1 of 3) · /LECTURE-01 "));
    // A new list keeps the filter and the selection on the same video.
    let relisted = VideoList {
        rows: ["new", "Lecture-01", "lecture-02", "trailer"]
            .into_iter()
            .map(row)
            .collect(),
        more: false,
    };
    update(&mut s, Action::VideosListed(Ok(relisted)));
    assert_eq!(video_selected(&s).as_deref(), Some("Lecture-01"));
    press(&mut s, KeyCode::Char('x'));
    assert_eq!(
        press(&mut s, KeyCode::Char('y')),
        [Command::DeleteVideo("Lecture-01".into())]
    );

    // Esc while typing clears; a filter matching nothing says so.
    press(&mut s, KeyCode::Char('/'));
    press(&mut s, KeyCode::Esc);
    assert_eq!(videos_shown(&s).len(), 4);
    assert!(matches!(s.mode, Mode::Videos(_)), "Esc only cleared");
    press(&mut s, KeyCode::Char('/'));
    type_text(&mut s, "zzz");
    assert!(screen(&s, 80, 24).contains("no video id contains \"zzz\""));
    press(&mut s, KeyCode::Char('x'));
    press(&mut s, KeyCode::Enter);
    assert!(press(&mut s, KeyCode::Char('x')).is_empty());
    assert!(
        matches!(&s.mode, Mode::Videos(v) if v.confirm.is_none()),
        "nothing to delete"
    );
}
