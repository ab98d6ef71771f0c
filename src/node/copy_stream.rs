//! The connection a direct copy runs on (see [`super::transfer`]): plain TCP, where the
//! source hands a file to the socket with sendfile(2), or mutual TLS between nodes with
//! the cluster's certificates, where the bytes have to pass through rustls to be
//! encrypted. Both are blocking: a copy holds a thread of the blocking pool.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, ClientConnection, ServerConnection, StreamOwned};

/// How much of a file the TLS path reads before handing it to rustls to encrypt.
const TLS_READ_BYTES: usize = 256 * 1024;

/// How many encrypted bytes rustls may hold before the socket takes them: one whole read
/// of [`TLS_READ_BYTES`] (and its records' overhead), so a chunk is encrypted in one pass
/// and written out in few calls instead of stopping at rustls's 64 KiB default.
const TLS_BUFFER_LIMIT: usize = 2 * TLS_READ_BYTES;

pub enum CopyStream {
    Plain(TcpStream),
    /// The source's side: the handshake was completed by the node's listener.
    TlsServer(Box<StreamOwned<ServerConnection, TcpStream>>),
    /// The puller's side.
    TlsClient(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl CopyStream {
    /// The source's side of a connection whose handshake the listener completed.
    pub fn tls_server(mut connection: ServerConnection, tcp: TcpStream) -> CopyStream {
        connection.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        CopyStream::TlsServer(Box::new(StreamOwned::new(connection, tcp)))
    }

    /// The puller's TLS connection to `source` (`host:port`) over `tcp`, showing this
    /// node's certificate; the handshake runs with the first write.
    pub fn tls_client(
        config: Arc<ClientConfig>,
        source: &str,
        tcp: TcpStream,
    ) -> io::Result<CopyStream> {
        let host = source.rsplit_once(':').map_or(source, |(host, _)| host);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{source}: {e}")))?;
        let mut connection = ClientConnection::new(config, name).map_err(io::Error::other)?;
        connection.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Ok(CopyStream::TlsClient(Box::new(StreamOwned::new(
            connection, tcp,
        ))))
    }

    /// The socket underneath, for its timeouts.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            CopyStream::Plain(tcp) => tcp,
            CopyStream::TlsServer(tls) => tls.get_ref(),
            CopyStream::TlsClient(tls) => tls.get_ref(),
        }
    }

    /// Sends `size` bytes of `file` from its start: straight from the page cache with
    /// sendfile(2) on a plain connection; read and encrypted under TLS.
    pub fn send_file(&mut self, file: &File, size: u64) -> io::Result<()> {
        let mut offset = 0u64;
        let mut buf = match self {
            CopyStream::Plain(_) => Vec::new(),
            _ => vec![0u8; TLS_READ_BYTES.min(size as usize)],
        };
        while offset < size {
            let sent = match self {
                CopyStream::Plain(tcp) => {
                    let want = (size - offset).min(1 << 30) as usize;
                    rustix::fs::sendfile(&*tcp, file, Some(&mut offset), want)?
                }
                _ => {
                    let want = (size - offset).min(buf.len() as u64) as usize;
                    let read = file.read_at(&mut buf[..want], offset)?;
                    self.write_all(&buf[..read])?;
                    offset += read as u64;
                    read
                }
            };
            if sent == 0 {
                // Shorter than recorded (truncated since it was opened): the puller sees
                // the connection end early and keeps nothing.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the file ended at {offset} of {size} bytes"),
                ));
            }
        }
        self.flush()
    }
}

impl Read for CopyStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            CopyStream::Plain(tcp) => tcp.read(buf),
            CopyStream::TlsServer(tls) => tls.read(buf),
            CopyStream::TlsClient(tls) => tls.read(buf),
        }
    }
}

impl Write for CopyStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            CopyStream::Plain(tcp) => tcp.write(buf),
            CopyStream::TlsServer(tls) => tls.write(buf),
            CopyStream::TlsClient(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            CopyStream::Plain(tcp) => tcp.flush(),
            CopyStream::TlsServer(tls) => tls.flush(),
            CopyStream::TlsClient(tls) => tls.flush(),
        }
    }
}
