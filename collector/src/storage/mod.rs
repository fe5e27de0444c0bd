//! Durable storage of audit events and session summaries in SQLite (rusqlite, bundled).
//!
//! A [`Store`] holds two connections to one database file in WAL mode: a writer for ingest and
//! a reader for queries, so a long query never delays acknowledgements. SQLite calls block, so
//! the async methods ([`Store::insert`], [`Store::sessions`], [`Store::events`]) run them on
//! Tokio's blocking pool; the `*_blocking` methods are the same operations for synchronous
//! callers and tests.
//!
//! Storing is idempotent: `event_id` is the primary key, an event already stored is skipped and
//! does not touch its session row again.

#[cfg(test)]
mod approval_tests;
mod approvals;
mod schema;
mod session;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use jitgate_proto::audit::v1::{Event, SessionSummary, event::Kind};
use prost::Message;
use rusqlite::{Connection, OpenFlags, named_params};

pub use approvals::{
    ApprovalFilter, DEFAULT_APPROVAL_LIMIT, DecideOutcome, GrantQuery, MAX_APPROVAL_LIMIT,
    NewApproval, mode_name, status_name,
};
pub use schema::SCHEMA_VERSION;

/// Sessions returned by [`Store::sessions`] when the caller asks for 0.
pub const DEFAULT_SESSION_LIMIT: u32 = 100;
/// Upper bound on sessions returned by one [`Store::sessions`] call.
pub const MAX_SESSION_LIMIT: u32 = 10_000;

/// Errors of the storage subsystem.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or initialised.
    #[error("cannot open database {path}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite reported.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer collector whose schema this one does not know.
    #[error("database schema version {found} is newer than this collector's {SCHEMA_VERSION}")]
    NewerSchema {
        /// `PRAGMA user_version` of the file.
        found: i64,
    },
    /// An SQL statement failed (I/O error, disk full, constraint, type mismatch).
    #[error("sqlite")]
    Sqlite(#[from] rusqlite::Error),
    /// An event lacks a field the collector needs to store it.
    #[error("event has no {field}")]
    MissingField {
        /// Protobuf field name, e.g. `event_id`.
        field: &'static str,
    },
    /// A stored protobuf blob no longer decodes (the file was altered or is corrupt).
    #[error("stored protobuf for {id} does not decode")]
    CorruptBlob {
        /// Event id or session id of the row.
        id: String,
        /// The decoder's complaint.
        #[source]
        source: prost::DecodeError,
    },
    /// A previous storage call panicked while holding a connection.
    #[error("a previous storage operation panicked; the connection is unusable")]
    Poisoned,
    /// The blocking task running a storage call panicked or was cancelled.
    #[error("storage task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// A handle to the collector's SQLite database; cheap to clone, shareable across tasks.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Connections>,
}

#[derive(Debug)]
struct Connections {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if missing) the database at `path`, switches it to WAL mode and creates
    /// the schema.
    ///
    /// # Errors
    /// [`StoreError::Open`] when the file cannot be opened or initialised,
    /// [`StoreError::NewerSchema`] for a database of a newer collector.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
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
        Ok(Store {
            inner: Arc::new(Connections {
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
            }),
        })
    }

    /// Stores `events` in one transaction and returns how many were new (duplicates by
    /// `event_id` are skipped). Once this returns `Ok`, every event is committed.
    ///
    /// # Errors
    /// [`StoreError::MissingField`] for an event without `event_id` or `session_id` (nothing of
    /// the batch is stored), [`StoreError::Sqlite`] when the write fails.
    pub async fn insert(&self, events: Vec<Event>) -> Result<usize, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.insert_blocking(&events)).await?
    }

    /// Synchronous form of [`Store::insert`]; blocks on SQLite.
    ///
    /// # Errors
    /// As [`Store::insert`].
    pub fn insert_blocking(&self, events: &[Event]) -> Result<usize, StoreError> {
        let mut conn = lock(&self.inner.writer)?;
        let tx = conn.transaction()?;
        let stored = insert_events(&tx, events, now_unix_us())?;
        tx.commit()?;
        Ok(stored)
    }

    /// Runs a synchronous storage call (`*_blocking`) on Tokio's blocking pool.
    ///
    /// # Errors
    /// What `call` returned, or [`StoreError::Task`] when it panicked.
    pub async fn run<T, F>(&self, call: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || call(&store)).await?
    }

    /// Sessions, newest start first; `limit` 0 means [`DEFAULT_SESSION_LIMIT`], larger values
    /// are capped at [`MAX_SESSION_LIMIT`].
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] or [`StoreError::CorruptBlob`].
    pub async fn sessions(&self, limit: u32) -> Result<Vec<SessionSummary>, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.sessions_blocking(limit)).await?
    }

    /// Synchronous form of [`Store::sessions`].
    ///
    /// # Errors
    /// As [`Store::sessions`].
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
    pub async fn events(&self, session_id: String) -> Result<Vec<Event>, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.events_blocking(&session_id)).await?
    }

    /// Synchronous form of [`Store::events`].
    ///
    /// # Errors
    /// As [`Store::events`].
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

/// Stores `events` inside `tx` (duplicates by `event_id` skipped, their sessions' rows updated)
/// and returns how many were new; `received` is the collector's time for `received_unix_us`.
fn insert_events(
    tx: &rusqlite::Transaction<'_>,
    events: &[Event],
    received: i64,
) -> Result<usize, StoreError> {
    let mut stored = 0;
    for event in events {
        if event.event_id.is_empty() {
            return Err(StoreError::MissingField { field: "event_id" });
        }
        if event.session_id.is_empty() {
            return Err(StoreError::MissingField {
                field: "session_id",
            });
        }
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
            stored += 1;
        }
    }
    Ok(stored)
}

/// The searchable columns of the `events` table derived from one event.
struct Searchable<'a> {
    kind: &'static str,
    decision: Option<&'static str>,
    text: Option<&'a str>,
    tables: Option<String>,
    sqlstate: Option<&'a str>,
}

impl<'a> Searchable<'a> {
    fn of(event: &'a Event) -> Searchable<'a> {
        let none = Searchable {
            kind: kind_name(event.kind.as_ref()),
            decision: None,
            text: None,
            tables: None,
            sqlstate: None,
        };
        match &event.kind {
            Some(Kind::Statement(statement)) => Searchable {
                decision: Some(decision_name(statement.decision())),
                text: Some(&statement.text),
                tables: Some(statement.tables.join(" ")),
                sqlstate: Some(&statement.sqlstate),
                ..none
            },
            Some(Kind::SessionRefused(refused)) => Searchable {
                sqlstate: Some(&refused.sqlstate),
                ..none
            },
            Some(Kind::ApprovalRequested(requested)) => Searchable {
                text: Some(&requested.statement),
                tables: Some(requested.tables.join(" ")),
                ..none
            },
            _ => none,
        }
    }
}

/// The stable lowercase name of an event kind, as stored in `events.kind` and printed by the CLI.
pub fn kind_name(kind: Option<&Kind>) -> &'static str {
    match kind {
        Some(Kind::SessionStarted(_)) => "session_started",
        Some(Kind::SessionRefused(_)) => "session_refused",
        Some(Kind::SessionEnded(_)) => "session_ended",
        Some(Kind::Statement(_)) => "statement",
        Some(Kind::ApprovalRequested(_)) => "approval_requested",
        Some(Kind::ApprovalGranted(_)) => "approval_granted",
        Some(Kind::ApprovalDenied(_)) => "approval_denied",
        Some(Kind::ApprovalExpired(_)) => "approval_expired",
        None => "unknown",
    }
}

/// The stable lowercase name of a policy decision.
pub fn decision_name(decision: jitgate_proto::audit::v1::Decision) -> &'static str {
    use jitgate_proto::audit::v1::Decision;
    match decision {
        Decision::Allowed => "allowed",
        Decision::Denied => "denied",
        Decision::Unspecified => "unspecified",
    }
}

fn lock(conn: &Mutex<Connection>) -> Result<MutexGuard<'_, Connection>, StoreError> {
    conn.lock().map_err(|_| StoreError::Poisoned)
}

/// The current time in microseconds since the Unix epoch (0 before 1970, saturating).
pub fn now_unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
