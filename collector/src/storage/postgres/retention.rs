//! PostgreSQL: the retention sweep (see `storage::retention`), one batch per transaction, with
//! the SQL of the SQLite backend in PostgreSQL's parameter markers. Deleting is safe while
//! other collectors write: a row deleted here and resent later is simply stored again.

use super::PgStore;
use crate::storage::StoreError;
use crate::storage::retention::Swept;

/// Deletes one batch of events older than the cutoff.
const EVENTS: &str = "DELETE FROM events WHERE event_id IN
    (SELECT event_id FROM events WHERE time_unix_us < $1 LIMIT $2)";
/// Deletes one batch of sessions that started before the cutoff and have no events left.
const SESSIONS: &str = "DELETE FROM sessions WHERE session_id IN
    (SELECT s.session_id FROM sessions s WHERE s.started_unix_us < $1
        AND NOT EXISTS (SELECT 1 FROM events e WHERE e.session_id = s.session_id) LIMIT $2)";
/// Deletes one batch of decided or expired approvals requested before the cutoff.
const APPROVALS: &str = "DELETE FROM approvals WHERE approval_id IN
    (SELECT approval_id FROM approvals WHERE requested_unix_us < $1 AND status <> 'pending'
        AND grant_expires_unix_us < $1 LIMIT $2)";

impl PgStore {
    /// See [`crate::storage::Store::sweep`].
    ///
    /// # Errors
    /// As there.
    pub async fn sweep(&self, cutoff_unix_us: i64, batch: u32) -> Result<Swept, StoreError> {
        let batch = i64::from(batch.max(1));
        Ok(Swept {
            events: self
                .delete_in_batches(EVENTS, cutoff_unix_us, batch)
                .await?,
            sessions: self
                .delete_in_batches(SESSIONS, cutoff_unix_us, batch)
                .await?,
            approvals: self
                .delete_in_batches(APPROVALS, cutoff_unix_us, batch)
                .await?,
        })
    }

    async fn delete_in_batches(
        &self,
        sql: &str,
        cutoff: i64,
        batch: i64,
    ) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            // Each statement is its own transaction, so ingest interleaves between batches.
            let deleted = {
                let client = self.pool.get().await?;
                let stmt = client.prepare_cached(sql).await?;
                client.execute(&stmt, &[&cutoff, &batch]).await?
            };
            total += usize::try_from(deleted).unwrap_or(usize::MAX);
            if i64::try_from(deleted).unwrap_or(i64::MAX) < batch {
                return Ok(total);
            }
        }
    }
}
