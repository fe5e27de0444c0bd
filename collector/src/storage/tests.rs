//! Storage tests: every case of the [`suite`] on SQLite (and on PostgreSQL when
//! `JITGATE_TEST_POSTGRES_URL` is set), plus what only SQLite has (the file, WAL, its
//! migration from version 1) and PostgreSQL's startup checks when a server is named.

use rusqlite::Connection;

use super::suite::{self, on_every_backend};
use super::*;
use crate::fixtures;

macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            on_every_backend(|store| Box::pin(suite::$name(store))).await;
        }
    )*};
}

suite::with_cases!(on_every_backend);

#[test]
fn database_argument_chooses_the_backend() {
    for url in ["postgres://jitgate@db:5432/audit", "postgresql://u@h/d"] {
        assert_eq!(Database::parse(url), Database::Postgres(url.to_owned()));
    }
    for path in [
        "jitgate-audit.db",
        "/var/lib/jitgate/audit.db",
        "postgres.db",
    ] {
        assert_eq!(Database::parse(path), Database::Sqlite(path.into()));
    }
}

#[tokio::test]
async fn postgres_url_with_a_password_is_refused() {
    let err = PgStore::connect("postgres://u:secret@127.0.0.1:1/d", PgOptions::default())
        .await
        .expect_err("password in URL");
    assert!(matches!(err, StoreError::BadUrl { .. }), "{err:?}");
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[tokio::test]
async fn group_readable_password_file_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pw");
    std::fs::write(&path, "pw\n").expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let options = PgOptions {
        password_file: Some(path),
        ..PgOptions::default()
    };
    let err = PgStore::connect("postgres://u@127.0.0.1:1/d", options)
        .await
        .expect_err("mode 0640");
    assert!(matches!(err, StoreError::PasswordFile { .. }), "{err:?}");
    assert!(err.to_string().contains("0640"), "{err}");
}

#[tokio::test]
async fn unreachable_postgres_is_a_connect_error() {
    // Port 1 on loopback: nothing listens, the connection is refused.
    let err = PgStore::connect(
        "postgres://u@127.0.0.1:1/d?sslmode=disable",
        PgOptions::default(),
    )
    .await
    .expect_err("refused");
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1:1/d"), "{err}");
}

#[test]
fn session_filters_use_indexes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.db");
    drop(SqliteStore::open(&path).expect("create"));
    let conn = Connection::open(&path).expect("raw");
    for (column, index) in [
        ("repository", "sessions_by_repository"),
        ("target", "sessions_by_target"),
        ("subject", "sessions_by_subject_only"),
    ] {
        let plan: String = conn
            .query_row(
                &format!("EXPLAIN QUERY PLAN SELECT session_id FROM sessions WHERE {column} = 'x'"),
                [],
                |row| row.get(3),
            )
            .expect("plan");
        assert!(plan.contains(index), "{column}: {plan}");
    }
}

#[test]
fn reopen_keeps_data_and_uses_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.db");
    SqliteStore::open(&path)
        .expect("open")
        .insert_blocking(&fixtures::session_events("s1"))
        .expect("insert");
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(store.events_blocking("s1").expect("events").len(), 4);
    let conn = Connection::open(&path).expect("raw open");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
}

#[test]
fn version_1_database_gains_the_approvals_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.db");
    drop(SqliteStore::open(&path).expect("create"));
    {
        let conn = Connection::open(&path).expect("raw");
        conn.execute_batch("DROP TABLE approvals; PRAGMA user_version = 1;")
            .expect("make it version 1");
    }
    let store = SqliteStore::open(&path).expect("migrate");
    store
        .open_approval_blocking(&suite::new_approval(
            "a1",
            jitgate_proto::audit::v1::ApprovalMode::Hold,
            60,
        ))
        .expect("approvals work");
    let conn = Connection::open(&path).expect("raw");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn a_version_3_database_gains_the_ledger_columns_and_still_ingests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.db");
    drop(SqliteStore::open(&path).expect("create"));
    let conn = Connection::open(&path).expect("raw");
    conn.execute_batch(
        "ALTER TABLE sessions DROP COLUMN last_seq; ALTER TABLE sessions DROP COLUMN last_hash;
         ALTER TABLE sessions DROP COLUMN agent_run; PRAGMA user_version = 3;",
    )
    .expect("make it version 3");
    drop(conn);
    let store = SqliteStore::open(&path).expect("migrate");
    store
        .insert_blocking(&fixtures::session_events("old-db"))
        .expect("ingest");
    let stored = store.stored_events_blocking("old-db").expect("rows");
    assert!(stored.ledger.is_some_and(|l| l.last_seq >= 0));
}

#[test]
fn newer_sqlite_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.db");
    drop(SqliteStore::open(&path).expect("create"));
    Connection::open(&path)
        .expect("raw")
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .expect("bump");
    let err = SqliteStore::open(&path).expect_err("newer");
    assert!(matches!(err, StoreError::NewerSchema { found } if found == SCHEMA_VERSION + 1));
}
