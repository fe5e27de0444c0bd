//! PostgreSQL: the `sessions` table, folded from each newly stored event in the transaction
//! that stored it, with the same order-independent updates as SQLite (`LEAST`/`GREATEST` for
//! times and reported totals, increments for counted statements). Each statement locks only
//! the session's row, so concurrent collectors storing events of one session serialise on it
//! and every increment counts.

use deadpool_postgres::Transaction;
use jitgate_proto::audit::v1::{Decision, Event, Identity, Process, SessionSummary, event::Kind};
use prost::Message;
use tokio_postgres::Row;

use super::to_i64;
use crate::storage::{StoreError, ledger_entry};

/// Folds one newly stored event into its session's row, creating the row when needed; call it
/// only for events that were not already stored.
///
/// # Errors
/// [`StoreError::Postgres`], [`StoreError::OutOfRange`].
pub async fn apply(tx: &Transaction<'_>, event: &Event) -> Result<(), StoreError> {
    let id = &event.session_id;
    let upsert = tx
        .prepare_cached(
            "INSERT INTO sessions (session_id, agent_host, started_unix_us, last_seq, last_hash)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (session_id) DO UPDATE SET
                 started_unix_us = LEAST(sessions.started_unix_us, EXCLUDED.started_unix_us),
                 agent_host = CASE WHEN sessions.agent_host = '' THEN EXCLUDED.agent_host
                                   ELSE sessions.agent_host END,
                 last_hash = CASE WHEN EXCLUDED.last_seq > sessions.last_seq
                                  THEN EXCLUDED.last_hash ELSE sessions.last_hash END,
                 last_seq = GREATEST(sessions.last_seq, EXCLUDED.last_seq)",
        )
        .await?;
    let (last_seq, last_hash) = ledger_entry(event)?;
    tx.execute(
        &upsert,
        &[
            id,
            &event.agent_host,
            &event.time_unix_us,
            &last_seq,
            &last_hash,
        ],
    )
    .await?;
    match &event.kind {
        Some(Kind::SessionStarted(started)) => {
            let identity = started.identity.clone().unwrap_or_default();
            let process = started.process.clone().unwrap_or_default();
            let stmt = tx
                .prepare_cached(
                    "UPDATE sessions SET
                         issuer = $1, subject = $2, tenant_id = $3, object_id = $4, app_id = $5,
                         repository = $6, identity = $7, pid = $8, uid = $9, comm = $10,
                         exe = $11, process = $12, target = $13, database = $14,
                         client_user = $15, upstream_user = $16, client_addr = $17
                     WHERE session_id = $18 AND process IS NULL",
                )
                .await?;
            tx.execute(
                &stmt,
                &[
                    &identity.issuer,
                    &identity.subject,
                    &identity.tenant_id,
                    &identity.object_id,
                    &identity.app_id,
                    &identity.repository,
                    &started.identity.as_ref().map(Message::encode_to_vec),
                    &i64::from(process.pid),
                    &i64::from(process.uid),
                    &process.comm,
                    &process.exe,
                    &started.process.as_ref().map(Message::encode_to_vec),
                    &started.target,
                    &started.database,
                    &started.user,
                    &started.upstream_user,
                    &started.client_addr,
                    id,
                ],
            )
            .await?;
        }
        Some(Kind::SessionRefused(refused)) => {
            let process = refused.process.clone().unwrap_or_default();
            let stmt = tx
                .prepare_cached(
                    "UPDATE sessions SET
                         refused = TRUE, refused_reason = $1, refused_sqlstate = $2, pid = $3,
                         uid = $4, comm = $5, exe = $6, process = $7, target = $8,
                         ended_unix_us = GREATEST(ended_unix_us, $9)
                     WHERE session_id = $10",
                )
                .await?;
            tx.execute(
                &stmt,
                &[
                    &refused.reason,
                    &refused.sqlstate,
                    &i64::from(process.pid),
                    &i64::from(process.uid),
                    &process.comm,
                    &process.exe,
                    &refused.process.as_ref().map(Message::encode_to_vec),
                    &refused.target,
                    &event.time_unix_us,
                    id,
                ],
            )
            .await?;
        }
        Some(Kind::Statement(statement)) => {
            let denied = i64::from(statement.decision() == Decision::Denied);
            let stmt = tx
                .prepare_cached(
                    "UPDATE sessions SET counted_statements = counted_statements + 1,
                         counted_denied = counted_denied + $1
                     WHERE session_id = $2",
                )
                .await?;
            tx.execute(&stmt, &[&denied, id]).await?;
        }
        Some(Kind::SessionEnded(ended)) => {
            let stmt = tx
                .prepare_cached(
                    "UPDATE sessions SET ended_unix_us = GREATEST(ended_unix_us, $1),
                         end_reason = $2,
                         reported_statements = GREATEST(reported_statements, $3),
                         reported_denied = GREATEST(reported_denied, $4)
                     WHERE session_id = $5",
                )
                .await?;
            tx.execute(
                &stmt,
                &[
                    &event.time_unix_us,
                    &ended.reason,
                    &to_i64("statements", ended.statements)?,
                    &to_i64("denied", ended.denied)?,
                    id,
                ],
            )
            .await?;
        }
        Some(Kind::AgentStarted(_) | Kind::PolicyReloaded(_) | Kind::SpoolOverflow(_)) => {
            let stmt = tx
                .prepare_cached("UPDATE sessions SET agent_run = TRUE WHERE session_id = $1")
                .await?;
            tx.execute(&stmt, &[id]).await?;
        }
        Some(Kind::AgentStopped(_)) => {
            let stmt = tx
                .prepare_cached(
                    "UPDATE sessions SET agent_run = TRUE,
                         ended_unix_us = GREATEST(ended_unix_us, $1),
                         end_reason = 'agent stopped'
                     WHERE session_id = $2",
                )
                .await?;
            tx.execute(&stmt, &[&event.time_unix_us, id]).await?;
        }
        // As in SQLite: approval events only keep the session row's start time.
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
     target, database, upstream_user, GREATEST(counted_statements, reported_statements),
     GREATEST(counted_denied, reported_denied), agent_host, refused, refused_reason, agent_run";

/// Builds a [`SessionSummary`] from a row selected with [`SUMMARY_COLUMNS`].
///
/// # Errors
/// [`StoreError::Postgres`] for a column of the wrong type, [`StoreError::CorruptBlob`] when
/// the stored identity or process cannot be decoded.
pub fn from_row(row: &Row) -> Result<SessionSummary, StoreError> {
    let session_id: String = row.try_get(0)?;
    let corrupt = |source| StoreError::CorruptBlob {
        id: session_id.clone(),
        source,
    };
    let identity: Option<Vec<u8>> = row.try_get(3)?;
    let process: Option<Vec<u8>> = row.try_get(4)?;
    let identity = identity
        .map(|bytes| Identity::decode(bytes.as_slice()))
        .transpose()
        .map_err(corrupt)?;
    let process = process
        .map(|bytes| Process::decode(bytes.as_slice()))
        .transpose()
        .map_err(corrupt)?;
    let statements: i64 = row.try_get(8)?;
    let denied: i64 = row.try_get(9)?;
    Ok(SessionSummary {
        started_unix_us: row.try_get(1)?,
        ended_unix_us: row.try_get(2)?,
        identity,
        process,
        target: row.try_get(5)?,
        database: row.try_get(6)?,
        upstream_user: row.try_get(7)?,
        statements: u64::try_from(statements).unwrap_or_default(),
        denied: u64::try_from(denied).unwrap_or_default(),
        agent_host: row.try_get(10)?,
        refused: row.try_get(11)?,
        refused_reason: row.try_get(12)?,
        agent_run: row.try_get(13)?,
        session_id,
    })
}
