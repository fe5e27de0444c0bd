//! The TLS listener: accepts TCP connections and completes each handshake on its own task
//! (bounded by [`HANDSHAKE_TIMEOUT`]), so a slow or failing client never stalls the others.
//! Failed handshakes — a client certificate from another CA, a client that does not trust the
//! server — are logged with the peer address and dropped; the server keeps serving.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Longest a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after an accept error (e.g. out of file descriptors) before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Handshaken connections waiting for the server to take them.
const READY_QUEUE: usize = 64;

/// A stream of TLS connections accepted on `listener` with `config`, until `shutdown` is
/// cancelled (the stream then ends once handshakes in progress are done).
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (ready, stream) = mpsc::channel(READY_QUEUE);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    warn!(error = %err, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            if let Err(err) = tcp.set_nodelay(true) {
                debug!(%peer, error = %err, "cannot set TCP_NODELAY");
            }
            let acceptor = acceptor.clone();
            let ready = ready.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        // The server is gone when this fails; the connection just closes.
                        let _ = ready.send(Ok(tls)).await;
                    }
                    Ok(Err(err)) => {
                        warn!(%peer, error = %err, "TLS handshake refused");
                    }
                    Err(_) => warn!(%peer, timeout = ?HANDSHAKE_TIMEOUT, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(stream)
}
