//! Where TLS on the internal links spends its CPU, in isolation from the cluster (see
//! benches/tls.rs for the cluster): (a) rustls record encryption and decryption in
//! memory, per cipher suite, and (b) a bulk transfer over loopback TCP the way a direct
//! copy makes it (blocking rustls streams, 256 KiB writes), plain beside TLS with
//! rustls's default 64 KiB buffer limit and with the limit the copy path sets.
//!
//! Figures are CPU time (the thread's in (a), the whole process's, both ends, in (b)), not
//! wall time, so that other work on the machine changes them little.
//!
//! `cargo bench --bench tls_records -- --bench` prints markdown tables; TLS_RECORDS_MB
//! (default 256) is the volume of each measurement. Without `--bench` (as under
//! `cargo test --all-targets`) it moves 1 MB of each, as a smoke test.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use rustix::time::{ClockId, clock_gettime};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::crypto::aws_lc_rs::cipher_suite;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{
    self, ClientConfig, ClientConnection, ServerConfig, ServerConnection, StreamOwned,
    SupportedCipherSuite,
};
use tritontube::trust::tls::cluster_provider;

/// What a copy reads from a file and hands to rustls at once (as src/node/copy_stream.rs).
const CHUNK: usize = 256 * 1024;

fn cpu_seconds(clock: ClockId) -> f64 {
    let now = clock_gettime(clock);
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}

/// A server and a client config trusting each other, on `provider`.
fn configs(provider: CryptoProvider) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("a self-signed certificate");
    let cert = CertificateDer::from(made.cert.der().to_vec());
    let key = PrivateKeyDer::try_from(made.signing_key.serialize_der()).expect("a key");
    let provider = Arc::new(provider);
    let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("the certificate and its key");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("the root");
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

fn with_suite(suite: SupportedCipherSuite) -> CryptoProvider {
    CryptoProvider {
        cipher_suites: vec![suite],
        ..cluster_provider()
    }
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a name")
}

/// A finished handshake between two in-memory connections.
fn handshaken(provider: CryptoProvider) -> (ClientConnection, ServerConnection) {
    let (server_config, client_config) = configs(provider);
    let mut client = ClientConnection::new(client_config, localhost()).expect("a client");
    let mut server = ServerConnection::new(server_config).expect("a server");
    while client.is_handshaking() || server.is_handshaking() {
        let mut wire = Vec::new();
        client.write_tls(&mut wire).expect("client flight");
        server.read_tls(&mut &wire[..]).expect("to the server");
        server
            .process_new_packets()
            .expect("the server's handshake");
        wire.clear();
        server.write_tls(&mut wire).expect("server flight");
        client.read_tls(&mut &wire[..]).expect("to the client");
        client
            .process_new_packets()
            .expect("the client's handshake");
    }
    (client, server)
}

/// MB per CPU second of encrypting `bytes` (the client, in [`CHUNK`] writes) and of
/// decrypting them (the server).
fn records(suite: SupportedCipherSuite, bytes: usize) -> (f64, f64) {
    let (mut client, mut server) = handshaken(with_suite(suite));
    client.set_buffer_limit(None);
    let chunk = vec![7u8; CHUNK];
    let mut wire = Vec::with_capacity(bytes + bytes / 50);
    let started = cpu_seconds(ClockId::ThreadCPUTime);
    let mut sent = 0;
    while sent < bytes {
        client.writer().write_all(&chunk).expect("plaintext in");
        while client.wants_write() {
            client.write_tls(&mut wire).expect("records out");
        }
        sent += CHUNK;
    }
    let encrypting = cpu_seconds(ClockId::ThreadCPUTime) - started;
    let mut plaintext = vec![0u8; 1 << 20];
    let mut received = 0;
    let mut incoming = &wire[..];
    let started = cpu_seconds(ClockId::ThreadCPUTime);
    while !incoming.is_empty() {
        server.read_tls(&mut incoming).expect("records in");
        server.process_new_packets().expect("records that decrypt");
        loop {
            match server.reader().read(&mut plaintext) {
                Ok(0) => break,
                Ok(n) => received += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("reading plaintext: {e}"),
            }
        }
    }
    let decrypting = cpu_seconds(ClockId::ThreadCPUTime) - started;
    assert_eq!(received, sent, "every byte came through");
    let mb = sent as f64 / 1e6;
    (mb / encrypting, mb / decrypting)
}

/// TLS with this provider and rustls buffer limit, or plain TCP for `None`.
type TlsSide = Option<(CryptoProvider, Option<usize>)>;

/// CPU ms (the whole process: sender and receiver) per MB moved over loopback TCP in
/// [`CHUNK`] writes: plain, or blocking rustls streams with `buffer_limit`.
fn transfer(tls: TlsSide, bytes: usize) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = listener.local_addr().expect("its address");
    let (server_config, client_config) = match &tls {
        Some((provider, _)) => {
            let (s, c) = configs(provider.clone());
            (Some(s), Some(c))
        }
        None => (None, None),
    };
    let limit = tls.as_ref().and_then(|(_, limit)| *limit);
    let started = cpu_seconds(ClockId::ProcessCPUTime);
    let sender = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().expect("the receiver");
        let chunk = vec![5u8; CHUNK];
        let mut out: Box<dyn Write> = match server_config {
            None => Box::new(tcp),
            Some(config) => {
                let mut connection = ServerConnection::new(config).expect("a server");
                connection.set_buffer_limit(limit);
                Box::new(StreamOwned::new(connection, tcp))
            }
        };
        for _ in 0..bytes.div_ceil(CHUNK) {
            out.write_all(&chunk).expect("sent");
        }
        out.flush().expect("flushed");
    });
    let tcp = TcpStream::connect(address).expect("connected");
    let mut input: Box<dyn Read> = match client_config {
        None => Box::new(tcp),
        Some(config) => {
            let mut connection = ClientConnection::new(config, localhost()).expect("a client");
            connection.set_buffer_limit(limit);
            Box::new(StreamOwned::new(connection, tcp))
        }
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut received = 0;
    let total = bytes.div_ceil(CHUNK) * CHUNK;
    while received < total {
        match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received += n,
            Err(e) => panic!("receiving: {e}"),
        }
    }
    sender.join().expect("the sender");
    assert_eq!(received, total, "every byte came through");
    (cpu_seconds(ClockId::ProcessCPUTime) - started) * 1e3 / (total as f64 / 1e6)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let mb: usize = if full {
        std::env::var("TLS_RECORDS_MB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256)
    } else {
        1
    };
    let bytes = mb << 20;
    let repeats = if full { 3 } else { 1 };

    println!("Records in memory ({mb} MB each, median of {repeats}; MB per CPU second):\n");
    println!("| provider | suite | encrypt MB/s | decrypt MB/s |");
    println!("|---|---|---:|---:|");
    let suites = [
        ("AES-128-GCM", cipher_suite::TLS13_AES_128_GCM_SHA256),
        ("AES-256-GCM", cipher_suite::TLS13_AES_256_GCM_SHA384),
        (
            "ChaCha20-Poly1305",
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ),
    ];
    for (name, suite) in suites {
        let runs: Vec<(f64, f64)> = (0..repeats).map(|_| records(suite, bytes)).collect();
        let encrypt = median(runs.iter().map(|r| r.0).collect());
        let decrypt = median(runs.iter().map(|r| r.1).collect());
        println!("| aws-lc-rs | {name} | {encrypt:.0} | {decrypt:.0} |");
    }

    println!(
        "\nA copy over loopback TCP ({mb} MB in {} KiB writes, median of {repeats}; CPU ms per MB, both ends):\n",
        CHUNK / 1024
    );
    println!("| connection | CPU ms per MB |");
    println!("|---|---:|");
    let aes128 = cipher_suite::TLS13_AES_128_GCM_SHA256;
    let cases: [(&str, TlsSide); 3] = [
        ("plain TCP", None),
        (
            "TLS, AES-128-GCM, rustls's default 64 KiB buffer limit",
            Some((with_suite(aes128), Some(64 * 1024))),
        ),
        (
            "TLS, AES-128-GCM, 512 KiB buffer limit (the copy path's)",
            Some((with_suite(aes128), Some(512 * 1024))),
        ),
    ];
    for (name, tls) in cases {
        let runs = (0..repeats).map(|_| transfer(tls.clone(), bytes)).collect();
        println!("| {name} | {:.3} |", median(runs));
    }
}
