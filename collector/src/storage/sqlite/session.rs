//! SQLite: the `sessions` table: one aggregated row per client connection, folded from that session's
//! events as they are stored, and read back as [`SessionSummary`] messages.
//!
//! Events may arrive in any order (an agent resends unacknowledged events after a reconnect), so
//! every update is order-independent: the start time is the minimum event time, statement counts
//! are increments, and the totals an agent reports in `session_ended` are kept apart from the
//! counted ones and merged (maximum) when read.

use jitgate_proto::audit::v1::{Decision, Event, Identity, Process, SessionSummary, event::Kind};
use prost::Message;
use rusqlite::{Row, Transaction, named_params};

use crate::storage::{StoreError, ledger_entry};

/// Folds one newly stored event into its session's row, creating the row when needed.
/// Runs inside the transaction that inserted the event; call it only for events that were not
/// already stored, or counts would be inflated.
pub fn apply(tx: &Transaction<'_>, event: &Event) -> Result<(), StoreError> {
    let (last_seq, last_hash) = ledger_entry(event)?;
    tx.prepare_cached(
        "INSERT INTO sessions (session_id, agent_host, started_unix_us, last_seq, last_hash)
         VALUES (:session_id, :agent_host, :time, :last_seq, :last_hash)
         ON CONFLICT (session_id) DO UPDATE SET
             started_unix_us = MIN(started_unix_us, excluded.started_unix_us),
             agent_host = CASE WHEN agent_host = '' THEN excluded.agent_host ELSE agent_host END,
             last_hash = CASE WHEN excluded.last_seq > last_seq THEN excluded.last_hash
                              ELSE last_hash END,
             last_seq = MAX(last_seq, excluded.last_seq)",
    )?
    .execute(named_params! {
        ":session_id": event.session_id,
        ":agent_host": event.agent_host,
        ":time": event.time_unix_us,
        ":last_seq": last_seq,
        ":last_hash": last_hash,
    })?;
    let id = &event.session_id;
    match &event.kind {
        Some(Kind::SessionStarted(started)) => {
            let identity = started.identity.clone().unwrap_or_default();
            let process = started.process.clone().unwrap_or_default();
            tx.execute(
                "UPDATE sessions SET
                     issuer = :issuer, subject = :subject, tenant_id = :tenant_id,
                     object_id = :object_id, app_id = :app_id, repository = :repository,
                     identity = :identity, pid = :pid, uid = :uid, comm = :comm, exe = :exe,
                     process = :process, target = :target, database = :database,
                     client_user = :client_user, upstream_user = :upstream_user,
                     client_addr = :client_addr
                 WHERE session_id = :session_id AND process IS NULL",
                named_params! {
                    ":issuer": identity.issuer,
                    ":subject": identity.subject,
                    ":tenant_id": identity.tenant_id,
                    ":object_id": identity.object_id,
                    ":app_id": identity.app_id,
                    ":repository": identity.repository,
                    ":identity": started.identity.as_ref().map(Message::encode_to_vec),
                    ":pid": process.pid,
                    ":uid": process.uid,
                    ":comm": process.comm,
                    ":exe": process.exe,
                    ":process": started.process.as_ref().map(Message::encode_to_vec),
                    ":target": started.target,
                    ":database": started.database,
                    ":client_user": started.user,
                    ":upstream_user": started.upstream_user,
                    ":client_addr": started.client_addr,
                    ":session_id": id,
                },
            )?;
        }
        Some(Kind::SessionRefused(refused)) => {
            let process = refused.process.clone().unwrap_or_default();
            tx.execute(
                "UPDATE sessions SET
                     refused = 1, refused_reason = :reason, refused_sqlstate = :sqlstate,
                     pid = :pid, uid = :uid, comm = :comm, exe = :exe, process = :process,
                     target = :target, ended_unix_us = MAX(ended_unix_us, :time)
                 WHERE session_id = :session_id",
                named_params! {
                    ":reason": refused.reason,
                    ":sqlstate": refused.sqlstate,
                    ":pid": process.pid,
                    ":uid": process.uid,
                    ":comm": process.comm,
                    ":exe": process.exe,
                    ":process": refused.process.as_ref().map(Message::encode_to_vec),
                    ":target": refused.target,
                    ":time": event.time_unix_us,
                    ":session_id": id,
                },
            )?;
        }
        Some(Kind::Statement(statement)) => {
            let denied = u64::from(statement.decision() == Decision::Denied);
            tx.execute(
                "UPDATE sessions SET counted_statements = counted_statements + 1,
                     counted_denied = counted_denied + :denied
                 WHERE session_id = :session_id",
                named_params! { ":denied": denied, ":session_id": id },
            )?;
        }
        Some(Kind::SessionEnded(ended)) => {
            tx.execute(
                "UPDATE sessions SET ended_unix_us = MAX(ended_unix_us, :time),
                     end_reason = :reason,
                     reported_statements = MAX(reported_statements, :statements),
                     reported_denied = MAX(reported_denied, :denied)
                 WHERE session_id = :session_id",
                named_params! {
                    ":time": event.time_unix_us,
                    ":reason": ended.reason,
                    ":statements": ended.statements,
                    ":denied": ended.denied,
                    ":session_id": id,
                },
            )?;
        }
        Some(Kind::AgentStarted(_) | Kind::PolicyReloaded(_) | Kind::SpoolOverflow(_)) => {
            tx.prepare_cached("UPDATE sessions SET agent_run = 1 WHERE session_id = ?1")?
                .execute([id])?;
        }
        Some(Kind::AgentStopped(_)) => {
            tx.prepare_cached(
                "UPDATE sessions SET agent_run = 1, ended_unix_us = MAX(ended_unix_us, ?1),
                     end_reason = 'agent stopped'
                 WHERE session_id = ?2",
            )?
            .execute(rusqlite::params![event.time_unix_us, id])?;
        }
        // Approval events (written by the collector) only keep the session row's start time;
        // an event kind this collector does not know still opens the session row.
        Some(
            Kind::ApprovalRequested(_)
            | Kind::ApprovalGranted(_)
            | Kind::ApprovalDenied(_)
            | Kind::ApprovalExpired(_),
        )
        | None => {}
    }
    Ok(())
}

/// Columns [`from_row`] expects, in order; used in `SELECT` lists.
pub const SUMMARY_COLUMNS: &str = "session_id, started_unix_us, ended_unix_us, identity, process,
     target, database, upstream_user, MAX(counted_statements, reported_statements),
     MAX(counted_denied, reported_denied), agent_host, refused, refused_reason, agent_run";

/// Builds a [`SessionSummary`] from a row selected with [`SUMMARY_COLUMNS`].
///
/// # Errors
/// [`StoreError::Sqlite`] for a column of the wrong type, [`StoreError::CorruptBlob`] when the
/// stored identity or process cannot be decoded.
pub fn from_row(row: &Row<'_>) -> Result<SessionSummary, StoreError> {
    let session_id: String = row.get(0)?;
    let identity: Option<Vec<u8>> = row.get(3)?;
    let process: Option<Vec<u8>> = row.get(4)?;
    let identity = identity
        .map(|bytes| Identity::decode(bytes.as_slice()))
        .transpose()
        .map_err(|source| StoreError::CorruptBlob {
            id: session_id.clone(),
            source,
        })?;
    let process = process
        .map(|bytes| Process::decode(bytes.as_slice()))
        .transpose()
        .map_err(|source| StoreError::CorruptBlob {
            id: session_id.clone(),
            source,
        })?;
    Ok(SessionSummary {
        session_id,
        started_unix_us: row.get(1)?,
        ended_unix_us: row.get(2)?,
        identity,
        process,
        target: row.get(5)?,
        database: row.get(6)?,
        upstream_user: row.get(7)?,
        statements: row.get(8)?,
        denied: row.get(9)?,
        agent_host: row.get(10)?,
        refused: row.get(11)?,
        refused_reason: row.get(12)?,
        agent_run: row.get(13)?,
    })
}
