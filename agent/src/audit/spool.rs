//! The durable audit spool: every audit event is committed to a SQLite database
//! (`<spool_dir>/spool.db`, WAL mode) before it counts as recorded, and stays there until the
//! collector acknowledges it.
//!
//! - [`Spool::append`] hands an encoded event to the writer thread and returns its *ticket*
//!   (1, 2, 3, … per agent run, in append order). The writer commits whatever is waiting in one
//!   transaction (group commit: many sessions' events share one commit) and then publishes
//!   "durable up to ticket N" ([`Spool::durable`]); a ticket at or below N is on disk.
//! - Durability follows `synchronous`: [`SpoolSync::Normal`] (default) survives a killed
//!   process but not a power loss (WAL without fsync per commit); [`SpoolSync::Full`] fsyncs
//!   every commit.
//! - Delivery reads rows in id order ([`Spool::read_after`]) and deletes them once acknowledged
//!   ([`Spool::delete`], through the same writer thread, so there is one writer).
//! - Size: the sum of the stored events' encoded bytes ([`SpoolState::bytes`]); at or above
//!   `max_bytes` the spool is [`SpoolState::full`]. The spool never refuses an event: the
//!   caller decides what "full" means (the agent refuses new sessions).
//!
//! The directory is created with mode 0700; an existing one must belong to the agent's user
//! and not be writable by group or others.

use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};
use serde::Deserialize;
use tokio::sync::watch;

/// The database file inside the spool directory.
pub const SPOOL_FILE: &str = "spool.db";
/// Most commands the writer puts in one transaction.
const GROUP: usize = 8192;
/// Wait before retrying a failed commit.
const RETRY: Duration = Duration::from_millis(500);

/// `[audit] spool_sync`: how hard a commit is pushed to disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpoolSync {
    /// `synchronous = NORMAL` in WAL mode: a commit survives the process being killed, not a
    /// power loss or kernel crash.
    #[default]
    Normal,
    /// `synchronous = FULL`: every commit is fsynced.
    Full,
}

/// Errors opening or reading the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The directory could not be created or inspected.
    #[error("audit spool directory {dir}: {source}")]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The directory is unsafe to write audit records into.
    #[error("audit spool directory {dir} {problem}")]
    Unsafe {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it (owner, mode).
        problem: String,
    },
    /// SQLite refused (unwritable, corrupt, not a database).
    #[error("audit spool {file}: {source}")]
    Sqlite {
        /// The database file.
        file: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The writer thread could not be started.
    #[error("audit spool writer thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// The spool's counters, published after every commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolState {
    /// Events stored (not yet acknowledged).
    pub rows: u64,
    /// Sum of their encoded sizes, bytes.
    pub bytes: u64,
    /// `[audit] spool_max_bytes`.
    pub max_bytes: u64,
    /// Highest row id committed so far (0: none ever).
    pub last_row: i64,
    /// Lowest row id still stored, if any.
    pub first_row: Option<i64>,
    /// Rows deleted (acknowledged) during this run.
    pub deleted: u64,
    /// When the last deletion committed, microseconds since the epoch (`None`: not this run).
    pub last_delete_unix_us: Option<i64>,
}

impl SpoolState {
    /// Whether the spool is at or above its size limit.
    pub fn full(&self) -> bool {
        self.bytes >= self.max_bytes
    }
}

/// One stored event as delivery reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Row id (increasing in append order, never reused).
    pub id: i64,
    /// The encoded `Event`.
    pub body: Vec<u8>,
}

enum Command {
    Append(Vec<u8>),
    /// Row ids with their sizes.
    Delete(Vec<(i64, u64)>),
}

struct Submitter {
    next_ticket: u64,
    appended: u64,
    tx: mpsc::Sender<(u64, Command)>,
}

/// Handle to the spool; clones share one database and one writer thread.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

struct Inner {
    file: PathBuf,
    submit: Mutex<Submitter>,
    published: Arc<Published>,
    reader: Mutex<Connection>,
}

/// What the writer thread publishes. The thread holds only this (not [`Inner`], which holds the
/// sending half of its channel), so it ends once every [`Spool`] handle is dropped.
struct Published {
    file: PathBuf,
    durable: watch::Sender<u64>,
    state: watch::Sender<SpoolState>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("file", &self.inner.file)
            .finish_non_exhaustive()
    }
}

fn sqlite(file: &Path) -> impl Fn(rusqlite::Error) -> SpoolError + '_ {
    move |source| SpoolError::Sqlite {
        file: file.to_owned(),
        source,
    }
}

/// Creates `dir` (mode 0700) or checks an existing one: a directory, owned by this process's
/// effective user, not writable by group or others.
pub fn prepare_dir(dir: &Path) -> Result<(), SpoolError> {
    let err = |source| SpoolError::Dir {
        dir: dir.to_owned(),
        source,
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
    }
    let meta = std::fs::metadata(dir).map_err(err)?;
    let unsafe_dir = |problem: String| SpoolError::Unsafe {
        dir: dir.to_owned(),
        problem,
    };
    if !meta.is_dir() {
        return Err(unsafe_dir("is not a directory".into()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        return Err(unsafe_dir(format!(
            "is owned by uid {}, not the agent's uid {euid}",
            meta.uid()
        )));
    }
    // Undelivered events hold statement text, parameters and identities: the directory (and so
    // the database files in it) is the agent's alone.
    if meta.mode() & 0o077 != 0 {
        return Err(unsafe_dir(format!(
            "is open to group or others (mode {:o}); the spool holds undelivered audit events \
             and must be the agent's alone: chmod 700 {}",
            meta.mode() & 0o7777,
            dir.display()
        )));
    }
    Ok(())
}

impl Spool {
    /// Opens (or creates) the spool in `dir` and starts its writer thread.
    ///
    /// # Errors
    /// [`SpoolError`] when the directory is unsafe or cannot be made, or SQLite cannot open the
    /// database (unwritable, corrupt, not a database).
    pub fn open(dir: &Path, max_bytes: u64, sync: SpoolSync) -> Result<Spool, SpoolError> {
        prepare_dir(dir)?;
        let file = dir.join(SPOOL_FILE);
        let map = sqlite(&file);
        let writer = Connection::open(&file).map_err(&map)?;
        let synchronous = match sync {
            SpoolSync::Normal => "NORMAL",
            SpoolSync::Full => "FULL",
        };
        writer
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = {synchronous};
                 PRAGMA busy_timeout = 5000;
                 CREATE TABLE IF NOT EXISTS events (
                     id INTEGER PRIMARY KEY AUTOINCREMENT,
                     body BLOB NOT NULL
                 );"
            ))
            .map_err(&map)?;
        let (rows, bytes, first, last): (i64, i64, Option<i64>, Option<i64>) = writer
            .query_row(
                "SELECT count(*), coalesce(sum(length(body)), 0), min(id), max(id) FROM events",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .map_err(&map)?;
        let seq: Option<i64> = writer
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
                [],
                |r| r.get(0),
            )
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .map_err(&map)?;
        let reader = Connection::open_with_flags(
            &file,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(&map)?;
        reader
            .execute_batch("PRAGMA busy_timeout = 5000;")
            .map_err(&map)?;
        let state = SpoolState {
            rows: u64::try_from(rows).unwrap_or(0),
            bytes: u64::try_from(bytes).unwrap_or(0),
            max_bytes,
            last_row: last.unwrap_or(0).max(seq.unwrap_or(0)),
            first_row: first,
            deleted: 0,
            last_delete_unix_us: None,
        };
        let (tx, rx) = mpsc::channel();
        let published = Arc::new(Published {
            file: file.clone(),
            durable: watch::Sender::new(0),
            state: watch::Sender::new(state),
        });
        let shared = Arc::clone(&published);
        let inner = Arc::new(Inner {
            file: file.clone(),
            submit: Mutex::new(Submitter {
                next_ticket: 1,
                appended: 0,
                tx,
            }),
            published,
            reader: Mutex::new(reader),
        });
        std::thread::Builder::new()
            .name("audit-spool".into())
            .spawn(move || write_loop(writer, &rx, &shared))
            .map_err(SpoolError::Thread)?;
        Ok(Spool { inner })
    }

    /// Queues `body` (an encoded event) for the next commit; returns its ticket. Never waits
    /// for the disk: wait on [`Spool::durable`] for the ticket to be committed.
    pub fn append(&self, body: Vec<u8>) -> u64 {
        self.submit(Command::Append(body))
    }

    /// Deletes acknowledged rows (`(id, encoded size)` as read), in the next commit.
    pub fn delete(&self, rows: Vec<(i64, u64)>) {
        if !rows.is_empty() {
            self.submit(Command::Delete(rows));
        }
    }

    fn submit(&self, command: Command) -> u64 {
        let mut submit = self
            .inner
            .submit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let ticket = submit.next_ticket;
        submit.next_ticket += 1;
        if matches!(command, Command::Append(_)) {
            submit.appended += 1;
        }
        if submit.tx.send((ticket, command)).is_err() {
            // The writer thread is gone: nothing becomes durable any more, so sessions waiting
            // for their events stall (fail closed) rather than continue unaudited.
            tracing::error!(ticket, "audit spool writer has stopped");
        }
        ticket
    }

    /// The highest ticket committed so far; every lower ticket is committed too.
    pub fn durable(&self) -> watch::Receiver<u64> {
        self.inner.published.durable.subscribe()
    }

    /// The last ticket handed out (0: none).
    pub fn submitted(&self) -> u64 {
        self.inner
            .submit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .next_ticket
            - 1
    }

    /// Events appended during this run.
    pub fn appended(&self) -> u64 {
        self.inner
            .submit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .appended
    }

    /// Counters, updated after every commit.
    pub fn state(&self) -> watch::Receiver<SpoolState> {
        self.inner.published.state.subscribe()
    }

    /// Up to `limit` rows with ids above `after`, in id order. Blocking (SQLite read).
    ///
    /// # Errors
    /// [`SpoolError::Sqlite`] when the read fails.
    pub fn read_after(&self, after: i64, limit: usize) -> Result<Vec<Row>, SpoolError> {
        let reader = self
            .inner
            .reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let map = sqlite(&self.inner.file);
        let mut statement = reader
            .prepare_cached("SELECT id, body FROM events WHERE id > ?1 ORDER BY id LIMIT ?2")
            .map_err(&map)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement
            .query_map(params![after, limit], |r| {
                Ok(Row {
                    id: r.get(0)?,
                    body: r.get(1)?,
                })
            })
            .map_err(&map)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&map)
    }
}

/// The writer thread: takes whatever commands are waiting (up to [`GROUP`]), applies them in
/// one transaction, publishes the new state. A failed commit is retried until it succeeds
/// (nothing is lost or reordered; waiting sessions stall meanwhile).
fn write_loop(mut db: Connection, rx: &mpsc::Receiver<(u64, Command)>, inner: &Published) {
    let mut group = Vec::with_capacity(GROUP);
    let mut failures: u64 = 0;
    while let Ok(first) = rx.recv() {
        group.push(first);
        while group.len() < GROUP {
            match rx.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        loop {
            match commit(&mut db, &group) {
                Ok(outcome) => {
                    failures = 0;
                    publish(inner, &group, &outcome);
                    break;
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(20) {
                        tracing::error!(file = %inner.file.display(), error = %e, failures,
                            "audit spool commit failed; retrying (sessions wait meanwhile)");
                    }
                    std::thread::sleep(RETRY);
                }
            }
        }
        group.clear();
    }
}

struct Outcome {
    appended_bytes: u64,
    appended: u64,
    deleted_bytes: u64,
    deleted: u64,
    last_row: Option<i64>,
    first_row: Option<i64>,
}

fn commit(db: &mut Connection, group: &[(u64, Command)]) -> rusqlite::Result<Outcome> {
    let tx = db.transaction()?;
    let mut outcome = Outcome {
        appended_bytes: 0,
        appended: 0,
        deleted_bytes: 0,
        deleted: 0,
        last_row: None,
        first_row: None,
    };
    {
        let mut insert = tx.prepare_cached("INSERT INTO events (body) VALUES (?1)")?;
        let mut delete = tx.prepare_cached("DELETE FROM events WHERE id = ?1")?;
        for (_, command) in group {
            match command {
                Command::Append(body) => {
                    insert.execute(params![body])?;
                    outcome.last_row = Some(tx.last_insert_rowid());
                    outcome.appended += 1;
                    outcome.appended_bytes += body.len() as u64;
                }
                Command::Delete(rows) => {
                    for (id, size) in rows {
                        if delete.execute(params![id])? > 0 {
                            outcome.deleted += 1;
                            outcome.deleted_bytes += size;
                        }
                    }
                }
            }
        }
    }
    outcome.first_row = tx.query_row("SELECT min(id) FROM events", [], |r| r.get(0))?;
    tx.commit()?;
    Ok(outcome)
}

fn publish(inner: &Published, group: &[(u64, Command)], outcome: &Outcome) {
    if outcome.deleted > 0 || outcome.appended > 0 {
        inner.state.send_modify(|s| {
            s.rows = (s.rows + outcome.appended).saturating_sub(outcome.deleted);
            s.bytes = (s.bytes + outcome.appended_bytes).saturating_sub(outcome.deleted_bytes);
            if let Some(last) = outcome.last_row {
                s.last_row = last;
            }
            s.first_row = outcome.first_row;
            if outcome.deleted > 0 {
                s.deleted += outcome.deleted;
                s.last_delete_unix_us = Some(super::sink::now_unix_us());
            }
        });
    }
    if let Some((ticket, _)) = group.last() {
        inner.durable.send_replace(*ticket);
    }
}

#[cfg(test)]
#[path = "spool_tests.rs"]
mod tests;
