//! Per-connection audit numbering: one [`SessionAudit`] per client connection gives its events a
//! shared session id and consecutive sequence numbers, so the collector can order a session's
//! events and notice gaps.

use jitgate_proto::audit::v1::event::Kind;

use super::AuditSink;

/// A fresh session id: a UUIDv7 (RFC 9562) in hyphenated lowercase, time-ordered so ids sort by
/// start time.
pub fn new_session_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The audit trail of one client connection: records events through an [`AuditSink`] with
/// `seq` 0, 1, 2, … in call order.
///
/// Not `Clone`: exactly one owner (the connection's task) numbers the events.
#[derive(Debug)]
pub struct SessionAudit {
    sink: AuditSink,
    session_id: String,
    next_seq: u64,
}

impl SessionAudit {
    /// Starts numbering for the session `session_id` (normally [`new_session_id`]); the first
    /// recorded event gets `seq` 0.
    pub fn new(sink: AuditSink, session_id: impl Into<String>) -> SessionAudit {
        SessionAudit {
            sink,
            session_id: session_id.into(),
            next_seq: 0,
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

    /// Records `kind` as the session's next event. Never waits (see [`AuditSink::record`]).
    pub fn record(&mut self, kind: Kind) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.sink.record(&self.session_id, seq, kind);
    }
}
