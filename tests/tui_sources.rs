//! The console's data sources against real servers: the admin service with and without
//! its token, PlanChange, and etcd probes of a live and of a dead endpoint.

mod support;

use std::net::TcpListener;

use support::etcd::EtcdCluster;
use support::start_storage_node;
use support::web::{WebOptions, start_web_ring};
use tritontube::tui::sources::{admin_client, cluster_status, probe_once};

#[tokio::test]
async fn admin_status_needs_the_token_and_reports_the_ring() {
    let a = start_storage_node().await;
    let b = start_storage_node().await;
    let options = WebOptions {
        admin_token: Some("s3cret".into()),
        ..WebOptions::default()
    };
    let web = start_web_ring(&[&a, &b], options).await;

    let mut anonymous = admin_client(&web.admin, None).unwrap();
    let refused = cluster_status(&mut anonymous).await.unwrap_err();
    assert!(refused.is_unauthenticated(), "{refused:?}");
    let mut wrong = admin_client(&web.admin, Some("guess")).unwrap();
    assert!(
        cluster_status(&mut wrong)
            .await
            .unwrap_err()
            .is_unauthenticated()
    );

    let mut admin = admin_client(&web.admin, Some("s3cret")).unwrap();
    let info = cluster_status(&mut admin)
        .await
        .expect("status with the token");
    let mut addresses: Vec<_> = info.nodes.iter().map(|n| n.address.clone()).collect();
    addresses.sort();
    let mut expected = vec![a.address(), b.address()];
    expected.sort();
    assert_eq!(addresses, expected);
    assert!(info.nodes.iter().all(|n| n.healthy && n.in_ring));
    let total: f64 = info.nodes.iter().map(|n| n.share).sum();
    assert!(
        (total - 1.0).abs() < 1e-6,
        "shares add up to the ring: {total}"
    );
    assert_eq!(
        info.tokens.len(),
        2 * info.virtual_nodes as usize,
        "every token of every node"
    );

    web.stop().await;
    let down = cluster_status(&mut admin).await.unwrap_err();
    assert_eq!(down.code, "UNAVAILABLE", "{down:?}");
    assert!(!down.message.is_empty());
}

#[tokio::test]
async fn etcd_probes_tell_a_live_member_from_a_dead_one() {
    let etcd = EtcdCluster::start(1).await;
    let mut client = None;
    let status = probe_once(&etcd.endpoint(0), None, &mut client)
        .await
        .expect("live member answers");
    assert_ne!(status.member_id, 0);
    assert_eq!(status.leader_id, status.member_id, "a lone member leads");
    assert!(status.raft_term >= 1);
    assert!(status.db_size > 0);
    assert_eq!(status.members.len(), 1);
    assert_eq!(status.members[0].name, "m0");
    assert!(client.is_some(), "the client is kept for the next probe");

    // A port nobody listens on: the probe fails quickly instead of hanging.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut client = None;
    let err = probe_once(&format!("127.0.0.1:{port}"), None, &mut client)
        .await
        .unwrap_err();
    assert!(!err.is_empty());
}
