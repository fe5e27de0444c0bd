//! [`AuditSink`]: the process-wide, cheaply cloned handle through which the proxy records
//! audit events into the durable spool ([`super::spool`]), and the counters that let callers
//! wait for delivery ([`AuditSink::flush`]).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jitgate_proto::audit::v1::{Event, event::Kind};
use tracing::warn;

use super::AuditError;
use super::delivery::{self, Target};
use super::spool::{Spool, SpoolState, SpoolSync};

/// Where and how the spool is kept (`[audit]` in the agent configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolSettings {
    /// `spool_dir`: the directory holding `spool.db`.
    pub dir: PathBuf,
    /// `spool_max_bytes`: encoded event bytes at which the spool counts as full.
    pub max_bytes: u64,
    /// `spool_sync`.
    pub sync: SpoolSync,
}

/// Handle for recording audit events; clones share one spool and one delivery task.
#[derive(Clone, Debug)]
pub struct AuditSink {
    spool: Spool,
    agent_host: String,
    /// The collector URL, for messages (`None`: events are only logged).
    collector: Option<String>,
    /// Events found in the spool when it was opened.
    found_at_start: u64,
}

/// Delivery counters of an [`AuditSink`], for metrics and shutdown reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Events recorded (appended to the spool) since start.
    pub recorded: u64,
    /// Events acknowledged by the collector (or logged, without a collector) and deleted from
    /// the spool since start.
    pub acked: u64,
    /// Events in the spool now (committed, not yet acknowledged).
    pub spooled: u64,
}

impl AuditStats {
    /// Events recorded but not yet acknowledged.
    pub fn pending(&self) -> u64 {
        self.spooled
    }
}

impl AuditSink {
    /// Opens the spool and starts the background delivery task. `collector` is the collector's
    /// URL, e.g. `http://127.0.0.1:50051`; `None` means events are only logged (tracing, target
    /// `jitgate::audit`) and then deleted; `tls` is the client TLS for an `https://` collector
    /// ([`crate::collector_tls::from_config`]). `agent_host` is stamped on every event. Must be
    /// called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`AuditError::InvalidCollectorUrl`] when `collector` does not parse as a URI or `tls`
    /// holds unusable PEM; [`AuditError::Spool`] when the spool cannot be opened.
    pub fn open(
        spool: &SpoolSettings,
        collector: Option<String>,
        tls: Option<&tonic::transport::ClientTlsConfig>,
        agent_host: String,
    ) -> Result<AuditSink, AuditError> {
        let target = match &collector {
            None => Target::Log,
            Some(url) => Target::Collector(Box::new(delivery::endpoint(url, tls).map_err(
                |source| AuditError::InvalidCollectorUrl {
                    url: url.clone(),
                    source,
                },
            )?)),
        };
        let spool = Spool::open(&spool.dir, spool.max_bytes, spool.sync)?;
        let found_at_start = spool.state().borrow().rows;
        tokio::spawn(delivery::run(target, spool.clone()));
        Ok(AuditSink {
            spool,
            agent_host,
            collector,
            found_at_start,
        })
    }

    /// A new event of `kind` for `session_id` with sequence number `seq`, stamped now: fills
    /// `event_id` (UUIDv7), `time_unix_us` and `agent_host`. Not sealed or recorded yet
    /// ([`super::SessionAudit::record`] does both).
    pub fn event(&self, session_id: &str, seq: u64, kind: Kind) -> Event {
        Event {
            event_id: uuid::Uuid::now_v7().to_string(),
            session_id: session_id.to_owned(),
            seq,
            time_unix_us: now_unix_us(),
            agent_host: self.agent_host.clone(),
            kind: Some(kind),
            ..Event::default()
        }
    }

    /// The spool events are recorded into.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// The collector URL (`None`: events are only logged).
    pub fn collector(&self) -> Option<&str> {
        self.collector.as_deref()
    }

    /// Events found undelivered in the spool when it was opened.
    pub fn found_at_start(&self) -> u64 {
        self.found_at_start
    }

    /// `Some(message)` while the spool is full: why new sessions are refused, for a person
    /// ("audit spool full (N of M bytes): the collector at URL has not acknowledged events
    /// since …").
    pub fn full_message(&self) -> Option<String> {
        let state = *self.spool.state().borrow();
        if !state.full() {
            return None;
        }
        let since = match state.last_delete_unix_us {
            Some(us) => format!("{} (UTC)", format_unix_us(us)),
            None => "this agent started".into(),
        };
        let who = match &self.collector {
            Some(url) => format!("the collector at {url}"),
            None => "the audit log".into(),
        };
        Some(format!(
            "audit spool full ({} of {} bytes): {who} has not acknowledged events since {since}",
            state.bytes, state.max_bytes
        ))
    }

    /// Waits until every event recorded so far is committed and then acknowledged by the
    /// collector (or logged, without a collector), or `timeout` passes; returns the number of
    /// events still in the spool then (0 = all delivered).
    pub async fn flush(&self, timeout: Duration) -> usize {
        let target = self.spool.submitted();
        let mut durable = self.spool.durable();
        let mut state = self.spool.state();
        let done = async {
            let _ = durable.wait_for(|t| *t >= target).await;
            let last = state.borrow().last_row;
            let _ = state
                .wait_for(|s| s.first_row.is_none_or(|first| first > last))
                .await;
        };
        if tokio::time::timeout(timeout, done).await.is_ok() {
            return 0;
        }
        let pending = self.spool.state().borrow().rows;
        warn!(pending, ?timeout, "audit flush timed out");
        usize::try_from(pending).unwrap_or(usize::MAX)
    }

    /// Current counters.
    pub fn stats(&self) -> AuditStats {
        let state: SpoolState = *self.spool.state().borrow();
        AuditStats {
            recorded: self.spool.appended(),
            acked: state.deleted,
            spooled: state.rows,
        }
    }
}

/// `us` (microseconds since the epoch) as RFC 3339, or the number when out of range.
fn format_unix_us(us: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(us / 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| us.to_string())
}

/// Microseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
