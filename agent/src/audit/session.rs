//! Per-connection audit trail: one [`SessionAudit`] per client connection (or per agent run,
//! for lifecycle events) gives its events a shared session id, consecutive sequence numbers and
//! the hash chain (`jitgate_proto::chain::seal`), and appends them to the spool.
//!
//! Recording never waits and never drops: [`SessionAudit::record`] returns the event's spool
//! ticket, and whoever must not go on before the event is on disk (the relay, before it tells
//! the client a statement completed) waits for it with [`SessionAudit::durable`].

use jitgate_proto::audit::v1::event::Kind;
use jitgate_proto::chain;
use prost::Message as _;
use tokio::sync::watch;

use super::AuditSink;

/// A fresh session id: a UUIDv7 (RFC 9562) in hyphenated lowercase, time-ordered so ids sort by
/// start time.
pub fn new_session_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The audit trail of one client connection: records events through an [`AuditSink`] with
/// `seq` 0, 1, 2, … in call order, each sealed after the previous one.
///
/// Not `Clone`: exactly one owner numbers and chains the events.
#[derive(Debug)]
pub struct SessionAudit {
    sink: AuditSink,
    session_id: String,
    next_seq: u64,
    /// `hash` of the last sealed event (empty before the first).
    prev_hash: Vec<u8>,
    /// Ticket of the last recorded event (0: none).
    last_ticket: u64,
}

impl SessionAudit {
    /// Starts numbering for the session `session_id` (normally [`new_session_id`]); the first
    /// recorded event gets `seq` 0.
    pub fn new(sink: AuditSink, session_id: impl Into<String>) -> SessionAudit {
        SessionAudit {
            sink,
            session_id: session_id.into(),
            next_seq: 0,
            prev_hash: Vec::new(),
            last_ticket: 0,
        }
    }

    /// Starts numbering for a new session with a fresh UUIDv7 id.
    pub fn start(sink: AuditSink) -> SessionAudit {
        SessionAudit::new(sink, new_session_id())
    }

    /// The session id shared by all events of this connection.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The `seq` the next recorded event will get (= events recorded so far).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The sink events are recorded through.
    pub fn sink(&self) -> &AuditSink {
        &self.sink
    }

    /// Records `kind` as the session's next event: stamps it, seals it onto the session's
    /// chain and appends it to the spool. Never waits; returns the spool ticket (see
    /// [`SessionAudit::durable`]).
    pub fn record(&mut self, kind: Kind) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut event = self.sink.event(&self.session_id, seq, kind);
        self.prev_hash = chain::seal(&mut event, &self.prev_hash).to_vec();
        self.last_ticket = self.sink.spool().append(event.encode_to_vec());
        self.last_ticket
    }

    /// "Committed up to ticket N", for waiting on tickets [`SessionAudit::record`] returned.
    pub fn durable(&self) -> watch::Receiver<u64> {
        self.sink.spool().durable()
    }

    /// Waits until the event with `ticket` is committed to the spool.
    pub async fn committed(&self, ticket: u64) {
        let _ = self.durable().wait_for(|n| *n >= ticket).await;
    }

    /// Waits until every event recorded so far is committed to the spool.
    pub async fn flush(&self) {
        self.committed(self.last_ticket).await;
    }
}
