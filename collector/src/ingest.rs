//! The `AuditIngest` gRPC service: agents stream events, the collector stores each one and only
//! then acknowledges it.
//!
//! Each call gets a task that reads the inbound stream of [`EventBatch`]es, taking whatever is
//! already buffered (up to [`MAX_BATCH`] messages), commits their events in one SQLite
//! transaction and then sends one [`Ack`] listing their ids, in arrival order. A duplicate (an event the agent resent after a reconnect)
//! is acknowledged again without being stored twice. On collector shutdown the batch in flight
//! is finished and acknowledged, then the call ends with `UNAVAILABLE` so the agent reconnects
//! to the next collector instance and resends whatever it has not seen acknowledged.

use futures::StreamExt;
use jitgate_proto::audit::v1::{Ack, Event, EventBatch, audit_ingest_server::AuditIngest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, error, info};

use crate::storage::{Store, StoreError};

/// Largest number of inbound messages whose events are committed in one transaction.
pub const MAX_BATCH: usize = 64;
/// Acks buffered towards one agent before the ingest task waits for the network.
const ACK_BUFFER: usize = 2 * MAX_BATCH;

/// Implementation of `jitgate.audit.v1.AuditIngest`.
#[derive(Clone, Debug)]
pub struct IngestService {
    store: Store,
    shutdown: CancellationToken,
}

impl IngestService {
    /// An ingest service writing to `store`; open calls end when `shutdown` is cancelled.
    pub fn new(store: Store, shutdown: CancellationToken) -> IngestService {
        IngestService { store, shutdown }
    }
}

#[tonic::async_trait]
impl AuditIngest for IngestService {
    type StreamStream = ReceiverStream<Result<Ack, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<EventBatch>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown".to_owned(), |addr| addr.to_string());
        info!(%peer, "agent stream opened");
        let (acks, rx) = mpsc::channel(ACK_BUFFER);
        let pump = Pump {
            store: self.store.clone(),
            acks,
            shutdown: self.shutdown.clone(),
            peer,
        };
        tokio::spawn(pump.run(request.into_inner()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// How one ingest call ended; logged when the call's task finishes.
#[derive(Debug)]
enum End {
    /// The agent closed its side of the stream.
    AgentClosed,
    /// The agent's stream failed (reset, malformed message, connection lost).
    AgentError(Status),
    /// The agent stopped reading acks (connection gone).
    AgentGone,
    /// Storing failed; the agent was told and will resend.
    Storage(StoreError),
    /// The collector is shutting down.
    Shutdown,
}

/// The per-call task: inbound events → storage → acks.
struct Pump {
    store: Store,
    acks: mpsc::Sender<Result<Ack, Status>>,
    shutdown: CancellationToken,
    peer: String,
}

impl Pump {
    async fn run(self, inbound: Streaming<EventBatch>) {
        let peer = self.peer.as_str();
        match self.pump(inbound).await {
            end @ (End::AgentClosed | End::AgentGone) => info!(peer, ?end, "agent stream ended"),
            End::AgentError(status) => {
                info!(peer, code = ?status.code(), message = status.message(), "agent stream failed");
            }
            End::Storage(err) => {
                error!(peer, error = %crate::report(&err), "storing events failed");
                // The agent may already be gone; nothing to do then.
                let _ = self.acks.send(Err(status_of(&err))).await;
            }
            End::Shutdown => {
                let _ = self
                    .acks
                    .send(Err(Status::unavailable("collector shutting down")))
                    .await;
                info!(peer, "agent stream closed for shutdown");
            }
        }
    }

    async fn pump(&self, inbound: Streaming<EventBatch>) -> End {
        let mut batches = inbound.ready_chunks(MAX_BATCH);
        loop {
            let batch = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return End::Shutdown,
                batch = batches.next() => batch,
            };
            let Some(batch) = batch else {
                return End::AgentClosed;
            };
            let mut events = Vec::new();
            let mut failure = None;
            for item in batch {
                match item {
                    Ok(received) => events.extend(received.events),
                    Err(status) => {
                        failure = Some(status);
                        break;
                    }
                }
            }
            // Events received before a stream error are still stored and acknowledged.
            if let Err(end) = self.store_and_ack(events).await {
                return end;
            }
            if let Some(status) = failure {
                return End::AgentError(status);
            }
        }
    }

    async fn store_and_ack(&self, events: Vec<Event>) -> Result<(), End> {
        if events.is_empty() {
            return Ok(());
        }
        if let Some(forged) = events.iter().find(|e| !agent_may_send(e)) {
            let status = Status::invalid_argument(format!(
                "event {} claims to be collector-written (origin or approval kind); agents may \
                 send only their own events",
                forged.event_id
            ));
            error!(peer = %self.peer, event_id = %forged.event_id, "refused a forged event");
            let _ = self.acks.send(Err(status.clone())).await;
            return Err(End::AgentError(status));
        }
        let event_ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
        let stored = self.store.insert(events).await.map_err(End::Storage)?;
        debug!(peer = %self.peer, received = event_ids.len(), stored, "batch committed");
        if self.acks.send(Ok(Ack { event_ids })).await.is_err() {
            return Err(End::AgentGone);
        }
        Ok(())
    }
}

/// Whether an agent may send `event`: not one the collector writes itself (origin collector, or
/// an approval lifecycle kind), which sits outside the session's hash chain.
fn agent_may_send(event: &Event) -> bool {
    use jitgate_proto::audit::v1::{Origin, event::Kind};
    event.origin() != Origin::Collector
        && !matches!(
            event.kind,
            Some(
                Kind::ApprovalRequested(_)
                    | Kind::ApprovalGranted(_)
                    | Kind::ApprovalDenied(_)
                    | Kind::ApprovalExpired(_)
            )
        )
}

/// The gRPC status an agent receives when its batch could not be stored.
fn status_of(err: &StoreError) -> Status {
    match err {
        StoreError::MissingField { .. } => Status::invalid_argument(err.to_string()),
        _ => Status::unavailable(format!("collector storage: {}", crate::report(err))),
    }
}
