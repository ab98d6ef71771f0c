//! A storage node's self-healing side, end to end: real nodes on 127.0.0.1:0 over real
//! folders, bytes rotted on disk by hand. Verified reads (DATA_LOSS, quarantine, counts),
//! the scrub, the disk reserve and a real full disk (a small tmpfs), and the store
//! identity that shows a wiped folder.

mod support;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use support::{files_under, pseudo_random_bytes, sha256_hex};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;
use tritontube::node::client::{CHUNK_BYTES, MAX_MESSAGE_BYTES, StorageClient};
use tritontube::node::scrub::ScrubConfig;
use tritontube::node::server::NodeOptions;
use tritontube::node::service::WHOLE_READ_BYTES;
use tritontube::node::store::StoreOptions;
use tritontube::proto::storage::storage_service_client::StorageServiceClient;
use tritontube::proto::storage::{DownloadRequest, UploadRequest};

const SEGMENT: usize = 1_500_000;

/// A storage node run with chosen options over a folder the test owns.
struct Node {
    address: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Node {
    async fn start(dir: &Path, options: NodeOptions) -> Node {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("local addr").to_string();
        let (tx, rx) = oneshot::channel::<()>();
        let served = dir.to_path_buf();
        let task = tokio::spawn(async move {
            tritontube::node::server::run_with(listener, served, options, async {
                let _ = rx.await;
            })
            .await
            .expect("storage node failed");
        });
        Node {
            address,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    fn client(&self) -> StorageClient {
        StorageClient::connect_lazy(&self.address).expect("address")
    }

    async fn raw(&self) -> StorageServiceClient<tonic::transport::Channel> {
        StorageServiceClient::connect(format!("http://{}", self.address))
            .await
            .expect("connect")
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    async fn stop(mut self) {
        let _ = self.shutdown.take().map(|tx| tx.send(()));
        if let Some(task) = self.task.take() {
            task.await.expect("storage node task panicked");
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.shutdown.take().map(|tx| tx.send(()));
    }
}

/// The default options, with no reserve (tests must not depend on the machine's free
/// space) unless a test sets one.
fn options() -> NodeOptions {
    NodeOptions {
        store: StoreOptions {
            min_free_bytes: 0,
            ..StoreOptions::default()
        },
        scrub: ScrubConfig::default(),
        zone: None,
        withheld_rpcs: Vec::new(),
    }
}

/// Overwrites 8 bytes in the middle of the file in place (same size), as rot would.
fn rot_middle(path: &Path) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open stored file");
    let size = file.metadata().unwrap().len();
    assert!(size >= 8, "too small to rot");
    let at = size / 2 - 4;
    let mut bytes = [0u8; 8];
    file.read_exact_at(&mut bytes, at).unwrap();
    for b in &mut bytes {
        *b ^= 0xA5;
    }
    file.write_all_at(&bytes, at).unwrap();
    file.sync_all().unwrap();
    assert_eq!(file.metadata().unwrap().len(), size);
}

fn path_of(dir: &Path, key: &str) -> PathBuf {
    dir.join(key)
}

/// Files in the quarantine folder.
fn quarantine_files(dir: &Path) -> Vec<String> {
    files_under(&dir.join(".quarantine"))
}

/// Reads a whole file through GetFile, returning the bytes that arrived before the end
/// (or the error).
async fn get_all(
    client: &StorageClient,
    key: &str,
) -> (Vec<u8>, Option<tritontube::node::client::ClientError>) {
    let (stat, stream) = match client.get_stream(key, 0, 0).await {
        Ok(Some(opened)) => opened,
        Ok(None) => panic!("{key} not found"),
        Err(e) => return (Vec::new(), Some(e)),
    };
    assert!(stat.size > 0);
    let mut received = Vec::new();
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => received.extend_from_slice(&chunk),
            Err(e) => return (received, Some(e)),
        }
    }
    (received, None)
}

#[tokio::test]
async fn a_rotted_file_too_large_to_read_at_once_streams_all_but_its_last_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), options()).await;
    let client = node.client();
    let big_size = WHOLE_READ_BYTES as usize + 3 * CHUNK_BYTES / 2;
    let big = pseudo_random_bytes(big_size, 77);
    let sha = sha256_hex(&big);
    client
        .put("v1/big.mp4", Bytes::from(big), None)
        .await
        .unwrap();
    rot_middle(&path_of(dir.path(), "v1/big.mp4"));
    let (received, error) = get_all(&client, "v1/big.mp4").await;
    let error = error.expect("a rotted large copy must not read to the end");
    assert!(error.is_data_loss(), "{error}");
    assert!(
        received.len() < big_size && received.len() >= big_size - CHUNK_BYTES,
        "received {} of {big_size} bytes",
        received.len()
    );
    let quarantined = client.quarantine().await.unwrap();
    assert_eq!(quarantined.len(), 1);
    // The read's CRC found it; the SHA-256 confirmed it before the copy was moved.
    assert_eq!(quarantined[0].expected_sha256, sha);
    assert!(!quarantined[0].actual_sha256.is_empty() && quarantined[0].actual_sha256 != sha);
}

#[tokio::test]
async fn rotted_copies_are_refused_by_every_read_quarantined_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), options()).await;
    let other = Node::start(other_dir.path(), options()).await;
    let client = node.client();

    let good = pseudo_random_bytes(SEGMENT, 1);
    let keys = [
        "v1/chunk-get.m4s",
        "v1/chunk-download.m4s",
        "v1/chunk-pull.m4s",
    ];
    let mut hashes = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let data = pseudo_random_bytes(SEGMENT, 10 + i as u64);
        hashes.push(sha256_hex(&data));
        client
            .put(
                key,
                Bytes::from(data),
                Some(&sha256_hex(&pseudo_random_bytes(SEGMENT, 10 + i as u64))),
            )
            .await
            .unwrap();
    }
    client
        .put("v1/good.m4s", Bytes::from(good.clone()), None)
        .await
        .unwrap();
    for key in keys {
        rot_middle(&path_of(dir.path(), key));
    }

    // GetFile, whole segment: read and checked before the first byte goes out, so
    // nothing but DATA_LOSS arrives.
    let (received, error) = get_all(&client, keys[0]).await;
    let error = error.expect("a rotted copy must not read to the end");
    assert!(error.is_data_loss(), "{error}");
    assert!(received.is_empty(), "received {} bytes", received.len());

    // DownloadFile (the original's unary RPC).
    let mut raw = node.raw().await;
    let status = raw
        .download_file(DownloadRequest {
            key: keys[1].into(),
        })
        .await
        .expect_err("a rotted copy must not be downloaded");
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");

    // PullFile from the rotted node: DATA_LOSS, and nothing arrives on the puller.
    let error = other
        .client()
        .pull(keys[2], &node.address, &hashes[2])
        .await
        .expect_err("a pull of a rotted copy");
    assert!(error.is_data_loss(), "{error}");
    assert!(other.client().keys(false).await.unwrap().is_empty());
    // Only the node's own bookkeeping at the top of its folder (marker, scrub state and
    // their temp files while rewritten).
    assert!(
        files_under(other_dir.path())
            .iter()
            .all(|f| f.starts_with('.')),
        "{:?}",
        files_under(other_dir.path())
    );

    // Quarantined (moved, not deleted), listed, counted; gone from the keys.
    let quarantined = client.quarantine().await.unwrap();
    let mut listed: Vec<_> = quarantined.iter().map(|q| q.key.as_str()).collect();
    listed.sort();
    let mut expected = keys.to_vec();
    expected.sort();
    assert_eq!(listed, expected);
    for q in &quarantined {
        assert_eq!(q.size, SEGMENT as u64);
        assert_eq!(q.found_by, "read");
        let i = keys.iter().position(|k| *k == q.key).unwrap();
        assert_eq!(q.expected_sha256, hashes[i]);
        assert!(!q.actual_sha256.is_empty() && q.actual_sha256 != hashes[i]);
        assert!(q.quarantined_unix_ms > 0 && !q.reason.is_empty());
    }
    let kept: Vec<_> = quarantine_files(dir.path())
        .into_iter()
        .filter(|f| f.ends_with(".data"))
        .collect();
    assert_eq!(kept.len(), 3, "{kept:?}");
    for name in &kept {
        let bytes = std::fs::read(dir.path().join(".quarantine").join(name)).unwrap();
        assert_eq!(bytes.len(), SEGMENT);
        assert!(
            !hashes.contains(&sha256_hex(&bytes)),
            "quarantined bytes are the rotted ones"
        );
    }
    let health = client.health().await.unwrap();
    assert_eq!(health.quarantined_count, 3);
    assert_eq!(health.checksum_failures, 3);
    assert_eq!(health.stats.file_count, 1);
    assert_eq!(health.stats.total_bytes, SEGMENT as u64);
    let listed_keys: Vec<_> = client
        .keys(false)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.key)
        .collect();
    assert_eq!(listed_keys, ["v1/good.m4s"]);
    for key in keys {
        assert_eq!(client.get(key).await.unwrap(), None, "{key}");
        assert!(!path_of(dir.path(), key).exists());
    }

    // The good file still reads, whole and by range, through every read.
    assert_eq!(client.get("v1/good.m4s").await.unwrap().unwrap(), good);
    let reply = raw
        .download_file(DownloadRequest {
            key: "v1/good.m4s".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(reply.found && reply.data == good);
    let (_, range) = client
        .get_stream("v1/good.m4s", 700_000, 300_000)
        .await
        .unwrap()
        .unwrap();
    let range: Vec<Bytes> = range.map(|c| c.unwrap()).collect().await;
    assert_eq!(range.concat(), good[700_000..1_000_000]);

    // Writing a quarantined key again clears its entry (and the rotted bytes).
    let fresh = pseudo_random_bytes(SEGMENT, 99);
    client
        .put(
            keys[0],
            Bytes::from(fresh.clone()),
            Some(&sha256_hex(&fresh)),
        )
        .await
        .unwrap();
    assert_eq!(client.get(keys[0]).await.unwrap().unwrap(), fresh);
    let after: Vec<_> = client
        .quarantine()
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.key)
        .collect();
    assert!(
        !after.contains(&keys[0].to_string()) && after.len() == 2,
        "{after:?}"
    );
    assert_eq!(
        quarantine_files(dir.path()).len(),
        4,
        "two entries of two files each"
    );
    let health = client.health().await.unwrap();
    assert_eq!((health.quarantined_count, health.checksum_failures), (2, 3));

    // A delete of a quarantined key (the video is gone) clears its entry too.
    client.delete(keys[1]).await.unwrap();
    assert_eq!(client.quarantine().await.unwrap().len(), 1);
    other.stop().await;
    node.stop().await;
}

#[tokio::test]
async fn byte_ranges_small_files_and_truncation_are_verified() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), options()).await;
    let client = node.client();
    let data = pseudo_random_bytes(SEGMENT, 3);
    client
        .put("v/range.m4s", Bytes::from(data.clone()), None)
        .await
        .unwrap();
    client
        .put(
            "v/small.mpd",
            Bytes::from_static(b"<MPD>manifest of a video</MPD>"),
            None,
        )
        .await
        .unwrap();
    client
        .put("v/short.m4s", Bytes::from(data.clone()), None)
        .await
        .unwrap();
    client
        .put("v/verify.m4s", Bytes::from(data.clone()), None)
        .await
        .unwrap();

    // A range far from the rotted bytes is refused all the same: the whole file is
    // checked before the first byte of a range goes out.
    rot_middle(&path_of(dir.path(), "v/range.m4s"));
    let error = match client.get_stream("v/range.m4s", 0, 1000).await {
        Ok(Some((_, stream))) => {
            let chunks: Vec<_> = stream.collect().await;
            assert!(
                chunks.iter().all(|c| c.is_err()),
                "no byte of the range may arrive"
            );
            chunks.into_iter().find_map(|c| c.err()).expect("an error")
        }
        Ok(None) => panic!("found nothing"),
        Err(e) => e,
    };
    assert!(error.is_data_loss(), "{error}");

    // A file of one chunk: no byte at all arrives.
    rot_middle(&path_of(dir.path(), "v/small.mpd"));
    let (received, error) = get_all(&client, "v/small.mpd").await;
    assert!(received.is_empty());
    assert!(error.expect("refused").is_data_loss());

    // Truncated: caught by its size, before reading.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path_of(dir.path(), "v/short.m4s"))
        .unwrap();
    file.set_len(1000).unwrap();
    let error = client.stat("v/short.m4s").await.expect_err("truncated");
    assert!(error.is_data_loss(), "{error}");

    // StatFile reads only the record; with verify it reads the bytes.
    let stat = client.stat("v/verify.m4s").await.unwrap().unwrap();
    assert_eq!(stat.sha256, sha256_hex(&data));
    assert_eq!(client.verify("v/verify.m4s").await.unwrap().unwrap(), stat);
    rot_middle(&path_of(dir.path(), "v/verify.m4s"));
    assert_eq!(client.stat("v/verify.m4s").await.unwrap().unwrap(), stat);
    let error = client.verify("v/verify.m4s").await.expect_err("rotted");
    assert!(error.is_data_loss(), "{error}");

    let mut found: Vec<_> = client
        .quarantine()
        .await
        .unwrap()
        .into_iter()
        .map(|q| (q.key, q.found_by, q.actual_sha256.is_empty()))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("v/range.m4s".to_string(), "read".to_string(), false),
            ("v/short.m4s".to_string(), "read".to_string(), true),
            ("v/small.mpd".to_string(), "read".to_string(), false),
            ("v/verify.m4s".to_string(), "verify".to_string(), false),
        ]
    );
    assert_eq!(client.health().await.unwrap().stats.file_count, 0);
    node.stop().await;
}

#[tokio::test]
async fn an_original_folder_is_served_and_its_first_hash_becomes_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let segment = pseudo_random_bytes(SEGMENT, 5);
    let manifest = b"<MPD/>".to_vec();
    std::fs::create_dir_all(dir.path().join("old video")).unwrap();
    std::fs::write(dir.path().join("old video/chunk-0-00001.m4s"), &segment).unwrap();
    std::fs::write(dir.path().join("old video/manifest.mpd"), &manifest).unwrap();

    let node = Node::start(dir.path(), options()).await;
    let client = node.client();
    let health = client.health().await.unwrap();
    assert!(health.store_recreated, "no marker yet: adopted");
    assert_eq!(health.stats.file_count, 2);
    // Served as it is, without any record, through both reads.
    assert_eq!(
        client
            .get("old video/chunk-0-00001.m4s")
            .await
            .unwrap()
            .unwrap(),
        segment
    );
    let mut raw = node.raw().await;
    let reply = raw
        .download_file(DownloadRequest {
            key: "old video/manifest.mpd".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(reply.found && reply.data == manifest);
    // Recorded on first sight; rot after that is caught.
    rot_middle(&dir.path().join("old video/chunk-0-00001.m4s"));
    let (_, error) = get_all(&client, "old video/chunk-0-00001.m4s").await;
    assert!(error.expect("rotted after first sight").is_data_loss());
    assert_eq!(
        client.quarantine().await.unwrap()[0].expected_sha256,
        sha256_hex(&segment)
    );
    node.stop().await;
}

/// Polls the scrub until `passes` passes have finished (bounded), returning its report.
async fn scrub_until(
    client: &StorageClient,
    passes: u64,
) -> tritontube::proto::storage::ScrubResponse {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let report = client.scrub(false).await.unwrap();
        if report.passes_completed >= passes && !report.running {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "scrub did not finish: {report:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_scrub_finds_rot_nobody_read_and_remembers_its_passes() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), options()).await;
    let client = node.client();
    let report = client.scrub(false).await.unwrap();
    assert!(report.enabled && !report.running);
    assert_eq!(report.rate_bytes_per_sec, 16_000_000);
    assert_eq!(report.interval_secs, 24 * 3600);
    assert_eq!(report.passes_completed, 0, "no pass at start-up");
    assert!(report.next_pass_unix_ms > 0);

    let mut total = 0u64;
    for i in 0..6u64 {
        let data = pseudo_random_bytes(100_000 + i as usize * 1000, i);
        total += data.len() as u64;
        client
            .put(&format!("v{}/seg-{i}.m4s", i % 2), Bytes::from(data), None)
            .await
            .unwrap();
    }
    rot_middle(&dir.path().join("v1/seg-3.m4s"));

    let started = client.scrub(true).await.unwrap();
    assert!(started.started && started.running);
    let report = scrub_until(&client, 1).await;
    let last = report.last.expect("a finished pass");
    assert_eq!((last.files_total, last.bytes_total), (6, total));
    assert_eq!(last.files_checked, 6);
    assert_eq!(last.bytes_checked, total);
    assert_eq!((last.corrupt_found, last.errors), (1, 0));
    assert!(last.finished_unix_ms >= last.started_unix_ms);
    let finding = report.last_finding.expect("a finding");
    assert_eq!(finding.key, "v1/seg-3.m4s");
    assert!(report.current.is_none());
    let quarantined = client.quarantine().await.unwrap();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(
        (
            quarantined[0].key.as_str(),
            quarantined[0].found_by.as_str()
        ),
        ("v1/seg-3.m4s", "scrub")
    );
    let health = client.health().await.unwrap();
    assert_eq!((health.checksum_failures, health.stats.file_count), (1, 5));

    // A second pass finds nothing new; the last pass survives a restart.
    assert!(client.scrub(true).await.unwrap().started);
    let report = scrub_until(&client, 2).await;
    assert_eq!(report.last.as_ref().unwrap().corrupt_found, 0);
    assert_eq!(report.last.as_ref().unwrap().files_checked, 5);
    node.stop().await;
    let node = Node::start(dir.path(), options()).await;
    let report = node.client().scrub(false).await.unwrap();
    assert_eq!(report.passes_completed, 0);
    assert_eq!(report.last.unwrap().files_checked, 5);
    assert_eq!(report.last_finding.unwrap().key, "v1/seg-3.m4s");
    node.stop().await;

    // Turned off: no pass can be started.
    let off = Node::start(
        dir.path(),
        NodeOptions {
            scrub: ScrubConfig {
                rate_bytes_per_sec: 0,
                ..ScrubConfig::default()
            },
            ..options()
        },
    )
    .await;
    let error = off.client().scrub(true).await.expect_err("scrub is off");
    assert_eq!(error.code(), Some(Code::FailedPrecondition));
    assert!(!off.client().scrub(false).await.unwrap().enabled);
    off.stop().await;
}

#[tokio::test]
async fn a_wiped_folder_comes_back_with_a_new_identity() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), options()).await;
    let first = node.client().health().await.unwrap();
    assert!(first.store_recreated && first.store_id.len() == 32);
    assert!(first.store_created_unix_ms > 0);
    assert!(first.disk_total_bytes > 0 && first.free_bytes <= first.disk_total_bytes);
    node.client()
        .put("v/a", Bytes::from_static(b"a"), None)
        .await
        .unwrap();
    node.stop().await;

    // A crash in the middle of saving the node's own files leaves a temp file; it goes.
    std::fs::write(dir.path().join(".tmp-1-1.part"), b"torn").unwrap();
    let node = Node::start(dir.path(), options()).await;
    let again = node.client().health().await.unwrap();
    assert!(!dir.path().join(".tmp-1-1.part").exists());
    assert_eq!(again.store_id, first.store_id);
    assert_eq!(again.store_created_unix_ms, first.store_created_unix_ms);
    assert!(!again.store_recreated);
    node.stop().await;

    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }
    let node = Node::start(dir.path(), options()).await;
    let wiped = node.client().health().await.unwrap();
    assert!(wiped.store_recreated && wiped.store_id != first.store_id);
    assert_eq!(wiped.stats.file_count, 0);
    node.stop().await;
}

/// Leaves nothing of a refused write: no temp file, no half file, no empty video folder.
fn assert_nothing_of(dir: &Path, video: &str) {
    let left: Vec<_> = files_under(dir)
        .into_iter()
        .filter(|f| f.starts_with(video))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // A temp file under a video folder; the node's own bookkeeping at the top is not one.
    assert!(
        !files_under(dir)
            .iter()
            .any(|f| f.ends_with(".part") && !f.starts_with('.')),
        "{:?}",
        files_under(dir)
    );
}

#[tokio::test]
async fn writes_below_the_reserve_are_refused_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        dir.path(),
        NodeOptions {
            store: StoreOptions {
                min_free_bytes: u64::MAX / 2,
                ..StoreOptions::default()
            },
            ..options()
        },
    )
    .await;
    let client = node.client();
    let error = client
        .put(
            "big/seg.m4s",
            Bytes::from(pseudo_random_bytes(SEGMENT, 1)),
            None,
        )
        .await
        .expect_err("below the reserve");
    assert!(error.is_disk_full(), "{error}");
    assert!(error.to_string().contains("reserve"), "{error}");
    let status = node
        .raw()
        .await
        .upload_file(UploadRequest {
            key: "big/unary.m4s".into(),
            data: Bytes::from_static(b"x"),
        })
        .await
        .expect_err("below the reserve");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_nothing_of(dir.path(), "big");
    assert_eq!(client.health().await.unwrap().min_free_bytes, u64::MAX / 2);
    assert_eq!(client.health().await.unwrap().stats.file_count, 0);
    node.stop().await;
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
            .arg("tmpfs")
            .arg(dir.path())
            .status()
            .expect("this test needs `mount` (util-linux) and root to mount a tmpfs");
        assert!(
            status.success(),
            "this test needs to mount a tmpfs (`mount -t tmpfs`, as root): {status}"
        );
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_answers_resource_exhausted_and_leaves_nothing() {
    const MIB: u64 = 1024 * 1024;
    let disk = SmallDisk::mount(8 * MIB);
    let store = disk.dir.path().join("store");

    // With a 3 MiB reserve: 1.5 MB fits, 5 MB more does not.
    let node = Node::start(
        &store,
        NodeOptions {
            store: StoreOptions {
                min_free_bytes: 3 * MIB,
                ..StoreOptions::default()
            },
            ..options()
        },
    )
    .await;
    let client = node.client();
    let kept = pseudo_random_bytes(SEGMENT, 1);
    client
        .put("v/kept.m4s", Bytes::from(kept.clone()), None)
        .await
        .unwrap();
    let error = client
        .put(
            "w/too-big.m4s",
            Bytes::from(pseudo_random_bytes(5 * MIB as usize, 2)),
            None,
        )
        .await
        .expect_err("beyond the reserve");
    assert!(error.is_disk_full(), "{error}");
    assert!(error.to_string().contains("reserve"), "{error}");
    assert_nothing_of(&store, "w");
    node.stop().await;

    // With no reserve the disk itself fills up: ENOSPC, in the middle of the stream.
    let node = Node::start(&store, options()).await;
    let client = node.client();
    let error = client
        .put(
            "w/too-big.m4s",
            Bytes::from(pseudo_random_bytes(8 * MIB as usize, 3)),
            None,
        )
        .await
        .expect_err("a full disk");
    assert!(error.is_disk_full(), "{error}");
    assert!(error.to_string().contains("no space left"), "{error}");
    assert_nothing_of(&store, "w");
    let status = node
        .raw()
        .await
        .upload_file(UploadRequest {
            key: "w/unary.m4s".into(),
            data: Bytes::from(pseudo_random_bytes(8 * MIB as usize, 4)),
        })
        .await
        .expect_err("a full disk");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("no space left"), "{status:?}");
    assert_nothing_of(&store, "w");
    // What was there is untouched, and the space came back.
    assert_eq!(client.get("v/kept.m4s").await.unwrap().unwrap(), kept);
    let health = client.health().await.unwrap();
    assert_eq!(health.stats.file_count, 1);
    assert!(health.free_bytes > 5 * MIB, "{health:?}");
    client
        .put("w/fits.m4s", Bytes::from_static(b"fits"), None)
        .await
        .unwrap();
    node.stop().await;
}

#[tokio::test]
async fn an_interrupted_scrub_pass_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    // Slow enough that the pass is still under way when the node stops.
    let slow = NodeOptions {
        scrub: ScrubConfig {
            rate_bytes_per_sec: 400_000,
            ..ScrubConfig::default()
        },
        ..options()
    };
    let node = Node::start(dir.path(), slow).await;
    let client = node.client();
    for i in 0..8u64 {
        let data = pseudo_random_bytes(200_000, i);
        client
            .put(&format!("v/seg-{i}.m4s"), Bytes::from(data), None)
            .await
            .unwrap();
    }
    assert!(client.scrub(true).await.unwrap().started);
    let deadline = Instant::now() + Duration::from_secs(60);
    let interrupted = loop {
        let report = client.scrub(false).await.unwrap();
        let current = report.current.expect("a pass under way");
        if current.files_checked >= 2 {
            break current;
        }
        assert!(Instant::now() < deadline, "the pass did not progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    node.stop().await;

    // Restarted (faster): the pass resumes by itself, without being asked, and checks
    // each file once.
    let node = Node::start(dir.path(), options()).await;
    let client = node.client();
    let report = scrub_until(&client, 1).await;
    let last = report.last.expect("the resumed pass finished");
    assert_eq!(last.started_unix_ms, interrupted.started_unix_ms);
    assert_eq!((last.files_checked, last.files_total), (8, 8));
    assert_eq!(last.bytes_checked, 8 * 200_000);
    assert_eq!(last.corrupt_found, 0);
    node.stop().await;
}

/// The record of `key` on the node over `dir`: SHA-256, size and CRC-32C.
fn recorded(dir: &Path, key: &str) -> (String, u64, Option<u32>) {
    tritontube::node::record::recorded_sums(&path_of(dir, key)).expect("a record")
}

#[tokio::test]
async fn a_pulled_copy_is_checked_against_the_sources_recorded_crc() {
    // The source serves without checking its reads (an operator's choice), so a rotted
    // copy leaves it as it is: only the puller's check stands between rot and a new copy.
    let source_dir = tempfile::tempdir().unwrap();
    let target_dir = tempfile::tempdir().unwrap();
    let mut unchecked = options();
    unchecked.store.verify_reads = false;
    let source = Node::start(source_dir.path(), unchecked).await;
    let target = Node::start(target_dir.path(), options()).await;
    let keys = [
        "v/good.m4s",
        "v/rotted.m4s",
        "v/old-record.m4s",
        "v/large.m4s",
    ];
    let mut hashes = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        // The last one is larger than a whole-file read: it streams in chunks.
        let size = if i == 3 {
            WHOLE_READ_BYTES as usize + CHUNK_BYTES + 5
        } else {
            SEGMENT
        };
        let data = Bytes::from(pseudo_random_bytes(size, 40 + i as u64));
        hashes.push(sha256_hex(&data));
        source.client().put(key, data, None).await.unwrap();
    }
    let to = target.client();

    // A good copy arrives with the source's record: the same SHA-256, size and CRC-32C.
    for i in [0, 3] {
        let stat = to.pull(keys[i], &source.address, &hashes[i]).await.unwrap();
        assert_eq!(stat.sha256, hashes[i]);
        let theirs = recorded(source_dir.path(), keys[i]);
        assert_eq!(recorded(target_dir.path(), keys[i]), theirs);
        assert!(theirs.2.is_some());
        let (bytes, error) = get_all(&to, keys[i]).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(sha256_hex(&bytes), hashes[i]);
    }

    // Rotted bytes sent under the record's CRC: refused, nothing kept on the puller.
    rot_middle(&path_of(source_dir.path(), keys[1]));
    let error = to
        .pull(keys[1], &source.address, &hashes[1])
        .await
        .expect_err("a pull of rotted bytes");
    assert!(error.is_data_loss(), "{error}");
    assert!(error.to_string().contains("CRC-32C"), "{error}");
    assert!(to.stat(keys[1]).await.unwrap().is_none());
    assert!(
        files_under(target_dir.path())
            .iter()
            .all(|f| !f.contains(".tmp-")),
        "{:?}",
        files_under(target_dir.path())
    );

    // A source record from before the CRC (a v1 sidecar): the copy is hashed in full
    // instead, and the puller records both sums.
    let theirs = recorded(source_dir.path(), keys[2]);
    rustix::fs::removexattr(path_of(source_dir.path(), keys[2]), "user.tritontube.rec").unwrap();
    let (folder, name) = keys[2].rsplit_once('/').unwrap();
    // (The mtime and inode fields only serve a first sight's bookkeeping.)
    std::fs::write(
        source_dir
            .path()
            .join(folder)
            .join(format!(".{name}.sha256")),
        format!("tritontube-sha256-v1 {} {} 0 0\n", theirs.0, theirs.1),
    )
    .unwrap();
    let stat = to.pull(keys[2], &source.address, &hashes[2]).await.unwrap();
    assert_eq!(stat.sha256, hashes[2]);
    assert_eq!(
        recorded(target_dir.path(), keys[2]),
        theirs,
        "the CRC computed on arrival is the one the source had"
    );

    source.stop().await;
    target.stop().await;
}

#[tokio::test]
async fn a_new_nodes_first_scrub_pass_starts_at_a_random_point_of_its_first_interval() {
    // Each node draws its own point: of several new nodes, some first pass comes well
    // before one whole interval (the chance that all draw the last tenth is 1e-6).
    let mut firsts = Vec::new();
    for _ in 0..6 {
        let dir = tempfile::tempdir().unwrap();
        let before = tritontube::node::now_unix_ms();
        let node = Node::start(dir.path(), options()).await;
        let report = node.client().scrub(false).await.unwrap();
        let interval_ms = report.interval_secs * 1000;
        let delay = report.next_pass_unix_ms.saturating_sub(before);
        assert!(
            delay <= interval_ms + 1000,
            "{delay} ms is past the first interval"
        );
        firsts.push(delay as f64 / interval_ms as f64);
        node.stop().await;
    }
    assert!(
        firsts.iter().any(|f| *f < 0.9),
        "every first pass is a whole interval away: {firsts:?}"
    );
    let distinct: std::collections::BTreeSet<u64> =
        firsts.iter().map(|f| (f * 1e6) as u64).collect();
    assert!(
        distinct.len() > 1,
        "the same point for every node: {firsts:?}"
    );
}
