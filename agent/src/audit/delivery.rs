//! The background task that moves audit events from the sink's queue to the collector.
//!
//! One bidirectional `AuditIngest.Stream` call at a time. Events go out in `EventBatch`es: the
//! first event of a batch waits [`LINGER`] for others (or until [`BATCH`] are queued). Every
//! event sent is kept in an
//! in-flight window (at most [`WINDOW`] events, in send order) until its `Ack` arrives. When the
//! call or connection fails, the task waits (exponential backoff from [`BACKOFF_MIN`] to
//! [`BACKOFF_MAX`]), reconnects and first resends the whole window, so delivery is at-least-once;
//! the collector deduplicates by `event_id`. While disconnected, new events wait in the sink's
//! queue. The task ends once every sink is dropped and everything queued is acknowledged.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use jitgate_proto::audit::v1::{Event, EventBatch, audit_ingest_client::AuditIngestClient};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use tracing::{debug, info, warn};

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
    /// Log each event (tracing target `jitgate::audit`) and count it as delivered.
    Log,
    /// Stream to the collector at this endpoint.
    Collector(Box<Endpoint>),
}

/// Parses a collector URL into an endpoint with the agent's timeouts and keepalives.
pub fn endpoint(url: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true))
}

/// Runs delivery until the queue is closed and drained; `acked` counts delivered events.
pub async fn run(target: Target, queue: mpsc::Receiver<Event>, acked: Arc<watch::Sender<u64>>) {
    match target {
        Target::Log => log_only(queue, &acked).await,
        Target::Collector(endpoint) => {
            let endpoint = *endpoint;
            let url = endpoint.uri().to_string();
            let mut delivery = Delivery {
                endpoint,
                queue,
                queue_closed: false,
                inflight: VecDeque::new(),
                acked,
            };
            delivery.run(&url).await;
        }
    }
}

async fn log_only(mut queue: mpsc::Receiver<Event>, acked: &watch::Sender<u64>) {
    while let Some(event) = queue.recv().await {
        info!(
            target: "jitgate::audit",
            session_id = %event.session_id,
            seq = event.seq,
            event_id = %event.event_id,
            kind = ?event.kind,
            "audit event"
        );
        acked.send_modify(|n| *n += 1);
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

struct Delivery {
    endpoint: Endpoint,
    queue: mpsc::Receiver<Event>,
    queue_closed: bool,
    /// Sent, not yet acknowledged, in send order.
    inflight: VecDeque<Event>,
    acked: Arc<watch::Sender<u64>>,
}

impl Delivery {
    async fn run(&mut self, url: &str) {
        let mut backoff = BACKOFF_MIN;
        let mut failures: u64 = 0;
        loop {
            match self.stream(url, &mut backoff).await {
                Ok(()) => {
                    debug!(url, "audit delivery finished: every event acknowledged");
                    return;
                }
                Err(err) => {
                    failures += 1;
                    let cause = std::error::Error::source(&err)
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    // The first failure and then every 10th, so an absent collector is visible
                    // without flooding the log.
                    if failures == 1 || failures.is_multiple_of(10) {
                        warn!(url, error = %err, cause, failures, unacked = self.inflight.len(),
                            queued = self.queue.len(), retry_in = ?backoff, "audit collector unavailable");
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One call: connect, resend the window, then pump events out and acks in until the call
    /// ends. `Ok` once the queue is closed and everything is acknowledged.
    async fn stream(&mut self, url: &str, backoff: &mut Duration) -> Result<(), Disconnect> {
        let channel = self.endpoint.connect().await.map_err(Disconnect::Connect)?;
        let mut client = AuditIngestClient::new(channel);
        let (out, rx) = mpsc::channel::<EventBatch>(WINDOW);
        for batch in batches(&self.inflight) {
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
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            if self.queue_closed && self.inflight.is_empty() {
                return Ok(());
            }
            let room = WINDOW - self.inflight.len();
            tokio::select! {
                ack = acks.message() => match ack {
                    Ok(Some(ack)) => {
                        // Only a collector that stores events resets the backoff: one that
                        // accepts the call and then rejects every batch is retried slowly.
                        *backoff = BACKOFF_MIN;
                        for event_id in &ack.event_ids {
                            self.acknowledge(event_id);
                        }
                    }
                    Ok(None) => return Err(Disconnect::Closed),
                    Err(status) => return Err(Disconnect::Status(status)),
                },
                received = self.queue.recv_many(&mut batch, BATCH.min(room)), if room > 0 && !self.queue_closed => {
                    if received == 0 {
                        self.queue_closed = true;
                        continue;
                    }
                    if batch.len() < BATCH.min(room) {
                        tokio::time::sleep(LINGER).await;
                        while batch.len() < BATCH.min(room) {
                            match self.queue.try_recv() {
                                Ok(event) => batch.push(event),
                                Err(_) => break,
                            }
                        }
                    }
                    let messages = batches(&batch);
                    // Kept either way: if a send fails they are resent after reconnecting.
                    self.inflight.extend(batch.drain(..));
                    for message in messages {
                        out.try_send(message).map_err(|_| Disconnect::RequestClosed)?;
                    }
                }
            }
        }
    }

    /// Removes an acknowledged event from the window; acks normally arrive in send order.
    fn acknowledge(&mut self, event_id: &str) {
        let position = if self
            .inflight
            .front()
            .is_some_and(|e| e.event_id == event_id)
        {
            Some(0)
        } else {
            self.inflight.iter().position(|e| e.event_id == event_id)
        };
        match position.and_then(|i| self.inflight.remove(i)) {
            Some(_) => self.acked.send_modify(|n| *n += 1),
            // An ack for an event acknowledged before (resent after a reconnect).
            None => debug!(event_id, "ack for an event not in flight"),
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
