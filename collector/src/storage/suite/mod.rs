//! The storage test suite every backend must pass, and the stores to run it on.
//!
//! Each case is an async function taking a fresh, empty [`Store`] and panicking on failure
//! ([`CASES`] lists them). The collector's own tests run every case on SQLite, and on
//! PostgreSQL too when [`POSTGRES_URL_ENV`] names a database ([`stores`]); the root
//! integration test `tests/tests/collector_postgres.rs` runs them on a PostgreSQL server it
//! starts. On PostgreSQL each case gets its own schema (`search_path`), dropped by
//! [`TestStore::finish`].
//!
//! Compiled for this crate's tests and with the `test-support` feature.

mod approvals;
mod events;
mod query;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use super::{PgOptions, PgStore, Store, postgres};

pub use approvals::*;
pub use events::*;
pub use query::*;

/// Environment variable with a PostgreSQL URL (`postgres://user@host:port/db`) to run the suite
/// against as well; the role needs `CREATE` on the database.
pub const POSTGRES_URL_ENV: &str = "JITGATE_TEST_POSTGRES_URL";
/// Environment variable naming the password file for [`POSTGRES_URL_ENV`], if any.
pub const POSTGRES_PASSWORD_FILE_ENV: &str = "JITGATE_TEST_POSTGRES_PASSWORD_FILE";

/// A boxed case future.
pub type CaseFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
/// One case of the suite: its name and its body.
pub type Case = (&'static str, fn(Store) -> CaseFuture);

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        /// Every case of the suite, by name.
        pub const CASES: &[Case] = &[$((stringify!($name), |store| Box::pin($name(store)))),*];
    };
}

/// Calls macro `$m` with the name of every case of the suite, so [`CASES`] and the backends'
/// test lists are one list.
macro_rules! with_cases {
    ($m:ident) => {
        $m!(
            inserts_and_reads_events_in_seq_order,
            duplicate_event_is_ignored,
            session_row_aggregates_events,
            out_of_order_events_aggregate_the_same,
            ended_totals_cover_unseen_statements,
            refused_session_and_newest_first,
            an_agent_run_is_marked_and_ends_at_agent_stopped,
            rejects_event_without_id_and_stores_nothing_of_the_batch,
            unknown_kind_is_stored,
            concurrent_inserts_of_one_session_count_once,
            expiry_happens_at_the_deadline_and_is_recorded_once,
            a_decision_after_the_deadline_finds_the_request_expired,
            grant_lives_from_approval_for_its_ttl,
            hold_approvals_and_denials_open_no_grant,
            list_filters_pending_session_and_subject,
            auto_approved_request_is_idempotent_with_both_events,
            concurrent_decisions_decide_once,
            session_filters_match_in_sql,
            stored_rows_keep_storage_order_not_payload_order,
            the_ledger_keeps_the_last_chained_event_received,
            export_pages_cover_the_window_exactly_once,
            retention_sweeps_old_rows_in_batches,
            retention_keeps_pending_approvals_and_removes_decided_ones,
            feed_carries_new_events_once_after_commit,
            a_slow_follower_is_told_what_it_missed_and_ingest_never_waits,
        );
    };
}
#[cfg(test)]
pub(crate) use with_cases;

with_cases!(cases);

/// A store for one case, and what to remove afterwards.
#[derive(Debug)]
pub struct TestStore {
    /// The store, empty.
    pub store: Store,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    /// The SQLite file's temporary directory, removed on drop.
    Dir(#[expect(dead_code, reason = "held for its Drop")] tempfile::TempDir),
    /// A PostgreSQL schema to drop.
    Schema {
        url: String,
        options: PgOptions,
        schema: String,
    },
}

impl TestStore {
    /// Which backend, for messages.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// Removes the store's data (the temp dir; the PostgreSQL schema).
    ///
    /// # Panics
    /// When the schema cannot be dropped.
    pub async fn finish(self) {
        drop(self.store);
        if let Cleanup::Schema {
            url,
            options,
            schema,
        } = self.cleanup
        {
            postgres::run_sql(&url, &options, &format!("DROP SCHEMA {schema} CASCADE"))
                .await
                .expect("drop the test schema");
        }
    }
}

/// A fresh SQLite store in a temporary directory.
///
/// # Panics
/// When the directory or the database cannot be created.
pub fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("audit.db")).expect("open store");
    TestStore {
        store,
        cleanup: Cleanup::Dir(dir),
    }
}

/// A fresh PostgreSQL store at `url` (password from `password_file`), in a new schema of its
/// own.
///
/// # Panics
/// When PostgreSQL cannot be reached or the schema cannot be created.
pub async fn postgres(url: &str, password_file: Option<PathBuf>) -> TestStore {
    let schema = format!("jitgate_test_{}", uuid::Uuid::now_v7().simple());
    let admin = PgOptions {
        password_file,
        ..PgOptions::default()
    };
    postgres::run_sql(url, &admin, &format!("CREATE SCHEMA {schema}"))
        .await
        .expect("create a test schema");
    let options = PgOptions {
        server_options: Some(format!("-c search_path={schema}")),
        ..admin.clone()
    };
    let store = PgStore::connect(url, options)
        .await
        .expect("connect to PostgreSQL");
    TestStore {
        store: Store::Postgres(store),
        cleanup: Cleanup::Schema {
            url: url.to_owned(),
            options: admin,
            schema,
        },
    }
}

/// SQLite, plus PostgreSQL when [`POSTGRES_URL_ENV`] is set.
///
/// # Panics
/// As [`sqlite`] and [`postgres`].
pub async fn stores() -> Vec<TestStore> {
    let mut stores = vec![sqlite()];
    if let Ok(url) = std::env::var(POSTGRES_URL_ENV)
        && !url.is_empty()
    {
        let password_file = std::env::var_os(POSTGRES_PASSWORD_FILE_ENV).map(PathBuf::from);
        stores.push(postgres(&url, password_file).await);
    }
    stores
}

/// Runs `case` on every store of [`stores`], cleaning up after each.
///
/// # Panics
/// When the case fails on any backend.
pub async fn on_every_backend(case: fn(Store) -> CaseFuture) {
    for test in stores().await {
        eprintln!("backend: {}", test.backend());
        case(test.store.clone()).await;
        test.finish().await;
    }
}
