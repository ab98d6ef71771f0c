//! The console's videos view: keys and results through `update` (pure), and what it
//! draws at 80×24.

mod tui_support;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tritontube::tui::app::{Action, Command, Failure, Mode, State, update};
use tritontube::tui::keys::action_for;
use tritontube::tui::videos::{VideoList, VideoRow};
use tritontube::tui::view::view;
use tui_support::normal;

fn press(state: &mut State, code: KeyCode) -> Vec<Command> {
    let action = action_for(&state.mode, KeyEvent::new(code, KeyModifiers::NONE))
        .unwrap_or_else(|| panic!("{code:?} means nothing in {:?}", state.mode));
    update(state, action)
}

fn row(id: &str, state: &str) -> VideoRow {
    VideoRow {
        id: id.into(),
        state: state.into(),
        bytes: 3 * 1024 * 1024,
        files: 12,
        duration_seconds: 65.0,
        height: 720,
        renditions: 3,
    }
}

fn listed() -> Action {
    Action::VideosListed(Ok(VideoList {
        rows: vec![
            row("newest", "ready"),
            row("middle", "ready"),
            row("busy", "processing"),
        ],
        more: false,
    }))
}

fn screen(state: &State) -> String {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|frame| view(state, frame)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..24 {
        for x in 0..80 {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

fn selected_confirm(state: &State) -> Option<String> {
    match &state.mode {
        Mode::Videos(view) => view.confirm.clone(),
        other => panic!("not in the videos view: {other:?}"),
    }
}

#[test]
fn the_videos_view_lists_and_deletes_after_confirmation() {
    let mut state = normal();
    assert_eq!(press(&mut state, KeyCode::Char('v')), [Command::ListVideos]);
    assert!(screen(&state).contains("loading…"));
    assert!(update(&mut state, listed()).is_empty());
    let drawn = screen(&state);
    for text in [
        "Videos (3)",
        "newest",
        "middle",
        "busy",
        "3.0 MiB",
        "720p ×3",
        "processing",
    ] {
        assert!(drawn.contains(text), "{text} missing:\n{drawn}");
    }

    // Down to "middle", ask to delete: a confirmation, nothing sent yet.
    press(&mut state, KeyCode::Down);
    assert!(press(&mut state, KeyCode::Char('x')).is_empty());
    assert_eq!(selected_confirm(&state).as_deref(), Some("middle"));
    assert!(screen(&state).contains("Delete video middle?"));
    // n keeps it.
    assert!(press(&mut state, KeyCode::Char('n')).is_empty());
    assert_eq!(selected_confirm(&state), None);
    press(&mut state, KeyCode::Delete);
    assert_eq!(
        press(&mut state, KeyCode::Char('y')),
        [Command::DeleteVideo("middle".into())]
    );
    assert!(screen(&state).contains("deleting"));
    // The answer is logged and the list fetched again.
    let after = update(
        &mut state,
        Action::VideoDeleted {
            id: "middle".into(),
            result: Ok(12),
        },
    );
    assert_eq!(after, [Command::ListVideos]);
    assert!(
        state
            .log
            .iter()
            .any(|l| l.text == "deleted video middle (12 files)")
    );

    // An upload in progress is not offered for deletion.
    press(&mut state, KeyCode::Down);
    press(&mut state, KeyCode::Down);
    assert!(press(&mut state, KeyCode::Char('x')).is_empty());
    assert_eq!(selected_confirm(&state), None);
    assert!(
        state
            .log
            .back()
            .unwrap()
            .text
            .contains("still being uploaded")
    );

    // A refusal is logged as such; Esc goes back to the cluster.
    update(
        &mut state,
        Action::VideoDeleted {
            id: "newest".into(),
            result: Err(Failure::new("UNAUTHENTICATED", "admin token refused")),
        },
    );
    assert!(
        state
            .log
            .back()
            .unwrap()
            .text
            .starts_with("delete newest refused")
    );
    assert_eq!(press(&mut state, KeyCode::Char('r')), [Command::ListVideos]);
    press(&mut state, KeyCode::Esc);
    assert_eq!(state.mode, Mode::Normal);
    // A late answer for a closed view changes nothing.
    assert!(update(&mut state, listed()).is_empty());
    assert_eq!(state.mode, Mode::Normal);
}

#[test]
fn an_unreachable_admin_service_is_said_in_the_view() {
    let mut state = normal();
    press(&mut state, KeyCode::Char('v'));
    update(
        &mut state,
        Action::VideosListed(Err(Failure::new("UNAVAILABLE", "connection refused"))),
    );
    assert!(screen(&state).contains("cannot list videos: connection refused"));
    // Deleting with no list selects nothing.
    assert!(press(&mut state, KeyCode::Char('x')).is_empty());
    assert_eq!(selected_confirm(&state), None);
}
