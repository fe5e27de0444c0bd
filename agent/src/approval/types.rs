//! The values the approval API takes and returns: plain strings, vectors and times, so the
//! session code can build them from whatever its policy engine decided.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jitgate_proto::audit::v1 as pb;

/// A fresh approval id: a UUIDv7 (RFC 9562), hyphenated lowercase.
pub fn new_approval_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// How a statement that needs approval waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The client waits up to the hold timeout; approved in time, the statement runs.
    Hold,
    /// The statement is refused at once; once approved, a grant lets a rerun succeed.
    Request,
}

/// What the grant of an approved request-mode approval covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ScopeKind {
    /// Statements with the same fingerprint.
    #[default]
    Fingerprint,
    /// Any statement on a subset of the request's tables with a subset of its actions.
    Tables,
}

/// One approval request, as the session code knows it.
#[derive(Clone, Debug)]
pub struct ApprovalRequest {
    /// UUIDv7 ([`new_approval_id`]); keep it to retry [`super::ApprovalClient::open`].
    pub id: String,
    /// The audit session of the client connection.
    pub session_id: String,
    /// The `seq` the session's next audit event gets (`SessionAudit::next_seq`): the approval's
    /// events are shown next to the statement's.
    pub seq: u64,
    /// Runner host name.
    pub agent_host: String,
    /// The workload asking (`WorkloadIdentity::to_audit`); issuer and subject are required.
    pub identity: pb::Identity,
    /// The database target.
    pub target: String,
    /// The database name.
    pub database: String,
    /// The SQL text shown to approvers.
    pub statement: String,
    /// The statement's fingerprint (scope [`ScopeKind::Fingerprint`]).
    pub fingerprint: String,
    /// Relations the statement touches.
    pub tables: Vec<String>,
    /// Statement classes / policy actions, e.g. `update`.
    pub actions: Vec<String>,
    /// The policies that required approval.
    pub policy_ids: Vec<String>,
    /// Why approval is needed, shown to approvers.
    pub reason: String,
    /// Hold or request.
    pub mode: Mode,
    /// Request mode: what the grant covers.
    pub scope: ScopeKind,
    /// Request mode: how long the grant lasts once approved (whole seconds, at least 1).
    pub grant_ttl: Duration,
    /// How long the request stays open: in hold mode the client's wait. Zero: the collector's
    /// default (24 h).
    pub hold_timeout: Duration,
    /// `Some("policy:<id>")` when an approvals policy approved it already: stored as approved.
    pub auto_approved_by: Option<String>,
}

impl ApprovalRequest {
    /// The wire form.
    pub(crate) fn to_proto(&self) -> pb::OpenRequest {
        pb::OpenRequest {
            approval_id: self.id.clone(),
            session_id: self.session_id.clone(),
            seq: self.seq,
            agent_host: self.agent_host.clone(),
            identity: Some(self.identity.clone()),
            target: self.target.clone(),
            database: self.database.clone(),
            statement: self.statement.clone(),
            fingerprint: self.fingerprint.clone(),
            tables: self.tables.clone(),
            actions: self.actions.clone(),
            policy_ids: self.policy_ids.clone(),
            reason: self.reason.clone(),
            mode: match self.mode {
                Mode::Hold => pb::ApprovalMode::Hold,
                Mode::Request => pb::ApprovalMode::Request,
            }
            .into(),
            grant_scope: match self.scope {
                ScopeKind::Fingerprint => pb::GrantScope::Fingerprint,
                ScopeKind::Tables => pb::GrantScope::Tables,
            }
            .into(),
            grant_ttl_s: ceil_secs(self.grant_ttl),
            hold_timeout_s: ceil_secs(self.hold_timeout),
            auto_approved_by: self.auto_approved_by.clone().unwrap_or_default(),
        }
    }
}

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Nobody decided yet.
    Pending,
    /// Approved (by a person or a policy).
    Approved,
    /// Denied by a person.
    Denied,
    /// Nobody decided in time.
    Expired,
}

impl Status {
    pub(crate) fn of(status: pb::ApprovalStatus) -> Status {
        match status {
            pb::ApprovalStatus::Approved => Status::Approved,
            pb::ApprovalStatus::Denied => Status::Denied,
            pb::ApprovalStatus::Expired => Status::Expired,
            pb::ApprovalStatus::Pending | pb::ApprovalStatus::Unspecified => Status::Pending,
        }
    }
}

/// A request the collector has stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The approval id, to show the client (`jitgate approvals approve <id>`).
    pub id: String,
    /// False when the id was already known (a retried open).
    pub created: bool,
    /// Pending, or approved at once when auto-approved.
    pub status: Status,
}

/// How a wait ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Approved: the statement may run.
    Approved {
        /// The approver (`--as NAME`) or `policy:<id>`.
        by: String,
        /// When.
        at: SystemTime,
        /// The approver's comment.
        comment: String,
        /// Request mode: the end of the grant.
        grant_expires: Option<SystemTime>,
    },
    /// Denied by a person.
    Denied {
        /// Who denied it.
        by: String,
        /// Their comment (why), may be empty.
        comment: String,
    },
    /// The request expired undecided.
    Expired,
    /// The wait's own timeout passed while the request was still pending.
    TimedOut,
}

impl Outcome {
    /// True only for [`Outcome::Approved`].
    pub fn is_approved(&self) -> bool {
        matches!(self, Outcome::Approved { .. })
    }
}

/// Whose grant to look for: the OIDC issuer and subject of the workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityKey {
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
}

impl IdentityKey {
    /// The key of an audited identity (`WorkloadIdentity::to_audit`).
    pub fn of(identity: &pb::Identity) -> IdentityKey {
        IdentityKey {
            issuer: identity.issuer.clone(),
            subject: identity.subject.clone(),
        }
    }
}

/// The statement a grant must cover. A grant of scope fingerprint matches an equal non-empty
/// `fingerprint`; one of scope tables matches when `tables` and `actions` are non-empty and each
/// is listed in the grant. Non-empty `target` / `database` must equal the grant's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrantScope {
    /// The database target, or empty for any.
    pub target: String,
    /// The database name, or empty for any.
    pub database: String,
    /// The statement's fingerprint, or empty.
    pub fingerprint: String,
    /// Relations the statement touches.
    pub tables: Vec<String>,
    /// Its statement classes / policy actions.
    pub actions: Vec<String>,
}

impl GrantScope {
    /// The scope of `request`'s own statement: what a grant must cover for it to run.
    pub fn of(request: &ApprovalRequest) -> GrantScope {
        GrantScope {
            target: request.target.clone(),
            database: request.database.clone(),
            fingerprint: request.fingerprint.clone(),
            tables: request.tables.clone(),
            actions: request.actions.clone(),
        }
    }
}

/// A live grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The approval that opened it.
    pub approval_id: String,
    /// Who approved it.
    pub approved_by: String,
    /// When it ends.
    pub expires: SystemTime,
}

/// Whole seconds, rounded up (the wire carries seconds).
fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// Microseconds since the Unix epoch as a time (0 or negative → the epoch).
pub(crate) fn time_of(unix_us: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(unix_us).unwrap_or(0))
}
