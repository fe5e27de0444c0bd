//! PostgreSQL: the query API's reads besides a session's events — sessions matching a
//! [`SessionFilter`], a session's raw stored rows, export pages, a session's facts — with the
//! SQL of the SQLite backend (`storage::sqlite::search`) in PostgreSQL's parameter markers.

use jitgate_proto::audit::v1::{
    ChainLedger, Decision, Event, SessionFilter, SessionSummary, StoredEvent, StoredEventsResponse,
};
use tokio_postgres::types::ToSql;

use super::{PgStore, decode_event, session};
use crate::storage::search::{ExportCursor, MAX_EXPORT_PAGE, SessionFacts};
use crate::storage::{DEFAULT_SESSION_LIMIT, MAX_SESSION_LIMIT, StoreError};

type Param = Box<dyn ToSql + Sync + Send>;

impl PgStore {
    /// See [`crate::storage::Store::find_sessions`].
    ///
    /// # Errors
    /// As there.
    pub async fn find_sessions(
        &self,
        filter: &SessionFilter,
        limit: u32,
    ) -> Result<Vec<SessionSummary>, StoreError> {
        let limit = i64::from(match limit {
            0 => DEFAULT_SESSION_LIMIT,
            n => n.min(MAX_SESSION_LIMIT),
        });
        let (clauses, mut params) = session_clauses(filter);
        params.push(Box::new(limit));
        let sql = format!(
            "SELECT {} FROM sessions {} ORDER BY started_unix_us DESC, session_id DESC LIMIT ${}",
            session::SUMMARY_COLUMNS,
            if clauses.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", clauses.join(" AND "))
            },
            params.len()
        );
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(&sql).await?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
        client
            .query(&stmt, &refs)
            .await?
            .iter()
            .map(session::from_row)
            .collect()
    }

    /// See [`crate::storage::Store::stored_events`].
    ///
    /// # Errors
    /// As there.
    pub async fn stored_events(
        &self,
        session_id: &str,
    ) -> Result<StoredEventsResponse, StoreError> {
        let mut client = self.pool.get().await?;
        // One REPEATABLE READ snapshot: the ledger and the rows agree.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let ledger_stmt = tx
            .prepare_cached("SELECT last_seq, last_hash FROM sessions WHERE session_id = $1")
            .await?;
        let ledger = match tx.query_opt(&ledger_stmt, &[&session_id]).await? {
            Some(row) => Some(ChainLedger {
                last_seq: row.try_get(0)?,
                last_hash: row.try_get::<_, Option<Vec<u8>>>(1)?.unwrap_or_default(),
            }),
            None => None,
        };
        let stmt = tx
            .prepare_cached(
                "SELECT seq, event_id, payload FROM events WHERE session_id = $1
                 ORDER BY seq, received_unix_us, event_id",
            )
            .await?;
        let rows = tx.query(&stmt, &[&session_id]).await?;
        let events = rows
            .iter()
            .map(|row| {
                let seq: i64 = row.try_get(0)?;
                Ok(StoredEvent {
                    seq: u64::try_from(seq).unwrap_or_default(),
                    event_id: row.try_get(1)?,
                    payload: row.try_get(2)?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        tx.commit().await?;
        Ok(StoredEventsResponse { events, ledger })
    }

    /// See [`crate::storage::Store::export_page`].
    ///
    /// # Errors
    /// As there.
    pub async fn export_page(
        &self,
        since: i64,
        until: i64,
        cursor: &ExportCursor,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let until = if until == 0 { i64::MAX } else { until };
        let limit = i64::from(limit.clamp(1, MAX_EXPORT_PAGE));
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT event_id, payload FROM events
                 WHERE time_unix_us >= $1 AND time_unix_us < $2
                   AND (time_unix_us > $3 OR (time_unix_us = $3 AND event_id > $4))
                 ORDER BY time_unix_us, event_id LIMIT $5",
            )
            .await?;
        let rows = client
            .query(
                &stmt,
                &[
                    &since,
                    &until,
                    &cursor.time_unix_us,
                    &cursor.event_id,
                    &limit,
                ],
            )
            .await?;
        rows.iter().map(decode_event).collect()
    }

    /// See [`crate::storage::Store::session_facts`].
    ///
    /// # Errors
    /// As there.
    pub async fn session_facts(
        &self,
        session_id: &str,
    ) -> Result<Option<SessionFacts>, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT issuer, subject, app_id, object_id, target FROM sessions
                 WHERE session_id = $1",
            )
            .await?;
        let Some(row) = client.query_opt(&stmt, &[&session_id]).await? else {
            return Ok(None);
        };
        Ok(Some(SessionFacts {
            identities: [
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
            ],
            target: row.try_get(4)?,
        }))
    }
}

/// The `WHERE` conditions (joined with `AND`) and their parameters (`$1`, `$2`, ... in order)
/// for `filter`.
fn session_clauses(filter: &SessionFilter) -> (Vec<String>, Vec<Param>) {
    let mut clauses = Vec::new();
    let mut params: Vec<Param> = Vec::new();
    let mut text = |value: &str, clause: &dyn Fn(usize) -> String| {
        if !value.is_empty() {
            params.push(Box::new(value.to_owned()));
            clauses.push(clause(params.len()));
        }
    };
    text(&filter.identity, &|n| {
        format!("(issuer = ${n} OR subject = ${n} OR app_id = ${n} OR object_id = ${n})")
    });
    text(&filter.repository, &|n| format!("repository = ${n}"));
    text(&filter.target, &|n| format!("target = ${n}"));
    text(&filter.agent_host, &|n| format!("agent_host = ${n}"));
    if filter.since_unix_us != 0 {
        params.push(Box::new(filter.since_unix_us));
        clauses.push(format!("started_unix_us >= ${}", params.len()));
    }
    if filter.until_unix_us != 0 {
        params.push(Box::new(filter.until_unix_us));
        clauses.push(format!("started_unix_us < ${}", params.len()));
    }
    match filter.decision() {
        Decision::Denied => {
            clauses.push("(counted_denied > 0 OR reported_denied > 0 OR refused)".into());
        }
        Decision::Allowed => {
            clauses.push("(counted_denied = 0 AND reported_denied = 0 AND NOT refused)".into());
        }
        Decision::Unspecified => {}
    }
    (clauses, params)
}
