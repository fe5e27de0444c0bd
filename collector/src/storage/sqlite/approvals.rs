//! SQLite: the `approvals` table: approval requests, their decisions, and the grants of approved
//! request-mode approvals.
//!
//! Every change writes its lifecycle event (`approval_requested`, `approval_granted`,
//! `approval_denied`, `approval_expired`) into the requesting session's events in the same
//! transaction, so `jitgate events --session ID` shows who decided and when. Those events have
//! deterministic ids (`<approval_id>/requested`, ...) and the `seq` the agent gave when it opened
//! the request, so they are stored once and sort next to the statement that asked.
//!
//! Times are passed in (microseconds since the Unix epoch) so callers and tests control the
//! clock; a pending request whose `expires_unix_us` has passed is expired by
//! [`SqliteStore::expire_due_blocking`], which [`SqliteStore::decide_blocking`] also runs first.

use jitgate_proto::audit::v1::{
    Approval, ApprovalExpired, ApprovalGranted, ApprovalRequested, ApprovalStatus, event::Kind,
};
use prost::Message;
use rusqlite::{OptionalExtension, Row, Transaction, named_params};

use super::{SqliteStore, insert_events, lock};
use crate::storage::StoreError;
use crate::storage::approval::{
    ApprovalFilter, COLUMNS, DEFAULT_APPROVAL_LIMIT, DecideOutcome, GrantQuery, MAX_APPROVAL_LIMIT,
    NewApproval, Origin, covers, grant_end, mode_name, status_of,
};

impl SqliteStore {
    /// Stores `new` and its `approval_requested` event (plus `approval_granted` when it was
    /// approved automatically). Idempotent by approval id: a known id is returned as stored,
    /// with `false`.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] or [`StoreError::CorruptBlob`].
    pub fn open_approval_blocking(
        &self,
        new: &NewApproval,
    ) -> Result<(Approval, bool), StoreError> {
        let id = new.request.approval_id.as_str();
        let mut conn = lock(&self.inner.writer)?;
        let tx = conn.transaction()?;
        if let Some((existing, _)) = select(&tx, id)? {
            return Ok((existing, false));
        }
        let request = &new.request;
        let identity = request.identity.clone().unwrap_or_default();
        let now = new.requested_unix_us;
        let (status, decided_by, decided_at, grant_expires) = match &new.auto_approved_by {
            Some(by) => ("approved", by.as_str(), now, grant_end(request, now)),
            None => ("pending", "", 0, 0),
        };
        tx.execute(
            "INSERT INTO approvals (approval_id, session_id, seq, agent_host, issuer, subject,
                 target, database, fingerprint, mode, requested_unix_us, expires_unix_us,
                 status, decided_by, decided_unix_us, grant_expires_unix_us, request)
             VALUES (:id, :session_id, :seq, :agent_host, :issuer, :subject, :target,
                 :database, :fingerprint, :mode, :requested, :expires, :status, :decided_by,
                 :decided_at, :grant_expires, :request)",
            named_params! {
                ":id": id,
                ":session_id": new.session_id,
                ":seq": new.seq,
                ":agent_host": new.agent_host,
                ":issuer": identity.issuer,
                ":subject": identity.subject,
                ":target": request.target,
                ":database": request.database,
                ":fingerprint": request.fingerprint,
                ":mode": mode_name(request.mode()),
                ":requested": now,
                ":expires": request.expires_unix_us,
                ":status": status,
                ":decided_by": decided_by,
                ":decided_at": decided_at,
                ":grant_expires": grant_expires,
                ":request": request.encode_to_vec(),
            },
        )?;
        let origin = Origin {
            approval_id: id,
            session_id: &new.session_id,
            seq: new.seq,
            agent_host: &new.agent_host,
        };
        let mut events =
            vec![origin.event("requested", now, Kind::ApprovalRequested(request.clone()))];
        if let Some(by) = &new.auto_approved_by {
            events.push(origin.event(
                "granted",
                now,
                Kind::ApprovalGranted(ApprovalGranted {
                    approval_id: id.to_owned(),
                    decided_by: by.clone(),
                    comment: String::new(),
                    grant_expires_unix_us: grant_expires,
                }),
            ));
        }
        insert_events(&tx, &events, now)?;
        let (approval, _) = select(&tx, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        tx.commit()?;
        Ok((approval, true))
    }

    /// Approves (`approve`) or denies the pending request `id` as `decided_by` at `now`, with
    /// its event. Requests past their deadline are expired first, so a late decision finds the
    /// request expired.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] or [`StoreError::CorruptBlob`].
    pub fn decide_blocking(
        &self,
        id: &str,
        approve: bool,
        decided_by: &str,
        comment: &str,
        now: i64,
    ) -> Result<DecideOutcome, StoreError> {
        let mut conn = lock(&self.inner.writer)?;
        let tx = conn.transaction()?;
        expire_in(&tx, now)?;
        let Some((approval, seq)) = select(&tx, id)? else {
            return Ok(DecideOutcome::NotFound);
        };
        if approval.status() != ApprovalStatus::Pending {
            tx.commit()?;
            return Ok(DecideOutcome::NotPending(approval));
        }
        let request = approval.request.clone().unwrap_or_default();
        let grant_expires = if approve { grant_end(&request, now) } else { 0 };
        tx.execute(
            "UPDATE approvals SET status = :status, decided_by = :by, decided_unix_us = :now,
                 comment = :comment, grant_expires_unix_us = :grant_expires
             WHERE approval_id = :id AND status = 'pending'",
            named_params! {
                ":status": if approve { "approved" } else { "denied" },
                ":by": decided_by,
                ":now": now,
                ":comment": comment,
                ":grant_expires": grant_expires,
                ":id": id,
            },
        )?;
        let origin = Origin {
            approval_id: id,
            session_id: &approval.session_id,
            seq,
            agent_host: &approval.agent_host,
        };
        let event = origin.decision(approve, decided_by, comment, grant_expires, now);
        insert_events(&tx, &[event], now)?;
        let (approval, _) = select(&tx, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        tx.commit()?;
        Ok(DecideOutcome::Decided(approval))
    }

    /// Expires every pending request whose deadline is at or before `now`, each with its
    /// `approval_expired` event; returns how many.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn expire_due_blocking(&self, now: i64) -> Result<usize, StoreError> {
        let mut conn = lock(&self.inner.writer)?;
        let tx = conn.transaction()?;
        let expired = expire_in(&tx, now)?;
        tx.commit()?;
        Ok(expired)
    }

    /// The request `id` as stored, if any.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] or [`StoreError::CorruptBlob`].
    pub fn approval_blocking(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        let conn = lock(&self.inner.reader)?;
        let sql = format!("SELECT {COLUMNS} FROM approvals WHERE approval_id = ?1");
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([id])?;
        rows.next()?
            .map(from_row)
            .transpose()
            .map(|found| found.map(|(a, _)| a))
    }

    /// Requests matching `filter`, newest first.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] or [`StoreError::CorruptBlob`].
    pub fn list_approvals_blocking(
        &self,
        filter: &ApprovalFilter,
    ) -> Result<Vec<Approval>, StoreError> {
        let limit = match filter.limit {
            0 => DEFAULT_APPROVAL_LIMIT,
            n => n.min(MAX_APPROVAL_LIMIT),
        };
        let conn = lock(&self.inner.reader)?;
        let sql = format!(
            "SELECT {COLUMNS} FROM approvals
             WHERE (:all OR status = 'pending')
               AND (:session_id = '' OR session_id = :session_id)
               AND (:subject = '' OR subject = :subject)
             ORDER BY requested_unix_us DESC, approval_id DESC LIMIT :limit"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(named_params! {
            ":all": filter.all,
            ":session_id": filter.session_id,
            ":subject": filter.subject,
            ":limit": limit,
        })?;
        let mut approvals = Vec::new();
        while let Some(row) = rows.next()? {
            approvals.push(from_row(row)?.0);
        }
        Ok(approvals)
    }

    /// The live grant (approved, request mode, not yet expired at `now`) of `query`'s identity
    /// that covers the statement, expiring last; see [`GrantQuery`] for what covers.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] or [`StoreError::CorruptBlob`].
    pub fn find_grant_blocking(
        &self,
        query: &GrantQuery,
        now: i64,
    ) -> Result<Option<Approval>, StoreError> {
        let conn = lock(&self.inner.reader)?;
        let sql = format!(
            "SELECT {COLUMNS} FROM approvals
             WHERE issuer = :issuer AND subject = :subject AND status = 'approved'
               AND mode = 'request' AND grant_expires_unix_us > :now
               AND (:target = '' OR target = :target)
               AND (:database = '' OR database = :database)
             ORDER BY grant_expires_unix_us DESC, approval_id"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(named_params! {
            ":issuer": query.issuer,
            ":subject": query.subject,
            ":now": now,
            ":target": query.target,
            ":database": query.database,
        })?;
        while let Some(row) = rows.next()? {
            let (approval, _) = from_row(row)?;
            if approval.request.as_ref().is_some_and(|r| covers(r, query)) {
                return Ok(Some(approval));
            }
        }
        Ok(None)
    }
}

/// Expires the pending requests due at `now` inside `tx`.
fn expire_in(tx: &Transaction<'_>, now: i64) -> Result<usize, StoreError> {
    let due: Vec<(String, String, u64, String, i64)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT approval_id, session_id, seq, agent_host, expires_unix_us FROM approvals
             WHERE status = 'pending' AND expires_unix_us <= ?1",
        )?;
        let rows = stmt.query_map([now], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    for (id, session_id, seq, agent_host, expires) in &due {
        tx.execute(
            "UPDATE approvals SET status = 'expired', decided_unix_us = ?2
             WHERE approval_id = ?1 AND status = 'pending'",
            rusqlite::params![id, expires],
        )?;
        let origin = Origin {
            approval_id: id,
            session_id,
            seq: *seq,
            agent_host,
        };
        let event = origin.event(
            "expired",
            *expires,
            Kind::ApprovalExpired(ApprovalExpired {
                approval_id: id.clone(),
                expired_unix_us: *expires,
            }),
        );
        insert_events(tx, &[event], now)?;
    }
    Ok(due.len())
}

/// Reads one request (with its events' `seq`) inside `tx`.
fn select(tx: &Transaction<'_>, id: &str) -> Result<Option<(Approval, u64)>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM approvals WHERE approval_id = ?1");
    let mut stmt = tx.prepare_cached(&sql)?;
    let row = stmt.query_row([id], |row| Ok(from_row(row))).optional()?;
    row.transpose()
}

/// Builds an [`Approval`] (and the `seq` of its events) from a row selected with [`COLUMNS`].
fn from_row(row: &Row<'_>) -> Result<(Approval, u64), StoreError> {
    let approval_id: String = row.get(0)?;
    let status: String = row.get(4)?;
    let blob: Vec<u8> = row.get(9)?;
    let request =
        ApprovalRequested::decode(blob.as_slice()).map_err(|source| StoreError::CorruptBlob {
            id: approval_id,
            source,
        })?;
    let approval = Approval {
        request: Some(request),
        session_id: row.get(1)?,
        agent_host: row.get(2)?,
        requested_unix_us: row.get(3)?,
        status: status_of(&status).into(),
        decided_by: row.get(5)?,
        decided_unix_us: row.get(6)?,
        comment: row.get(7)?,
        grant_expires_unix_us: row.get(8)?,
    };
    Ok((approval, row.get(10)?))
}
