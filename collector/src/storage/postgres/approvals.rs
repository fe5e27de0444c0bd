//! PostgreSQL: the `approvals` table, with the state machine and lifecycle events of the SQLite
//! backend (see `storage::sqlite::approvals`), safe for concurrent collectors:
//!
//! - opening is `INSERT ... ON CONFLICT (approval_id) DO NOTHING`, so of two collectors opening
//!   one id exactly one creates it (and writes its events);
//! - deciding locks the request row (`SELECT ... FOR UPDATE`) and checks it is still pending,
//!   so of concurrent decisions exactly one wins and the others see it decided;
//! - expiring locks the due rows in id order and re-checks `status = 'pending'` under the lock.

use jitgate_proto::audit::v1::{
    Approval, ApprovalExpired, ApprovalGranted, ApprovalRequested, ApprovalStatus, event::Kind,
};
use prost::Message;
use tokio_postgres::{GenericClient, Row};

use super::{PgStore, Transaction, insert_events, to_i64, transaction};
use crate::storage::StoreError;
use crate::storage::approval::{
    ApprovalFilter, COLUMNS, DEFAULT_APPROVAL_LIMIT, DecideOutcome, GrantQuery, MAX_APPROVAL_LIMIT,
    NewApproval, Origin, covers, grant_end, mode_name, status_of,
};

impl PgStore {
    /// See [`crate::storage::Store::open_approval`].
    ///
    /// # Errors
    /// As there.
    pub async fn open_approval(&self, new: &NewApproval) -> Result<(Approval, bool), StoreError> {
        transaction!(self.pool, |tx| open_in(&tx, new).await?)
    }

    /// See [`crate::storage::Store::decide`].
    ///
    /// # Errors
    /// As there.
    pub async fn decide(
        &self,
        id: &str,
        approve: bool,
        decided_by: &str,
        comment: &str,
        now: i64,
    ) -> Result<DecideOutcome, StoreError> {
        transaction!(self.pool, |tx| {
            decide_in(&tx, id, approve, decided_by, comment, now).await?
        })
    }

    /// See [`crate::storage::Store::expire_due`].
    ///
    /// # Errors
    /// As there.
    pub async fn expire_due(&self, now: i64) -> Result<usize, StoreError> {
        transaction!(self.pool, |tx| expire_in(&tx, now).await?)
    }

    /// See [`crate::storage::Store::approval`].
    ///
    /// # Errors
    /// As there.
    pub async fn approval(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        let client = self.pool.get().await?;
        Ok(select(&**client, id, false).await?.map(|(a, _)| a))
    }

    /// See [`crate::storage::Store::list_approvals`].
    ///
    /// # Errors
    /// As there.
    pub async fn list_approvals(
        &self,
        filter: &ApprovalFilter,
    ) -> Result<Vec<Approval>, StoreError> {
        let limit = i64::from(match filter.limit {
            0 => DEFAULT_APPROVAL_LIMIT,
            n => n.min(MAX_APPROVAL_LIMIT),
        });
        let client = self.pool.get().await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM approvals
             WHERE ($1 OR status = 'pending')
               AND ($2 = '' OR session_id = $2)
               AND ($3 = '' OR subject = $3)
             ORDER BY requested_unix_us DESC, approval_id DESC LIMIT $4"
        );
        let stmt = client.prepare_cached(&sql).await?;
        let rows = client
            .query(
                &stmt,
                &[&filter.all, &filter.session_id, &filter.subject, &limit],
            )
            .await?;
        rows.iter()
            .map(|row| from_row(row).map(|(a, _)| a))
            .collect()
    }

    /// See [`crate::storage::Store::find_grant`].
    ///
    /// # Errors
    /// As there.
    pub async fn find_grant(
        &self,
        query: &GrantQuery,
        now: i64,
    ) -> Result<Option<Approval>, StoreError> {
        let client = self.pool.get().await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM approvals
             WHERE issuer = $1 AND subject = $2 AND status = 'approved'
               AND mode = 'request' AND grant_expires_unix_us > $3
               AND ($4 = '' OR target = $4)
               AND ($5 = '' OR database = $5)
             ORDER BY grant_expires_unix_us DESC, approval_id"
        );
        let stmt = client.prepare_cached(&sql).await?;
        let rows = client
            .query(
                &stmt,
                &[
                    &query.issuer,
                    &query.subject,
                    &now,
                    &query.target,
                    &query.database,
                ],
            )
            .await?;
        for row in &rows {
            let (approval, _) = from_row(row)?;
            if approval.request.as_ref().is_some_and(|r| covers(r, query)) {
                return Ok(Some(approval));
            }
        }
        Ok(None)
    }
}

/// Opens `new` inside `tx`; `false` when the id was already known.
async fn open_in(tx: &Transaction<'_>, new: &NewApproval) -> Result<(Approval, bool), StoreError> {
    let id = new.request.approval_id.as_str();
    let request = &new.request;
    let identity = request.identity.clone().unwrap_or_default();
    let now = new.requested_unix_us;
    let (status, decided_by, decided_at, grant_expires) = match &new.auto_approved_by {
        Some(by) => ("approved", by.as_str(), now, grant_end(request, now)),
        None => ("pending", "", 0, 0),
    };
    let inserted = tx
        .execute(
            "INSERT INTO approvals (approval_id, session_id, seq, agent_host, issuer, subject,
                 target, database, fingerprint, mode, requested_unix_us, expires_unix_us,
                 status, decided_by, decided_unix_us, grant_expires_unix_us, request)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
             ON CONFLICT (approval_id) DO NOTHING",
            &[
                &id,
                &new.session_id,
                &to_i64("seq", new.seq)?,
                &new.agent_host,
                &identity.issuer,
                &identity.subject,
                &request.target,
                &request.database,
                &request.fingerprint,
                &mode_name(request.mode()),
                &now,
                &request.expires_unix_us,
                &status,
                &decided_by,
                &decided_at,
                &grant_expires,
                &request.encode_to_vec(),
            ],
        )
        .await?;
    if inserted == 0 {
        let (existing, _) = select(&**tx, id, false)
            .await?
            .ok_or_else(|| StoreError::Pool(format!("approval {id} vanished")))?;
        return Ok((existing, false));
    }
    let origin = Origin {
        approval_id: id,
        session_id: &new.session_id,
        seq: new.seq,
        agent_host: &new.agent_host,
    };
    let mut events = vec![origin.event("requested", now, Kind::ApprovalRequested(request.clone()))];
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
    insert_events(tx, &events.iter().collect::<Vec<_>>(), now).await?;
    let (approval, _) = select(&**tx, id, false)
        .await?
        .ok_or_else(|| StoreError::Pool(format!("approval {id} vanished")))?;
    Ok((approval, true))
}

/// Decides `id` inside `tx` (see [`PgStore::decide`]).
async fn decide_in(
    tx: &Transaction<'_>,
    id: &str,
    approve: bool,
    decided_by: &str,
    comment: &str,
    now: i64,
) -> Result<DecideOutcome, StoreError> {
    expire_in(tx, now).await?;
    let Some((approval, seq)) = select(&**tx, id, true).await? else {
        return Ok(DecideOutcome::NotFound);
    };
    if approval.status() != ApprovalStatus::Pending {
        return Ok(DecideOutcome::NotPending(approval));
    }
    let request = approval.request.clone().unwrap_or_default();
    let grant_expires = if approve { grant_end(&request, now) } else { 0 };
    tx.execute(
        "UPDATE approvals SET status = $1, decided_by = $2, decided_unix_us = $3,
             comment = $4, grant_expires_unix_us = $5
         WHERE approval_id = $6 AND status = 'pending'",
        &[
            &if approve { "approved" } else { "denied" },
            &decided_by,
            &now,
            &comment,
            &grant_expires,
            &id,
        ],
    )
    .await?;
    let origin = Origin {
        approval_id: id,
        session_id: &approval.session_id,
        seq,
        agent_host: &approval.agent_host,
    };
    let event = origin.decision(approve, decided_by, comment, grant_expires, now);
    insert_events(tx, &[&event], now).await?;
    let (approval, _) = select(&**tx, id, false)
        .await?
        .ok_or_else(|| StoreError::Pool(format!("approval {id} vanished")))?;
    Ok(DecideOutcome::Decided(approval))
}

/// Expires the pending requests due at `now` inside `tx`, locking them in id order.
async fn expire_in(tx: &Transaction<'_>, now: i64) -> Result<usize, StoreError> {
    let due = tx
        .query(
            "SELECT approval_id, session_id, seq, agent_host, expires_unix_us FROM approvals
             WHERE status = 'pending' AND expires_unix_us <= $1
             ORDER BY approval_id FOR UPDATE",
            &[&now],
        )
        .await?;
    let mut expired = 0;
    for row in &due {
        let id: String = row.try_get(0)?;
        let session_id: String = row.try_get(1)?;
        let seq: i64 = row.try_get(2)?;
        let agent_host: String = row.try_get(3)?;
        let expires: i64 = row.try_get(4)?;
        let changed = tx
            .execute(
                "UPDATE approvals SET status = 'expired', decided_unix_us = $2
                 WHERE approval_id = $1 AND status = 'pending'",
                &[&id, &expires],
            )
            .await?;
        if changed == 0 {
            continue;
        }
        let origin = Origin {
            approval_id: &id,
            session_id: &session_id,
            seq: u64::try_from(seq).unwrap_or_default(),
            agent_host: &agent_host,
        };
        let event = origin.event(
            "expired",
            expires,
            Kind::ApprovalExpired(ApprovalExpired {
                approval_id: id.clone(),
                expired_unix_us: expires,
            }),
        );
        insert_events(tx, &[&event], now).await?;
        expired += 1;
    }
    Ok(expired)
}

/// Reads one request (with its events' `seq`), locking its row when `lock`.
async fn select(
    client: &impl GenericClient,
    id: &str,
    lock: bool,
) -> Result<Option<(Approval, u64)>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM approvals WHERE approval_id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    client
        .query_opt(&sql, &[&id])
        .await?
        .map(|row| from_row(&row))
        .transpose()
}

/// Builds an [`Approval`] (and the `seq` of its events) from a row selected with [`COLUMNS`].
fn from_row(row: &Row) -> Result<(Approval, u64), StoreError> {
    let approval_id: String = row.try_get(0)?;
    let status: String = row.try_get(4)?;
    let blob: Vec<u8> = row.try_get(9)?;
    let request =
        ApprovalRequested::decode(blob.as_slice()).map_err(|source| StoreError::CorruptBlob {
            id: approval_id,
            source,
        })?;
    let seq: i64 = row.try_get(10)?;
    let approval = Approval {
        request: Some(request),
        session_id: row.try_get(1)?,
        agent_host: row.try_get(2)?,
        requested_unix_us: row.try_get(3)?,
        status: status_of(&status).into(),
        decided_by: row.try_get(5)?,
        decided_unix_us: row.try_get(6)?,
        comment: row.try_get(7)?,
        grant_expires_unix_us: row.try_get(8)?,
    };
    Ok((approval, u64::try_from(seq).unwrap_or_default()))
}
