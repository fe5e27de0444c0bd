//! The SQLite schema of the collector and the connection settings every connection gets.
//!
//! Three tables: `events` keeps every audit event exactly once (the agent's `event_id` is the
//! primary key, so a resent event is ignored) with its encoded protobuf and a few searchable
//! columns; `sessions` keeps one aggregated row per client connection, maintained in the same
//! transaction as the event insert (see [`super::session`]); `approvals` keeps one row per
//! approval request with its state and grant (see [`super::approvals`]). `PRAGMA user_version`
//! records the schema version so later versions can migrate.
//!
//! Migrations: version 2 added `approvals`; version 3 added the indexes the query API's filters,
//! export and retention use; version 4 the `sessions` columns `agent_run`, `last_seq` and
//! `last_hash`. Every statement is `IF NOT EXISTS`, and columns missing from an older
//! `sessions` table are added, so opening an older file creates what is missing and records the
//! current version.

use rusqlite::Connection;

use crate::storage::{SCHEMA_VERSION, SESSION_COLUMNS_V4};

/// Statements that create the schema; all idempotent.
const CREATE: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    event_id          TEXT PRIMARY KEY NOT NULL,
    session_id        TEXT NOT NULL,
    seq               INTEGER NOT NULL,
    time_unix_us      INTEGER NOT NULL,
    agent_host        TEXT NOT NULL,
    kind              TEXT NOT NULL,   -- session_started | session_refused | session_ended | statement | unknown
    decision          TEXT,            -- statements only: allowed | denied | unspecified
    statement_text    TEXT,            -- statements only
    tables            TEXT,            -- statements only: relation names, space-separated
    sqlstate          TEXT,            -- statements and refusals
    received_unix_us  INTEGER NOT NULL,
    payload           BLOB NOT NULL    -- the Event, protobuf-encoded
);
CREATE INDEX IF NOT EXISTS events_by_session ON events (session_id, seq);
CREATE INDEX IF NOT EXISTS events_by_time ON events (time_unix_us);

CREATE TABLE IF NOT EXISTS sessions (
    session_id           TEXT PRIMARY KEY NOT NULL,
    agent_host           TEXT NOT NULL DEFAULT '',
    started_unix_us      INTEGER NOT NULL,          -- time of the earliest event seen
    ended_unix_us        INTEGER NOT NULL DEFAULT 0, -- 0 while open
    issuer               TEXT NOT NULL DEFAULT '',
    subject              TEXT NOT NULL DEFAULT '',
    tenant_id            TEXT NOT NULL DEFAULT '',
    object_id            TEXT NOT NULL DEFAULT '',
    app_id               TEXT NOT NULL DEFAULT '',
    repository           TEXT NOT NULL DEFAULT '',
    identity             BLOB,                      -- Identity, protobuf-encoded
    pid                  INTEGER NOT NULL DEFAULT 0,
    uid                  INTEGER NOT NULL DEFAULT 0,
    comm                 TEXT NOT NULL DEFAULT '',
    exe                  TEXT NOT NULL DEFAULT '',
    process              BLOB,                      -- Process, protobuf-encoded
    target               TEXT NOT NULL DEFAULT '',
    database             TEXT NOT NULL DEFAULT '',
    client_user          TEXT NOT NULL DEFAULT '',
    upstream_user        TEXT NOT NULL DEFAULT '',
    client_addr          TEXT NOT NULL DEFAULT '',
    counted_statements   INTEGER NOT NULL DEFAULT 0, -- statement events stored
    counted_denied       INTEGER NOT NULL DEFAULT 0, -- of which denied
    reported_statements  INTEGER NOT NULL DEFAULT 0, -- totals from session_ended
    reported_denied      INTEGER NOT NULL DEFAULT 0,
    refused              INTEGER NOT NULL DEFAULT 0,
    refused_reason       TEXT NOT NULL DEFAULT '',
    refused_sqlstate     TEXT NOT NULL DEFAULT '',
    end_reason           TEXT NOT NULL DEFAULT '',
    agent_run            INTEGER NOT NULL DEFAULT 0, -- an agent's lifecycle chain
    last_seq             INTEGER NOT NULL DEFAULT -1, -- ledger: highest chained seq received
    last_hash            BLOB                        -- ledger: that event's hash as received
);
CREATE INDEX IF NOT EXISTS sessions_by_start ON sessions (started_unix_us);
CREATE INDEX IF NOT EXISTS sessions_by_subject ON sessions (issuer, subject);

CREATE TABLE IF NOT EXISTS approvals (
    approval_id            TEXT PRIMARY KEY NOT NULL,
    session_id             TEXT NOT NULL,
    seq                    INTEGER NOT NULL,          -- seq of the session's approval events
    agent_host             TEXT NOT NULL,
    issuer                 TEXT NOT NULL,
    subject                TEXT NOT NULL,
    target                 TEXT NOT NULL,
    database               TEXT NOT NULL,
    fingerprint            TEXT NOT NULL,
    mode                   TEXT NOT NULL,             -- hold | request
    requested_unix_us      INTEGER NOT NULL,
    expires_unix_us        INTEGER NOT NULL,          -- pending until then
    status                 TEXT NOT NULL,             -- pending | approved | denied | expired
    decided_by             TEXT NOT NULL DEFAULT '',
    decided_unix_us        INTEGER NOT NULL DEFAULT 0,
    comment                TEXT NOT NULL DEFAULT '',
    grant_expires_unix_us  INTEGER NOT NULL DEFAULT 0, -- request mode, approved
    request                BLOB NOT NULL              -- ApprovalRequested, protobuf-encoded
);
CREATE INDEX IF NOT EXISTS approvals_by_status ON approvals (status, expires_unix_us);
CREATE INDEX IF NOT EXISTS approvals_grants ON approvals (issuer, subject, grant_expires_unix_us);

-- Version 3: `jitgate sessions` filters, `jitgate export` paging, retention.
CREATE INDEX IF NOT EXISTS events_by_time_id ON events (time_unix_us, event_id);
CREATE INDEX IF NOT EXISTS sessions_by_subject_only ON sessions (subject);
CREATE INDEX IF NOT EXISTS sessions_by_app ON sessions (app_id);
CREATE INDEX IF NOT EXISTS sessions_by_object ON sessions (object_id);
CREATE INDEX IF NOT EXISTS sessions_by_repository ON sessions (repository, started_unix_us);
CREATE INDEX IF NOT EXISTS sessions_by_target ON sessions (target, started_unix_us);
CREATE INDEX IF NOT EXISTS sessions_by_host ON sessions (agent_host, started_unix_us);
CREATE INDEX IF NOT EXISTS approvals_by_requested ON approvals (requested_unix_us);
"#;

/// Applies the connection settings: WAL journal (readers never block the writer),
/// `synchronous = NORMAL` (durable at checkpoints, safe against corruption), and a busy timeout
/// so the reader and writer connections wait for each other instead of failing.
pub fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // `journal_mode` returns the resulting mode as a row, so it is queried rather than executed.
    let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
}

/// Creates the tables and indexes when missing and records [`SCHEMA_VERSION`].
pub fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(CREATE)?;
    let present: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('sessions')")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for (column, declaration) in SESSION_COLUMNS_V4 {
        if !present.iter().any(|p| p == column) {
            conn.execute_batch(&format!(
                "ALTER TABLE sessions ADD COLUMN {column} {declaration}"
            ))?;
        }
    }
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)
}

/// Reads `PRAGMA user_version` (0 for a database this collector never initialised).
pub fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}
