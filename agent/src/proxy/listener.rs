//! Accepts redirected connections on the agent's loopback listeners and serves each in its own
//! task until shutdown.

use std::sync::Arc;

use tokio::net::TcpListener;

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
                    Ok((stream, peer)) => {
                        tokio::spawn(super::startup::serve(ctx.clone(), stream, peer));
                    }
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
