//! Approvals: statements that policy lets run only once a person (or an approvals policy)
//! approves them. The `jitgate.audit.v1.Approvals` gRPC service ([`service`]) is how agents open
//! requests, wait for them and look up grants, and how the `jitgate approvals` CLI lists and
//! decides them; requests, decisions and grants are stored in SQLite
//! ([`crate::storage::Store::open_approval`] and neighbours).
//!
//! - [`validate`] turns an `OpenRequest` into a storable request or `INVALID_ARGUMENT`.
//! - [`webhook`] posts a Slack-compatible `{"text": ...}` message when a request is opened.
//! - [`sweeper`] expires pending requests past their deadline.
//! - [`auth`] checks the decider token on `Decide` when the collector has one.
//!
//! See `docs/approvals.md` for the modes and the people's side.

pub mod auth;
pub mod service;
pub mod sweeper;
pub mod validate;
pub mod webhook;

use std::time::Duration;

pub use service::ApprovalsService;

/// How long a request stays pending when the agent gives no hold timeout.
pub const DEFAULT_PENDING: Duration = Duration::from_secs(24 * 3600);
/// Longest single `Wait` call; agents call again for longer waits.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// How often pending requests are checked for expiry.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Settings of the approvals service.
#[derive(Clone, Debug)]
pub struct ApprovalOptions {
    /// Where to POST a notification when a request is opened (Slack incoming-webhook format).
    pub webhook_url: Option<String>,
    /// The bearer token `Decide` callers must present; `None` = anyone who reaches the
    /// collector may decide (the caller's name is still required).
    pub decider_token: Option<String>,
    /// Pending lifetime of a request that names no hold timeout.
    pub default_pending: Duration,
    /// Longest single `Wait` call.
    pub max_wait: Duration,
    /// How often pending requests are checked for expiry.
    pub sweep_interval: Duration,
}

impl Default for ApprovalOptions {
    fn default() -> ApprovalOptions {
        ApprovalOptions {
            webhook_url: None,
            decider_token: None,
            default_pending: DEFAULT_PENDING,
            max_wait: MAX_WAIT,
            sweep_interval: SWEEP_INTERVAL,
        }
    }
}

/// Microseconds in `duration`, saturating.
pub fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}
