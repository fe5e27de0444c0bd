//! [`AuditSink`]: the process-wide, cheaply cloned handle through which the proxy records
//! audit events, and the counters that let callers wait for delivery ([`AuditSink::flush`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jitgate_proto::audit::v1::{Event, event::Kind};
use tokio::sync::{mpsc, watch};
use tracing::{error, warn};

use super::delivery::{self, Target};
use super::{AuditError, QUEUE_CAPACITY};

/// Handle for recording audit events; clones share one queue and one delivery task.
#[derive(Clone, Debug)]
pub struct AuditSink {
    shared: Arc<Shared>,
}

/// State shared by every clone of a sink and its delivery task.
#[derive(Debug)]
struct Shared {
    queue: mpsc::Sender<Event>,
    agent_host: String,
    /// Events accepted onto the queue.
    recorded: AtomicU64,
    /// Events refused because the queue was full or delivery had stopped.
    dropped: AtomicU64,
    /// Events acknowledged by the collector (or logged, without a collector); the delivery
    /// task holds the other reference, not the whole `Shared`, so that dropping every sink
    /// closes the queue and lets the task finish.
    acked: Arc<watch::Sender<u64>>,
}

/// Delivery counters of an [`AuditSink`], for metrics and shutdown reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Events accepted onto the queue since start.
    pub recorded: u64,
    /// Events acknowledged by the collector (or logged, without a collector).
    pub acked: u64,
    /// Events lost because the queue was full.
    pub dropped: u64,
}

impl AuditStats {
    /// Events recorded but not yet acknowledged (queued or in flight).
    pub fn pending(&self) -> u64 {
        self.recorded.saturating_sub(self.acked)
    }
}

impl AuditSink {
    /// Starts the background delivery task. `collector` is the collector's URL, e.g.
    /// `http://127.0.0.1:50051`; `None` means events are only logged (tracing, target
    /// `jitgate::audit`). `agent_host` is stamped on every event.
    ///
    /// An invalid URL is logged at error level and the sink falls back to logging events; use
    /// [`AuditSink::try_spawn`] to reject it instead. Must be called inside a Tokio runtime.
    pub fn spawn(collector: Option<String>, agent_host: String) -> AuditSink {
        match AuditSink::try_spawn(collector.clone(), agent_host.clone()) {
            Ok(sink) => sink,
            Err(err) => {
                error!(error = %err, ?collector, "audit events will only be logged");
                AuditSink::start(Target::Log, agent_host)
            }
        }
    }

    /// Like [`AuditSink::spawn`], but fails on an invalid collector URL.
    ///
    /// # Errors
    /// [`AuditError::InvalidCollectorUrl`] when `collector` does not parse as a URI.
    pub fn try_spawn(
        collector: Option<String>,
        agent_host: String,
    ) -> Result<AuditSink, AuditError> {
        let target = match collector {
            None => Target::Log,
            Some(url) => Target::Collector(Box::new(
                delivery::endpoint(&url)
                    .map_err(|source| AuditError::InvalidCollectorUrl { url, source })?,
            )),
        };
        Ok(AuditSink::start(target, agent_host))
    }

    fn start(target: Target, agent_host: String) -> AuditSink {
        AuditSink::start_with_capacity(target, agent_host, QUEUE_CAPACITY)
    }

    /// A sink delivering to the collector at `url` with a queue of `capacity` events (tests).
    #[cfg(test)]
    pub(crate) fn with_capacity(url: &str, agent_host: String, capacity: usize) -> AuditSink {
        let endpoint = delivery::endpoint(url).expect("valid collector url");
        AuditSink::start_with_capacity(Target::Collector(Box::new(endpoint)), agent_host, capacity)
    }

    fn start_with_capacity(target: Target, agent_host: String, capacity: usize) -> AuditSink {
        let (queue, rx) = mpsc::channel(capacity);
        let shared = Arc::new(Shared {
            queue,
            agent_host,
            recorded: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            acked: Arc::new(watch::Sender::new(0)),
        });
        tokio::spawn(delivery::run(target, rx, Arc::clone(&shared.acked)));
        AuditSink { shared }
    }

    /// Records an event for a session: fills `event_id` (UUIDv7), `time_unix_us` (now) and
    /// `agent_host`; `seq` comes from the caller's [`super::SessionAudit`].
    ///
    /// Never waits: the event goes onto the bounded queue, or, when the queue is full, is dropped
    /// and counted in [`AuditStats::dropped`] with an error log. Sessions use
    /// [`super::SessionAudit`], which waits for room instead of dropping.
    pub fn record(&self, session_id: &str, seq: u64, kind: Kind) {
        if let Some(event) = self.try_enqueue(self.event(session_id, seq, kind)) {
            self.drop_event(&event, "audit queue full");
        }
    }

    /// A new event of `kind` for `session_id` with sequence number `seq`, stamped now.
    pub fn event(&self, session_id: &str, seq: u64, kind: Kind) -> Event {
        Event {
            event_id: uuid::Uuid::now_v7().to_string(),
            session_id: session_id.to_owned(),
            seq,
            time_unix_us: now_unix_us(),
            agent_host: self.shared.agent_host.clone(),
            kind: Some(kind),
        }
    }

    /// Puts `event` on the queue if there is room, or gives it back (`Some`) when the queue is
    /// full. When delivery has stopped the event is dropped (and counted).
    pub fn try_enqueue(&self, event: Event) -> Option<Event> {
        match self.shared.queue.try_send(event) {
            Ok(()) => {
                self.shared.recorded.fetch_add(1, Ordering::SeqCst);
                None
            }
            Err(mpsc::error::TrySendError::Full(event)) => Some(event),
            Err(mpsc::error::TrySendError::Closed(event)) => {
                self.drop_event(&event, "audit delivery stopped");
                None
            }
        }
    }

    /// Waits for room on the queue, then puts `event` on it (dropped, and counted, only if
    /// delivery has stopped).
    pub async fn enqueue(&self, event: Event) {
        match self.shared.queue.reserve().await {
            Ok(permit) => {
                permit.send(event);
                self.shared.recorded.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => self.drop_event(&event, "audit delivery stopped"),
        }
    }

    /// Counts and (rate-limited) logs a lost event.
    pub fn drop_event(&self, event: &Event, reason: &str) {
        let dropped = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        // Logging every drop while the collector is away would flood the log.
        if dropped.is_power_of_two() || dropped.is_multiple_of(10_000) {
            error!(session_id = %event.session_id, seq = event.seq, dropped, reason,
                "audit event dropped");
        }
    }

    /// Waits until every event recorded so far is acknowledged by the collector (or logged,
    /// without a collector) or `timeout` passes; returns the number still unacknowledged
    /// (0 = all delivered). Dropped events are not waited for.
    pub async fn flush(&self, timeout: Duration) -> usize {
        let target = self.shared.recorded.load(Ordering::SeqCst);
        let mut acked = self.shared.acked.subscribe();
        let reached = tokio::time::timeout(timeout, acked.wait_for(|n| *n >= target))
            .await
            .is_ok();
        if reached {
            return 0;
        }
        let pending = target.saturating_sub(*acked.borrow());
        warn!(pending, ?timeout, "audit flush timed out");
        usize::try_from(pending).unwrap_or(usize::MAX)
    }

    /// Current delivery counters.
    pub fn stats(&self) -> AuditStats {
        AuditStats {
            recorded: self.shared.recorded.load(Ordering::SeqCst),
            acked: *self.shared.acked.borrow(),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
        }
    }
}

/// Microseconds since the Unix epoch (0 if the clock is before 1970).
fn now_unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
