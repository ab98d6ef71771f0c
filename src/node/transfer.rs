//! Node-to-node copies (PullFile) outside gRPC, on the node's own port.
//!
//! A pull through GetFile copied every byte six times (the source's read, prost's encode,
//! the socket send, the receive, tonic's decode, the write) and the puller ran HTTP/2 for
//! it: a ring change was CPU-bound on two cores at half the speed of `cp -r` + `sync`.
//! Here the source hands the file to the socket with sendfile(2), straight from its page
//! cache, and the puller reads the socket into one buffer it checks (CRC-32C) and writes,
//! on one blocking thread per copy: two copies of each byte, no framing.
//!
//! The protocol, after a connection's first line `TTCOPY1` (the listener tells it from
//! HTTP/2, whose preface starts `PRI`): the puller sends a key and a newline; the source
//! answers one line, `OK <size> <sha256> <crc32c hex or ->`, then exactly `size` bytes, or
//! `ERR <gRPC code number> <message>`; then the next key, on the same connection.
//!
//! The source does not read the bytes it sends, so it does not check them: the puller
//! checks the copy against the CRC-32C recorded with the SHA-256 (see
//! [`Arrival::Copy`]), and on a mismatch the pull is made again through GetFile, whose
//! verified read quarantines a rotted source copy and answers DATA_LOSS. A source that
//! does not speak this protocol (an older node) is pulled from through GetFile too.
//!
//! With the cluster's certificates the same protocol runs inside mutual TLS (see
//! [`super::secure_listen`]): the source serves only node certificates and reads and
//! encrypts the file instead of sendfile(2), and the puller shows its node certificate.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_rustls::rustls::ClientConfig;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use super::copy_stream::CopyStream;
use super::stat::FileStat;
use super::store::{Store, StoreError};
use super::write::Arrival;
use crate::metrics::grpc::Outcome;
use crate::node::metrics::NodeMetrics;

/// The first line of a copy connection.
pub const HELLO: &[u8] = b"TTCOPY1\n";
/// What the listener looks at: HTTP/2 connections start with `P` (`PRI * HTTP/2.0`).
pub const FIRST_BYTE: u8 = b'T';
/// Longest request or header line (a key is at most 511 bytes).
const MAX_LINE: u64 = 1024;
/// A connection with no request for this long is closed by the source.
const IDLE_CLOSE: Duration = Duration::from_secs(30);
/// How often an idle source connection looks at the node's shutdown.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// A peer that neither sends nor takes a byte for this long is given up on.
const STALL: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The puller's receive buffer: one read, check and write per this many bytes.
const RECEIVE_BYTES: usize = 1024 * 1024;
/// Copy connections a node serves at once (each holds a thread of the blocking pool).
pub const MAX_CONNECTIONS: usize = 64;
/// The answer of a node serving [`MAX_CONNECTIONS`] already, before it closes the
/// connection: RESOURCE_EXHAUSTED, which sends the puller to GetFile.
pub const BUSY: &[u8] = b"ERR 8 this node serves as many direct copies as it can\n";
/// Receive buffers a puller keeps for its next copies (as many as copies run at once in
/// a ring change).
const KEPT_BUFFERS: usize = 32;
/// How long a source that dropped the hello is pulled from through GetFile only.
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(60);
/// Idle connections a puller keeps per source.
const IDLE_PER_SOURCE: usize = 32;

// ---- The source: serving copies ----

/// Blocking: serves copy requests on `stream` until the puller closes it, it idles for
/// [`IDLE_CLOSE`], or `stop` is cancelled. Unless `greeted` (the listener has read and
/// checked it), the stream's first bytes, unread, are the hello.
pub fn serve(
    store: Store,
    stream: CopyStream,
    greeted: bool,
    stop: CancellationToken,
    metrics: NodeMetrics,
) {
    if let Err(e) = serve_connection(&store, stream, greeted, &stop, &metrics) {
        tracing::debug!(error = %e, "copy connection closed");
    }
}

fn serve_connection(
    store: &Store,
    stream: CopyStream,
    greeted: bool,
    stop: &CancellationToken,
    metrics: &NodeMetrics,
) -> io::Result<()> {
    let tcp = stream.tcp();
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(IDLE_POLL))?;
    tcp.set_write_timeout(Some(STALL))?;
    // Answers are written to the stream under the buffer: a request is answered only
    // once it has been read, so nothing buffered is skipped.
    let mut requests = BufReader::with_capacity(4096, stream);
    if !greeted {
        match read_line_idle(&mut requests, stop)? {
            Some(hello) if hello.as_bytes() == &HELLO[..HELLO.len() - 1] => {}
            _ => return Ok(()),
        }
    }
    while let Some(key) = read_line_idle(&mut requests, stop)? {
        let started = Instant::now();
        let outcome = send_file(store, requests.get_mut(), &key)?;
        metrics.record_call("Copy", outcome, started.elapsed());
    }
    Ok(())
}

/// Reads one line (without its newline), waiting while the connection idles; None when
/// the peer closed it, it idled too long, or the node is stopping.
fn read_line_idle(
    reader: &mut BufReader<CopyStream>,
    stop: &CancellationToken,
) -> io::Result<Option<String>> {
    let idle_since = Instant::now();
    let mut line = Vec::new();
    loop {
        // Bytes read before a timeout stay in `line`; the next call goes on from there.
        let room = MAX_LINE.saturating_sub(line.len() as u64);
        match reader.by_ref().take(room).read_until(b'\n', &mut line) {
            Ok(0) if line.is_empty() => return Ok(None),
            Ok(_) if line.ends_with(b"\n") => {
                line.pop();
                return String::from_utf8(line)
                    .map(Some)
                    .map_err(|_| invalid("a request that is not UTF-8"));
            }
            Ok(_) if line.len() as u64 >= MAX_LINE => return Err(invalid("a request too long")),
            Ok(_) => return Ok(None),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if stop.is_cancelled() || idle_since.elapsed() > IDLE_CLOSE {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Answers one request. An error is the connection failing; the request's own outcome
/// is returned.
fn send_file(store: &Store, out: &mut CopyStream, key: &str) -> io::Result<Outcome> {
    let (stat, file) = match store.open_for_copy(key) {
        Ok(opened) => opened,
        Err(e) => {
            let status = Status::from(e);
            let message = status.message().replace(['\n', '\r'], " ");
            let code = status.code();
            out.write_all(format!("ERR {} {message}\n", code as i32).as_bytes())?;
            return Ok(Outcome::Status(code));
        }
    };
    let crc = stat
        .crc32c
        .map_or_else(|| "-".to_string(), |crc| format!("{crc:08x}"));
    let header = format!("OK {} {} {crc}\n", stat.size, stat.sha256);
    out.write_all(header.as_bytes())?;
    out.send_file(&file, stat.size)
        .map_err(|e| io::Error::new(e.kind(), format!("sending {key}: {e}")))?;
    Ok(Outcome::Status(Code::Ok))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

// ---- The puller ----

/// Why a copy was not made.
#[derive(Debug)]
pub enum CopyFailure {
    /// The source does not speak this protocol: pull through GetFile.
    Unsupported,
    /// The source answered an error, or could not be read from.
    Source(Status),
    /// This node refused the copy (its disk, or a copy that failed its check).
    Store(StoreError),
}

/// The puller's side: idle connections to each source, kept for the next copy.
#[derive(Default)]
pub struct CopyClient {
    /// With the cluster's certificates: copies run inside mutual TLS.
    tls: Option<Arc<ClientConfig>>,
    idle: Mutex<HashMap<String, Vec<BufReader<CopyStream>>>>,
    /// Sources that dropped the hello (older nodes), and when: they are asked again after
    /// [`ASK_AGAIN_AFTER`], in case they were upgraded (or only restarting).
    unsupported: Mutex<HashMap<String, Instant>>,
    /// Receive buffers of finished copies, for the next ones: a fresh megabyte per copy
    /// was zeroed each time, 6 % of a puller's CPU in a ring change.
    buffers: Mutex<Vec<Vec<u8>>>,
}

/// A connection in use, and whether it came from the idle ones (then a failure before
/// any answer may just mean the source closed it meanwhile).
struct Connection {
    reader: BufReader<CopyStream>,
    reused: bool,
}

impl std::fmt::Debug for CopyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyClient")
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl CopyClient {
    /// A puller that copies over mutual TLS with `tls`, or plain TCP without.
    pub fn new(tls: Option<Arc<ClientConfig>>) -> CopyClient {
        CopyClient {
            tls,
            ..CopyClient::default()
        }
    }

    /// Blocking: copies `key` from the node at `source` into `store`, checked against the
    /// source's record, which must have `expected_sha256`.
    pub fn pull(
        &self,
        store: &Store,
        source: &str,
        key: &str,
        expected_sha256: &str,
    ) -> Result<FileStat, CopyFailure> {
        let refused_at = self
            .unsupported
            .lock()
            .expect("copy client lock")
            .get(source)
            .copied();
        if refused_at.is_some_and(|at| at.elapsed() < ASK_AGAIN_AFTER) {
            return Err(CopyFailure::Unsupported);
        }
        let mut connection = self.connection(source)?;
        let mut answer = request(&mut connection.reader, key);
        if connection.reused && !matches!(answer, Ok(Some(_))) {
            // A kept connection the source has closed since: once more on a new one.
            connection = Connection {
                reader: connect(source, self.tls.as_ref())?,
                reused: false,
            };
            answer = request(&mut connection.reader, key);
        }
        let header = match answer {
            Ok(Some(header)) => header,
            // A new connection closed or reset before any answer: a listener that does
            // not know this protocol (an older node's) dropped it. Whether the close or
            // the reset arrives first is a matter of timing.
            Ok(None) => return Err(self.refused(source)),
            Err(e) if closed_by_peer(&e) => return Err(self.refused(source)),
            Err(e) => return Err(unreachable_source(source, &e)),
        };
        let (size, sha256, crc32c) = match parse_header(&header) {
            Some(Answer::File { size, sha256, crc }) => (size, sha256, crc),
            Some(Answer::Error(status)) => {
                // A busy source closes the connection after saying so.
                if status.code() != Code::ResourceExhausted {
                    self.keep(source, connection.reader);
                }
                return Err(CopyFailure::Source(status));
            }
            None => return Err(self.refused(source)),
        };
        if sha256 != expected_sha256 {
            // The source holds other bytes under the key now; its body is not wanted.
            return Err(CopyFailure::Store(StoreError::ChecksumMismatch {
                expected: expected_sha256.to_string(),
                actual: sha256,
            }));
        }
        let arrival = match crc32c {
            Some(crc32c) => Arrival::Copy { sha256, crc32c },
            None => Arrival::Hashed(Some(sha256)),
        };
        let mut remaining = size;
        let mut buf = self.buffer();
        let reader = &mut connection.reader;
        let written = store.write_blocking(key, arrival, size, &mut buf, |buf| {
            if remaining == 0 {
                return Ok(0);
            }
            // The buffer is filled before it is written: under TLS a read gives at most
            // one record (16 KiB), and each write to the store costs a call of its own.
            let want = buf.len().min(remaining as usize);
            let mut filled = 0;
            while filled < want {
                match reader.read(&mut buf[filled..want]) {
                    Ok(0) => {
                        return Err(Status::unavailable(format!(
                            "{source} closed the connection after {} of {size} bytes of {key}",
                            size - remaining + filled as u64
                        )));
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Err(Status::unavailable(format!(
                            "reading {key} from {source}: {e}"
                        )));
                    }
                }
            }
            remaining -= filled as u64;
            Ok(filled)
        });
        self.give_back(buf);
        // Only a connection whose answer was read to its end can carry the next one.
        let finished = remaining == 0;
        let result = match written {
            Ok(Ok(stat)) => Ok(stat),
            Ok(Err(e)) => Err(CopyFailure::Store(e)),
            Err(status) => Err(CopyFailure::Source(status)),
        };
        if finished {
            self.keep(source, connection.reader);
        }
        result
    }

    fn connection(&self, source: &str) -> Result<Connection, CopyFailure> {
        let kept = self
            .idle
            .lock()
            .expect("copy client lock")
            .get_mut(source)
            .and_then(Vec::pop);
        match kept {
            Some(reader) => Ok(Connection {
                reader,
                reused: true,
            }),
            None => Ok(Connection {
                reader: connect(source, self.tls.as_ref())?,
                reused: false,
            }),
        }
    }

    fn buffer(&self) -> Vec<u8> {
        let kept = self.buffers.lock().expect("copy client lock").pop();
        kept.unwrap_or_else(|| vec![0u8; RECEIVE_BYTES])
    }

    fn give_back(&self, buf: Vec<u8>) {
        let mut kept = self.buffers.lock().expect("copy client lock");
        if kept.len() < KEPT_BUFFERS {
            kept.push(buf);
        }
    }

    fn keep(&self, source: &str, reader: BufReader<CopyStream>) {
        let mut idle = self.idle.lock().expect("copy client lock");
        let kept = idle.entry(source.to_string()).or_default();
        if kept.len() < IDLE_PER_SOURCE {
            kept.push(reader);
        }
    }

    fn refused(&self, source: &str) -> CopyFailure {
        tracing::info!(
            source,
            "the source does not serve direct copies; pulling through GetFile"
        );
        self.unsupported
            .lock()
            .expect("copy client lock")
            .insert(source.to_string(), Instant::now());
        CopyFailure::Unsupported
    }
}

fn closed_by_peer(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

fn unreachable_source(source: &str, e: &io::Error) -> CopyFailure {
    CopyFailure::Source(Status::unavailable(format!("reading from {source}: {e}")))
}

/// A new connection to `source`, inside TLS with `tls`, hello sent.
fn connect(
    source: &str,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<BufReader<CopyStream>, CopyFailure> {
    let failed = |e: io::Error| unreachable_source(source, &e);
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for address in source.to_socket_addrs().map_err(failed)? {
        match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
            Ok(tcp) => {
                tcp.set_nodelay(true)
                    .and_then(|()| tcp.set_read_timeout(Some(STALL)))
                    .and_then(|()| tcp.set_write_timeout(Some(STALL)))
                    .map_err(failed)?;
                let mut stream = match tls {
                    Some(config) => {
                        CopyStream::tls_client(Arc::clone(config), source, tcp).map_err(failed)?
                    }
                    None => CopyStream::Plain(tcp),
                };
                // Under TLS this runs the handshake: a source that refuses this node's
                // certificate fails here or at the first answer.
                stream.write_all(HELLO).map_err(failed)?;
                stream.flush().map_err(failed)?;
                return Ok(BufReader::with_capacity(64 * 1024, stream));
            }
            Err(e) => last = e,
        }
    }
    Err(failed(last))
}

/// Sends the request for `key` and reads the answer's line: None when the source closed
/// the connection or answered with something that is not a line.
fn request(reader: &mut BufReader<CopyStream>, key: &str) -> io::Result<Option<String>> {
    let stream = reader.get_mut();
    stream.write_all(format!("{key}\n").as_bytes())?;
    stream.flush()?;
    let mut line = Vec::new();
    reader
        .by_ref()
        .take(MAX_LINE)
        .read_until(b'\n', &mut line)?;
    if line.pop() != Some(b'\n') {
        return Ok(None);
    }
    Ok(String::from_utf8(line).ok())
}

enum Answer {
    File {
        size: u64,
        sha256: String,
        crc: Option<u32>,
    },
    Error(Status),
}

fn parse_header(line: &str) -> Option<Answer> {
    if let Some(rest) = line.strip_prefix("ERR ") {
        let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
        let code = Code::from_i32(code.parse().ok()?);
        return Some(Answer::Error(Status::new(code, message.to_string())));
    }
    let mut fields = line.strip_prefix("OK ")?.split(' ');
    let size = fields.next()?.parse().ok()?;
    let sha256 = fields.next()?.to_string();
    let crc = match fields.next()? {
        "-" => None,
        hex if hex.len() == 8 => Some(u32::from_str_radix(hex, 16).ok()?),
        _ => return None,
    };
    let valid_sha = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
    (valid_sha && fields.next().is_none()).then_some(Answer::File { size, sha256, crc })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_and_anything_else_is_refused() {
        let sha = "a".repeat(64);
        match parse_header(&format!("OK 12 {sha} 0000abcd")) {
            Some(Answer::File { size, crc, .. }) => assert_eq!((size, crc), (12, Some(0xabcd))),
            _ => panic!("a file answer"),
        }
        match parse_header(&format!("OK 0 {sha} -")) {
            Some(Answer::File { crc, .. }) => assert_eq!(crc, None),
            _ => panic!("a file answer without a CRC"),
        }
        match parse_header("ERR 5 no such file") {
            Some(Answer::Error(status)) => {
                assert_eq!(status.code(), Code::NotFound);
                assert_eq!(status.message(), "no such file");
            }
            _ => panic!("an error answer"),
        }
        for bad in [
            "",
            "OK",
            "OK 12 short 0000abcd",
            &format!("OK x {sha} -"),
            &format!("OK 12 {sha} abc"),
            &format!("OK 12 {sha} - extra"),
            "ERR x y",
            "\0\0\x04\x08",
        ] {
            assert!(parse_header(bad).is_none(), "{bad:?}");
        }
    }
}
