//! The PostgreSQL schema: the same three tables as SQLite (`events`, `sessions`, `approvals`;
//! see `storage::sqlite::schema` for what each column means) in PostgreSQL types (`BIGINT`,
//! `BYTEA`, `BOOLEAN`), plus `jitgate_schema`, a one-row table holding the schema version.
//!
//! [`migrate`] runs in one transaction under a transaction-scoped advisory lock, so collectors
//! starting together against one database create and upgrade the schema once: it reads the
//! version, refuses a newer one, runs the idempotent `CREATE ... IF NOT EXISTS` statements and
//! records [`SCHEMA_VERSION`].

use tokio_postgres::Client;

use crate::storage::{SCHEMA_VERSION, StoreError};

/// Key of the advisory lock taken while migrating (`jitgate` in ASCII).
const MIGRATION_LOCK: i64 = 0x006a_6974_6761_7465;

/// Statements that create the schema; all idempotent. `events.stored` orders events stored
/// with equal `seq` and time, as SQLite's rowid does.
const CREATE: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    event_id          TEXT PRIMARY KEY,
    session_id        TEXT NOT NULL,
    seq               BIGINT NOT NULL,
    time_unix_us      BIGINT NOT NULL,
    agent_host        TEXT NOT NULL,
    kind              TEXT NOT NULL,
    decision          TEXT,
    statement_text    TEXT,
    tables            TEXT,
    sqlstate          TEXT,
    received_unix_us  BIGINT NOT NULL,
    payload           BYTEA NOT NULL,
    stored            BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX IF NOT EXISTS events_by_session ON events (session_id, seq);
CREATE INDEX IF NOT EXISTS events_by_time ON events (time_unix_us);

CREATE TABLE IF NOT EXISTS sessions (
    session_id           TEXT PRIMARY KEY,
    agent_host           TEXT NOT NULL DEFAULT '',
    started_unix_us      BIGINT NOT NULL,
    ended_unix_us        BIGINT NOT NULL DEFAULT 0,
    issuer               TEXT NOT NULL DEFAULT '',
    subject              TEXT NOT NULL DEFAULT '',
    tenant_id            TEXT NOT NULL DEFAULT '',
    object_id            TEXT NOT NULL DEFAULT '',
    app_id               TEXT NOT NULL DEFAULT '',
    repository           TEXT NOT NULL DEFAULT '',
    identity             BYTEA,
    pid                  BIGINT NOT NULL DEFAULT 0,
    uid                  BIGINT NOT NULL DEFAULT 0,
    comm                 TEXT NOT NULL DEFAULT '',
    exe                  TEXT NOT NULL DEFAULT '',
    process              BYTEA,
    target               TEXT NOT NULL DEFAULT '',
    database             TEXT NOT NULL DEFAULT '',
    client_user          TEXT NOT NULL DEFAULT '',
    upstream_user        TEXT NOT NULL DEFAULT '',
    client_addr          TEXT NOT NULL DEFAULT '',
    counted_statements   BIGINT NOT NULL DEFAULT 0,
    counted_denied       BIGINT NOT NULL DEFAULT 0,
    reported_statements  BIGINT NOT NULL DEFAULT 0,
    reported_denied      BIGINT NOT NULL DEFAULT 0,
    refused              BOOLEAN NOT NULL DEFAULT FALSE,
    refused_reason       TEXT NOT NULL DEFAULT '',
    refused_sqlstate     TEXT NOT NULL DEFAULT '',
    end_reason           TEXT NOT NULL DEFAULT '',
    agent_run            BOOLEAN NOT NULL DEFAULT FALSE,
    last_seq             BIGINT NOT NULL DEFAULT -1,
    last_hash            BYTEA
);
CREATE INDEX IF NOT EXISTS sessions_by_start ON sessions (started_unix_us);
CREATE INDEX IF NOT EXISTS sessions_by_subject ON sessions (issuer, subject);

CREATE TABLE IF NOT EXISTS approvals (
    approval_id            TEXT PRIMARY KEY,
    session_id             TEXT NOT NULL,
    seq                    BIGINT NOT NULL,
    agent_host             TEXT NOT NULL,
    issuer                 TEXT NOT NULL,
    subject                TEXT NOT NULL,
    target                 TEXT NOT NULL,
    database               TEXT NOT NULL,
    fingerprint            TEXT NOT NULL,
    mode                   TEXT NOT NULL,
    requested_unix_us      BIGINT NOT NULL,
    expires_unix_us        BIGINT NOT NULL,
    status                 TEXT NOT NULL,
    decided_by             TEXT NOT NULL DEFAULT '',
    decided_unix_us        BIGINT NOT NULL DEFAULT 0,
    comment                TEXT NOT NULL DEFAULT '',
    grant_expires_unix_us  BIGINT NOT NULL DEFAULT 0,
    request                BYTEA NOT NULL
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
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS agent_run BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS last_seq BIGINT NOT NULL DEFAULT -1;
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS last_hash BYTEA;
"#;

/// Creates or upgrades the schema in `client`'s database (see the module docs).
///
/// # Errors
/// [`StoreError::NewerSchema`] for a database of a newer collector (nothing is changed),
/// [`StoreError::Postgres`] when a statement fails (e.g. the role may not create tables).
pub async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS jitgate_schema (
             singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
             version   BIGINT NOT NULL
         )",
    )
    .await?;
    let found: Option<i64> = tx
        .query_opt("SELECT version FROM jitgate_schema", &[])
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    if let Some(found) = found
        && found > SCHEMA_VERSION
    {
        return Err(StoreError::NewerSchema { found });
    }
    tx.batch_execute(CREATE).await?;
    tx.execute(
        "INSERT INTO jitgate_schema (singleton, version) VALUES (TRUE, $1)
         ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version",
        &[&SCHEMA_VERSION],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The recorded schema version (`None` before the first [`migrate`]).
///
/// # Errors
/// [`StoreError::Postgres`].
pub async fn version(client: &Client) -> Result<Option<i64>, StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('jitgate_schema') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !exists {
        return Ok(None);
    }
    Ok(client
        .query_opt("SELECT version FROM jitgate_schema", &[])
        .await?
        .map(|row| row.try_get(0))
        .transpose()?)
}
