//! Approvals, the agent's side: a statement that policy lets run only with a person's approval
//! becomes an approval request at the collector (`jitgate.audit.v1.Approvals`), where people
//! decide it with `jitgate approvals approve|deny`.
//!
//! [`ApprovalClient`] is the small async API the session code calls:
//!
//! - **hold** mode: [`ApprovalClient::open`] a request with [`Mode::Hold`], tell the client the
//!   id (a NoticeResponse), then [`ApprovalClient::wait`] up to the hold timeout; only
//!   [`Outcome::Approved`] lets the statement run, anything else is refused with 42501.
//! - **request** mode: first [`ApprovalClient::find_grant`] for the identity and the
//!   statement's [`GrantScope`]; a live [`Grant`] lets it run. Otherwise
//!   [`ApprovalClient::open`] a request with [`Mode::Request`] and refuse the statement at once
//!   naming the id; once someone approves, the rerun finds the grant until its TTL passes.
//!
//! Every call fails with a typed [`ApprovalError`] when the collector cannot be reached or
//! refuses; callers fail closed (the statement is refused). The types here are plain strings and
//! vectors, independent of the policy engine. The request ids are UUIDv7 chosen here
//! ([`new_approval_id`]); opening the same id again is harmless, so a caller may retry `open`.

mod client;
#[cfg(test)]
mod tests;
mod types;

pub use client::{ApprovalClient, CALL_TIMEOUT, CONNECT_TIMEOUT, RETRY_INTERVAL};
pub use types::{
    ApprovalRequest, Grant, GrantScope, IdentityKey, Mode, Opened, Outcome, ScopeKind, Status,
    new_approval_id,
};

/// Errors of approval calls. Every one means "not approved" to the caller.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// The collector URL is not a valid URI (expected e.g. `http://127.0.0.1:50051`).
    #[error("invalid collector URL {url:?}")]
    InvalidUrl {
        /// The URL as configured.
        url: String,
        /// The parser's complaint.
        #[source]
        source: tonic::transport::Error,
    },
    /// The collector could not be reached, timed out or is shutting down.
    #[error("the approvals collector at {url} is unavailable")]
    Unavailable {
        /// The collector URL.
        url: String,
        /// The gRPC status (transport errors arrive as `UNAVAILABLE`).
        #[source]
        source: Box<tonic::Status>,
    },
    /// The collector refused the call (invalid request, wrong state, internal error).
    #[error("the approvals collector at {url} refused the call")]
    Refused {
        /// The collector URL.
        url: String,
        /// The gRPC status.
        #[source]
        source: Box<tonic::Status>,
    },
    /// The collector knows no approval request with this id.
    #[error("no approval request {id} at the collector")]
    NotFound {
        /// The approval id asked about.
        id: String,
    },
    /// The collector's answer lacks a field this agent needs.
    #[error("malformed answer from the approvals collector: no {field}")]
    Malformed {
        /// The missing protobuf field.
        field: &'static str,
    },
}
