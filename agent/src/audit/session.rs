//! Per-connection audit numbering: one [`SessionAudit`] per client connection gives its events a
//! shared session id and consecutive sequence numbers, so the collector can order a session's
//! events and notice gaps.
//!
//! A session's events are never dropped for lack of room: when the sink's queue is full they
//! wait in the session's backlog, in order, and the session stops reading its client until the
//! backlog has drained ([`SessionAudit::drain`]). A session producing events faster than the
//! collector stores them is slowed down; it cannot push out other sessions' events.

use std::collections::VecDeque;
use std::time::Duration;

use jitgate_proto::audit::v1::{Event, event::Kind};

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
    /// Events waiting for room on the sink's queue, oldest first.
    backlog: VecDeque<Event>,
}

impl SessionAudit {
    /// Starts numbering for the session `session_id` (normally [`new_session_id`]); the first
    /// recorded event gets `seq` 0.
    pub fn new(sink: AuditSink, session_id: impl Into<String>) -> SessionAudit {
        SessionAudit {
            sink,
            session_id: session_id.into(),
            next_seq: 0,
            backlog: VecDeque::new(),
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

    /// Records `kind` as the session's next event. Never waits: without room on the queue the
    /// event joins the backlog (see [`SessionAudit::drain`]).
    pub fn record(&mut self, kind: Kind) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let event = self.sink.event(&self.session_id, seq, kind);
        if !self.backlog.is_empty() {
            self.backlog.push_back(event);
        } else if let Some(event) = self.sink.try_enqueue(event) {
            self.backlog.push_back(event);
        }
    }

    /// Whether events are waiting for room on the queue.
    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Moves the backlog onto the queue as room appears. Cancel-safe: an event leaves the
    /// backlog only once it is on the queue.
    pub async fn drain(&mut self) {
        while let Some(event) = self.backlog.front() {
            let event = event.clone();
            self.sink.enqueue(event).await;
            self.backlog.pop_front();
        }
    }

    /// [`SessionAudit::drain`] for at most `timeout`, at the end of a session; what is still
    /// waiting then is dropped and counted (the collector is gone and the queue full).
    pub async fn finish(&mut self, timeout: Duration) {
        if tokio::time::timeout(timeout, self.drain()).await.is_err() {
            for event in std::mem::take(&mut self.backlog) {
                self.sink
                    .drop_event(&event, "audit queue full at session end");
            }
        }
    }
}
