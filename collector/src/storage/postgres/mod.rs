//! The PostgreSQL backend (tokio-postgres with a deadpool pool): one database shared by several
//! collectors, for organisations with many runner hosts.
//!
//! Every write is one transaction at PostgreSQL's default `READ COMMITTED` isolation, made safe
//! for concurrent collectors by the statements themselves: events are inserted with
//! `ON CONFLICT (event_id) DO NOTHING` (a second collector storing the same event waits for the
//! first and then skips it, so its session row is folded once); session rows are updated with
//! single-row upserts and increments; approval state changes lock their rows with
//! `SELECT ... FOR UPDATE` (due rows in id order) before deciding. Events of a batch are
//! inserted in `(session_id, event_id)` order so concurrent batches take row locks in one
//! order; a deadlock or serialization failure that still happens is retried
//! ([`MAX_ATTEMPTS`]).

mod approvals;
mod connect;
mod retention;
mod schema;
mod search;
mod session;

use deadpool_postgres::{Pool, Transaction};
use jitgate_proto::audit::v1::{Event, SessionSummary};
use prost::Message;

pub use connect::{CONNECT_TIMEOUT, DEFAULT_POOL_SIZE, PgOptions, WAIT_TIMEOUT, run_sql};
pub use schema::version as schema_version;

use super::feed::Feed;
use super::names::{Searchable, check};
use super::{DEFAULT_SESSION_LIMIT, MAX_SESSION_LIMIT, StoreError, now_unix_us};

/// How often a transaction is tried when PostgreSQL aborts it for a deadlock or
/// serialization failure.
pub const MAX_ATTEMPTS: u32 = 5;

/// A pool of connections to the collector's PostgreSQL database; cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    target: String,
    feed: Feed,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// Runs `$body` (an expression using the transaction `$tx`, returning `Result<T, StoreError>`)
/// in a transaction from `$pool`, commits, and runs it again from the start when PostgreSQL
/// aborted it for a deadlock or serialization failure.
macro_rules! transaction {
    ($pool:expr, |$tx:ident| $body:expr) => {{
        let mut attempt = 1;
        loop {
            let result: Result<_, $crate::storage::StoreError> = async {
                let mut client = $pool.get().await?;
                let $tx = client.transaction().await?;
                let value = $body;
                $tx.commit().await?;
                Ok(value)
            }
            .await;
            match result {
                Err(err) if err.is_retryable() && attempt < $crate::storage::postgres::MAX_ATTEMPTS => {
                    tracing::debug!(attempt, error = %err, "transaction aborted; retrying");
                    attempt += 1;
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use transaction;

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`, no password: it is read from
    /// `options.password_file`), checks the login with one connection, and creates or upgrades
    /// the schema.
    ///
    /// # Errors
    /// [`StoreError::BadUrl`], [`StoreError::PasswordFile`], [`StoreError::CaFile`],
    /// [`StoreError::Connect`] (unreachable, refused, TLS failed), [`StoreError::Auth`] (login
    /// refused), [`StoreError::NewerSchema`], [`StoreError::Postgres`] (e.g. the role may not
    /// create tables).
    pub async fn connect(url: &str, options: PgOptions) -> Result<PgStore, StoreError> {
        let target = connect::target(url, &options)?;
        let display = target.display.clone();
        let pool = connect::pool(target, &options).await?;
        let mut client = pool.get().await?;
        schema::migrate(&mut client).await?;
        drop(client);
        Ok(PgStore {
            pool,
            target: display,
            feed: Feed::new(),
        })
    }

    /// `host:port/database` of the server, for logs.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// See [`crate::storage::Store::insert`].
    ///
    /// # Errors
    /// As there.
    pub async fn insert(&self, events: &[Event]) -> Result<usize, StoreError> {
        for event in events {
            check(event)?;
        }
        let mut order: Vec<usize> = (0..events.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&events[a], &events[b]);
            (&a.session_id, &a.event_id).cmp(&(&b.session_id, &b.event_id))
        });
        let ordered: Vec<&Event> = order.iter().map(|&i| &events[i]).collect();
        let received = now_unix_us();
        let new = transaction!(self.pool, |tx| insert_events(&tx, &ordered, received)
            .await?)?;
        // Published in the batch's own order, after the commit.
        let mut stored: Vec<usize> = new.iter().map(|&i| order[i]).collect();
        stored.sort_unstable();
        self.feed.publish(events, &stored);
        Ok(stored.len())
    }

    /// A receiver of the live feed: every event newly stored by [`PgStore::insert`] from now
    /// on (this process's inserts only).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<std::sync::Arc<Event>> {
        self.feed.subscribe()
    }

    /// See [`crate::storage::Store::sessions`].
    ///
    /// # Errors
    /// As there.
    pub async fn sessions(&self, limit: u32) -> Result<Vec<SessionSummary>, StoreError> {
        let limit = i64::from(match limit {
            0 => DEFAULT_SESSION_LIMIT,
            n => n.min(MAX_SESSION_LIMIT),
        });
        let client = self.pool.get().await?;
        let sql = format!(
            "SELECT {} FROM sessions ORDER BY started_unix_us DESC, session_id DESC LIMIT $1",
            session::SUMMARY_COLUMNS
        );
        let stmt = client.prepare_cached(&sql).await?;
        client
            .query(&stmt, &[&limit])
            .await?
            .iter()
            .map(session::from_row)
            .collect()
    }

    /// See [`crate::storage::Store::events`].
    ///
    /// # Errors
    /// As there.
    pub async fn events(&self, session_id: &str) -> Result<Vec<Event>, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT event_id, payload FROM events WHERE session_id = $1
                 ORDER BY seq, time_unix_us, stored",
            )
            .await?;
        let rows = client.query(&stmt, &[&session_id]).await?;
        rows.iter().map(decode_event).collect()
    }
}

#[cfg(any(test, feature = "test-support"))]
impl PgStore {
    /// Runs `sql` on a pooled connection (tests only).
    ///
    /// # Errors
    /// [`StoreError::Postgres`].
    pub async fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        self.pool.get().await?.batch_execute(sql).await?;
        Ok(())
    }
}

/// Decodes the `(event_id, payload)` row of a stored event.
pub(crate) fn decode_event(row: &tokio_postgres::Row) -> Result<Event, StoreError> {
    let id: String = row.try_get(0)?;
    let payload: Vec<u8> = row.try_get(1)?;
    Event::decode(payload.as_slice()).map_err(|source| StoreError::CorruptBlob { id, source })
}

/// Stores `events` inside `tx` (duplicates by `event_id` skipped, their sessions' rows
/// updated) and returns the indices of the new ones; `received` is the collector's time.
async fn insert_events(
    tx: &Transaction<'_>,
    events: &[&Event],
    received: i64,
) -> Result<Vec<usize>, StoreError> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO events (event_id, session_id, seq, time_unix_us, agent_host, kind,
                 decision, statement_text, tables, sqlstate, received_unix_us, payload)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (event_id) DO NOTHING",
        )
        .await?;
    let mut stored = Vec::new();
    for (index, event) in events.iter().enumerate() {
        check(event)?;
        let columns = Searchable::of(event);
        let inserted = tx
            .execute(
                &stmt,
                &[
                    &event.event_id,
                    &event.session_id,
                    &to_i64("seq", event.seq)?,
                    &event.time_unix_us,
                    &event.agent_host,
                    &columns.kind,
                    &columns.decision,
                    &columns.text,
                    &columns.tables,
                    &columns.sqlstate,
                    &received,
                    &event.encode_to_vec(),
                ],
            )
            .await?;
        if inserted == 1 {
            session::apply(tx, event).await?;
            stored.push(index);
        }
    }
    Ok(stored)
}

/// `value` as a `BIGINT`.
///
/// # Errors
/// [`StoreError::OutOfRange`] above `i64::MAX`.
pub(crate) fn to_i64(field: &'static str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange { field, value })
}
