//! SQLite: the retention sweep (see `storage::retention`), one batch per transaction on the
//! writer connection.

use super::{SqliteStore, lock};
use crate::storage::StoreError;
use crate::storage::retention::Swept;

/// Deletes one batch of events older than the cutoff.
const EVENTS: &str = "DELETE FROM events WHERE event_id IN
    (SELECT event_id FROM events WHERE time_unix_us < ?1 LIMIT ?2)";
/// Deletes one batch of sessions that started before the cutoff and have no events left.
const SESSIONS: &str = "DELETE FROM sessions WHERE session_id IN
    (SELECT s.session_id FROM sessions s WHERE s.started_unix_us < ?1
        AND NOT EXISTS (SELECT 1 FROM events e WHERE e.session_id = s.session_id) LIMIT ?2)";
/// Deletes one batch of decided or expired approvals requested before the cutoff.
const APPROVALS: &str = "DELETE FROM approvals WHERE approval_id IN
    (SELECT approval_id FROM approvals WHERE requested_unix_us < ?1 AND status <> 'pending'
        AND grant_expires_unix_us < ?1 LIMIT ?2)";

impl SqliteStore {
    /// Deletes events, sessions and approvals older than `cutoff_unix_us` (see the module
    /// docs), `batch` rows per transaction, until none is left.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`]; batches committed before the error stay deleted.
    pub fn sweep_blocking(&self, cutoff_unix_us: i64, batch: u32) -> Result<Swept, StoreError> {
        let batch = batch.max(1);
        Ok(Swept {
            events: self.delete_in_batches(EVENTS, cutoff_unix_us, batch)?,
            sessions: self.delete_in_batches(SESSIONS, cutoff_unix_us, batch)?,
            approvals: self.delete_in_batches(APPROVALS, cutoff_unix_us, batch)?,
        })
    }

    fn delete_in_batches(&self, sql: &str, cutoff: i64, batch: u32) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            // The lock is taken per batch, so ingest interleaves between batches.
            let deleted = {
                let conn = lock(&self.inner.writer)?;
                conn.prepare_cached(sql)?
                    .execute(rusqlite::params![cutoff, batch])?
            };
            total += deleted;
            if deleted < usize::try_from(batch).unwrap_or(usize::MAX) {
                return Ok(total);
            }
        }
    }
}
