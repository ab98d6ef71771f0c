//! `update(state, action)` for every action, and the key table's mapping of keys to
//! actions. Pure: no servers, no terminal.

mod tui_support;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tritontube::tui::app::{
    Action, AdminLink, ChangeKind, Command, Failure, Focus, Level, Mode, Plan, PlanView,
    STALE_AFTER_TICKS, State, update,
};
use tritontube::tui::keys::{self, BINDINGS, Context};
use tritontube::tui::pace::{self, PaceInfo};
use tui_support::*;

fn error_message(s: &State) -> &str {
    match &s.message {
        Some((Level::Error, m)) => m,
        other => panic!("expected an error message, got {other:?}"),
    }
}

fn log_has(s: &State, needle: &str) -> bool {
    s.log.iter().any(|l| l.text.contains(needle))
}

#[test]
fn quit_and_escape_quit() {
    let mut s = normal();
    assert!(update(&mut s, Action::Quit).is_empty());
    assert!(s.quit);
    let mut s = normal();
    update(&mut s, Action::Cancel);
    assert!(s.quit, "Esc with nothing open quits");
}

#[test]
fn tick_sets_the_clock_and_ages_the_data() {
    let mut s = normal();
    assert_eq!(s.clock, "12:00:02");
    assert_eq!(s.stale_for(), None);
    // `normal` heard from the admin one tick ago.
    for _ in 2..STALE_AFTER_TICKS {
        tick(&mut s, "12:00:09");
    }
    assert_eq!(s.stale_for(), None, "not stale yet");
    tick(&mut s, "12:00:09");
    assert_eq!(s.clock, "12:00:09");
    assert_eq!(
        s.stale_for(),
        Some(STALE_AFTER_TICKS),
        "no answer for a while is stale"
    );
    update(&mut s, Action::Status(Ok(cluster(&NODES, &[]))));
    assert_eq!(s.stale_for(), None);
}

#[test]
fn up_and_down_move_the_selection_of_the_focused_panel() {
    let mut s = normal();
    assert_eq!(s.node_selected, 0);
    update(&mut s, Action::Up);
    assert_eq!(s.node_selected, 0, "stops at the top");
    for _ in 0..10 {
        update(&mut s, Action::Down);
    }
    assert_eq!(s.node_selected, 3, "stops at the last of four nodes");

    update(&mut s, Action::FocusNext);
    assert_eq!(s.focus, Focus::Etcd);
    update(&mut s, Action::Down);
    update(&mut s, Action::Down);
    assert_eq!(s.etcd_selected, 2);
    assert_eq!(s.node_selected, 3, "the other panel keeps its selection");
    update(&mut s, Action::Up);
    assert_eq!(s.etcd_selected, 1);

    update(&mut s, Action::FocusNext);
    assert_eq!(s.focus, Focus::Log);
    update(&mut s, Action::Up);
    assert_eq!(s.log_scroll, 0, "nothing to scroll in an empty log");
    let mut s = member_down();
    apply(&mut s, [etcd_down(3), etcd_down(4)]);
    s.focus = Focus::Log;
    update(&mut s, Action::Up);
    update(&mut s, Action::Up);
    assert_eq!(s.log_scroll, 2);
    update(&mut s, Action::Down);
    assert_eq!(s.log_scroll, 1);
}

#[test]
fn focus_cycles_and_skips_etcd_when_not_configured() {
    let mut s = normal();
    let mut seen = vec![s.focus];
    for _ in 0..3 {
        update(&mut s, Action::FocusNext);
        seen.push(s.focus);
    }
    assert_eq!(seen, [Focus::Nodes, Focus::Etcd, Focus::Log, Focus::Nodes]);

    let mut s = State::new(ADMIN, &[]);
    update(&mut s, Action::FocusNext);
    assert_eq!(s.focus, Focus::Log);
}

#[test]
fn refresh_asks_for_a_refresh() {
    let mut s = normal();
    assert_eq!(update(&mut s, Action::Refresh), [Command::Refresh]);
}

#[test]
fn help_opens_and_closes() {
    let mut s = normal();
    update(&mut s, Action::ToggleHelp);
    assert_eq!(s.mode, Mode::Help);
    update(&mut s, Action::Down);
    assert_eq!(s.node_selected, 0, "keys under the help do nothing");
    update(&mut s, Action::ToggleHelp);
    assert_eq!(s.mode, Mode::Normal);
    update(&mut s, Action::ToggleHelp);
    update(&mut s, Action::Cancel);
    assert_eq!(s.mode, Mode::Normal);
    assert!(!s.quit, "Esc closes the help, it does not quit");
}

#[test]
fn add_prompt_types_validates_and_submits() {
    let mut s = normal();
    assert!(update(&mut s, Action::OpenAdd).is_empty());
    for c in "host:80x".chars() {
        update(&mut s, Action::Input(c));
    }
    update(&mut s, Action::Input('\u{7}'));
    update(&mut s, Action::Backspace);
    assert_eq!(
        s.mode,
        Mode::AddNode {
            input: "host:80".into(),
            error: None
        },
        "control characters are not typed; backspace removes the last one"
    );
    update(&mut s, Action::Quit);
    assert!(s.quit, "Quit (Ctrl-C) works even in the prompt");

    let mut s = normal();
    update(&mut s, Action::OpenAdd);
    for c in "nope".chars() {
        update(&mut s, Action::Input(c));
    }
    assert!(update(&mut s, Action::Submit).is_empty());
    match &s.mode {
        Mode::AddNode { error: Some(e), .. } => assert!(e.contains("port"), "{e}"),
        m => panic!("prompt should stay open with an error: {m:?}"),
    }
    update(&mut s, Action::Backspace);
    assert!(
        matches!(&s.mode, Mode::AddNode { error: None, .. }),
        "typing clears the error"
    );

    let mut s = normal();
    update(&mut s, Action::OpenAdd);
    for c in NODES[0].chars() {
        update(&mut s, Action::Input(c));
    }
    update(&mut s, Action::Submit);
    match &s.mode {
        Mode::AddNode { error: Some(e), .. } => assert!(e.contains("already in the ring")),
        m => panic!("a node already in the ring is refused: {m:?}"),
    }

    let mut s = normal();
    update(&mut s, Action::OpenAdd);
    for c in format!(" {NEW_NODE} ").chars() {
        update(&mut s, Action::Input(c));
    }
    assert_eq!(
        update(&mut s, Action::Submit),
        [Command::AddNode(NEW_NODE.into())],
        "a spare can be added; spaces around are trimmed"
    );
    assert_eq!(s.mode, Mode::Normal);
    assert_eq!(s.pending, Some((ChangeKind::Add, NEW_NODE.into())));
}

#[test]
fn add_prompt_cancels() {
    let mut s = normal();
    update(&mut s, Action::OpenAdd);
    update(&mut s, Action::Input('x'));
    assert!(update(&mut s, Action::Cancel).is_empty());
    assert_eq!(s.mode, Mode::Normal);
    assert!(!s.quit);
    assert_eq!(s.pending, None);
}

#[test]
fn no_second_change_while_one_runs() {
    let mut s = migrating();
    update(&mut s, Action::OpenAdd);
    assert_eq!(s.mode, Mode::Normal);
    assert!(error_message(&s).contains("still running"));
    assert!(update(&mut s, Action::OpenRemove).is_empty());
    assert_eq!(s.mode, Mode::Normal);
}

#[test]
fn a_running_change_can_be_cancelled_after_a_confirmation() {
    // Nothing runs: nothing to cancel, and no popup.
    let mut s = normal();
    assert!(update(&mut s, Action::OpenCancelChange).is_empty());
    assert_eq!(s.mode, Mode::Normal);
    assert!(error_message(&s).contains("no ring change is running"));

    let mut s = migrating();
    update(&mut s, Action::OpenCancelChange);
    assert_eq!(
        s.mode,
        Mode::ConfirmCancelChange {
            change: format!("add {NEW_NODE}")
        }
    );
    // "n" lets it run.
    assert!(update(&mut s, Action::Cancel).is_empty());
    assert_eq!(s.mode, Mode::Normal);
    update(&mut s, Action::OpenCancelChange);
    assert_eq!(update(&mut s, Action::Confirm), vec![Command::CancelChange]);
    assert_eq!(s.mode, Mode::Normal);
    assert_eq!(
        update(
            &mut s,
            Action::ChangeCancelled(Ok(format!("cancelling add {NEW_NODE}")))
        ),
        vec![Command::Refresh]
    );
    assert!(log_has(&s, "every file goes back"));
    update(
        &mut s,
        Action::ChangeCancelled(Err(Failure::new(
            "FAILED_PRECONDITION",
            "runs on another web node",
        ))),
    );
    assert!(error_message(&s).contains("cancel refused"));
}

#[test]
fn a_repair_shows_its_plan_before_it_starts() {
    let mut s = normal();
    assert_eq!(
        update(&mut s, Action::OpenRepair),
        vec![Command::PlanRepair]
    );
    assert_eq!(s.mode, Mode::ConfirmRepair { plan: None });
    // Not before the plan is there.
    assert!(update(&mut s, Action::Confirm).is_empty());
    let plan = vec!["missing copies to restore:  3 files (12 KiB)".to_string()];
    update(&mut s, Action::RepairPlanned(Ok(plan.clone())));
    assert_eq!(
        s.mode,
        Mode::ConfirmRepair {
            plan: Some(Ok(plan))
        }
    );
    assert_eq!(update(&mut s, Action::Confirm), vec![Command::StartRepair]);
    assert_eq!(s.mode, Mode::Normal);
    assert_eq!(
        update(&mut s, Action::RepairStarted(Ok(7))),
        vec![Command::Refresh]
    );

    // A repair running, then done: the outcome is logged once.
    let running = tritontube::tui::health::RepairInfo {
        description: "repair (asked by the operator)".into(),
        state: "running".into(),
        files_done: 1,
        files_total: 3,
        ..Default::default()
    };
    let mut health = tritontube::tui::health::HealthInfo {
        repair: Some(running.clone()),
        ..Default::default()
    };
    update(&mut s, Action::Health(health.clone()));
    update(&mut s, Action::OpenRepair);
    assert_eq!(s.mode, Mode::Normal, "no second repair while one runs");
    assert!(error_message(&s).contains("a repair is running"));
    health.repair = Some(tritontube::tui::health::RepairInfo {
        state: "done".into(),
        files_done: 3,
        outcome: "3 files repaired".into(),
        ..running
    });
    update(&mut s, Action::Health(health.clone()));
    update(&mut s, Action::Health(health));
    assert_eq!(
        s.log
            .iter()
            .filter(|l| l.text.contains("3 files repaired"))
            .count(),
        1
    );

    // During a ring change, no repair.
    let mut s = migrating();
    assert!(update(&mut s, Action::OpenRepair).is_empty());
    assert!(error_message(&s).contains("still running"));
}

#[test]
fn remove_asks_for_the_plan_then_confirms() {
    let mut s = normal();
    update(&mut s, Action::Down);
    assert_eq!(
        update(&mut s, Action::OpenRemove),
        [Command::PlanRemove(NODES[1].into())]
    );
    assert_eq!(
        s.mode,
        Mode::ConfirmRemove {
            node: NODES[1].into(),
            plan: PlanView::Loading,
            typed: String::new(),
        }
    );
    assert!(
        update(&mut s, Action::Confirm).is_empty(),
        "no confirming before the plan is shown"
    );

    // A plan for another node (a popup since closed) is ignored.
    update(
        &mut s,
        Action::Planned {
            node: NODES[0].into(),
            result: Ok(Plan::default()),
        },
    );
    assert!(matches!(
        &s.mode,
        Mode::ConfirmRemove {
            plan: PlanView::Loading,
            ..
        }
    ));

    let plan = Plan {
        files: 12,
        bytes: 3456,
        moves: vec![],
    };
    update(
        &mut s,
        Action::Planned {
            node: NODES[1].into(),
            result: Ok(plan.clone()),
        },
    );
    assert_eq!(
        s.mode,
        Mode::ConfirmRemove {
            node: NODES[1].into(),
            plan: PlanView::Ready(plan),
            typed: String::new(),
        }
    );
    // Enter alone, or a wrong port, removes nothing: the node's port must be typed.
    assert!(update(&mut s, Action::Confirm).is_empty());
    assert!(error_message(&s).contains("type 127.0.0.1:8091's port (8091)"));
    apply(&mut s, "8090".chars().map(Action::Input));
    assert!(update(&mut s, Action::Confirm).is_empty());
    assert!(matches!(s.mode, Mode::ConfirmRemove { .. }));
    // Backspace mends a typo; letters are not taken.
    update(&mut s, Action::Backspace);
    apply(&mut s, [Action::Input('y'), Action::Input('1')]);
    assert!(matches!(&s.mode, Mode::ConfirmRemove { typed, .. } if typed == "8091"));
    assert_eq!(
        update(&mut s, Action::Confirm),
        [Command::RemoveNode(NODES[1].into())]
    );
    assert_eq!(s.mode, Mode::Normal);
    assert_eq!(s.pending, Some((ChangeKind::Remove, NODES[1].into())));
}

#[test]
fn remove_can_be_cancelled_and_shows_a_refused_plan() {
    let mut s = normal();
    update(&mut s, Action::OpenRemove);
    let refusal = Failure::new("FAILED_PRECONDITION", "the ring would drop below 2 nodes");
    update(
        &mut s,
        Action::Planned {
            node: NODES[0].into(),
            result: Err(refusal.clone()),
        },
    );
    assert!(
        matches!(&s.mode, Mode::ConfirmRemove { plan: PlanView::Failed(f), .. } if *f == refusal)
    );
    assert!(update(&mut s, Action::Cancel).is_empty());
    assert_eq!(s.mode, Mode::Normal);
    assert!(!s.quit);
    assert_eq!(s.pending, None);
}

#[test]
fn remove_needs_a_node_in_the_ring_selected() {
    let mut s = normal();
    for _ in 0..3 {
        update(&mut s, Action::Down);
    }
    assert!(update(&mut s, Action::OpenRemove).is_empty());
    assert!(error_message(&s).contains("spare"));

    let mut s = normal();
    update(&mut s, Action::FocusNext);
    assert!(update(&mut s, Action::OpenRemove).is_empty());
    assert!(error_message(&s).contains("nodes table"));

    let mut s = State::new(ADMIN, &[]);
    assert!(update(&mut s, Action::OpenRemove).is_empty());
    assert!(error_message(&s).contains("no node"));
}

#[test]
fn status_answers_keep_the_selection_on_the_same_node() {
    let mut s = normal();
    assert_eq!(s.admin, AdminLink::Up);
    update(&mut s, Action::Down);
    assert_eq!(s.selected_node().unwrap().address, NODES[1]);
    // A node sorting before the selected one appears; the selection follows its node.
    update(
        &mut s,
        Action::Status(Ok(cluster(&["127.0.0.1:8000", NODES[0], NODES[1]], &[]))),
    );
    assert_eq!(s.selected_node().unwrap().address, NODES[1]);
    // The selected node disappears: the selection stays in range.
    for _ in 0..5 {
        update(&mut s, Action::Down);
    }
    update(&mut s, Action::Status(Ok(cluster(&[NODES[0]], &[]))));
    assert_eq!(s.node_selected, 0);
}

#[test]
fn admin_failures_are_shown_once_and_keep_the_data() {
    let mut s = normal();
    let down = Failure::new("UNAVAILABLE", "tcp connect error: Connection refused");
    update(&mut s, Action::Status(Err(down.clone())));
    update(&mut s, Action::Status(Err(down.clone())));
    assert_eq!(s.admin, AdminLink::Down(down));
    assert!(s.cluster.is_some(), "the last data stays, marked stale");
    assert_eq!(
        s.stale_for(),
        Some(1),
        "down: stale at once, aged from the last answer"
    );
    let logged = s
        .log
        .iter()
        .filter(|l| l.text.contains("unreachable"))
        .count();
    assert_eq!(logged, 1, "a failure repeated every second is logged once");

    update(
        &mut s,
        Action::Status(Err(Failure::new("UNAUTHENTICATED", "admin token refused"))),
    );
    assert!(log_has(&s, "refused the token"));
    assert!(matches!(&s.admin, AdminLink::Down(f) if f.is_unauthenticated()));

    update(&mut s, Action::Status(Ok(cluster(&NODES, &[]))));
    assert_eq!(s.admin, AdminLink::Up);
    assert!(log_has(&s, "is back"));
}

#[test]
fn migration_events_are_logged_once_and_the_end_is_announced() {
    let mut s = normal();
    update(&mut s, Action::Migration(migration(10, 300, false)));
    update(&mut s, Action::Migration(migration(20, 300, false)));
    let copies = s
        .log
        .iter()
        .filter(|l| l.text.starts_with("plan: add"))
        .count();
    assert_eq!(copies, 1);
    let mut m = migration(30, 300, false);
    m.events.push("copied 30 files".into());
    update(&mut s, Action::Migration(m));
    assert!(log_has(&s, "copied 30 files"));

    let mut m = migration(40, 300, false);
    m.events.push("copied 30 files".into());
    m.events.push("12:34:56 copied 40 files".into());
    update(&mut s, Action::Migration(m));
    let last = s.log.back().unwrap();
    assert_eq!(
        (last.at.as_str(), last.text.as_str()),
        ("12:00:02", "copied 40 files"),
        "the service's time stamp gives way to the console's, so the log stays in order"
    );

    let m = migration(30, 300, false);
    assert!((m.ratio() - 0.1).abs() < 1e-9);
    assert_eq!(m.eta_seconds(), Some(68), "270 MiB left at 4 MiB/s");

    update(&mut s, Action::Migration(migration(300, 300, true)));
    assert!(log_has(&s, "finished: 300 files, 0 errors"));
    let done = s.migration.clone().unwrap();
    assert_eq!(done.ratio(), 1.0);
    assert_eq!(done.eta_seconds(), None);

    // The finished state arrives again (the stream is re-opened): nothing new is logged.
    let before = s.log.len();
    update(&mut s, Action::Migration(migration(300, 300, true)));
    assert_eq!(s.log.len(), before);
}

#[test]
fn etcd_probes_fill_the_table_and_find_the_leader() {
    let s = normal();
    assert_eq!(s.etcd_healthy(), 5);
    assert_eq!(s.etcd_leader(), Some(0x1000));
    assert_eq!(s.etcd_name(&s.etcd[2]), Some("etcd-3"));
    assert!(!s.quorum_lost());
    assert!(
        s.log.iter().all(|l| l.level != Level::Error),
        "nothing alarming at start"
    );
}

#[test]
fn a_dead_member_keeps_its_name_and_quorum_is_judged_by_majority() {
    let mut s = normal();
    update(&mut s, etcd_down(2));
    assert!(!s.etcd[2].healthy());
    assert_eq!(
        s.etcd_name(&s.etcd[2]),
        Some("etcd-3"),
        "named from earlier probes"
    );
    assert!(log_has(&s, "etcd etcd-3 (127.0.0.1:2379) down"));
    update(&mut s, etcd_down(3));
    assert!(!s.quorum_lost(), "3 of 5 is still a majority");
    update(&mut s, etcd_down(4));
    assert!(s.quorum_lost(), "2 of 5 is not");
    assert!(log_has(&s, "quorum lost: 2 of 5"));
    update(&mut s, etcd_ok(4));
    assert!(!s.quorum_lost());
    assert!(log_has(&s, "quorum is back"));
    assert!(log_has(&s, "etcd etcd-5 (127.0.0.1:2579) is back"));
}

#[test]
fn an_election_is_not_a_lost_quorum() {
    let mut s = normal();
    // The leader dies; the others answer without a leader until they elect one.
    update(&mut s, etcd_down(0));
    apply(&mut s, (1..5).map(etcd_leaderless));
    assert_eq!(s.etcd_healthy(), 0, "no member has a leader");
    assert!(!s.quorum_lost(), "four of five answer: they can elect one");
    assert!(
        !log_has(&s, "etcd-2"),
        "a leaderless moment is not logged as down"
    );
    assert_eq!(s.etcd_leader(), None, "no leader to star");
}

#[test]
fn a_member_never_reached_is_named_from_the_others_member_list() {
    let mut s = State::new(ADMIN, &etcd_endpoints());
    update(&mut s, etcd_down(4));
    assert_eq!(s.etcd_name(&s.etcd[4]), None);
    assert!(
        !s.quorum_lost(),
        "no verdict before every endpoint answered once"
    );
    for i in 0..4 {
        update(&mut s, etcd_ok(i));
    }
    update(&mut s, etcd_down(4));
    assert_eq!(s.etcd_name(&s.etcd[4]), Some("etcd-5"));
}

#[test]
fn probes_of_unknown_endpoints_are_ignored() {
    let mut s = normal();
    let before = s.clone();
    update(
        &mut s,
        Action::Etcd(tritontube::tui::app::EtcdProbe {
            endpoint: "10.0.0.1:2379".into(),
            result: Err("x".into()),
        }),
    );
    assert_eq!(s, before);
}

#[test]
fn change_results_clear_the_pending_change_and_refresh() {
    let mut s = migrating();
    assert!(s.pending.is_some());
    let commands = update(
        &mut s,
        Action::Changed {
            kind: ChangeKind::Add,
            node: NEW_NODE.into(),
            result: Ok(300),
        },
    );
    assert_eq!(commands, [Command::Refresh]);
    assert_eq!(s.pending, None);
    assert_eq!(
        s.message,
        Some((
            Level::Success,
            format!("added {NEW_NODE}: 300 files migrated")
        ))
    );

    let mut s = normal();
    s.pending = Some((ChangeKind::Remove, NODES[0].into()));
    update(
        &mut s,
        Action::Changed {
            kind: ChangeKind::Remove,
            node: NODES[0].into(),
            result: Err(Failure::new(
                "NOT_FOUND",
                "node 127.0.0.1:8090 is not in the ring",
            )),
        },
    );
    assert_eq!(s.pending, None);
    assert_eq!(
        error_message(&s),
        "remove 127.0.0.1:8090 refused: node 127.0.0.1:8090 is not in the ring (NOT_FOUND)"
    );
}

fn press(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

#[test]
fn every_binding_maps_its_keys_to_its_action() {
    for b in BINDINGS {
        let mode = match b.context {
            Context::Normal => Mode::Normal,
            Context::Help => Mode::Help,
            Context::AddPrompt => Mode::AddNode {
                input: String::new(),
                error: None,
            },
            Context::Confirm => Mode::ConfirmRemove {
                node: NODES[0].into(),
                plan: PlanView::Loading,
                typed: String::new(),
            },
            Context::ConfirmCancel => Mode::ConfirmCancelChange {
                change: format!("add {NEW_NODE}"),
            },
            Context::ConfirmRepair => Mode::ConfirmRepair { plan: None },
            Context::Videos => Mode::Videos(Default::default()),
            Context::ConfirmDelete => Mode::Videos(tritontube::tui::videos::VideosView {
                confirm: Some("v".into()),
                ..Default::default()
            }),
            Context::Filter => Mode::FilterNodes,
        };
        for (code, mods) in b.keys {
            let key = KeyEvent::new(*code, *mods);
            assert_eq!(
                keys::action_for(&mode, key),
                b.action,
                "{} in {:?}",
                b.label,
                b.context
            );
        }
        assert!(!b.help.is_empty());
    }
}

#[test]
fn keys_depend_on_the_mode() {
    let prompt = Mode::AddNode {
        input: String::new(),
        error: None,
    };
    assert_eq!(
        keys::action_for(&Mode::Normal, press(KeyCode::Char('a'))),
        Some(Action::OpenAdd)
    );
    assert_eq!(
        keys::action_for(&prompt, press(KeyCode::Char('a'))),
        Some(Action::Input('a'))
    );
    assert_eq!(
        keys::action_for(&prompt, press(KeyCode::Char('q'))),
        Some(Action::Input('q'))
    );
    assert_eq!(
        keys::action_for(&prompt, press(KeyCode::Esc)),
        Some(Action::Cancel)
    );
    assert_eq!(
        keys::action_for(&Mode::Normal, press(KeyCode::Esc)),
        Some(Action::Quit)
    );
    assert_eq!(
        keys::action_for(&Mode::Help, press(KeyCode::Char('a'))),
        None
    );
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    for mode in [Mode::Normal, Mode::Help, prompt.clone()] {
        assert_eq!(keys::action_for(&mode, ctrl_c), Some(Action::Quit));
    }
    let question = KeyEvent::new(KeyCode::Char('?'), KeyModifiers::SHIFT);
    assert_eq!(
        keys::action_for(&Mode::Normal, question),
        Some(Action::ToggleHelp)
    );
    let mut release = press(KeyCode::Char('q'));
    release.kind = KeyEventKind::Release;
    assert_eq!(keys::action_for(&Mode::Normal, release), None);
}

fn with_pace(mbps: u64, paused: bool, measured: f64) -> State {
    let mut s = normal();
    let mut c = cluster(&NODES, &[]);
    c.pace = Some(PaceInfo {
        mbps,
        paused,
        measured_bytes_per_sec: measured,
    });
    update(&mut s, Action::Status(Ok(c)));
    s
}

#[test]
fn plus_minus_and_p_are_bound_to_the_pace() {
    for (code, action) in [
        (KeyCode::Char('+'), Action::FasterPace),
        (KeyCode::Char('-'), Action::SlowerPace),
        (KeyCode::Char('p'), Action::TogglePause),
    ] {
        assert_eq!(keys::action_for(&Mode::Normal, press(code)), Some(action));
    }
}

#[test]
fn plus_and_minus_step_the_pace_by_halving_and_doubling() {
    // `-` from unlimited: half the measured rate, rounded (30 MB/s measured → 15).
    let mut s = with_pace(0, false, 30_000_000.0);
    assert_eq!(
        update(&mut s, Action::SlowerPace),
        vec![Command::SetPace(15)]
    );
    // Nothing measured: a sensible first limit.
    let mut s = with_pace(0, false, 0.0);
    assert_eq!(
        update(&mut s, Action::SlowerPace),
        vec![Command::SetPace(pace::FIRST_LIMIT_MBPS)]
    );
    let mut s = with_pace(8, false, 0.0);
    assert_eq!(
        update(&mut s, Action::SlowerPace),
        vec![Command::SetPace(4)]
    );
    assert_eq!(
        update(&mut s, Action::FasterPace),
        vec![Command::SetPace(16)]
    );
    // Never below 1 MB/s (0 would mean unlimited).
    let mut s = with_pace(1, false, 0.0);
    assert!(update(&mut s, Action::SlowerPace).is_empty());
    // Doubling past the highest limit lifts it; `+` at unlimited does nothing.
    let mut s = with_pace(pace::HIGHEST_LIMIT_MBPS, false, 0.0);
    assert_eq!(
        update(&mut s, Action::FasterPace),
        vec![Command::SetPace(0)]
    );
    let mut s = with_pace(0, false, 0.0);
    assert!(update(&mut s, Action::FasterPace).is_empty());
}

#[test]
fn p_pauses_and_resumes_and_the_answer_updates_the_pace() {
    let mut s = with_pace(4, false, 0.0);
    assert_eq!(
        update(&mut s, Action::TogglePause),
        vec![Command::PauseMoves]
    );
    let paused = PaceInfo {
        mbps: 4,
        paused: true,
        measured_bytes_per_sec: 0.0,
    };
    assert_eq!(
        update(&mut s, Action::PaceSet(Ok(paused))),
        vec![Command::Refresh]
    );
    assert_eq!(s.cluster.as_ref().unwrap().pace, Some(paused));
    assert!(log_has(&s, "PAUSED"));
    assert_eq!(
        update(&mut s, Action::TogglePause),
        vec![Command::ResumeMoves]
    );
    // A refusal is said, and the pace shown stays the last one known.
    update(
        &mut s,
        Action::PaceSet(Err(Failure {
            code: "UNAUTHENTICATED".into(),
            message: "admin token required".into(),
        })),
    );
    assert!(error_message(&s).contains("pace refused"));
    assert_eq!(s.cluster.as_ref().unwrap().pace, Some(paused));
}

#[test]
fn pace_keys_wait_until_the_pace_is_known() {
    // A web node that did not report a pace yet: nothing is sent blind.
    let mut s = normal();
    for action in [Action::FasterPace, Action::SlowerPace, Action::TogglePause] {
        assert!(update(&mut s, action).is_empty());
        assert!(error_message(&s).contains("not known yet"));
    }
}

#[test]
fn the_add_prompt_starts_with_the_selected_spares_address() {
    let mut s = normal();
    // The ring's first node is selected: the prompt starts empty.
    update(&mut s, Action::OpenAdd);
    assert!(matches!(&s.mode, Mode::AddNode { input, .. } if input.is_empty()));
    update(&mut s, Action::Cancel);
    // Select the spare (the last row).
    for _ in 0..NODES.len() {
        update(&mut s, Action::Down);
    }
    assert_eq!(s.selected_node().unwrap().address, NEW_NODE);
    update(&mut s, Action::OpenAdd);
    assert!(matches!(&s.mode, Mode::AddNode { input, .. } if input == NEW_NODE));
    // Enter adds it as is.
    assert_eq!(
        update(&mut s, Action::Submit),
        vec![Command::AddNode(NEW_NODE.into())]
    );
    // With the focus elsewhere the selection is not what the operator points at.
    let mut s = normal();
    for _ in 0..NODES.len() {
        update(&mut s, Action::Down);
    }
    update(&mut s, Action::FocusNext);
    update(&mut s, Action::OpenAdd);
    assert!(matches!(&s.mode, Mode::AddNode { input, .. } if input.is_empty()));
}

#[test]
fn a_read_only_console_refuses_every_action_saying_why() {
    let actions = [
        Action::OpenAdd,
        Action::OpenRemove,
        Action::OpenCancelChange,
        Action::OpenRepair,
        Action::FasterPace,
        Action::SlowerPace,
        Action::TogglePause,
    ];
    // A cancel needs a change to cancel; the others a quiet cluster with a known pace.
    let base = |action: &Action| {
        if *action == Action::OpenCancelChange {
            migrating()
        } else {
            with_pace(8, false, 0.0)
        }
    };
    for action in actions.clone() {
        let mut s = base(&action);
        s.read_only = true;
        assert!(update(&mut s, action.clone()).is_empty(), "{action:?}");
        assert_eq!(s.mode, Mode::Normal, "{action:?} opened nothing");
        assert!(
            error_message(&s).contains("read-only console (--read-only)"),
            "{action:?}"
        );
        // The same key without --read-only does act.
        let mut s = base(&action);
        let acted = !update(&mut s, action.clone()).is_empty() || s.mode != Mode::Normal;
        assert!(acted, "{action:?} acts in a normal console");
    }
    // Deleting a video from the videos view is refused too; looking is not.
    let mut s = normal();
    s.read_only = true;
    assert_eq!(
        update(&mut s, Action::OpenVideos),
        vec![Command::ListVideos]
    );
    assert!(update(&mut s, Action::OpenRemove).is_empty());
    assert!(error_message(&s).contains("read-only"));
    assert_eq!(update(&mut s, Action::Refresh), vec![Command::ListVideos]);
}
