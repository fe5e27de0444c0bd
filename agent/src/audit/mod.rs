//! Audit delivery: the proxy records one event per session start, refusal, statement and end;
//! this module stamps them and streams them to the collector (`jitgate.audit.v1.AuditIngest`).
//!
//! - [`AuditSink`] is the process-wide handle. [`AuditSink::record`] fills in the event id
//!   (UUIDv7), time and agent host and puts the event on a bounded in-memory queue without
//!   waiting; a background task owns the gRPC stream.
//! - [`SessionAudit`] is the per-connection handle that numbers a session's events 0, 1, 2, …
//! - Delivery ([`delivery`]) is at-least-once: an event stays in flight until the collector
//!   acknowledges it (after committing it); after a lost connection the task reconnects with
//!   exponential backoff and resends everything unacknowledged, and the collector ignores
//!   duplicates by `event_id`.
//!
//! Limits: the queue holds [`QUEUE_CAPACITY`] events; when the collector is away long enough to
//! fill it, further events are dropped, counted ([`AuditStats::dropped`]) and logged at error
//! level. Events still queued when the process exits are lost. A durable on-disk spool is the
//! planned next step.

mod delivery;
mod session;
mod sink;
#[cfg(test)]
mod tests;
mod text;

pub use session::{SessionAudit, new_session_id};
pub use sink::{AuditSink, AuditStats};
pub use text::{STATEMENT_TEXT_BYTES, statement_text};

/// Events the in-memory queue holds before [`AuditSink::record`] starts dropping them.
pub const QUEUE_CAPACITY: usize = 100_000;

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
}
