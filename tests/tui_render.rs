//! Render tests: the console drawn with ratatui's TestBackend, compared with the text
//! snapshots in tests/snapshots/. `UPDATE_SNAPSHOTS=1 cargo test --test tui_render`
//! rewrites them; review the diff by eye before committing.

mod tui_support;

use std::path::PathBuf;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;
use tritontube::tui::app::{Action, Plan, PlanMove, State, update};
use tritontube::tui::view::view;
use tui_support::*;

fn render(state: &State, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| view(state, frame)).unwrap();
    terminal.backend().buffer().clone()
}

fn text(buffer: &Buffer) -> String {
    let area = buffer.area;
    let mut out = String::new();
    for y in 0..area.height {
        let mut line = String::new();
        for x in 0..area.width {
            line.push_str(buffer[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn check(name: &str, state: &State, width: u16, height: u16) -> Buffer {
    let buffer = render(state, width, height);
    let actual = text(&buffer);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}_{width}x{height}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
    } else {
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "no snapshot {}; run with UPDATE_SNAPSHOTS=1 and review it",
                path.display()
            )
        });
        assert_eq!(
            actual,
            expected,
            "{name} at {width}x{height} differs from {}",
            path.display()
        );
    }
    buffer
}

/// Where `needle` starts on screen, as (x, y) cells.
fn find(buffer: &Buffer, needle: &str) -> Option<(u16, u16)> {
    for y in 0..buffer.area.height {
        let cells: Vec<&str> = (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol())
            .collect();
        for x in 0..cells.len() {
            let mut s = String::new();
            for c in &cells[x..] {
                s.push_str(c);
                if s.len() >= needle.len() {
                    break;
                }
            }
            if s.starts_with(needle) {
                return Some((x as u16, y));
            }
        }
    }
    None
}

fn fg_at(buffer: &Buffer, needle: &str) -> Color {
    let (x, y) = find(buffer, needle).unwrap_or_else(|| panic!("{needle:?} not on screen"));
    buffer[(x, y)].fg
}

const SIZES: [(u16, u16); 2] = [(80, 24), (120, 40)];

#[test]
fn renders_normal() {
    for (w, h) in SIZES {
        let b = check("normal", &normal(), w, h);
        assert!(find(&b, "★ etcd-1").is_some(), "leader marked at {w}x{h}");
        assert!(find(&b, "5/5 healthy").is_some());
        assert!(find(&b, "quorum").is_none(), "no banner when healthy");
    }
}

#[test]
fn renders_migrating() {
    for (w, h) in SIZES {
        let b = check("migrating", &migrating(), w, h);
        assert!(find(&b, "40%").is_some(), "progress shown at {w}x{h}");
        assert!(find(&b, "ETA 0:45").is_some(), "ETA shown at {w}x{h}");
    }
}

#[test]
fn a_change_worked_arc_by_arc_shows_its_arc_and_progress_by_arcs() {
    let mut s = migrating();
    let mut c = cluster(&[NODES[0], NODES[1], NODES[2], NEW_NODE], &[]);
    let mut m = migration(120, 130, false);
    // 6 of 20 arcs done, the 7th under way: the files known so far are nearly all moved,
    // but the change is 30 % through.
    m.arcs_total = 20;
    m.arcs_done = 6;
    m.arc_now = 7;
    c.migration = Some(m);
    update(&mut s, Action::Status(Ok(c)));
    for (w, h) in SIZES {
        let b = render(&s, w, h);
        assert!(find(&b, "arc 7/20").is_some(), "arc shown at {w}x{h}");
        assert!(find(&b, "30%").is_some(), "progress by arcs at {w}x{h}");
        assert!(find(&b, "92%").is_none(), "progress by files at {w}x{h}");
    }
}

#[test]
fn renders_storage_health_and_a_repair() {
    use std::collections::BTreeMap;
    use tritontube::tui::health::{DiskInfo, HealthInfo, RepairInfo};
    let mut s = normal();
    let mut disks = BTreeMap::new();
    disks.insert(
        NODES[0].to_string(),
        DiskInfo {
            free: 5 << 20,
            total: 100 << 30,
            reserve: 16 << 20,
            quarantined: 0,
        },
    );
    disks.insert(
        NODES[1].to_string(),
        DiskInfo {
            free: 60 << 30,
            total: 100 << 30,
            reserve: 16 << 20,
            quarantined: 2,
        },
    );
    let health = HealthInfo {
        quarantined: 2,
        hinted: 4,
        under_replicated: Some(6),
        repair: Some(RepairInfo {
            description: "repair (asked by the operator)".into(),
            state: "running".into(),
            files_done: 2,
            files_total: 6,
            ..Default::default()
        }),
        disks,
        ..Default::default()
    };
    update(&mut s, Action::Health(health));
    for (w, h) in SIZES {
        let b = check("health", &s, w, h);
        assert!(
            find(&b, "6 under-replicated").is_some(),
            "summary at {w}x{h}"
        );
        assert!(find(&b, "repair 2/6 files").is_some(), "repair at {w}x{h}");
        assert_eq!(fg_at(&b, "disk!"), Color::Red, "low disk warned at {w}x{h}");
        assert_eq!(
            fg_at(&b, "rot 2"),
            Color::Yellow,
            "quarantine shown at {w}x{h}"
        );
    }
}

#[test]
fn renders_the_web_nodes_traffic_as_sparklines() {
    use tritontube::proto::admin::TrafficStatsResponse;
    let mut s = normal();
    for (i, requests) in [0u64, 120, 360, 480].into_iter().enumerate() {
        let reading = TrafficStatsResponse {
            requests,
            bytes_served: requests * 500_000,
            cache_hits: requests * 9 / 10,
            cache_misses: requests / 10,
            server_errors: 0,
            at_unix_ms: 1_000 * (i as i64 + 1),
            started_at_unix_ms: 1,
        };
        update(&mut s, Action::Traffic(reading));
    }
    for (w, h) in SIZES {
        let b = render(&s, w, h);
        assert!(find(&b, "traffic: 120 req/s").is_some(), "rate at {w}x{h}");
        assert!(find(&b, "▅█▅").is_some(), "sparkline at {w}x{h}");
    }
    let b = render(&s, 120, 40);
    assert!(find(&b, "cache 90 %").is_some(), "hit ratio at 120x40");
}

#[test]
fn migration_finished_reads_100_percent() {
    let mut s = migrating();
    let mut c = cluster(&[NODES[0], NODES[1], NODES[2], NEW_NODE], &[]);
    c.migration = Some(migration(300, 300, true));
    update(&mut s, Action::Status(Ok(c)));
    for (w, h) in SIZES {
        let b = render(&s, w, h);
        assert!(find(&b, "100%").is_some(), "100 % at {w}x{h}");
        assert!(find(&b, "finished ✔").is_some(), "finished at {w}x{h}");
    }
}

#[test]
fn renders_member_down() {
    for (w, h) in SIZES {
        let b = check("member_down", &member_down(), w, h);
        assert_eq!(
            fg_at(&b, "etcd-3"),
            Color::Red,
            "dead member in red at {w}x{h}"
        );
        assert_ne!(
            fg_at(&b, "etcd-2"),
            Color::Red,
            "live member not red at {w}x{h}"
        );
        assert!(find(&b, "4/5 healthy").is_some());
        assert!(find(&b, "quorum lost").is_none(), "4 of 5 keep quorum");
    }
}

#[test]
fn renders_error() {
    for (w, h) in SIZES {
        let b = check("error", &error(), w, h);
        let (x, y) = find(&b, "✖ admin").expect("admin banner");
        assert_eq!(b[(x, y)].bg, Color::Red);
        assert!(
            find(&b, "etcd quorum lost: 2 of 5").is_some(),
            "quorum banner at {w}x{h}"
        );
        assert!(
            find(&b, "stale, 12 s old").is_some(),
            "stale data marked at {w}x{h}"
        );
        assert!(find(&b, "● down").is_some());
    }
}

#[test]
fn token_refused() {
    let mut s = normal();
    update(
        &mut s,
        Action::Status(Err(tritontube::tui::app::Failure::new(
            "UNAUTHENTICATED",
            "admin token refused",
        ))),
    );
    let b = render(&s, 80, 24);
    assert!(find(&b, "✖ admin refused the token: admin token refused").is_some());
    assert!(find(&b, "● token refused").is_some());
}

#[test]
fn without_etcd_the_data_at_risk_takes_its_room() {
    use tritontube::tui::health::HealthInfo;
    use tritontube::tui::risk::{NodeRisk, RiskInfo};
    let mut s = State::new(ADMIN, &[]);
    update(&mut s, Action::Status(Ok(cluster(&NODES, &[]))));
    let risk = RiskInfo {
        under_replicated: 3,
        queue_length: 1,
        healed: 7,
        queue: vec![("v1/chunk-0-00004.m4s".into(), 2, "no good copy".into())],
        nodes: NODES
            .iter()
            .enumerate()
            .map(|(i, n)| NodeRisk {
                address: n.to_string(),
                up: true,
                hinted: i as u64 * 5,
                quarantined: 1,
                last_scrub_ms: 1_780_000_000_000,
                next_scrub_ms: 1_780_086_400_000,
            })
            .collect(),
        last_repair_ms: 0,
        next_repair_ms: 1_780_021_600_000,
    };
    let health = HealthInfo {
        risk,
        ..Default::default()
    };
    update(&mut s, Action::Health(health));
    for (w, h) in [(80, 24), (120, 40)] {
        let b = render(&s, w, h);
        assert!(find(&b, "data at risk").is_some(), "panel at {w}x{h}");
        assert!(find(&b, "etcd not configured").is_some(), "{w}x{h}");
        assert!(find(&b, "below R: 3").is_some(), "{}", text(&b));
        assert_eq!(fg_at(&b, "3  resync"), Color::Yellow, "{w}x{h}");
        assert!(find(&b, "resync queue: 1").is_some(), "{}", text(&b));
        assert!(find(&b, "2 tries, no good copy").is_some(), "{}", text(&b));
        assert!(find(&b, "hinted").is_some(), "{}", text(&b));
    }
}

#[test]
fn etcd_not_configured() {
    let mut s = State::new(ADMIN, &[]);
    update(&mut s, Action::Status(Ok(cluster(&NODES, &[]))));
    let b = render(&s, 80, 24);
    assert!(find(&b, "etcd not configured").is_some());
}

#[test]
fn popups() {
    let mut s = normal();
    update(&mut s, Action::OpenAdd);
    for c in "127.0.0.1:99999".chars() {
        update(&mut s, Action::Input(c));
    }
    update(&mut s, Action::Submit);
    check("add_prompt", &s, 80, 24);

    let mut s = normal();
    update(&mut s, Action::Down);
    update(&mut s, Action::OpenRemove);
    update(
        &mut s,
        Action::Planned {
            node: NODES[1].into(),
            result: Ok(Plan {
                files: 210,
                bytes: 231_000_000,
                moves: vec![
                    PlanMove {
                        from: NODES[1].into(),
                        to: NODES[0].into(),
                        files: 98,
                        bytes: 107_800_000,
                    },
                    PlanMove {
                        from: NODES[1].into(),
                        to: NODES[2].into(),
                        files: 112,
                        bytes: 123_200_000,
                    },
                ],
            }),
        },
    );
    check("confirm_remove", &s, 80, 24);

    let mut s = normal();
    update(&mut s, Action::ToggleHelp);
    check("help", &s, 80, 24);
}

/// The capture used in docs/console.md.
#[test]
fn docs_capture() {
    check("migrating", &migrating(), 100, 30);
}

/// docs/console.md shows the current capture and names every key of the table.
#[test]
fn docs_match_the_console() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("docs/console.md")).unwrap();
    let capture = text(&render(&migrating(), 100, 30));
    assert!(
        docs.contains(&capture),
        "docs/console.md's capture is out of date; paste tests/snapshots/migrating_100x30.txt"
    );
    for b in tritontube::tui::keys::BINDINGS {
        for key in b.label.split('/') {
            let shown = match key {
                "type" => continue,
                "Del" => "`Del`",
                k => k,
            };
            assert!(docs.contains(shown), "docs/console.md lacks key {key:?}");
        }
    }
}

/// The migration panel shows the pace in force and, paused, says so.
#[test]
fn the_migration_panel_shows_the_pace_and_the_pause() {
    let mut s = migrating();
    let mut c = s.cluster.clone().unwrap();
    c.pace = Some(tritontube::tui::pace::PaceInfo {
        mbps: 16,
        paused: false,
        measured_bytes_per_sec: 15_400_000.0,
    });
    update(&mut s, Action::Status(Ok(c.clone())));
    let screen = text(&render(&s, 100, 30));
    assert!(
        screen.contains("moves at pace 16 MB/s (+/- to change); measured 15.4 MB/s"),
        "{screen}"
    );
    assert!(!screen.contains("PAUSED"), "{screen}");

    c.pace = Some(tritontube::tui::pace::PaceInfo {
        mbps: 0,
        paused: true,
        measured_bytes_per_sec: 0.0,
    });
    update(&mut s, Action::Status(Ok(c)));
    let buffer = render(&s, 100, 30);
    let screen = text(&buffer);
    assert!(
        screen.contains("moves PAUSED (pace unlimited when resumed; p resumes)"),
        "{screen}"
    );
    assert_eq!(fg_at(&buffer, "moves PAUSED"), Color::Yellow);
}

#[test]
fn renders_zones_and_the_share_of_each() {
    let mut state = normal();
    let cluster = state.cluster.as_mut().unwrap();
    for (node, zone) in cluster.nodes.iter_mut().zip(["east", "east", "west"]) {
        node.zone = zone.to_string();
    }
    let east: f64 = cluster.nodes[..2].iter().map(|n| n.share).sum();
    let west = cluster.nodes[2].share;
    for (w, h) in SIZES {
        let b = check("zones", &state, w, h);
        // The other columns always keep their room and their figures whole.
        assert!(find(&b, "latency").is_some(), "at {w}x{h}");
        assert!(find(&b, "209.8 MiB").is_some(), "at {w}x{h}");
        if w < 120 {
            // No room for the zone column, nor for the ring's legend.
            assert!(find(&b, "east").is_none());
            continue;
        }
        assert!(find(&b, "zone").is_some(), "zone column at {w}x{h}");
        assert!(find(&b, "east").is_some());
        assert!(
            find(&b, &format!("{:.1}%", east * 100.0)).is_some(),
            "east's share {east}"
        );
        assert!(find(&b, "zone east").is_some() && find(&b, "zone west").is_some());
        assert!(west > 0.0);
    }
    // Without zones the column is not there at all.
    let plain = render(&normal(), 120, 40);
    assert!(find(&plain, " zone ").is_none());
}
