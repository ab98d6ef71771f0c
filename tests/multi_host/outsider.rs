//! A host outside the cluster: no certificate, or one of another CA.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tritontube::proto::admin::video_content_admin_service_client::VideoContentAdminServiceClient;
use tritontube::proto::admin::{
    AddNodeRequest, DeleteVideoRequest, ListNodesRequest, RemoveNodeRequest, StartRepairRequest,
};
use tritontube::proto::storage::storage_service_client::StorageServiceClient;
use tritontube::proto::storage::{DeleteRequest, DownloadRequest, ListFilesRequest, UploadRequest};

use crate::cluster::*;
use crate::support::web::upload_bytes;

fn pem(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// The ways a host outside the cluster may try to call: (what, TLS settings). Each trusts
/// the cluster's CA, so that it is the server, not the caller, that refuses.
fn outsiders(cluster: &Cluster) -> Vec<(&'static str, Option<ClientTlsConfig>)> {
    let trusting = || {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(pem(&cluster.certs.join("ca.crt"))))
    };
    let foreign = |name: &str| {
        trusting().identity(Identity::from_pem(
            pem(&cluster.foreign.join(format!("{name}.crt"))),
            pem(&cluster.foreign.join(format!("{name}.key"))),
        ))
    };
    vec![
        ("a plain connection", None),
        ("TLS without a certificate", Some(trusting())),
        ("a node certificate of another CA", Some(foreign("node"))),
        (
            "an operator certificate of another CA",
            Some(foreign("client.root")),
        ),
    ]
}

/// A channel to `address`, or none when the handshake is refused at once.
async fn channel(address: &str, tls: Option<ClientTlsConfig>) -> Option<Channel> {
    let endpoint = match tls {
        None => Endpoint::from_shared(format!("http://{address}")).unwrap(),
        Some(tls) => Endpoint::from_shared(format!("https://{address}"))
            .unwrap()
            .tls_config(tls)
            .unwrap(),
    };
    endpoint
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .ok()
}

/// Lists, reads, writes and deletes on a storage node; panics on a call that went through.
async fn try_storage(channel: Channel, existing: &str, what: &str) {
    let mut client = StorageServiceClient::new(channel);
    let data = b"written from outside".to_vec();
    let calls = [
        (
            "list",
            client.list_files(ListFilesRequest {}).await.map(drop),
        ),
        (
            "read",
            client
                .download_file(DownloadRequest {
                    key: existing.into(),
                })
                .await
                .map(drop),
        ),
        (
            "write",
            client
                .upload_file(UploadRequest {
                    key: "intruder/a.m4s".into(),
                    data: data.into(),
                })
                .await
                .map(drop),
        ),
        (
            "delete",
            client
                .delete_file(DeleteRequest {
                    key: existing.into(),
                })
                .await
                .map(drop),
        ),
    ];
    for (call, result) in calls {
        assert!(result.is_err(), "{what}: storage {call} went through");
    }
}

/// Lists, changes the ring, repairs and deletes on an admin service; panics on a call
/// that went through.
async fn try_admin(channel: Channel, cluster: &Cluster, what: &str) {
    let mut client = VideoContentAdminServiceClient::new(channel);
    let node = cluster.storage_address("s1");
    let calls = [
        (
            "list",
            client.list_nodes(ListNodesRequest {}).await.map(drop),
        ),
        (
            "add",
            client
                .add_node(AddNodeRequest {
                    node_address: format!("{}:{STORAGE_PORT}", cluster.net.address("outsider")),
                })
                .await
                .map(drop),
        ),
        (
            "remove",
            client
                .remove_node(RemoveNodeRequest { node_address: node })
                .await
                .map(drop),
        ),
        (
            "repair",
            client
                .start_repair(StartRepairRequest {
                    dry_run: false,
                    verify: false,
                })
                .await
                .map(drop),
        ),
        (
            "delete",
            client
                .delete_video(DeleteVideoRequest { id: "kept".into() })
                .await
                .map(drop),
        ),
    ];
    for (call, result) in calls {
        assert!(result.is_err(), "{what}: admin {call} went through");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_outside_the_cluster_can_do_nothing() {
    let cluster = Cluster::start().await;
    let videos = tempfile::tempdir().unwrap();
    let uploaded = upload_bytes(&cluster.url("w1"), "kept.mp4", clip(videos.path(), "c")).await;
    assert_eq!(uploaded.status(), StatusCode::SEE_OTHER);
    let manifest = format!("{}/content/kept/manifest.mpd", cluster.url("w2"));
    let (status, served) = fetch(&manifest).await;
    assert_eq!(status, StatusCode::OK);
    let before = cluster.disks();
    assert!(before.values().all(|files| !files.is_empty()), "{before:?}");

    // The same calls with the cluster's node certificate go through: the refusals below
    // are the certificates', not the network's.
    let member = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem(&cluster.certs.join("ca.crt"))))
        .identity(Identity::from_pem(
            pem(&cluster.certs.join("node.crt")),
            pem(&cluster.certs.join("node.key")),
        ));
    for host in STORAGE {
        let connected = channel(&cluster.storage_address(host), Some(member.clone()))
            .await
            .expect("a member connects");
        StorageServiceClient::new(connected)
            .list_files(ListFilesRequest {})
            .await
            .expect("a member lists");
    }

    // The test process calls from its own address on the bridge, outside the cluster.
    for (what, tls) in outsiders(&cluster) {
        for host in STORAGE {
            if let Some(connected) = channel(&cluster.storage_address(host), tls.clone()).await {
                try_storage(connected, "kept/manifest.mpd", what).await;
            }
        }
        for web in WEB {
            if let Some(connected) = channel(&cluster.admin_address(web), tls.clone()).await {
                try_admin(connected, &cluster, what).await;
            }
        }
    }

    // From the outsider host itself, with the project's own tools.
    let foreign = cluster.foreign.to_str().unwrap().to_string();
    for web in WEB {
        let admin = cluster.admin_address(web);
        for extra in [vec![], vec!["--certs-dir", foreign.as_str()]] {
            for command in [
                vec!["list", admin.as_str()],
                vec!["delete", admin.as_str(), "kept"],
            ] {
                let output = cluster
                    .net
                    .command("outsider", env!("CARGO_BIN_EXE_tritontube"))
                    .arg("admin")
                    .args(&extra)
                    .args(&command)
                    .env_remove("TRITONTUBE_CERTS_DIR")
                    .output()
                    .unwrap();
                assert!(
                    !output.status.success(),
                    "admin {extra:?} {command:?} from outside: {output:?}"
                );
            }
        }
        let deleted = cluster
            .net
            .command("outsider", "curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "DELETE",
            ])
            .arg(format!("{}/api/videos/kept", cluster.url(web)))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&deleted.stdout),
            "401",
            "{deleted:?}"
        );
    }

    assert_eq!(cluster.disks(), before, "a file changed on a storage host");
    let listed = cluster
        .operator("w1")
        .list_nodes(ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    let expected: Vec<String> = STORAGE.iter().map(|h| cluster.storage_address(h)).collect();
    assert_eq!(
        listed.into_iter().collect::<BTreeSet<_>>(),
        expected.into_iter().collect()
    );
    assert_eq!(fetch(&manifest).await, (StatusCode::OK, served));
}
