//! The background task that moves audit events from the spool ([`super::spool`]) to the
//! collector.
//!
//! It reads committed events in spool order and streams them over one bidirectional
//! `AuditIngest.Stream` call at a time, in `EventBatch`es: when new events are committed it
//! waits [`LINGER`] for others (unless [`BATCH`] are already there). Every event sent is kept in
//! an in-flight window (at most [`WINDOW`] events, in send order) until its `Ack` arrives; then
//! it is deleted from the spool. When the call or connection fails, the task waits (exponential
//! backoff from [`BACKOFF_MIN`] to [`BACKOFF_MAX`]), reconnects and first resends the whole
//! window; after an agent restart everything still in the spool is sent again. Delivery is
//! at-least-once; the collector deduplicates by `event_id`. While disconnected, events wait in
//! the spool (its size bound, not delivery, governs what happens when it fills).

use std::collections::VecDeque;
use std::time::Duration;

use jitgate_proto::audit::v1::{Event, EventBatch, audit_ingest_client::AuditIngestClient};
use prost::Message as _;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use tracing::{debug, error, info, warn};

use super::spool::Spool;

/// Most events sent but not yet acknowledged.
pub const WINDOW: usize = 4096;
/// How long the first event of a batch waits for others before it is sent: events then cross to
/// the collector (and into its storage) in batches, so the per-event cost of a busy session is a
/// queue push rather than a wake-up, an HTTP/2 frame and a storage transaction each.
pub const LINGER: Duration = Duration::from_millis(5);
/// A batch this large is sent at once, without waiting for [`LINGER`] to pass.
pub const BATCH: usize = 256;
/// Most encoded bytes of events in one `EventBatch` message (a single larger event is sent
/// alone); statement texts in events are capped well below it.
pub const BATCH_BYTES: usize = 1024 * 1024;

/// `events` as `EventBatch` messages of at most [`BATCH`] events and [`BATCH_BYTES`] bytes.
fn batches<'a>(events: impl IntoIterator<Item = &'a Event>) -> Vec<EventBatch> {
    let mut out = Vec::new();
    let mut current = EventBatch::default();
    let mut bytes = 0;
    for event in events {
        let size = prost::Message::encoded_len(event);
        if !current.events.is_empty()
            && (current.events.len() >= BATCH || bytes + size > BATCH_BYTES)
        {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.events.push(event.clone());
    }
    if !current.events.is_empty() {
        out.push(current);
    }
    out
}
/// First wait before reconnecting.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between reconnection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Longest wait for a TCP connection to the collector.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 keepalive, so a collector that vanished without closing the connection is noticed.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where events go.
#[derive(Debug)]
pub enum Target {
    /// Log each event (tracing target `jitgate::audit`), then delete it from the spool.
    Log,
    /// Stream to the collector at this endpoint.
    Collector(Box<Endpoint>),
}

/// Parses a collector URL into an endpoint with the agent's timeouts and keepalives, and `tls`
/// for an `https://` collector ([`crate::collector_tls`]).
pub fn endpoint(
    url: &str,
    tls: Option<&tonic::transport::ClientTlsConfig>,
) -> Result<Endpoint, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(url.to_owned())?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    crate::collector_tls::apply(endpoint, tls)
}

/// Runs delivery from `spool` for as long as the process lives.
pub async fn run(target: Target, spool: Spool) {
    let mut delivery = Delivery {
        committed: spool.state(),
        spool,
        cursor: 0,
        inflight: VecDeque::new(),
    };
    match target {
        Target::Log => delivery.log_only().await,
        Target::Collector(endpoint) => {
            let endpoint = *endpoint;
            let url = endpoint.uri().to_string();
            delivery.run(&endpoint, &url).await;
        }
    }
}

/// Why a stream to the collector ended.
#[derive(Debug, thiserror::Error)]
enum Disconnect {
    /// No connection could be made.
    #[error("cannot connect")]
    Connect(#[source] tonic::transport::Error),
    /// The collector refused or ended the call with an error status.
    #[error("stream failed")]
    Status(#[source] tonic::Status),
    /// The collector ended the call without an error.
    #[error("collector closed the stream")]
    Closed,
    /// The transport dropped the outgoing half of the call.
    #[error("request stream closed by the transport")]
    RequestClosed,
}

/// An event read from the spool and sent, waiting for its ack.
struct Inflight {
    row: i64,
    size: u64,
    event: Event,
}

struct Delivery {
    spool: Spool,
    /// Spool counters: `last_row` says what is committed.
    committed: watch::Receiver<super::spool::SpoolState>,
    /// Highest spool row read so far.
    cursor: i64,
    /// Sent, not yet acknowledged, in send order.
    inflight: VecDeque<Inflight>,
}

impl Delivery {
    /// Waits until rows after the cursor are committed, lingers for more unless a batch is
    /// there, and reads up to `limit` of them (undecodable rows are logged and deleted).
    async fn next_events(&mut self, limit: usize) -> Vec<Inflight> {
        let cursor = self.cursor;
        let ready = self
            .committed
            .wait_for(|s| s.last_row > cursor)
            .await
            .map(|state| state.last_row - cursor);
        let Ok(ready) = ready else {
            return std::future::pending().await;
        };
        if ready < i64::try_from(BATCH).unwrap_or(i64::MAX) {
            tokio::time::sleep(LINGER).await;
        }
        let spool = self.spool.clone();
        let rows = tokio::task::spawn_blocking(move || spool.read_after(cursor, limit)).await;
        let rows = match rows {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                error!(error = %e, "reading the audit spool failed; retrying");
                tokio::time::sleep(BACKOFF_MAX).await;
                return Vec::new();
            }
            Err(e) => {
                error!(error = %e, "audit spool reader task failed; retrying");
                tokio::time::sleep(BACKOFF_MAX).await;
                return Vec::new();
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        let mut bad = Vec::new();
        for row in rows {
            self.cursor = row.id;
            let size = row.body.len() as u64;
            match Event::decode(row.body.as_slice()) {
                Ok(event) => out.push(Inflight {
                    row: row.id,
                    size,
                    event,
                }),
                Err(e) => {
                    error!(row = row.id, error = %e, "undecodable audit spool row deleted");
                    bad.push((row.id, size));
                }
            }
        }
        self.spool.delete(bad);
        out
    }

    async fn log_only(&mut self) {
        loop {
            let events = self.next_events(BATCH).await;
            let mut done = Vec::with_capacity(events.len());
            for e in events {
                let event = &e.event;
                info!(
                    target: "jitgate::audit",
                    session_id = %event.session_id,
                    seq = event.seq,
                    event_id = %event.event_id,
                    kind = ?event.kind,
                    "audit event"
                );
                done.push((e.row, e.size));
            }
            self.spool.delete(done);
        }
    }

    async fn run(&mut self, endpoint: &Endpoint, url: &str) {
        let mut backoff = BACKOFF_MIN;
        let mut failures: u64 = 0;
        loop {
            let Err(err) = self.stream(endpoint, url, &mut backoff).await;
            failures += 1;
            let cause = std::error::Error::source(&err)
                .map(ToString::to_string)
                .unwrap_or_default();
            // The first failure and then every 10th, so an absent collector is visible
            // without flooding the log.
            if failures == 1 || failures.is_multiple_of(10) {
                let spooled = self.committed.borrow().rows;
                warn!(url, error = %err, cause, failures, unacked = self.inflight.len(),
                    spooled, retry_in = ?backoff, "audit collector unavailable");
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One call: connect, resend the window, then pump events out and acks in until the call
    /// ends.
    async fn stream(
        &mut self,
        endpoint: &Endpoint,
        url: &str,
        backoff: &mut Duration,
    ) -> Result<std::convert::Infallible, Disconnect> {
        let channel = endpoint.connect().await.map_err(Disconnect::Connect)?;
        let mut client = AuditIngestClient::new(channel);
        let (out, rx) = mpsc::channel::<EventBatch>(WINDOW);
        for batch in batches(self.inflight.iter().map(|e| &e.event)) {
            out.try_send(batch).map_err(|_| Disconnect::RequestClosed)?;
        }
        let mut acks = client
            .stream(ReceiverStream::new(rx))
            .await
            .map_err(Disconnect::Status)?
            .into_inner();
        info!(
            url,
            resent = self.inflight.len(),
            "audit stream to collector open"
        );
        loop {
            let room = WINDOW - self.inflight.len();
            tokio::select! {
                ack = acks.message() => match ack {
                    Ok(Some(ack)) => {
                        // Only a collector that stores events resets the backoff: one that
                        // accepts the call and then rejects every batch is retried slowly.
                        *backoff = BACKOFF_MIN;
                        let mut done = Vec::with_capacity(ack.event_ids.len());
                        for event_id in &ack.event_ids {
                            if let Some(row) = self.acknowledge(event_id) {
                                done.push(row);
                            }
                        }
                        self.spool.delete(done);
                    }
                    Ok(None) => return Err(Disconnect::Closed),
                    Err(status) => return Err(Disconnect::Status(status)),
                },
                events = self.next_events(room), if room > 0 => {
                    let messages = batches(events.iter().map(|e| &e.event));
                    // Kept either way: if a send fails they are resent after reconnecting.
                    self.inflight.extend(events);
                    for message in messages {
                        out.try_send(message).map_err(|_| Disconnect::RequestClosed)?;
                    }
                }
            }
        }
    }

    /// Removes an acknowledged event from the window (acks normally arrive in send order);
    /// returns its spool row and size.
    fn acknowledge(&mut self, event_id: &str) -> Option<(i64, u64)> {
        let position = if self
            .inflight
            .front()
            .is_some_and(|e| e.event.event_id == event_id)
        {
            Some(0)
        } else {
            self.inflight
                .iter()
                .position(|e| e.event.event_id == event_id)
        };
        match position.and_then(|i| self.inflight.remove(i)) {
            Some(e) => Some((e.row, e.size)),
            // An ack for an event acknowledged before (resent after a reconnect).
            None => {
                debug!(event_id, "ack for an event not in flight");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: usize, text_bytes: usize) -> Event {
        Event {
            event_id: format!("e{id}"),
            session_id: "s".into(),
            kind: Some(jitgate_proto::audit::v1::event::Kind::Statement(
                jitgate_proto::audit::v1::Statement {
                    text: "x".repeat(text_bytes),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }
    }

    #[test]
    fn batches_respect_count_and_byte_limits_and_keep_order() {
        let small: Vec<Event> = (0..BATCH * 2 + 1).map(|i| event(i, 10)).collect();
        let split = batches(&small);
        assert_eq!(
            split.iter().map(|b| b.events.len()).collect::<Vec<_>>(),
            [BATCH, BATCH, 1]
        );
        let big: Vec<Event> = (0..5).map(|i| event(i, BATCH_BYTES / 2)).collect();
        let split = batches(&big);
        assert!(
            split.iter().all(|b| b.events.len() == 1),
            "half-MiB events go one by one"
        );
        let ids: Vec<String> = split
            .iter()
            .flat_map(|b| b.events.iter().map(|e| e.event_id.clone()))
            .collect();
        assert_eq!(ids, ["e0", "e1", "e2", "e3", "e4"]);
    }
}
