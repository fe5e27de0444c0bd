//! Audit recording and delivery: the proxy records one event per session start, refusal,
//! statement and end, and the agent one per lifecycle step (start, stop, policy reload, spool
//! overflow); this module stamps, chains, stores and streams them to the collector
//! (`jitgate.audit.v1.AuditIngest`).
//!
//! - [`AuditSink`] is the process-wide handle: it owns the durable [`spool`] (SQLite, WAL) and
//!   the delivery task.
//! - [`SessionAudit`] is the per-session handle that numbers a session's events 0, 1, 2, …,
//!   seals each onto the session's hash chain (`jitgate_proto::chain`) and appends it to the
//!   spool. An event counts as recorded once the spool has committed it; the relay holds back
//!   what completes a statement for the client until then ([`SessionAudit::durable`]).
//! - Delivery ([`delivery`]) reads the spool in order and is at-least-once: an event stays in
//!   the spool until the collector acknowledges it (after committing it); after a lost
//!   connection or an agent restart everything still spooled is sent again, and the collector
//!   ignores duplicates by `event_id`.
//!
//! Limits: the spool holds `[audit] spool_max_bytes` of encoded events; when it is full the
//! agent refuses new sessions (SQLSTATE 53400) while open sessions go on recording. Nothing is
//! dropped.

mod delivery;
mod session;
mod sink;
pub mod spool;
#[cfg(test)]
mod tests;
mod text;

pub use session::{SessionAudit, new_session_id};
pub use sink::{AuditSink, AuditStats, SpoolSettings};
pub use text::{STATEMENT_TEXT_BYTES, statement_text};

/// Errors of audit delivery setup.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The collector URL is not a valid URI (expected e.g. `http://127.0.0.1:50051`).
    #[error("invalid collector URL {url:?}")]
    InvalidCollectorUrl {
        /// The URL as configured.
        url: String,
        /// The parser's complaint.
        #[source]
        source: tonic::transport::Error,
    },
    /// The spool could not be opened.
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
}
