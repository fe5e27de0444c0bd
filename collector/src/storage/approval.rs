//! The approval model both backends share: what a new request carries, the outcome of a
//! decision, list and grant filters, the stable status and mode names, which grant covers a
//! statement, and the lifecycle events an approval writes into its session.

use jitgate_proto::audit::v1::{
    Approval, ApprovalMode, ApprovalRequested, ApprovalStatus, Event, GrantScope, event::Kind,
};

/// Approvals returned by [`super::Store::list_approvals`] when the filter's limit is 0.
pub const DEFAULT_APPROVAL_LIMIT: u32 = 100;
/// Upper bound on approvals returned by one list call.
pub const MAX_APPROVAL_LIMIT: u32 = 10_000;

/// The `approvals` columns both backends select, in the order their row readers expect.
pub(crate) const COLUMNS: &str =
    "approval_id, session_id, agent_host, requested_unix_us, status, decided_by,
     decided_unix_us, comment, grant_expires_unix_us, request, seq";

/// A validated approval request to store.
#[derive(Clone, Debug)]
pub struct NewApproval {
    /// What was asked; `expires_unix_us` must already be the pending deadline.
    pub request: ApprovalRequested,
    /// The audit session that asked.
    pub session_id: String,
    /// `seq` for the approval's events in that session.
    pub seq: u64,
    /// Runner host name.
    pub agent_host: String,
    /// When the collector received the request.
    pub requested_unix_us: i64,
    /// `Some("policy:<id>")`: approved automatically, stored as already approved.
    pub auto_approved_by: Option<String>,
}

/// What [`super::Store::decide`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum DecideOutcome {
    /// The request was pending and is now approved or denied.
    Decided(Approval),
    /// The request was already decided or has expired; nothing changed.
    NotPending(Approval),
    /// No request has this id.
    NotFound,
}

/// Which approvals [`super::Store::list_approvals`] returns.
#[derive(Clone, Debug, Default)]
pub struct ApprovalFilter {
    /// Every status (newest first) instead of pending only.
    pub all: bool,
    /// Most rows; 0 means [`DEFAULT_APPROVAL_LIMIT`], capped at [`MAX_APPROVAL_LIMIT`].
    pub limit: u32,
    /// Only this session's requests, when non-empty.
    pub session_id: String,
    /// Only this OIDC subject's requests, when non-empty.
    pub subject: String,
}

/// A statement looking for a live grant (see [`super::Store::find_grant`]).
#[derive(Clone, Debug, Default)]
pub struct GrantQuery {
    /// OIDC issuer of the identity.
    pub issuer: String,
    /// OIDC subject of the identity.
    pub subject: String,
    /// The grant's target must equal this, when non-empty.
    pub target: String,
    /// The grant's database must equal this, when non-empty.
    pub database: String,
    /// Matches grants of scope fingerprint with exactly this fingerprint, when non-empty.
    pub fingerprint: String,
    /// With `actions`: matches grants of scope tables that list every one of these tables...
    pub tables: Vec<String>,
    /// ...and every one of these actions.
    pub actions: Vec<String>,
}

/// The stable lowercase name of an approval status, as stored and printed.
pub fn status_name(status: ApprovalStatus) -> &'static str {
    match status {
        ApprovalStatus::Pending => "pending",
        ApprovalStatus::Approved => "approved",
        ApprovalStatus::Denied => "denied",
        ApprovalStatus::Expired => "expired",
        ApprovalStatus::Unspecified => "unspecified",
    }
}

/// The stable lowercase name of an approval mode, as stored and printed.
pub fn mode_name(mode: ApprovalMode) -> &'static str {
    match mode {
        ApprovalMode::Hold => "hold",
        ApprovalMode::Request => "request",
        ApprovalMode::Unspecified => "unspecified",
    }
}

/// The status a stored status name stands for (unknown names: `Unspecified`).
pub(crate) fn status_of(name: &str) -> ApprovalStatus {
    match name {
        "pending" => ApprovalStatus::Pending,
        "approved" => ApprovalStatus::Approved,
        "denied" => ApprovalStatus::Denied,
        "expired" => ApprovalStatus::Expired,
        _ => ApprovalStatus::Unspecified,
    }
}

/// Does the grant of `request` cover the statement of `query`?
pub(crate) fn covers(request: &ApprovalRequested, query: &GrantQuery) -> bool {
    match request.grant_scope() {
        GrantScope::Tables => {
            !query.tables.is_empty()
                && !query.actions.is_empty()
                && query.tables.iter().all(|t| request.tables.contains(t))
                && query.actions.iter().all(|a| request.actions.contains(a))
        }
        GrantScope::Fingerprint | GrantScope::Unspecified => {
            !query.fingerprint.is_empty() && query.fingerprint == request.fingerprint
        }
    }
}

/// End of the grant an approval at `now` opens: request mode only, `now + grant_ttl_s`.
pub(crate) fn grant_end(request: &ApprovalRequested, now: i64) -> i64 {
    if request.mode() != ApprovalMode::Request {
        return 0;
    }
    let ttl_us = i64::try_from(request.grant_ttl_s)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000);
    now.saturating_add(ttl_us)
}

/// Where an approval's events go: its session, seq and host.
pub(crate) struct Origin<'a> {
    pub approval_id: &'a str,
    pub session_id: &'a str,
    pub seq: u64,
    pub agent_host: &'a str,
}

impl Origin<'_> {
    /// The lifecycle event `step` (`requested`, `granted`, ...) at `time`.
    pub fn event(&self, step: &str, time: i64, kind: Kind) -> Event {
        Event {
            event_id: format!("{}/{step}", self.approval_id),
            session_id: self.session_id.to_owned(),
            seq: self.seq,
            time_unix_us: time,
            agent_host: self.agent_host.to_owned(),
            origin: jitgate_proto::audit::v1::Origin::Collector.into(),
            kind: Some(kind),
            ..Event::default()
        }
    }

    /// The `granted` (when `approve`) or `denied` event of a decision at `now`; `grant_expires`
    /// is the grant's end (0 for hold mode or a denial).
    pub fn decision(
        &self,
        approve: bool,
        decided_by: &str,
        comment: &str,
        grant_expires: i64,
        now: i64,
    ) -> Event {
        let approval_id = self.approval_id.to_owned();
        let (decided_by, comment) = (decided_by.to_owned(), comment.to_owned());
        if approve {
            let granted = jitgate_proto::audit::v1::ApprovalGranted {
                approval_id,
                decided_by,
                comment,
                grant_expires_unix_us: grant_expires,
            };
            self.event("granted", now, Kind::ApprovalGranted(granted))
        } else {
            let denied = jitgate_proto::audit::v1::ApprovalDenied {
                approval_id,
                decided_by,
                comment,
            };
            self.event("denied", now, Kind::ApprovalDenied(denied))
        }
    }
}
