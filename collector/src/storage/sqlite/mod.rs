//! The SQLite backend (rusqlite, bundled): the default, one database file per collector.
//!
//! A [`SqliteStore`] holds two connections to one database file in WAL mode: a writer for
//! ingest and a reader for queries, so a long query never delays acknowledgements. SQLite calls
//! block; [`crate::storage::Store`] runs these `*_blocking` methods on Tokio's blocking pool.
//!
//! Storing is idempotent: `event_id` is the primary key, an event already stored is skipped and
//! does not touch its session row again.

mod approvals;
mod retention;
mod schema;
mod search;
mod session;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use jitgate_proto::audit::v1::{Event, SessionSummary};
use prost::Message;
use rusqlite::{Connection, OpenFlags, named_params};

use super::feed::Feed;
use super::names::{Searchable, check};
use super::{DEFAULT_SESSION_LIMIT, MAX_SESSION_LIMIT, SCHEMA_VERSION, StoreError, now_unix_us};

/// A handle to one SQLite database file; cheap to clone, shareable across tasks.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    inner: Arc<Connections>,
}

#[derive(Debug)]
struct Connections {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    feed: Feed,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path`, switches it to WAL mode and creates
    /// the schema.
    ///
    /// # Errors
    /// [`StoreError::Open`] when the file cannot be opened or initialised,
    /// [`StoreError::NewerSchema`] for a database of a newer collector.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let writer = Connection::open(path).map_err(open_err)?;
        schema::configure(&writer).map_err(open_err)?;
        let found = schema::version(&writer).map_err(open_err)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema { found });
        }
        schema::create(&writer).map_err(open_err)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let reader = Connection::open_with_flags(path, flags).map_err(open_err)?;
        reader
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        Ok(SqliteStore {
            inner: Arc::new(Connections {
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
                feed: Feed::new(),
            }),
        })
    }

    /// Stores `events` in one transaction and returns how many were new (duplicates by
    /// `event_id` are skipped). Once this returns `Ok`, every event is committed.
    ///
    /// # Errors
    /// [`StoreError::MissingField`] for an event without `event_id` or `session_id` (nothing of
    /// the batch is stored), [`StoreError::Sqlite`] when the write fails.
    pub fn insert_blocking(&self, events: &[Event]) -> Result<usize, StoreError> {
        let mut conn = lock(&self.inner.writer)?;
        let tx = conn.transaction()?;
        let stored = insert_events(&tx, events, now_unix_us())?;
        tx.commit()?;
        drop(conn);
        self.inner.feed.publish(events, &stored);
        Ok(stored.len())
    }

    /// A receiver of the live feed: every event newly stored by
    /// [`SqliteStore::insert_blocking`] from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<std::sync::Arc<Event>> {
        self.inner.feed.subscribe()
    }

    /// Sessions, newest start first; `limit` 0 means [`DEFAULT_SESSION_LIMIT`], larger values
    /// are capped at [`MAX_SESSION_LIMIT`].
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] or [`StoreError::CorruptBlob`].
    pub fn sessions_blocking(&self, limit: u32) -> Result<Vec<SessionSummary>, StoreError> {
        let limit = match limit {
            0 => DEFAULT_SESSION_LIMIT,
            n => n.min(MAX_SESSION_LIMIT),
        };
        let conn = lock(&self.inner.reader)?;
        let sql = format!(
            "SELECT {} FROM sessions ORDER BY started_unix_us DESC, session_id DESC LIMIT ?1",
            session::SUMMARY_COLUMNS
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([limit])?;
        let mut sessions = Vec::new();
        while let Some(row) = rows.next()? {
            sessions.push(session::from_row(row)?);
        }
        Ok(sessions)
    }

    /// Every stored event of `session_id`, ordered by `seq` (empty for an unknown session).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] or [`StoreError::CorruptBlob`].
    pub fn events_blocking(&self, session_id: &str) -> Result<Vec<Event>, StoreError> {
        let conn = lock(&self.inner.reader)?;
        let mut stmt = conn.prepare_cached(
            "SELECT event_id, payload FROM events WHERE session_id = ?1 ORDER BY seq, time_unix_us",
        )?;
        let mut rows = stmt.query([session_id])?;
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
}

#[cfg(any(test, feature = "test-support"))]
impl SqliteStore {
    /// Runs `sql` on the writer connection (tests only).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn execute_batch_blocking(&self, sql: &str) -> Result<(), StoreError> {
        lock(&self.inner.writer)?.execute_batch(sql)?;
        Ok(())
    }
}

/// Stores `events` inside `tx` (duplicates by `event_id` skipped, their sessions' rows updated)
/// and returns the indices of the new ones; `received` is the collector's time for
/// `received_unix_us`.
fn insert_events(
    tx: &rusqlite::Transaction<'_>,
    events: &[Event],
    received: i64,
) -> Result<Vec<usize>, StoreError> {
    let mut stored = Vec::new();
    for (index, event) in events.iter().enumerate() {
        check(event)?;
        let columns = Searchable::of(event);
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO events (event_id, session_id, seq, time_unix_us, agent_host,
                 kind, decision, statement_text, tables, sqlstate, received_unix_us, payload)
             VALUES (:event_id, :session_id, :seq, :time, :agent_host, :kind, :decision,
                 :text, :tables, :sqlstate, :received, :payload)",
            named_params! {
                ":event_id": event.event_id,
                ":session_id": event.session_id,
                ":seq": event.seq,
                ":time": event.time_unix_us,
                ":agent_host": event.agent_host,
                ":kind": columns.kind,
                ":decision": columns.decision,
                ":text": columns.text,
                ":tables": columns.tables,
                ":sqlstate": columns.sqlstate,
                ":received": received,
                ":payload": event.encode_to_vec(),
            },
        )?;
        if inserted == 1 {
            session::apply(tx, event)?;
            stored.push(index);
        }
    }
    Ok(stored)
}

fn lock(conn: &Mutex<Connection>) -> Result<MutexGuard<'_, Connection>, StoreError> {
    conn.lock().map_err(|_| StoreError::Poisoned)
}
