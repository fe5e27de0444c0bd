//! The background task that expires pending approval requests once their deadline passes and
//! wakes the `Wait` calls watching them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::storage::{Store, now_unix_us};

/// Every `interval`, expires due requests in `store` and bumps `changes` when any expired;
/// returns once `shutdown` is cancelled.
pub async fn run(
    store: Store,
    changes: Arc<watch::Sender<u64>>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match store.expire_due(now_unix_us()).await {
            Ok(0) => {}
            Ok(expired) => {
                info!(expired, "approval requests expired");
                changes.send_modify(|n| *n += 1);
            }
            Err(err) => error!(error = %crate::report(&err), "expiring approval requests failed"),
        }
    }
}
