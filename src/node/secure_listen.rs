//! A storage node's port with the cluster's certificates: every connection is mutual TLS,
//! terminated here rather than by tonic so that the decrypted stream can be told apart as
//! the plain port tells it: HTTP/2 goes to the gRPC server (whose interceptor checks the
//! caller's certificate per call), the direct-copy protocol to the copy server, which
//! serves only node certificates.
//!
//! Each handshake runs on its own task with a deadline, so a slow or silent client holds
//! up no one else. Refused handshakes are logged, rate-limited per peer.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use super::copy_stream::CopyStream;
use super::server::CopyServer;
use super::transfer::{BUSY, FIRST_BYTE, HELLO, MAX_CONNECTIONS};
use crate::trust::refusals::RefusalLog;
use crate::trust::{Role, role_of};

/// From accepting a connection to its first decrypted byte (the handshake included).
const SNIFF_TIMEOUT: Duration = Duration::from_secs(10);
/// Encrypted bytes rustls may hold on a gRPC connection before the socket takes them.
const GRPC_TLS_BUFFER_LIMIT: usize = 512 * 1024;
/// The answer to a copy request from a certificate that is not a node's, before closing.
pub const NOT_A_NODE: &[u8] = b"ERR 7 direct copies are for nodes of the cluster only\n";

/// A TLS connection whose first decrypted byte was read to route it, and is given back
/// to its reader first.
pub struct Sniffed {
    first: Option<u8>,
    inner: TlsStream<TcpStream>,
}

impl AsyncRead for Sniffed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() > 0
            && let Some(first) = self.first.take()
        {
            buf.put_slice(&[first]);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Sniffed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The gRPC server sees the TLS stream's details, the peer's certificates among them.
impl Connected for Sniffed {
    type ConnectInfo = <TlsStream<TcpStream> as Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// The node's accepted connections, TLS completed: HTTP/2 ones are handed to the gRPC
/// server through the returned stream, direct copies from nodes are served on the
/// blocking pool until the copy server's `stop`. Accepting ends when the gRPC server
/// drops the stream (the port closes).
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    copy: CopyServer,
) -> ReceiverStream<io::Result<Sniffed>> {
    let (grpc, incoming) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let copy_slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let refusals = Arc::new(RefusalLog::new("storage node"));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = grpc.closed() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let route = route(
                        stream,
                        peer,
                        Arc::clone(&refusals),
                        acceptor.clone(),
                        grpc.clone(),
                        Arc::clone(&copy_slots),
                        copy.clone(),
                    );
                    tokio::spawn(async move {
                        if let Err(e) = route.await {
                            tracing::debug!(%peer, error = %e, "a TLS connection was dropped");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    ReceiverStream::new(incoming)
}

/// Completes the handshake, reads the first decrypted byte and hands the connection on.
async fn route(
    stream: TcpStream,
    peer: SocketAddr,
    refusals: Arc<RefusalLog>,
    acceptor: TlsAcceptor,
    grpc: mpsc::Sender<io::Result<Sniffed>>,
    copy_slots: Arc<Semaphore>,
    copy: CopyServer,
) -> io::Result<()> {
    let sniffed = tokio::time::timeout(SNIFF_TIMEOUT, async {
        let mut tls = acceptor.accept(stream).await.inspect_err(|e| {
            refusals.handshake_failed(peer, e);
        })?;
        let first = tls.read_u8().await?;
        io::Result::Ok((tls, first))
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no handshake or request in time"))?;
    let (mut tls, first) = sniffed?;
    if first == FIRST_BYTE {
        serve_copy(tls, copy_slots, copy).await
    } else {
        // A file read answers in chunks of up to 256 KiB: let rustls take one whole
        // chunk (and its records' overhead) per write instead of stopping at its 64 KiB
        // default, so it is encrypted in one pass and leaves in few writes.
        tls.get_mut()
            .1
            .set_buffer_limit(Some(GRPC_TLS_BUFFER_LIMIT));
        let _ = grpc
            .send(Ok(Sniffed {
                first: Some(first),
                inner: tls,
            }))
            .await;
        Ok(())
    }
}

/// A copy connection: refused unless the peer showed a node certificate (before any of
/// its request is read), then served on the blocking pool.
async fn serve_copy(
    mut tls: TlsStream<TcpStream>,
    copy_slots: Arc<Semaphore>,
    copy: CopyServer,
) -> io::Result<()> {
    let role = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|cert| role_of(cert.as_ref()));
    if role != Some(Role::Node) {
        tls.write_all(NOT_A_NODE).await?;
        return tls.shutdown().await;
    }
    let mut hello = [0u8; HELLO.len() - 1];
    tokio::time::timeout(SNIFF_TIMEOUT, tls.read_exact(&mut hello))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no hello in time"))??;
    if hello != HELLO[1..] {
        return Ok(());
    }
    let Ok(slot) = copy_slots.try_acquire_owned() else {
        tls.write_all(BUSY).await?;
        return tls.shutdown().await;
    };
    // Whatever of the first request was decrypted already stays in the connection.
    let (tcp, connection) = tls.into_inner();
    let tcp = tcp.into_std()?;
    tcp.set_nonblocking(false)?;
    let stream = CopyStream::tls_server(connection, tcp);
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        super::transfer::serve(copy.store, stream, true, copy.stop, copy.metrics);
    });
    Ok(())
}
