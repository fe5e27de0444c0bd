//! Accepts redirected connections on the agent's loopback listeners and serves each in its own
//! task until shutdown.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};

use crate::pgwire::write::{self, Severity};

use super::Context;

/// Accepts on every listener until `shutdown` resolves.
pub async fn accept_loop(
    ctx: Arc<Context>,
    listeners: Vec<TcpListener>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        let ctx = ctx.clone();
        tasks.spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => match ctx.connections.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let ctx = ctx.clone();
                            tokio::spawn(async move {
                                super::startup::serve(ctx, stream, peer).await;
                                drop(permit);
                            });
                        }
                        Err(_) => {
                            tokio::spawn(refuse_over_limit(stream, ctx.max_connections));
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }
    shutdown.await;
    tasks.abort_all();
}

/// Answers a connection over `max_connections` with FATAL 53300 (too_many_connections) and
/// closes it, as the server does when it is full. Read by libpq whether it sent a
/// StartupMessage or an SSLRequest first.
async fn refuse_over_limit(mut stream: TcpStream, limit: usize) {
    tracing::warn!(limit, "connection refused: max_connections reached");
    let mut out = BytesMut::new();
    write::error_response(
        &mut out,
        Severity::Fatal,
        "53300",
        &format!("jitgate: too many connections (max_connections = {limit})"),
        Some("Retry later, or raise max_connections in the agent's configuration."),
    );
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}
