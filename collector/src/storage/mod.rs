//! Durable storage of audit events, session summaries and approvals, in SQLite (the default)
//! or PostgreSQL (for organisations whose many runner hosts share one database, possibly behind
//! several collectors).
//!
//! [`Store`] is the one handle the services use; its async methods behave the same on both
//! backends, which [`suite`] checks by running one test suite against each:
//!
//! - storing is idempotent: `event_id` is the primary key, an event already stored is skipped
//!   and does not touch its session row again; the session row is maintained in the same
//!   transaction as the event;
//! - approvals follow one state machine (`pending` → `approved` | `denied` | `expired`), each
//!   change with its lifecycle event in the same transaction;
//! - the schema carries a version; a collector refuses a database of a newer schema and
//!   migrates an older one on open.
//!
//! Every event [`Store::insert`] newly stores is published, after the commit, on a broadcast
//! feed ([`Store::subscribe`]) that live followers read; sending never waits, a follower that
//! falls behind loses the oldest events and is told how many ([`FEED_CAPACITY`]).
//!
//! [`Database::parse`] chooses the backend from the `--db` argument: a `postgres://` or
//! `postgresql://` URL is PostgreSQL ([`postgres`]), anything else a SQLite file path
//! ([`sqlite`]).

pub mod approval;
mod error;
mod feed;
mod ledger;
mod names;
pub mod postgres;
pub mod retention;
pub mod search;
pub mod sqlite;
#[cfg(any(test, feature = "test-support"))]
pub mod suite;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use jitgate_proto::audit::v1::{
    Approval, Event, SessionFilter, SessionSummary, StoredEventsResponse,
};
use tokio::sync::broadcast;

pub use approval::{
    ApprovalFilter, DEFAULT_APPROVAL_LIMIT, DecideOutcome, GrantQuery, MAX_APPROVAL_LIMIT,
    NewApproval, mode_name, status_name,
};
pub use error::StoreError;
pub use feed::FEED_CAPACITY;
pub use ledger::ledger_entry;
pub use names::{KIND_NAMES, decision_name, kind_name};
pub use postgres::{PgOptions, PgStore};
pub use retention::Swept;
pub use search::{ExportCursor, MAX_EXPORT_PAGE, SessionFacts};
pub use sqlite::SqliteStore;

/// Version of the schema both backends write (SQLite: `PRAGMA user_version`; PostgreSQL: the
/// `jitgate_schema` table). Version 2 added `approvals`, version 3 the query API's indexes,
/// version 4 the session row's `agent_run` and chain ledger (`last_seq`, `last_hash`).
pub const SCHEMA_VERSION: i64 = 4;

/// Columns version 4 added to `sessions`, with their SQLite declarations (added to an older
/// file when missing; PostgreSQL declares them in its own types).
pub const SESSION_COLUMNS_V4: [(&str, &str); 3] = [
    ("agent_run", "INTEGER NOT NULL DEFAULT 0"),
    ("last_seq", "INTEGER NOT NULL DEFAULT -1"),
    ("last_hash", "BLOB"),
];

/// Sessions returned by [`Store::sessions`] when the caller asks for 0.
pub const DEFAULT_SESSION_LIMIT: u32 = 100;
/// Upper bound on sessions returned by one [`Store::sessions`] call.
pub const MAX_SESSION_LIMIT: u32 = 10_000;

/// Where the collector keeps its data, as named by `--db`.
#[derive(Clone, Debug, PartialEq)]
pub enum Database {
    /// A SQLite database file; created when missing.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (`postgres://user@host:port/db?sslmode=...`), password not included.
    Postgres(String),
}

impl Database {
    /// `postgres://…` and `postgresql://…` are PostgreSQL URLs, anything else a SQLite path.
    pub fn parse(db: &str) -> Database {
        if db.starts_with("postgres://") || db.starts_with("postgresql://") {
            Database::Postgres(db.to_owned())
        } else {
            Database::Sqlite(PathBuf::from(db))
        }
    }
}

/// A handle to the collector's database; cheap to clone, shareable across tasks.
#[derive(Clone, Debug)]
pub enum Store {
    /// One SQLite file, calls run on Tokio's blocking pool.
    Sqlite(SqliteStore),
    /// A pool of connections to one PostgreSQL database.
    Postgres(PgStore),
}

/// Runs a blocking SQLite call on Tokio's blocking pool.
async fn blocking<T, F>(store: &SqliteStore, call: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&SqliteStore) -> Result<T, StoreError> + Send + 'static,
{
    let store = store.clone();
    tokio::task::spawn_blocking(move || call(&store)).await?
}

impl Store {
    /// Opens (creating if missing) the SQLite database at `path`; see [`SqliteStore::open`].
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        SqliteStore::open(path).map(Store::Sqlite)
    }

    /// Opens the database `db`: SQLite on the blocking pool, PostgreSQL with `pg` (password
    /// file, CA file, pool size; ignored for SQLite), migrating its schema.
    ///
    /// # Errors
    /// As [`SqliteStore::open`] or [`PgStore::connect`].
    pub async fn connect(db: &Database, pg: PgOptions) -> Result<Store, StoreError> {
        match db {
            Database::Sqlite(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || Store::open(&path)).await?
            }
            Database::Postgres(url) => PgStore::connect(url, pg).await.map(Store::Postgres),
        }
    }

    /// `sqlite` or `postgres`, for logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Stores `events` in one transaction and returns how many were new (duplicates by
    /// `event_id` are skipped). Once this returns `Ok`, every event is committed.
    ///
    /// # Errors
    /// [`StoreError::MissingField`] for an event without `event_id` or `session_id` (nothing of
    /// the batch is stored); a backend error when the write fails.
    pub async fn insert(&self, events: Vec<Event>) -> Result<usize, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(s, move |s| s.insert_blocking(&events)).await,
            Store::Postgres(p) => p.insert(&events).await,
        }
    }

    /// Sessions, newest start first; `limit` 0 means [`DEFAULT_SESSION_LIMIT`], larger values
    /// are capped at [`MAX_SESSION_LIMIT`].
    ///
    /// # Errors
    /// A backend error or [`StoreError::CorruptBlob`].
    pub async fn sessions(&self, limit: u32) -> Result<Vec<SessionSummary>, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(s, move |s| s.sessions_blocking(limit)).await,
            Store::Postgres(p) => p.sessions(limit).await,
        }
    }

    /// Every stored event of `session_id`, ordered by `seq` (empty for an unknown session).
    ///
    /// # Errors
    /// A backend error or [`StoreError::CorruptBlob`].
    pub async fn events(&self, session_id: String) -> Result<Vec<Event>, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(s, move |s| s.events_blocking(&session_id)).await,
            Store::Postgres(p) => p.events(&session_id).await,
        }
    }

    /// Stores `new` and its `approval_requested` event (plus `approval_granted` when it was
    /// approved automatically). Idempotent by approval id: a known id is returned as stored,
    /// with `false`.
    ///
    /// # Errors
    /// A backend error or [`StoreError::CorruptBlob`].
    pub async fn open_approval(&self, new: NewApproval) -> Result<(Approval, bool), StoreError> {
        match self {
            Store::Sqlite(s) => blocking(s, move |s| s.open_approval_blocking(&new)).await,
            Store::Postgres(p) => p.open_approval(&new).await,
        }
    }

    /// Approves (`approve`) or denies the pending request `id` as `decided_by` at `now`
    /// (microseconds since the Unix epoch), with its event. Requests past their deadline are
    /// expired first, so a late decision finds the request expired. Of concurrent decisions on
    /// one request exactly one is [`DecideOutcome::Decided`].
    ///
    /// # Errors
    /// A backend error or [`StoreError::CorruptBlob`].
    pub async fn decide(
        &self,
        id: String,
        approve: bool,
        decided_by: String,
        comment: String,
        now: i64,
    ) -> Result<DecideOutcome, StoreError> {
        match self {
            Store::Sqlite(s) => {
                blocking(s, move |s| {
                    s.decide_blocking(&id, approve, &decided_by, &comment, now)
                })
                .await
            }
            Store::Postgres(p) => p.decide(&id, approve, &decided_by, &comment, now).await,
        }
    }

    /// Expires every pending request whose deadline is at or before `now`, each with its
    /// `approval_expired` event; returns how many.
    ///
    /// # Errors
    /// A backend error.
    pub async fn expire_due(&self, now: i64) -> Result<usize, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(s, move |s| s.expire_due_blocking(now)).await,
            Store::Postgres(p) => p.expire_due(now).await,
        }
    }

    /// The request `id` as stored, if any.
    ///
    /// # Errors
    /// A backend error or [`StoreError::CorruptBlob`].
    pub async fn approval(&self, id: String) -> Result<Option<Approval>, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(s, move |s| s.approval_blocking(&id)).await,
            Store::Postgres(p) => p.approval(&id).await,
        }
    }

    /// Requests matching `filter`, newest first.
    ///
    /// # Errors
    /// A backend error or [`StoreError::CorruptBlob`].
    pub async fn list_approvals(
        &self,
        filter: ApprovalFilter,
    ) -> Result<Vec<Approval>, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(s, move |s| s.list_approvals_blocking(&filter)).await,
            Store::Postgres(p) => p.list_approvals(&filter).await,
        }
    }

    /// The live grant (approved, request mode, not yet expired at `now`) of `query`'s identity
    /// that covers the statement, expiring last; see [`GrantQuery`] for what covers.
    ///
    /// # Errors
    /// A backend error or [`StoreError::CorruptBlob`].
    pub async fn find_grant(
        &self,
        query: GrantQuery,
        now: i64,
    ) -> Result<Option<Approval>, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(s, move |s| s.find_grant_blocking(&query, now)).await,
            Store::Postgres(p) => p.find_grant(&query, now).await,
        }
    }

    /// A receiver of the live feed: every event newly stored by [`Store::insert`] through this
    /// handle (or its clones) from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        match self {
            Store::Sqlite(s) => s.subscribe(),
            Store::Postgres(p) => p.subscribe(),
        }
    }

    /// Sessions matching `filter`, newest start first; `limit` as in [`Store::sessions`].
    ///
    /// # Errors
    /// A backend error or [`StoreError::CorruptBlob`].
    pub async fn find_sessions(
        &self,
        filter: SessionFilter,
        limit: u32,
    ) -> Result<Vec<SessionSummary>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                blocking(s, move |s| s.find_sessions_blocking(&filter, limit)).await
            }
            Store::Postgres(p) => p.find_sessions(&filter, limit).await,
        }
    }

    /// The stored rows of `session_id` undecoded, in storage order (the stored `seq` column,
    /// then arrival; not re-sorted by the payload's own `seq`, so moved events show), with the
    /// session's chain ledger ([`ledger`]).
    ///
    /// # Errors
    /// A backend error.
    pub async fn stored_events(
        &self,
        session_id: String,
    ) -> Result<StoredEventsResponse, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(s, move |s| s.stored_events_blocking(&session_id)).await,
            Store::Postgres(p) => p.stored_events(&session_id).await,
        }
    }

    /// Up to `limit` (capped at [`MAX_EXPORT_PAGE`]) events with `since <= time < until`
    /// (`until` 0 = no bound) after `cursor`, ordered by time then event id.
    ///
    /// # Errors
    /// A backend error or [`StoreError::CorruptBlob`].
    pub async fn export_page(
        &self,
        since: i64,
        until: i64,
        cursor: ExportCursor,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                blocking(s, move |s| {
                    s.export_page_blocking(since, until, &cursor, limit)
                })
                .await
            }
            Store::Postgres(p) => p.export_page(since, until, &cursor, limit).await,
        }
    }

    /// The identity and target of `session_id`, `None` for a session without a row.
    ///
    /// # Errors
    /// A backend error.
    pub async fn session_facts(
        &self,
        session_id: String,
    ) -> Result<Option<SessionFacts>, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(s, move |s| s.session_facts_blocking(&session_id)).await,
            Store::Postgres(p) => p.session_facts(&session_id).await,
        }
    }

    /// Deletes events, sessions and approvals older than `cutoff_unix_us` (see
    /// [`retention`]), `batch` rows per transaction, until none is left.
    ///
    /// # Errors
    /// A backend error; batches committed before the error stay deleted.
    pub async fn sweep(&self, cutoff_unix_us: i64, batch: u32) -> Result<Swept, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(s, move |s| s.sweep_blocking(cutoff_unix_us, batch)).await,
            Store::Postgres(p) => p.sweep(cutoff_unix_us, batch).await,
        }
    }
}

/// The current time in microseconds since the Unix epoch (0 before 1970, saturating).
pub fn now_unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(any(test, feature = "test-support"))]
impl Store {
    /// Runs `sql` (statements without parameters) directly on the database, for tests that
    /// must alter stored rows the way an intruder would.
    ///
    /// # Errors
    /// A backend error.
    pub async fn execute_for_tests(&self, sql: &str) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => {
                let sql = sql.to_owned();
                blocking(s, move |s| s.execute_batch_blocking(&sql)).await
            }
            Store::Postgres(p) => p.execute_batch(sql).await,
        }
    }
}
