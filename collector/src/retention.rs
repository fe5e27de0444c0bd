//! The retention sweeper: with `--retention-days N` (N > 0) a background task deletes events,
//! sessions and decided approvals older than N days ([`Store::sweep_blocking`]) at start and
//! then every [`SWEEP_INTERVAL`], [`SWEEP_BATCH`] rows per transaction. N = 0 (the default)
//! keeps everything.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::storage::{Store, now_unix_us};

/// Time between sweeps.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// Rows deleted per transaction.
pub const SWEEP_BATCH: u32 = 2_000;
/// Microseconds in one day.
const DAY_US: i64 = 86_400 * 1_000_000;

/// The cutoff for `days` of retention at `now_unix_us`: rows older than this go.
pub fn cutoff(now_unix_us: i64, days: u32) -> i64 {
    now_unix_us.saturating_sub(i64::from(days).saturating_mul(DAY_US))
}

/// Starts the sweeper for `days` of retention (nothing when `days` is 0); it stops when
/// `shutdown` is cancelled.
pub fn spawn(store: Store, days: u32, shutdown: CancellationToken) {
    if days == 0 {
        return;
    }
    info!(days, "retention sweeper started");
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let before = cutoff(now_unix_us(), days);
            match store.sweep(before, SWEEP_BATCH).await {
                Ok(swept) => info!(
                    events = swept.events,
                    sessions = swept.sessions,
                    approvals = swept.approvals,
                    "retention sweep"
                ),
                Err(err) => warn!(error = %crate::report(&err), "retention sweep failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoff_is_days_back() {
        assert_eq!(cutoff(10 * DAY_US, 3), 7 * DAY_US);
        assert_eq!(cutoff(0, u32::MAX), -i64::MAX, "saturates");
        assert_eq!(cutoff(i64::MIN + 1, 1), i64::MIN);
    }
}
