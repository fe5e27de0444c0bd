//! [`StoreError`]: what can go wrong opening or using either storage backend.

use std::path::PathBuf;

use super::SCHEMA_VERSION;

/// Errors of the storage subsystem.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The SQLite database file could not be opened or initialised.
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
        /// SQLite: `PRAGMA user_version`; PostgreSQL: `jitgate_schema.version`.
        found: i64,
    },
    /// A SQLite statement failed (I/O error, disk full, constraint, type mismatch).
    #[error("sqlite")]
    Sqlite(#[from] rusqlite::Error),
    /// The PostgreSQL URL does not parse, or carries a password (use a password file).
    #[error("bad PostgreSQL URL: {reason}")]
    BadUrl {
        /// What is wrong with it (the URL itself is not repeated: it may hold secrets).
        reason: String,
    },
    /// The PostgreSQL password file cannot be read, is empty, or is readable by group or others.
    #[error("PostgreSQL password file {path}: {reason}")]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA file for TLS to PostgreSQL cannot be read or holds no certificate.
    #[error("PostgreSQL CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS client configuration for PostgreSQL cannot be built.
    #[error("TLS to PostgreSQL: {0}")]
    Tls(String),
    /// No connection to PostgreSQL could be made (refused, unreachable, TLS failed, timeout).
    #[error("cannot connect to PostgreSQL at {target}")]
    Connect {
        /// `host:port/database` (never the password).
        target: String,
        /// What the driver reported.
        #[source]
        source: tokio_postgres::Error,
    },
    /// PostgreSQL refused the login (wrong password, unknown role, no `pg_hba.conf` entry).
    #[error("PostgreSQL at {target} refused the login of role {user:?}")]
    Auth {
        /// `host:port/database`.
        target: String,
        /// The role.
        user: String,
        /// What the server reported.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A PostgreSQL statement failed.
    #[error("postgresql")]
    Postgres(#[from] tokio_postgres::Error),
    /// No pooled PostgreSQL connection could be had (timeout, pool closed).
    #[error("postgresql connection pool: {0}")]
    Pool(String),
    /// A number does not fit the database column (a `u64` above `i64::MAX`).
    #[error("{field} {value} is out of range for the database")]
    OutOfRange {
        /// Protobuf field name.
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// An event lacks a field the collector needs to store it.
    #[error("event has no {field}")]
    MissingField {
        /// Protobuf field name, e.g. `event_id`.
        field: &'static str,
    },
    /// A stored protobuf blob no longer decodes (the database was altered or is corrupt).
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

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(err: deadpool_postgres::PoolError) -> StoreError {
        match err {
            deadpool_postgres::PoolError::Backend(err) => StoreError::Postgres(err),
            other => StoreError::Pool(other.to_string()),
        }
    }
}

impl StoreError {
    /// A PostgreSQL deadlock or serialization failure (SQLSTATE `40P01` / `40001`): the
    /// transaction was rolled back and may simply be run again.
    pub fn is_retryable(&self) -> bool {
        use tokio_postgres::error::SqlState;
        match self {
            StoreError::Postgres(err) => matches!(
                err.code(),
                Some(&SqlState::T_R_DEADLOCK_DETECTED | &SqlState::T_R_SERIALIZATION_FAILURE)
            ),
            _ => false,
        }
    }
}
