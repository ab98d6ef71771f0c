//! Console states built from plain values, shared by the update and render tests.

#![allow(dead_code)]

use tritontube::ring::Ring;
use tritontube::tui::app::{
    Action, ChangeKind, ClusterInfo, EtcdMemberName, EtcdProbe, EtcdStatus, Failure, MigrationInfo,
    NodeInfo, State, update,
};

pub const ADMIN: &str = "127.0.0.1:8081";
pub const NODES: [&str; 3] = ["127.0.0.1:8090", "127.0.0.1:8091", "127.0.0.1:8092"];
pub const NEW_NODE: &str = "127.0.0.1:8093";

pub fn etcd_endpoints() -> Vec<String> {
    (1..=5).map(|i| format!("127.0.0.1:2{i}79")).collect()
}

/// A cluster whose ring holds `ring` and which also knows the spares `spare`.
pub fn cluster(ring: &[&str], spare: &[&str]) -> ClusterInfo {
    let r = Ring::with_nodes(64, 2, ring.iter().copied());
    let shares = r.shares();
    let mut nodes: Vec<NodeInfo> = ring
        .iter()
        .enumerate()
        .map(|(i, a)| NodeInfo {
            address: a.to_string(),
            in_ring: true,
            healthy: true,
            latency_us: 420 + 130 * i as u64,
            files: 200 + 10 * i as u64,
            bytes: (200 + 10 * i as u64) * 1_100_000,
            share: shares[*a],
            error: String::new(),
            zone: String::new(),
        })
        .collect();
    nodes.extend(spare.iter().map(|a| NodeInfo {
        address: a.to_string(),
        in_ring: false,
        healthy: true,
        latency_us: 380,
        ..NodeInfo::default()
    }));
    ClusterInfo {
        nodes,
        tokens: r.tokens().map(|(p, n)| (p, n.to_string())).collect(),
        virtual_nodes: 64,
        replicas: 2,
        migration: None,
        pace: None,
    }
}

pub fn members() -> Vec<EtcdMemberName> {
    etcd_endpoints()
        .iter()
        .enumerate()
        .map(|(i, e)| EtcdMemberName {
            id: 0x1000 + i as u64,
            name: format!("etcd-{}", i + 1),
            client_urls: vec![format!("http://{e}")],
        })
        .collect()
}

/// A healthy answer from member `i` (0-based); member 0 leads.
pub fn etcd_ok(i: usize) -> Action {
    Action::Etcd(EtcdProbe {
        endpoint: etcd_endpoints()[i].clone(),
        result: Ok(EtcdStatus {
            member_id: 0x1000 + i as u64,
            leader_id: 0x1000,
            raft_term: 7,
            raft_index: 18_234 + i as u64,
            db_size: 2_400_000 + 4096 * i as u64,
            latency_us: 600 + 100 * i as u64,
            members: members(),
        }),
    })
}

pub fn etcd_down(i: usize) -> Action {
    Action::Etcd(EtcdProbe {
        endpoint: etcd_endpoints()[i].clone(),
        result: Err("no answer within 1 s".into()),
    })
}

pub fn migration(done_files: u64, total_files: u64, finished: bool) -> MigrationInfo {
    let per_file = 1_048_576;
    MigrationInfo {
        id: "m-1".into(),
        kind: ChangeKind::Add,
        node: NEW_NODE.into(),
        files_total: total_files,
        files_done: done_files,
        bytes_total: total_files * per_file,
        bytes_done: done_files * per_file,
        bytes_per_second: if finished { 0.0 } else { 4.0 * per_file as f64 },
        current_key: if finished {
            String::new()
        } else {
            "big-buck-bunny/chunk-0-00042.m4s".into()
        },
        errors: 0,
        last_error: String::new(),
        finished,
        events: vec![
            format!("plan: add {NEW_NODE}, {total_files} files to copy"),
            "copying to 127.0.0.1:8093".into(),
        ],
        arcs_total: 0,
        arcs_done: 0,
        arc_now: 0,
    }
}

pub fn apply(state: &mut State, actions: impl IntoIterator<Item = Action>) {
    for a in actions {
        update(state, a);
    }
}

pub fn tick(state: &mut State, clock: &str) {
    update(
        state,
        Action::Tick {
            clock: clock.into(),
        },
    );
}

/// Three nodes in the ring and a spare, five healthy etcd members, nothing running.
pub fn normal() -> State {
    let mut s = State::new(ADMIN, &etcd_endpoints());
    tick(&mut s, "12:00:01");
    apply(&mut s, [Action::Status(Ok(cluster(&NODES, &[NEW_NODE])))]);
    apply(&mut s, (0..5).map(etcd_ok));
    tick(&mut s, "12:00:02");
    s
}

/// `normal`, with the spare being added: 40 % copied.
pub fn migrating() -> State {
    let mut s = normal();
    apply(
        &mut s,
        [Action::OpenAdd, Action::Input('1'), Action::Backspace],
    );
    for c in NEW_NODE.chars() {
        update(&mut s, Action::Input(c));
    }
    update(&mut s, Action::Submit);
    tick(&mut s, "12:00:03");
    let mut c = cluster(&[NODES[0], NODES[1], NODES[2], NEW_NODE], &[]);
    c.migration = Some(migration(120, 300, false));
    update(&mut s, Action::Status(Ok(c)));
    s
}

/// `normal` with etcd-3 and storage node 8092 down.
pub fn member_down() -> State {
    let mut s = normal();
    let mut c = cluster(&NODES, &[NEW_NODE]);
    c.nodes[2].healthy = false;
    c.nodes[2].error = "connection refused".into();
    c.nodes[2].latency_us = 0;
    tick(&mut s, "12:00:04");
    apply(&mut s, [Action::Status(Ok(c)), etcd_down(2)]);
    s
}

/// A healthy answer from member `i` that knows no leader (no quorum).
pub fn etcd_leaderless(i: usize) -> Action {
    let Action::Etcd(mut probe) = etcd_ok(i) else {
        unreachable!("etcd_ok makes an etcd probe")
    };
    if let Ok(status) = &mut probe.result {
        status.leader_id = 0;
    }
    Action::Etcd(probe)
}

/// Admin service unreachable for 12 s, and etcd down to 2 of 5 members, which answer
/// but cannot elect a leader.
pub fn error() -> State {
    let mut s = member_down();
    apply(
        &mut s,
        [
            etcd_down(3),
            etcd_down(4),
            etcd_leaderless(0),
            etcd_leaderless(1),
        ],
    );
    update(
        &mut s,
        Action::Status(Err(Failure::new(
            "UNAVAILABLE",
            "tcp connect error: Connection refused (os error 111)",
        ))),
    );
    for i in 0..12 {
        tick(&mut s, &format!("12:00:{:02}", 5 + i));
    }
    s
}
