//! SQLite: read queries of the query API besides a session's events: sessions matching a
//! [`SessionFilter`], a session's raw stored rows for `jitgate verify`, one page of an export
//! window, and the facts of a session a live follower filters on.
//!
//! Filters become `WHERE` clauses only when set, so SQLite can use the index of the column
//! (`schema.rs`, version 3); the SQL is plain enough to port to PostgreSQL unchanged apart from
//! parameter markers.

use jitgate_proto::audit::v1::{
    ChainLedger, Decision, Event, SessionFilter, SessionSummary, StoredEvent, StoredEventsResponse,
};
use prost::Message;
use rusqlite::{OptionalExtension as _, ToSql};

use super::{SqliteStore, lock, session};
use crate::storage::search::{ExportCursor, MAX_EXPORT_PAGE, SessionFacts};
use crate::storage::{DEFAULT_SESSION_LIMIT, MAX_SESSION_LIMIT, StoreError};

impl SqliteStore {
    /// Sessions matching `filter`, newest start first; `limit` as in [`SqliteStore::sessions_blocking`].
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] or [`StoreError::CorruptBlob`].
    pub fn find_sessions_blocking(
        &self,
        filter: &SessionFilter,
        limit: u32,
    ) -> Result<Vec<SessionSummary>, StoreError> {
        let limit = match limit {
            0 => DEFAULT_SESSION_LIMIT,
            n => n.min(MAX_SESSION_LIMIT),
        };
        let (clauses, mut params) = session_clauses(filter);
        params.push((":limit", Box::new(limit)));
        let sql = format!(
            "SELECT {} FROM sessions {} ORDER BY started_unix_us DESC, session_id DESC LIMIT :limit",
            session::SUMMARY_COLUMNS,
            where_sql(&clauses)
        );
        let conn = lock(&self.inner.reader)?;
        let mut stmt = conn.prepare_cached(&sql)?;
        let named: Vec<(&str, &dyn ToSql)> = params
            .iter()
            .map(|(name, value)| (*name, &**value))
            .collect();
        let mut rows = stmt.query(named.as_slice())?;
        let mut sessions = Vec::new();
        while let Some(row) = rows.next()? {
            sessions.push(session::from_row(row)?);
        }
        Ok(sessions)
    }

    /// The stored rows of `session_id` undecoded, in storage order: the stored `seq` column,
    /// then arrival. Not re-sorted by the payload's own `seq`, so moved events show.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn stored_events_blocking(
        &self,
        session_id: &str,
    ) -> Result<StoredEventsResponse, StoreError> {
        let conn = lock(&self.inner.reader)?;
        // One read transaction: the ledger and the rows come from the same snapshot (WAL).
        let snapshot = conn.unchecked_transaction()?;
        let ledger = snapshot
            .prepare_cached("SELECT last_seq, last_hash FROM sessions WHERE session_id = ?1")?
            .query_row([session_id], |row| {
                Ok(ChainLedger {
                    last_seq: row.get(0)?,
                    last_hash: row.get::<_, Option<Vec<u8>>>(1)?.unwrap_or_default(),
                })
            })
            .optional()?;
        let mut stmt = snapshot.prepare_cached(
            "SELECT seq, event_id, payload FROM events WHERE session_id = ?1
             ORDER BY seq, received_unix_us, event_id",
        )?;
        let events = stmt
            .query_map([session_id], |row| {
                Ok(StoredEvent {
                    seq: row.get(0)?,
                    event_id: row.get(1)?,
                    payload: row.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        drop(stmt);
        snapshot.commit()?;
        Ok(StoredEventsResponse { events, ledger })
    }

    /// Up to `limit` (capped at [`MAX_EXPORT_PAGE`]) events with `since <= time < until`
    /// (`until` 0 = no bound) after `cursor`, ordered by time then event id.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] or [`StoreError::CorruptBlob`].
    pub fn export_page_blocking(
        &self,
        since: i64,
        until: i64,
        cursor: &ExportCursor,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let until = if until == 0 { i64::MAX } else { until };
        let conn = lock(&self.inner.reader)?;
        let mut stmt = conn.prepare_cached(
            "SELECT event_id, payload FROM events
             WHERE time_unix_us >= ?1 AND time_unix_us < ?2
               AND (time_unix_us > ?3 OR (time_unix_us = ?3 AND event_id > ?4))
             ORDER BY time_unix_us, event_id LIMIT ?5",
        )?;
        let limit = limit.clamp(1, MAX_EXPORT_PAGE);
        let mut rows = stmt.query(rusqlite::params![
            since,
            until,
            cursor.time_unix_us,
            cursor.event_id,
            limit
        ])?;
        let mut events = Vec::new();
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let payload: Vec<u8> = row.get(1)?;
            let event = Event::decode(payload.as_slice())
                .map_err(|source| StoreError::CorruptBlob { id, source })?;
            events.push(event);
        }
        Ok(events)
    }

    /// The identity and target of `session_id`, `None` for a session without a row.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn session_facts_blocking(
        &self,
        session_id: &str,
    ) -> Result<Option<SessionFacts>, StoreError> {
        use rusqlite::OptionalExtension;
        let conn = lock(&self.inner.reader)?;
        let mut stmt = conn.prepare_cached(
            "SELECT issuer, subject, app_id, object_id, target FROM sessions WHERE session_id = ?1",
        )?;
        Ok(stmt
            .query_row([session_id], |row| {
                Ok(SessionFacts {
                    identities: [row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?],
                    target: row.get(4)?,
                })
            })
            .optional()?)
    }
}

type Params = Vec<(&'static str, Box<dyn ToSql>)>;

/// The `WHERE` conditions (joined with `AND`) and their named parameters for `filter`.
fn session_clauses(filter: &SessionFilter) -> (Vec<&'static str>, Params) {
    let mut clauses = Vec::new();
    let mut params: Params = Vec::new();
    let mut text = |value: &str, clause: &'static str, name: &'static str| {
        if !value.is_empty() {
            clauses.push(clause);
            params.push((name, Box::new(value.to_owned())));
        }
    };
    text(
        &filter.identity,
        "(issuer = :identity OR subject = :identity OR app_id = :identity OR object_id = :identity)",
        ":identity",
    );
    text(
        &filter.repository,
        "repository = :repository",
        ":repository",
    );
    text(&filter.target, "target = :target", ":target");
    text(
        &filter.agent_host,
        "agent_host = :agent_host",
        ":agent_host",
    );
    if filter.since_unix_us != 0 {
        clauses.push("started_unix_us >= :since");
        params.push((":since", Box::new(filter.since_unix_us)));
    }
    if filter.until_unix_us != 0 {
        clauses.push("started_unix_us < :until");
        params.push((":until", Box::new(filter.until_unix_us)));
    }
    match filter.decision() {
        Decision::Denied => {
            clauses.push("(counted_denied > 0 OR reported_denied > 0 OR refused = 1)");
        }
        Decision::Allowed => {
            clauses.push("(counted_denied = 0 AND reported_denied = 0 AND refused = 0)");
        }
        Decision::Unspecified => {}
    }
    (clauses, params)
}

fn where_sql(clauses: &[&str]) -> String {
    if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    }
}
