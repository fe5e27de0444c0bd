//! Statements that need approval ([`crate::policy::Decision::Approval`]): the Query or Parse
//! is held — nothing more is read from the client — while the collector's approvals service
//! ([`crate::approval`]) is asked, then handled again with the outcome.
//!
//! - Approved automatically by a policy (`approve` action): recorded with the collector as
//!   approved by `policy:<id>`, then run.
//! - Request mode: a live grant for this identity and statement fingerprint lets it run;
//!   otherwise a request is opened and the statement refused with 42501 naming its id.
//! - Hold mode: a NoticeResponse names the request id and the command to approve; approved
//!   within `approval_hold_secs` → it runs; denied or not decided in time → 42501.
//!
//! Any failure to reach the collector refuses the statement (fails closed).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::approval::{
    ApprovalClient, ApprovalRequest, GrantScope, IdentityKey, Mode, Outcome, ScopeKind, Status,
    new_approval_id,
};
use crate::pgwire::codec::Frame;
use crate::pgwire::write;
use crate::policy::{Analysis, ApprovalMode, ApprovalNeeded};
use crate::proxy::pending::Rejection;

/// What the collector answered for a held statement: run it (approval id, approver), or the
/// refusal to send.
pub type Resolution = Result<(String, String), Rejection>;

/// A future resolving a held statement.
pub type Resolving = Pin<Box<dyn Future<Output = Resolution> + Send>>;

/// A statement held for approval.
pub struct Held {
    /// The Query or Parse, handled again once resolved.
    pub frame: Frame,
    /// Its analysis (the key its resolution is found by).
    pub analysis: Arc<Analysis>,
}

/// Hint with approval refusals.
const HINT: &str = "Approvers see pending requests with `jitgate approvals list` and decide \
     with `jitgate approvals approve ID` or `deny ID`.";

fn refusal(message: String, approval_id: Option<&str>) -> Rejection {
    Rejection {
        sqlstate: "42501",
        rule: "approval".into(),
        approval_id: approval_id.map(str::to_owned),
        message,
        hint: Some(HINT.into()),
    }
}

/// The request to send for `needed`.
pub fn request(
    needed: &ApprovalNeeded,
    analysis: &Analysis,
    sql: &str,
    base: ApprovalRequest,
) -> ApprovalRequest {
    ApprovalRequest {
        fingerprint: if analysis.fingerprint.is_empty() {
            sql.to_owned()
        } else {
            analysis.fingerprint.clone()
        },
        tables: analysis.tables.iter().cloned().collect(),
        actions: needed.actions.clone(),
        policy_ids: needed.policies.clone(),
        reason: needed.reason.clone(),
        mode: match needed.mode {
            ApprovalMode::Hold => Mode::Hold,
            ApprovalMode::Request => Mode::Request,
        },
        scope: ScopeKind::Fingerprint,
        grant_ttl: Duration::from_secs(needed.grant_ttl),
        auto_approved_by: needed
            .auto_approved_by
            .as_ref()
            .map(|p| format!("policy:{p}")),
        statement: sql.to_owned(),
        ..base
    }
}

/// The NoticeResponse a held client gets.
pub fn hold_notice(out: &mut bytes::BytesMut, id: &str, wait: Duration) {
    write::notice_response(
        out,
        &format!(
            "jitgate: this statement needs approval; request {id} is waiting up to {} s",
            wait.as_secs()
        ),
        Some(&format!("Approve it with: jitgate approvals approve {id}")),
    );
}

/// Resolves `request` with the collector.
pub fn resolve(client: ApprovalClient, request: ApprovalRequest, hold: Duration) -> Resolving {
    Box::pin(async move {
        let unavailable = |e: crate::approval::ApprovalError| {
            refusal(
                format!(
                    "jitgate: the statement needs approval, but the approvals service is unavailable: {e}"
                ),
                None,
            )
        };
        let id = request.id.clone();
        if let Some(by) = request.auto_approved_by.clone() {
            client.open(request).await.map_err(unavailable)?;
            return Ok((id, by));
        }
        if request.mode == Mode::Request {
            let key = IdentityKey::of(&request.identity);
            let grant = client
                .find_grant(&key, &GrantScope::of(&request))
                .await
                .map_err(unavailable)?;
            if let Some(grant) = grant {
                return Ok((grant.approval_id, grant.approved_by));
            }
            let ttl = request.grant_ttl.as_secs();
            let opened = client.open(request).await.map_err(unavailable)?;
            if opened.status == Status::Approved {
                return Ok((id, "policy".into()));
            }
            return Err(refusal(
                format!(
                    "jitgate: the statement needs approval: request {id} is open; once it is \
                 approved, run the statement again within {ttl} s"
                ),
                Some(&id),
            ));
        }
        client.open(request).await.map_err(unavailable)?;
        match client.wait(&id, hold).await.map_err(unavailable)? {
            Outcome::Approved { by, .. } => Ok((id, by)),
            Outcome::Denied { by, comment } => Err(refusal(
                format!(
                    "jitgate: approval request {id} was denied by {by}{}",
                    if comment.is_empty() {
                        String::new()
                    } else {
                        format!(": {comment}")
                    }
                ),
                Some(&id),
            )),
            Outcome::Expired | Outcome::TimedOut => Err(refusal(
                format!(
                    "jitgate: approval request {id} was not approved within {} s",
                    hold.as_secs()
                ),
                Some(&id),
            )),
        }
    })
}

/// A fresh request id.
pub fn new_id() -> String {
    new_approval_id()
}
