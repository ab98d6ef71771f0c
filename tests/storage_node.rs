//! The storage node end to end: real nodes on loopback in temporary folders, driven through
//! the generated client (the original's compatible RPCs) and through `StorageClient`.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use support::{
    StorageNode, files_under, pseudo_random_bytes, sha256_hex, start_storage_node,
    start_storage_node_in,
};
use tonic::Code;
use tonic::transport::Channel;
use tritontube::node::client::{CHUNK_BYTES, MAX_MESSAGE_BYTES, NodeStats, StorageClient};
use tritontube::proto::storage::storage_service_client::StorageServiceClient;
use tritontube::proto::storage::{
    DeleteFilesRequest, DeleteRequest, DownloadRequest, GetFileRequest, ListFilesRequest,
    NodeStatsRequest, PutFileChunk, StatFileRequest, StreamKeysRequest, UploadRequest,
};
use tritontube::ring::KeyRange;

const MIB: usize = 1024 * 1024;

/// The generated client, as the original system's web node would use it.
async fn raw_client(node: &StorageNode) -> StorageServiceClient<Channel> {
    StorageServiceClient::connect(format!("http://{}", node.addr))
        .await
        .expect("connect")
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

async fn upload(raw: &mut StorageServiceClient<Channel>, key: &str, data: &[u8]) {
    let reply = raw
        .upload_file(UploadRequest {
            key: key.into(),
            data: Bytes::copy_from_slice(data),
        })
        .await
        .unwrap_or_else(|s| panic!("upload {key}: {s}"))
        .into_inner();
    assert!(reply.success, "upload {key} reported failure");
}

async fn download(raw: &mut StorageServiceClient<Channel>, key: &str) -> Option<Bytes> {
    let reply = raw
        .download_file(DownloadRequest { key: key.into() })
        .await
        .unwrap_or_else(|s| panic!("download {key}: {s}"))
        .into_inner();
    reply.found.then_some(reply.data)
}

async fn list_files(raw: &mut StorageServiceClient<Channel>) -> BTreeSet<String> {
    raw.list_files(ListFilesRequest {})
        .await
        .expect("list files")
        .into_inner()
        .keys
        .into_iter()
        .collect()
}

async fn stats(client: &StorageClient) -> NodeStats {
    client.stats().await.expect("node stats").0
}

/// Waits (bounded) for a condition on the file system that another task brings about.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Everything under a node's folder but the node's own bookkeeping at its top (the store
/// marker and the scrub's progress), which every running node has.
/// What the store holds under its folder, without the node's own bookkeeping at the top
/// (its marker, the scrub's state and their temp files while they are rewritten, the
/// quarantine): a file left under a video folder still counts.
/// Stores `size` pseudo-random bytes as `v/seg.m4s` through `client`; returns them and
/// their SHA-256.
async fn put_segment(client: &StorageClient, size: usize, seed: u64) -> (Bytes, String) {
    let data = Bytes::from(pseudo_random_bytes(size, seed));
    client.put("v/seg.m4s", data.clone(), None).await.unwrap();
    let hash = sha256_hex(&data);
    (data, hash)
}

fn store_files(dir: &Path) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .filter(|f| !f.starts_with('.'))
        .collect()
}

fn temp_files(dir: &Path) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .filter(|f| f.ends_with(".part"))
        .collect()
}

fn payloads() -> Vec<(&'static str, Vec<u8>)> {
    let mut binary: Vec<u8> = (0..=255u8).collect();
    binary.extend_from_slice(&[0, 0, 0xff, 0xfe, b'\n', b'\r']);
    vec![
        (
            "text",
            b"<?xml version=\"1.0\"?>\n<MPD>hello, tritontube</MPD>\n".to_vec(),
        ),
        ("binary", binary),
        ("empty", Vec::new()),
        ("chunk-sized", pseudo_random_bytes(CHUNK_BYTES, 7)),
        ("20 MiB", pseudo_random_bytes(20 * MIB + 3, 20)),
    ]
}

#[tokio::test]
async fn files_round_trip_through_compatible_and_streaming_rpcs() {
    let node = start_storage_node().await;
    let mut raw = raw_client(&node).await;
    let client = node.client();

    for (i, (name, data)) in payloads().into_iter().enumerate() {
        let sha = sha256_hex(&data);

        // In through the original's UploadFile, out through both ways.
        let key = format!("compat/file-{i}.bin");
        upload(&mut raw, &key, &data).await;
        assert_eq!(
            download(&mut raw, &key).await.as_deref(),
            Some(&data[..]),
            "{name}"
        );
        assert_eq!(
            client.get(&key).await.unwrap().as_deref(),
            Some(&data[..]),
            "{name}"
        );
        let stat = client.stat(&key).await.unwrap().expect("stat");
        assert_eq!(
            (stat.size, stat.sha256.as_str()),
            (data.len() as u64, sha.as_str())
        );

        // In through PutFile (with the expected hash), out through both ways.
        let key = format!("stream/file-{i}.bin");
        let put = client
            .put(&key, Bytes::from(data.clone()), Some(&sha))
            .await
            .unwrap();
        assert_eq!(
            (put.size, put.sha256.as_str()),
            (data.len() as u64, sha.as_str())
        );
        assert_eq!(
            download(&mut raw, &key).await.as_deref(),
            Some(&data[..]),
            "{name}"
        );
        assert_eq!(
            client.get(&key).await.unwrap().as_deref(),
            Some(&data[..]),
            "{name}"
        );
    }
    assert!(temp_files(&node.dir).is_empty());
}

#[tokio::test]
async fn a_64_mib_file_passes_through_unary_and_streaming_rpcs() {
    let node = start_storage_node().await;
    let mut raw = raw_client(&node).await;
    let client = node.client();
    let data = pseudo_random_bytes(64 * MIB, 64);
    let sha = sha256_hex(&data);

    upload(&mut raw, "big/unary.mp4", &data).await;
    assert!(download(&mut raw, "big/unary.mp4").await.unwrap() == data[..]);

    let put = client
        .put("big/stream.mp4", Bytes::from(data.clone()), None)
        .await
        .unwrap();
    assert_eq!(
        (put.size, put.sha256.as_str()),
        (data.len() as u64, sha.as_str())
    );
    let (stat, stream) = client
        .get_stream("big/stream.mp4", 0, 0)
        .await
        .unwrap()
        .expect("found");
    assert_eq!(stat.sha256, sha);
    let mut received = Vec::with_capacity(data.len());
    let mut largest_chunk = 0;
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        largest_chunk = largest_chunk.max(chunk.len());
        received.extend_from_slice(&chunk);
    }
    assert!(received == data, "streamed copy differs");
    assert!(largest_chunk <= CHUNK_BYTES, "streamed in chunks");
    assert_eq!(
        client.stat("big/unary.mp4").await.unwrap().unwrap().sha256,
        sha
    );
}

#[tokio::test]
async fn byte_ranges_are_served_with_the_whole_files_size_and_hash() {
    let node = start_storage_node().await;
    let client = node.client();
    let data = pseudo_random_bytes(CHUNK_BYTES * 3 + 1000, 3);
    let size = data.len() as u64;
    client
        .put("v1/chunk-0-00001.m4s", Bytes::from(data.clone()), None)
        .await
        .unwrap();

    let chunk = CHUNK_BYTES as u64;
    for (offset, length) in [
        (0, 0),
        (0, 1),
        (10, 100),
        (chunk - 1, 3),
        (chunk, chunk),
        (chunk / 2, 2 * chunk),
        (size - 5, 0),
        (size - 5, 100),
        (size, 0),
    ] {
        let (stat, stream) = client
            .get_stream("v1/chunk-0-00001.m4s", offset, length)
            .await
            .unwrap()
            .expect("found");
        assert_eq!(stat.size, size);
        assert_eq!(stat.sha256, sha256_hex(&data));
        let got: Vec<u8> = stream.map(|c| c.unwrap().to_vec()).concat().await;
        let end = if length == 0 {
            size
        } else {
            (offset + length).min(size)
        };
        assert_eq!(
            got,
            data[offset as usize..end as usize],
            "{offset}+{length}"
        );
    }

    let err = client
        .get_stream("v1/chunk-0-00001.m4s", size + 1, 0)
        .await
        .err()
        .expect("offset past the end is refused");
    assert_eq!(err.code(), Some(Code::OutOfRange));
}

#[tokio::test]
async fn missing_files_are_not_found_everywhere() {
    let node = start_storage_node().await;
    let mut raw = raw_client(&node).await;
    let client = node.client();
    assert_eq!(download(&mut raw, "v1/nothing.m4s").await, None);
    assert_eq!(client.get("v1/nothing.m4s").await.unwrap(), None);
    assert_eq!(client.stat("v1/nothing.m4s").await.unwrap(), None);
    let status = raw
        .get_file(GetFileRequest {
            key: "v1/nothing.m4s".into(),
            offset: 0,
            length: 0,
        })
        .await
        .expect_err("not found");
    assert_eq!(status.code(), Code::NotFound);
    let status = raw
        .stat_file(StatFileRequest {
            key: "v1/nothing.m4s".into(),
            verify: true,
        })
        .await
        .expect_err("not found");
    assert_eq!(status.code(), Code::NotFound);
    assert!(store_files(&node.dir).is_empty());
}

#[tokio::test]
async fn overwrite_replaces_the_whole_file_and_keeps_totals_exact() {
    let node = start_storage_node().await;
    let mut raw = raw_client(&node).await;
    let client = node.client();
    let long = pseudo_random_bytes(3 * MIB, 1);
    let short = b"short".to_vec();

    upload(&mut raw, "v1/manifest.mpd", &long).await;
    upload(&mut raw, "v1/manifest.mpd", &short).await;
    assert_eq!(download(&mut raw, "v1/manifest.mpd").await.unwrap(), short);
    assert_eq!(
        client
            .stat("v1/manifest.mpd")
            .await
            .unwrap()
            .unwrap()
            .sha256,
        sha256_hex(&short)
    );
    client
        .put("v1/manifest.mpd", Bytes::from(long.clone()), None)
        .await
        .unwrap();
    assert!(client.get("v1/manifest.mpd").await.unwrap().unwrap() == long);
    assert_eq!(
        stats(&client).await,
        NodeStats {
            file_count: 1,
            total_bytes: long.len() as u64
        }
    );
    let visible: Vec<_> = store_files(&node.dir)
        .into_iter()
        .filter(|f| !f.contains("/."))
        .collect();
    assert_eq!(visible, ["v1", "v1/manifest.mpd"]);
}

#[tokio::test]
async fn thirty_two_concurrent_clients() {
    let node = start_storage_node().await;
    let mut tasks = Vec::new();
    for i in 0..32u64 {
        // Each task has its own connection.
        let client = StorageClient::connect_lazy(&node.address()).unwrap();
        tasks.push(tokio::spawn(async move {
            let own = pseudo_random_bytes(100_000 + 7919 * i as usize, i);
            let key = format!("video-{}/chunk-{i}.m4s", i % 4);
            let put = client
                .put(&key, Bytes::from(own.clone()), None)
                .await
                .unwrap();
            assert_eq!(put.sha256, sha256_hex(&own));
            assert!(client.get(&key).await.unwrap().unwrap() == own);
            // Everyone also races on one key.
            let shared = pseudo_random_bytes(50_000 + i as usize, 1000 + i);
            client
                .put("shared/same.m4s", Bytes::from(shared.clone()), None)
                .await
                .unwrap();
            (own.len() as u64, shared)
        }));
    }
    let mut own_bytes = 0;
    let mut candidates = Vec::new();
    for task in tasks {
        let (len, shared) = task.await.unwrap();
        own_bytes += len;
        candidates.push(shared);
    }
    let client = node.client();
    let last = client.get("shared/same.m4s").await.unwrap().unwrap();
    assert!(
        candidates.iter().any(|c| c[..] == last[..]),
        "the shared key holds one whole upload"
    );
    assert_eq!(
        client
            .stat("shared/same.m4s")
            .await
            .unwrap()
            .unwrap()
            .sha256,
        sha256_hex(&last)
    );
    assert_eq!(
        stats(&client).await,
        NodeStats {
            file_count: 33,
            total_bytes: own_bytes + last.len() as u64
        }
    );
    assert!(temp_files(&node.dir).is_empty());
}

#[tokio::test]
async fn listing_through_list_files_and_stream_keys() {
    let node = start_storage_node().await;
    let mut raw = raw_client(&node).await;
    let client = node.client();
    assert!(list_files(&mut raw).await.is_empty());
    assert!(client.keys(true).await.unwrap().is_empty());

    let mut expected = std::collections::BTreeMap::new();
    for (i, key) in [
        "v1/manifest.mpd",
        "v1/init-0.m4s",
        "big buck bunny/chunk-0-00001.m4s",
    ]
    .into_iter()
    .enumerate()
    {
        let data = pseudo_random_bytes(1000 * (i + 1), i as u64);
        client
            .put(key, Bytes::from(data.clone()), None)
            .await
            .unwrap();
        expected.insert(key.to_string(), (data.len() as u64, sha256_hex(&data)));
    }
    let keys: BTreeSet<String> = expected.keys().cloned().collect();
    assert_eq!(list_files(&mut raw).await, keys);

    let plain = client.keys(false).await.unwrap();
    assert_eq!(
        plain.iter().map(|k| k.key.clone()).collect::<BTreeSet<_>>(),
        keys
    );
    let with_stat = client.keys(true).await.unwrap();
    assert_eq!(with_stat.len(), expected.len());
    for info in with_stat {
        assert_eq!(
            (info.size, info.sha256),
            expected[&info.key],
            "{}",
            info.key
        );
    }
}

#[tokio::test]
async fn stream_keys_sends_only_the_keys_of_the_arc_asked_for() {
    let node = start_storage_node().await;
    let mut raw = raw_client(&node).await;
    let client = node.client();
    let keys: Vec<String> = (0..60).map(|i| format!("arcs/file-{i:03}")).collect();
    for key in &keys {
        client
            .put(key, Bytes::from(key.clone()), None)
            .await
            .unwrap();
    }
    let arcs = KeyRange::split_whole(4);
    let mut seen = BTreeSet::new();
    for arc in &arcs {
        // Straight from the node, without the client's own filter.
        let mut stream = raw
            .stream_keys(StreamKeysRequest {
                with_stat: false,
                range: Some(tritontube::proto::storage::KeyRange {
                    start: arc.start,
                    end: arc.end,
                }),
            })
            .await
            .unwrap()
            .into_inner();
        let mut in_arc = BTreeSet::new();
        while let Some(batch) = stream.message().await.unwrap() {
            in_arc.extend(batch.keys.into_iter().map(|k| k.key));
        }
        let expected: BTreeSet<String> = keys
            .iter()
            .filter(|k| arc.contains_key(k))
            .cloned()
            .collect();
        assert_eq!(in_arc, expected, "arc {arc}");
        assert!(in_arc.len() < keys.len(), "one arc of four held every key");
        seen.extend(in_arc);
    }
    assert_eq!(seen, keys.iter().cloned().collect::<BTreeSet<_>>());
}

#[tokio::test]
async fn listing_a_large_folder_streams_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut keys = BTreeSet::new();
    for v in 0..5 {
        let video = dir.path().join(format!("video-{v}"));
        std::fs::create_dir(&video).unwrap();
        for c in 0..500 {
            let name = format!("chunk-0-{c:05}.m4s");
            std::fs::write(video.join(&name), format!("{v}/{c}")).unwrap();
            keys.insert(format!("video-{v}/{name}"));
        }
    }
    let node = start_storage_node_in(dir.path()).await;
    let mut raw = raw_client(&node).await;

    let mut stream = raw
        .stream_keys(StreamKeysRequest {
            with_stat: false,
            range: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut batches = 0;
    let mut streamed = BTreeSet::new();
    while let Some(batch) = stream.message().await.unwrap() {
        assert!(!batch.keys.is_empty() && batch.keys.len() <= 1000);
        batches += 1;
        streamed.extend(batch.keys.into_iter().map(|k| k.key));
    }
    assert!(batches >= 3, "2 500 keys came in {batches} batches");
    assert_eq!(streamed, keys);
    assert_eq!(list_files(&mut raw).await, keys);
    let reply = raw
        .node_stats(NodeStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.file_count, 2500);
}

#[tokio::test]
async fn delete_files_checks_every_key_first_and_syncs_each_folder_once() {
    let node = start_storage_node().await;
    let mut raw = raw_client(&node).await;
    let client = node.client();
    for key in ["v1/a.m4s", "v1/b.m4s", "v2/a.m4s", "v3/keep.m4s"] {
        upload(&mut raw, key, key.as_bytes()).await;
    }

    // A bad key anywhere in the list: refused, and nothing is deleted.
    for bad in ["../v1/a.m4s", "v1/../../x", "", "v1/.hidden"] {
        let refused = raw
            .delete_files(DeleteFilesRequest {
                keys: vec!["v1/a.m4s".into(), bad.into()],
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{bad:?}");
    }
    let too_many = (0..1025).map(|i| format!("v9/{i}.m4s")).collect();
    let refused = raw
        .delete_files(DeleteFilesRequest { keys: too_many })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(list_files(&mut raw).await.len(), 4);

    // Both files of v1 (its folder goes), v2's only file, and a key never held.
    let deleted = client
        .delete_many(vec![
            "v1/a.m4s".into(),
            "v2/a.m4s".into(),
            "v1/b.m4s".into(),
            "never/there.m4s".into(),
        ])
        .await
        .unwrap();
    assert_eq!(deleted, 3);
    assert_eq!(
        list_files(&mut raw).await,
        BTreeSet::from(["v3/keep.m4s".into()])
    );
    assert!(
        !store_files(&node.dir)
            .iter()
            .any(|f| f.starts_with("v1") || f.starts_with("v2")),
        "the emptied video folders go too"
    );
    let left = stats(&client).await;
    assert_eq!((left.file_count, left.total_bytes), (1, 11));
    // Again: nothing held, nothing deleted, no error.
    assert_eq!(
        client.delete_many(vec!["v1/a.m4s".into()]).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn delete_is_idempotent_and_cleans_up() {
    let node = start_storage_node().await;
    let mut raw = raw_client(&node).await;
    let client = node.client();
    upload(&mut raw, "v1/a.m4s", b"a").await;
    upload(&mut raw, "v1/b.m4s", b"bb").await;
    client.stat("v1/a.m4s").await.unwrap().unwrap(); // leaves a checksum sidecar

    for _ in 0..2 {
        let reply = raw
            .delete_file(DeleteRequest {
                key: "v1/a.m4s".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(reply.success);
    }
    assert_eq!(download(&mut raw, "v1/a.m4s").await, None);
    assert_eq!(
        list_files(&mut raw).await,
        BTreeSet::from(["v1/b.m4s".into()])
    );
    assert!(!store_files(&node.dir).iter().any(|f| f.contains("a.m4s")));

    client.delete("v1/b.m4s").await.unwrap();
    client.delete("v1/b.m4s").await.unwrap();
    client.delete("never/there").await.unwrap();
    assert!(
        store_files(&node.dir).is_empty(),
        "the empty video folder goes too"
    );
    assert_eq!(stats(&client).await, NodeStats::default());
}

#[tokio::test]
async fn node_stats_follow_puts_and_deletes() {
    let node = start_storage_node().await;
    let client = node.client();
    assert_eq!(stats(&client).await, NodeStats::default());
    client
        .put("v1/a", Bytes::from_static(b"12345"), None)
        .await
        .unwrap();
    client
        .put("v2/b", Bytes::from(vec![1; 1000]), None)
        .await
        .unwrap();
    client.put("v2/c", Bytes::new(), None).await.unwrap();
    assert_eq!(
        stats(&client).await,
        NodeStats {
            file_count: 3,
            total_bytes: 1005
        }
    );
    client
        .put("v2/b", Bytes::from(vec![1; 10]), None)
        .await
        .unwrap();
    client.delete("v1/a").await.unwrap();
    assert_eq!(
        stats(&client).await,
        NodeStats {
            file_count: 2,
            total_bytes: 10
        }
    );
}

const BAD_KEYS: &[&str] = &[
    "",
    "/",
    "v1",
    "v1/",
    "/manifest.mpd",
    "/etc/passwd",
    "../etc/passwd",
    "../../../../../../etc/passwd",
    "v1/..",
    "../x",
    "..",
    "v1/../../x",
    "v1//x",
    "v1/sub/file",
    "v1\\x/y",
    "v1/a\\b",
    "C:\\temp/x",
    "v1/a\0b",
    "v1\0/b",
    "v1/a\nb",
    ".hidden/x",
    "v1/.hidden",
    "v1/.manifest.mpd.sha256",
];

#[tokio::test]
async fn bad_keys_are_refused_on_every_rpc_and_touch_nothing() {
    let node = start_storage_node().await;
    let mut raw = raw_client(&node).await;
    let client = node.client();
    let long = format!("{}/x", "a".repeat(256));
    let keys = BAD_KEYS.iter().copied().chain([long.as_str()]);

    for key in keys {
        let expect_invalid = |what: &str, code: Option<Code>| {
            assert_eq!(code, Some(Code::InvalidArgument), "{what} {key:?}");
        };
        let r = raw
            .upload_file(UploadRequest {
                key: key.into(),
                data: Bytes::from_static(b"payload"),
            })
            .await;
        expect_invalid("UploadFile", r.err().map(|s| s.code()));
        let r = raw.download_file(DownloadRequest { key: key.into() }).await;
        expect_invalid("DownloadFile", r.err().map(|s| s.code()));
        let r = raw.delete_file(DeleteRequest { key: key.into() }).await;
        expect_invalid("DeleteFile", r.err().map(|s| s.code()));
        let r = raw
            .put_file(futures::stream::iter([PutFileChunk {
                key: key.into(),
                data: Bytes::from_static(b"payload"),
                expected_sha256: String::new(),
            }]))
            .await;
        expect_invalid("PutFile", r.err().map(|s| s.code()));
        let r = raw
            .get_file(GetFileRequest {
                key: key.into(),
                offset: 0,
                length: 0,
            })
            .await;
        expect_invalid("GetFile", r.err().map(|s| s.code()));
        let r = raw
            .stat_file(StatFileRequest {
                key: key.into(),
                verify: false,
            })
            .await;
        expect_invalid("StatFile", r.err().map(|s| s.code()));

        // And through the client the web node uses.
        let r = client.put(key, Bytes::from_static(b"payload"), None).await;
        expect_invalid("put", r.err().and_then(|e| e.code()));
        let r = client.get(key).await;
        expect_invalid("get", r.err().and_then(|e| e.code()));
        let r = client.delete(key).await;
        expect_invalid("delete", r.err().and_then(|e| e.code()));
    }
    assert!(
        store_files(&node.dir).is_empty(),
        "{:?}",
        store_files(&node.dir)
    );

    // The message says which rule was broken.
    let status = raw
        .upload_file(UploadRequest {
            key: "../passwd".into(),
            data: Bytes::new(),
        })
        .await
        .unwrap_err();
    assert!(
        status.message().contains("starts with '.'"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn nothing_escapes_the_storage_folder() {
    let outer = tempfile::tempdir().unwrap();
    std::fs::write(outer.path().join("secret.txt"), "outside").unwrap();
    let dir = outer.path().join("store");
    let node = start_storage_node_in(&dir).await;
    let mut raw = raw_client(&node).await;
    let client = node.client();

    for key in [
        "../secret.txt",
        "../../../../../../../etc/passwd",
        "/etc/passwd",
        "..\\secret.txt/x",
        "store/../secret.txt",
    ] {
        let r = raw.download_file(DownloadRequest { key: key.into() }).await;
        assert_eq!(
            r.err().map(|s| s.code()),
            Some(Code::InvalidArgument),
            "{key}"
        );
        assert!(client.get(key).await.is_err(), "{key}");
        assert!(client.stat(key).await.is_err(), "{key}");
        let r = raw
            .upload_file(UploadRequest {
                key: key.into(),
                data: Bytes::from_static(b"pwned"),
            })
            .await;
        assert_eq!(
            r.err().map(|s| s.code()),
            Some(Code::InvalidArgument),
            "{key}"
        );
        assert!(
            client
                .put(key, Bytes::from_static(b"pwned"), None)
                .await
                .is_err()
        );
        assert!(client.delete(key).await.is_err());
    }
    for key in ["../escape", "../escape/x", "..%2fescape/x"] {
        let _ = client.put(key, Bytes::from_static(b"pwned"), None).await;
    }
    // Percent-encoding is not decoded: `%2e%2e` is a legal (if odd) video id.
    client
        .put("%2e%2e/x", Bytes::from_static(b"inside"), None)
        .await
        .unwrap();
    let mut outside = files_under(outer.path());
    outside.retain(|f| !f.starts_with("store"));
    assert_eq!(outside, ["secret.txt"]);
    assert_eq!(
        std::fs::read_to_string(outer.path().join("secret.txt")).unwrap(),
        "outside"
    );
    let inside: Vec<_> = store_files(&dir)
        .into_iter()
        .filter(|f| !f.contains("/."))
        .collect();
    assert_eq!(inside, ["%2e%2e", "%2e%2e/x"]);
}

#[tokio::test]
async fn checksum_mismatch_stores_nothing() {
    let node = start_storage_node().await;
    let client = node.client();
    let data = Bytes::from(pseudo_random_bytes(MIB + 1, 9));
    let wrong = sha256_hex(b"something else");

    let err = client
        .put("v1/chunk.m4s", data.clone(), Some(&wrong))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::DataLoss));
    assert_eq!(client.stat("v1/chunk.m4s").await.unwrap(), None);
    eventually("temp files to go", || temp_files(&node.dir).is_empty()).await;
    assert!(!store_files(&node.dir).iter().any(|f| f.contains("chunk")));

    // A mismatching overwrite leaves the old file as it was.
    let old = Bytes::from_static(b"old content");
    client.put("v1/chunk.m4s", old.clone(), None).await.unwrap();
    let err = client
        .put("v1/chunk.m4s", data.clone(), Some(&wrong))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::DataLoss));
    assert_eq!(client.get("v1/chunk.m4s").await.unwrap(), Some(old));
    assert_eq!(stats(&client).await.file_count, 1);

    // A malformed expected hash is refused before anything is written.
    let err = client
        .put("v1/other.m4s", data, Some("not-a-hash"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::InvalidArgument));
    assert_eq!(client.stat("v1/other.m4s").await.unwrap(), None);
}

/// A TCP relay whose connections can be cut, to lose a client midway through a call.
struct Relay {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            // Dropped with the task, which aborts every relayed connection.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    let mut outbound = tokio::net::TcpStream::connect(target).await?;
                    tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await
                });
            }
        });
        Relay { addr, task }
    }

    fn cut(&self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_stream_lost_midway_leaves_no_file_and_no_temp_file() {
    let node = start_storage_node().await;
    let relay = Relay::start(node.addr).await;
    let client = StorageClient::connect_lazy(&relay.addr.to_string()).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let call = tokio::spawn(async move {
        client
            .put_stream(
                "v1/partial.m4s",
                None,
                tokio_stream::wrappers::ReceiverStream::new(rx),
            )
            .await
    });
    for i in 0..4 {
        tx.send(Bytes::from(pseudo_random_bytes(CHUNK_BYTES, i)))
            .await
            .unwrap();
    }
    eventually("the upload to start writing", || {
        !temp_files(&node.dir).is_empty()
    })
    .await;

    relay.cut();
    assert!(call.await.unwrap().is_err(), "the call fails");
    drop(tx);
    eventually("the temp file to be removed", || {
        temp_files(&node.dir).is_empty()
    })
    .await;
    assert!(!store_files(&node.dir).iter().any(|f| f.contains("partial")));
    let client = node.client();
    assert_eq!(client.stat("v1/partial.m4s").await.unwrap(), None);
    assert_eq!(stats(&client).await, NodeStats::default());
}

#[tokio::test]
async fn a_restarted_node_serves_what_it_had() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| {
            (
                format!("video-{}/chunk-0-{i:05}.m4s", i % 3),
                pseudo_random_bytes(10_000 * (i + 1), i as u64),
            )
        })
        .collect();
    let node = start_storage_node_in(dir.path()).await;
    let client = node.client();
    for (key, data) in &files {
        client
            .put(key, Bytes::from(data.clone()), None)
            .await
            .unwrap();
    }
    let before = stats(&client).await;
    node.stop().await;

    // A crash mid-write would leave a temp file behind: the next start clears it.
    std::fs::write(dir.path().join("video-0/.tmp-1-1.part"), b"half").unwrap();

    let node = start_storage_node_in(dir.path()).await;
    let client = node.client();
    assert_eq!(stats(&client).await, before);
    for (key, data) in &files {
        assert!(client.get(key).await.unwrap().unwrap() == data[..], "{key}");
        assert_eq!(
            client.stat(key).await.unwrap().unwrap().sha256,
            sha256_hex(data)
        );
    }
    assert!(temp_files(dir.path()).is_empty());
    node.stop().await;
}

#[tokio::test]
async fn a_folder_laid_out_by_the_original_system_is_served_and_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = b"<MPD/>".to_vec();
    let segment = pseudo_random_bytes(1_500_000, 15);
    std::fs::create_dir_all(dir.path().join("my video")).unwrap();
    std::fs::write(dir.path().join("my video/manifest.mpd"), &manifest).unwrap();
    std::fs::write(dir.path().join("my video/chunk-0-00001.m4s"), &segment).unwrap();
    // Things no key can name are neither listed nor counted.
    std::fs::create_dir_all(dir.path().join(".trash")).unwrap();
    std::fs::write(dir.path().join(".trash/x"), b"x").unwrap();
    std::fs::write(dir.path().join("stray-file"), b"x").unwrap();
    std::fs::create_dir_all(dir.path().join("my video/nested")).unwrap();

    let node = start_storage_node_in(dir.path()).await;
    let mut raw = raw_client(&node).await;
    let client = node.client();
    assert_eq!(
        list_files(&mut raw).await,
        BTreeSet::from([
            "my video/chunk-0-00001.m4s".into(),
            "my video/manifest.mpd".into()
        ])
    );
    assert_eq!(
        stats(&client).await,
        NodeStats {
            file_count: 2,
            total_bytes: (manifest.len() + segment.len()) as u64
        }
    );
    let stat = client
        .stat("my video/chunk-0-00001.m4s")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stat.sha256, sha256_hex(&segment));
    let recorded =
        tritontube::node::record::recorded_sums(&dir.path().join("my video/chunk-0-00001.m4s"));
    assert_eq!(
        recorded.map(|(sha, size, _)| (sha, size as usize)),
        Some((sha256_hex(&segment), segment.len()))
    );
    assert_eq!(
        download(&mut raw, "my video/manifest.mpd").await.unwrap(),
        manifest
    );
    assert_eq!(client.get("my video/nested").await.unwrap(), None);

    // Changed by hand after it was hashed: the hash recorded on first sight stays the
    // truth, so the changed copy is refused as corrupt and set aside, not re-hashed.
    let changed = b"<MPD>changed</MPD>".to_vec();
    std::fs::write(dir.path().join("my video/chunk-0-00001.m4s"), &changed).unwrap();
    let error = client
        .stat("my video/chunk-0-00001.m4s")
        .await
        .expect_err("a copy that no longer matches its record");
    assert!(error.is_data_loss(), "{error}");
    let keys = client.keys(true).await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.key.as_str()).collect::<Vec<_>>(),
        ["my video/manifest.mpd"]
    );
    let quarantined = client.quarantine().await.unwrap();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].key, "my video/chunk-0-00001.m4s");
    assert_eq!(quarantined[0].expected_sha256, sha256_hex(&segment));
}

#[tokio::test]
async fn health_check_reports_serving() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let node = start_storage_node().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", node.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    for service in ["", "storage.StorageService"] {
        let reply = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.status(), ServingStatus::Serving, "{service:?}");
    }
}

#[tokio::test]
async fn an_empty_put_stream_is_refused() {
    let node = start_storage_node().await;
    let mut raw = raw_client(&node).await;
    let status = raw
        .put_file(futures::stream::iter(Vec::<PutFileChunk>::new()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(store_files(&node.dir).is_empty());
}

// ---- the binary ----

fn storage_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tritontube"));
    command
        .arg("storage")
        .env_remove("TRITONTUBE_HOST")
        .env_remove("TRITONTUBE_PORT")
        .env_remove("TRITONTUBE_STORAGE_DIR")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Runs the command to completion (bounded); returns success and stderr.
fn run_to_exit(mut command: Command) -> (bool, String) {
    let child = command.spawn().expect("spawn tritontube");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("tritontube should exit by itself")
        .expect("wait");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn binary_refuses_a_port_already_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut command = storage_command();
    command
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg(dir.path());
    let (success, stderr) = run_to_exit(command);
    assert!(!success, "exit status must be non-zero");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[test]
fn binary_refuses_a_folder_it_cannot_create() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let mut command = storage_command();
    command
        .args(["--host", "127.0.0.1", "--port", "0"])
        .arg(file.join("store"));
    let (success, stderr) = run_to_exit(command);
    assert!(!success, "exit status must be non-zero");
    assert!(stderr.contains("cannot create storage folder"), "{stderr}");
}

#[test]
fn binary_refuses_a_bad_scrub_interval_and_reserve() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value, says) in [
        ("--scrub-interval", "5w", "unit"),
        ("--scrub-interval", "0s", "at least one second"),
        ("--scrub-mbps", "fast", "--scrub-mbps"),
        ("--min-free-bytes", "lots", "--min-free-bytes"),
    ] {
        let mut command = storage_command();
        command
            .args(["--host", "127.0.0.1", "--port", "0", flag, value])
            .arg(dir.path().join("store"));
        let (success, stderr) = run_to_exit(command);
        assert!(!success, "{flag} {value}: exit status must be non-zero");
        assert!(stderr.contains(says), "{flag} {value}: {stderr}");
    }
    assert!(!dir.path().join("store").exists(), "nothing created");
}

#[test]
fn binary_serves_until_sigterm_then_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut command = storage_command();
    // Configured through the environment only.
    command
        .env("TRITONTUBE_HOST", "127.0.0.1")
        .env("TRITONTUBE_PORT", "0")
        .env("TRITONTUBE_STORAGE_DIR", &store);
    let mut child = command.spawn().expect("spawn tritontube");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let addr: SocketAddr = loop {
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                panic!("no 'listening on' line: {e}");
            }
        };
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr = rest.split([' ', ',']).next().unwrap();
            break addr.parse().unwrap();
        }
    };
    assert!(store.is_dir(), "DIR is created");
    std::net::TcpStream::connect(addr).expect("the node accepts connections");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tritontube did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}");
    // The reader thread ends at EOF, which the exit has brought.
    let rest: Vec<String> = rx.iter().collect();
    assert!(rest.iter().any(|l| l.contains("SIGTERM")), "{rest:?}");
}

/// Deleting every file of one video at once (as a migration does) succeeds for each of
/// them, although the last delete removes the folder the others are syncing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deletes_in_one_folder_all_succeed() {
    let node = start_storage_node().await;
    let client = node.client();
    for round in 0..20 {
        let keys: Vec<String> = (0..16)
            .map(|i| format!("video-{round}/chunk-0-{i:05}.m4s"))
            .collect();
        for key in &keys {
            client
                .put(key, Bytes::from_static(b"x"), None)
                .await
                .unwrap();
        }
        let deletes = keys.iter().map(|key| {
            let client = client.clone();
            async move { client.delete(key).await }
        });
        for result in futures::future::join_all(deletes).await {
            result.expect("every delete succeeds");
        }
        assert!(!node.dir.join(format!("video-{round}")).exists());
    }
}

#[tokio::test]
async fn a_node_pulls_a_file_straight_from_another_and_checks_its_hash() {
    let source = start_storage_node().await;
    let target = start_storage_node().await;
    let (data, hash) = put_segment(&source.client(), 3 * MIB + 17, 7).await;
    let to = target.client();

    let stat = to
        .pull("v/seg.m4s", &source.address(), &hash)
        .await
        .unwrap();
    assert_eq!(stat.size as usize, data.len());
    assert_eq!(stat.sha256, hash);
    assert_eq!(to.get("v/seg.m4s").await.unwrap().unwrap(), data);

    // A copy that does not hash as expected is refused and nothing is kept.
    let wrong = sha256_hex(b"something else");
    let refused = to.pull("v/other.m4s", &source.address(), &wrong).await;
    assert_eq!(refused.unwrap_err().code(), Some(Code::NotFound));
    source
        .client()
        .put("v/other.m4s", data.clone(), None)
        .await
        .unwrap();
    let refused = to.pull("v/other.m4s", &source.address(), &wrong).await;
    assert_eq!(refused.unwrap_err().code(), Some(Code::DataLoss));
    assert!(to.stat("v/other.m4s").await.unwrap().is_none());
    assert!(temp_files(&target.dir).is_empty());

    // Bad requests change nothing.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let unreachable = to.pull("v/third.m4s", &dead, &hash).await.unwrap_err();
    assert_eq!(unreachable.code(), Some(Code::Unavailable));
    for (key, from, sha) in [
        ("../etc/passwd", source.address(), hash.clone()),
        ("v/seg.m4s", "not an address".to_string(), hash.clone()),
        ("v/seg.m4s", source.address(), "xyz".to_string()),
        ("v/seg.m4s", source.address(), String::new()),
    ] {
        let refused = to.pull(key, &from, &sha).await.unwrap_err();
        assert_eq!(
            refused.code(),
            Some(Code::InvalidArgument),
            "{key} {from} {sha}"
        );
    }
    assert_eq!(stats(&to).await.file_count, 1);
}

/// Sends `request` on a new connection to the node's port, ends the sending side, and
/// returns everything the node answered before it closed the connection.
fn ask_directly(address: &str, request: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The node may close the connection before it has taken everything: not an error here.
    let _ = stream.write_all(request);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    // A connection the node resets ends the answer as well as one it closes.
    let _ = stream.read_to_end(&mut answer);
    answer
}

#[tokio::test]
async fn direct_copies_answer_bad_requests_clearly_and_change_nothing() {
    let node = start_storage_node().await;
    let (data, hash) = put_segment(&node.client(), 300_000, 11).await;
    let address = node.address();
    let answers = tokio::task::spawn_blocking(move || {
        [
            &b"TTCOPY1\n../etc/passwd\nv/missing.m4s\nv/.seg.m4s.sha256\nv/seg.m4s\n"[..],
            b"TTNOPE1\nv/seg.m4s\n",
            &[b"TTCOPY1\n".as_slice(), &[b'a'; 5000], b"\n"].concat(),
            b"TTCOPY1\nv/seg.m4s",
        ]
        .map(|request| ask_directly(&address, request))
    })
    .await
    .unwrap();

    // Each request gets its answer, in order, on the one connection.
    let mut first = answers[0].as_slice();
    let mut line = |what: &str| {
        let end = first.iter().position(|&b| b == b'\n').expect(what);
        let text = String::from_utf8(first[..end].to_vec()).unwrap();
        first = &first[end + 1..];
        text
    };
    assert!(line("bad key").starts_with("ERR 3 "), "a key with ..");
    assert!(line("missing").starts_with("ERR 5 "), "a missing file");
    assert!(line("hidden").starts_with("ERR 3 "), "a hidden name");
    let header = line("the file");
    let fields: Vec<&str> = header.split(' ').collect();
    assert_eq!(fields[..3], ["OK", "300000", hash.as_str()], "{header}");
    assert_eq!(fields[3].len(), 8, "the recorded CRC-32C: {header}");
    assert_eq!(
        first,
        data.as_ref(),
        "the bytes follow the header, and nothing else"
    );
    // A wrong greeting, an overlong line, a request cut short: closed without an answer.
    for (i, answer) in answers[1..].iter().enumerate() {
        assert!(answer.is_empty(), "request {}: {answer:?}", i + 1);
    }

    // The node goes on serving gRPC on the same port, and nothing changed.
    assert_eq!(node.client().get("v/seg.m4s").await.unwrap().unwrap(), data);
    assert_eq!(stats(&node.client()).await.file_count, 1);
    assert!(temp_files(&node.dir).is_empty());
}

#[tokio::test]
async fn a_node_without_direct_copies_is_pulled_from_through_get_file() {
    // The store served by the gRPC service alone, on a listener of tonic's: no direct
    // copies there (as on a node of an older version).
    let dir = tempfile::tempdir().unwrap();
    let store = tritontube::node::store::Store::open(dir.path())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let older = listener.local_addr().unwrap().to_string();
    let service = tritontube::node::service::StorageService::new(store.clone()).into_server();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let older_client = StorageClient::connect_lazy(&older).unwrap();
    let (data, hash) = put_segment(&older_client, 2 * MIB + 3, 12).await;

    let target = start_storage_node().await;
    let to = target.client();
    for key in ["v/seg.m4s", "v/seg.m4s"] {
        let stat = to.pull(key, &older, &hash).await.unwrap();
        assert_eq!(
            (stat.size as usize, stat.sha256.as_str()),
            (data.len(), hash.as_str())
        );
    }
    assert_eq!(to.get("v/seg.m4s").await.unwrap().unwrap(), data);
    let missing = to.pull("v/none.m4s", &older, &hash).await.unwrap_err();
    assert_eq!(missing.code(), Some(Code::NotFound));
}

#[tokio::test]
async fn a_node_at_its_limit_of_direct_copies_sends_pullers_to_get_file() {
    use std::io::Write;
    let source = start_storage_node().await;
    let (data, hash) = put_segment(&source.client(), MIB, 13).await;
    // Every slot taken by a connection that greets and then says nothing.
    let address = source.address();
    let held: Vec<std::net::TcpStream> = (0..tritontube::node::transfer::MAX_CONNECTIONS)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&address).unwrap();
            stream.write_all(b"TTCOPY1\n").unwrap();
            stream
        })
        .collect();
    let answer = {
        let address = address.clone();
        let probe = move || ask_directly(&address, b"TTCOPY1\nv/seg.m4s\n");
        let mut answer = tokio::task::spawn_blocking(probe.clone()).await.unwrap();
        // The held connections are routed concurrently: wait until all have their slot.
        let deadline = Instant::now() + Duration::from_secs(20);
        while answer.starts_with(b"OK") && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            answer = tokio::task::spawn_blocking(probe.clone()).await.unwrap();
        }
        answer
    };
    assert_eq!(answer, tritontube::node::transfer::BUSY);

    // A pull still gets the file, through GetFile.
    let target = start_storage_node().await;
    let stat = target
        .client()
        .pull("v/seg.m4s", &address, &hash)
        .await
        .unwrap();
    assert_eq!(stat.sha256, hash);
    assert_eq!(
        target.client().get("v/seg.m4s").await.unwrap().unwrap(),
        data
    );
    drop(held);
}

#[tokio::test]
async fn a_direct_copy_cut_short_or_failing_its_check_leaves_nothing() {
    use std::io::Write;
    let data = pseudo_random_bytes(300_000, 21);
    let hash = sha256_hex(&data);
    let crc = crc32c::crc32c(&data);
    let header = |crc: u32| format!("OK {} {hash} {crc:08x}\n", data.len()).into_bytes();
    // A source that answers one copy per connection as scripted, then closes (also
    // every later connection: the GetFile the puller falls back to finds no server).
    let answers = vec![
        [header(crc), data[..100_000].to_vec()].concat(),
        [header(crc ^ 1), data.clone()].concat(),
    ];
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let source = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut answers = answers.into_iter();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let Some(answer) = answers.next() else {
                continue;
            };
            let mut request = BufReader::new(stream.try_clone().unwrap());
            let (mut hello, mut key) = (String::new(), String::new());
            request.read_line(&mut hello).unwrap();
            request.read_line(&mut key).unwrap();
            let _ = stream.write_all(&answer);
        }
    });

    let target = start_storage_node().await;
    let to = target.client();
    let cut = to.pull("v/seg.m4s", &source, &hash).await.unwrap_err();
    assert_eq!(cut.code(), Some(Code::Unavailable), "{cut}");
    assert!(
        cut.to_string().contains("after 100000 of 300000 bytes"),
        "{cut}"
    );
    let wrong = to.pull("v/seg.m4s", &source, &hash).await.unwrap_err();
    assert_eq!(wrong.code(), Some(Code::Unavailable), "{wrong}");
    assert!(to.stat("v/seg.m4s").await.unwrap().is_none());
    assert_eq!(stats(&to).await.file_count, 0);
    assert!(temp_files(&target.dir).is_empty());
    assert!(
        store_files(&target.dir).is_empty(),
        "{:?}",
        files_under(&target.dir)
    );
}
