//! The data-at-risk panel with etcd configured (toggled by `h` into the etcd panel's
//! room) and the report of a repair the console started: keys through the key table and
//! `update` (pure), and what the panels draw.

mod tui_support;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tritontube::tui::app::{Action, Focus, Level, State, update};
use tritontube::tui::health::{HealthInfo, RepairInfo};
use tritontube::tui::keys::action_for;
use tritontube::tui::risk::{NodeRisk, RiskInfo};
use tritontube::tui::view::view;
use tui_support::*;

fn press(state: &mut State, code: KeyCode) {
    let action = action_for(&state.mode, KeyEvent::new(code, KeyModifiers::NONE))
        .unwrap_or_else(|| panic!("{code:?} means nothing in {:?}", state.mode));
    update(state, action);
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

fn at_risk() -> HealthInfo {
    HealthInfo {
        risk: RiskInfo {
            under_replicated: 4,
            queue_length: 2,
            healed: 1,
            queue: vec![("v1/manifest.mpd".into(), 3, "no good copy".into())],
            nodes: NODES
                .iter()
                .map(|n| NodeRisk {
                    address: n.to_string(),
                    up: true,
                    hinted: 2,
                    quarantined: 1,
                    last_scrub_ms: 1_780_000_000_000,
                    next_scrub_ms: 1_780_086_400_000,
                })
                .collect(),
            last_repair_ms: 0,
            next_repair_ms: 0,
        },
        ..Default::default()
    }
}

#[test]
fn h_shows_the_data_at_risk_in_the_etcd_panels_room_and_back() {
    let mut s = normal();
    update(&mut s, Action::Health(at_risk()));
    let before = screen(&s, 80, 24);
    assert!(before.contains("etcd members"), "{before}");
    assert!(!before.contains("data at risk"), "{before}");
    // The help bar names the key.
    assert!(
        before.lines().last().unwrap().contains("h risk"),
        "{before}"
    );

    s.focus = Focus::Etcd;
    press(&mut s, KeyCode::Char('h'));
    assert!(s.show_risk);
    assert_eq!(
        s.focus,
        Focus::Nodes,
        "the focus leaves the hidden etcd table"
    );
    for (w, h) in [(80, 24), (120, 40)] {
        let drawn = screen(&s, w, h);
        assert!(drawn.contains("data at risk · h shows etcd"), "{drawn}");
        assert!(drawn.contains("below R: 4"), "{drawn}");
        assert!(drawn.contains("resync queue: 2"), "{drawn}");
        assert!(drawn.contains("3 tries, no good copy"), "{drawn}");
        assert!(drawn.contains("hinted"), "{drawn}");
        assert!(!drawn.contains("etcd members"), "{drawn}");
        assert!(
            drawn.contains("etcd 5/5 healthy"),
            "the title keeps etcd's summary:\n{drawn}"
        );
    }
    // Tab skips the hidden etcd table.
    let mut seen = vec![s.focus];
    for _ in 0..2 {
        press(&mut s, KeyCode::Tab);
        seen.push(s.focus);
    }
    assert_eq!(seen, [Focus::Nodes, Focus::Log, Focus::Nodes]);

    press(&mut s, KeyCode::Char('h'));
    assert!(!s.show_risk);
    let after = screen(&s, 80, 24);
    assert!(after.contains("etcd members"), "{after}");
    assert!(!after.contains("data at risk"), "{after}");
}

#[test]
fn without_etcd_h_says_the_data_at_risk_is_always_shown() {
    let mut s = State::new(ADMIN, &[]);
    update(&mut s, Action::Status(Ok(cluster(&NODES, &[]))));
    press(&mut s, KeyCode::Char('h'));
    assert!(!s.show_risk);
    assert!(matches!(&s.message, Some((Level::Info, m)) if m.contains("always shown")));
    assert!(screen(&s, 80, 24).contains("data at risk · etcd not configured"));
}

#[test]
fn a_read_only_console_still_toggles_the_panel_and_filters() {
    let mut s = normal().read_only(true);
    press(&mut s, KeyCode::Char('h'));
    assert!(s.show_risk);
    press(&mut s, KeyCode::Char('/'));
    press(&mut s, KeyCode::Char('1'));
    assert_eq!(s.node_filter, "1");
}

fn repair(worker_id: u64, state: &str, outcome: &str) -> HealthInfo {
    HealthInfo {
        repair: Some(RepairInfo {
            worker_id,
            description: "repair (asked by the operator)".into(),
            state: state.into(),
            files_done: 1,
            files_total: 1,
            outcome: outcome.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn a_repair_started_here_is_reported_even_if_it_ended_between_two_polls() {
    let mut s = normal();
    // An older repair, finished before: not reported.
    update(&mut s, Action::Health(repair(3, "done", "old outcome")));
    update(&mut s, Action::RepairStarted(Ok(4)));
    update(&mut s, Action::Health(repair(3, "done", "old outcome")));
    assert!(!s.log.iter().any(|l| l.text.contains("old outcome")));
    // Ours, never seen running: reported once, with its outcome.
    let ours = repair(4, "done", "1 files repaired in 0.1 s (1 restored)");
    update(&mut s, Action::Health(ours.clone()));
    update(&mut s, Action::Health(ours));
    let reported: Vec<_> = s
        .log
        .iter()
        .filter(|l| l.text.contains("(1 restored)"))
        .collect();
    assert_eq!(reported.len(), 1, "{:?}", s.log);
    assert_eq!(reported[0].level, Level::Success);
}
