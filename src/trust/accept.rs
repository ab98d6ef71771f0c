//! A listener that completes the TLS handshake itself before handing connections to a
//! gRPC server, so that every refused handshake is logged (see [`super::refusals`]);
//! tonic's own TLS drops them without a word. Each handshake runs on its own task with a
//! deadline, so a slow or silent client holds up no one else.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use super::refusals::RefusalLog;

/// From accepting a connection to the end of its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The connections of `listener` with their handshakes done (`config` decides who is let
/// in), Nagle off. Accepting ends when the receiving server drops the stream.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    what: &'static str,
) -> ReceiverStream<io::Result<TlsStream<TcpStream>>> {
    let (accepted_tx, accepted_rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let refusals = Arc::new(RefusalLog::new(what));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = accepted_tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (acceptor, refusals, accepted_tx) =
                (acceptor.clone(), Arc::clone(&refusals), accepted_tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = accepted_tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => {
                        if !refusals.handshake_failed(peer, &e) {
                            tracing::debug!(%peer, error = %e, "a TLS handshake was dropped");
                        }
                    }
                    Err(_) => tracing::debug!(%peer, "no TLS handshake in time"),
                }
            });
        }
    });
    ReceiverStream::new(accepted_rx)
}
