//! The `AuditQuery` gRPC service: the read side used by the `jitgate` CLI (and later the web
//! page). Thin: each call is one [`Store`] query run off the async runtime, or a task feeding a
//! server stream ([`follow`] for live events, [`export`] for a time window in pages).
//! Every call is authenticated by [`auth::QueryAuth`] (installed as an interceptor in
//! [`crate::server`]).

pub mod auth;
pub mod export;
pub mod follow;

use jitgate_proto::audit::v1::{
    EventBatch, ExportRequest, FollowItem, FollowRequest, ListEventsRequest, ListEventsResponse,
    ListSessionsRequest, ListSessionsResponse, StoredEventsRequest, StoredEventsResponse,
    audit_query_server::AuditQuery,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::error;

use crate::storage::{Store, StoreError};

/// Implementation of `jitgate.audit.v1.AuditQuery`.
#[derive(Clone, Debug)]
pub struct QueryService {
    store: Store,
    shutdown: CancellationToken,
}

impl QueryService {
    /// A query service reading from `store`; open streams end when `shutdown` is cancelled.
    pub fn new(store: Store, shutdown: CancellationToken) -> QueryService {
        QueryService { store, shutdown }
    }
}

#[tonic::async_trait]
impl AuditQuery for QueryService {
    type FollowStream = ReceiverStream<Result<FollowItem, Status>>;
    type ExportStream = ReceiverStream<Result<EventBatch, Status>>;

    /// Sessions matching the filter, newest first; `limit` 0 means the storage default, large
    /// limits are capped (see [`crate::storage::MAX_SESSION_LIMIT`]).
    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        let ListSessionsRequest { limit, filter } = request.into_inner();
        let filter = filter.unwrap_or_default();
        if filter.until_unix_us != 0 && filter.until_unix_us <= filter.since_unix_us {
            return Err(Status::invalid_argument("until must be after since"));
        }
        let sessions = self
            .store
            .find_sessions(filter, limit)
            .await
            .map_err(internal)?;
        Ok(Response::new(ListSessionsResponse { sessions }))
    }

    /// Every event of one session ordered by `seq`; `INVALID_ARGUMENT` without a session id,
    /// an empty list for an unknown one.
    async fn list_events(
        &self,
        request: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        let ListEventsRequest { session_id } = request.into_inner();
        if session_id.is_empty() {
            return Err(Status::invalid_argument("session_id is required"));
        }
        let events = self.store.events(session_id).await.map_err(internal)?;
        Ok(Response::new(ListEventsResponse { events }))
    }

    /// Live events matching the filter, from the moment of the call.
    async fn follow(
        &self,
        request: Request<FollowRequest>,
    ) -> Result<Response<Self::FollowStream>, Status> {
        let filter = request.into_inner().filter.unwrap_or_default();
        if !filter.kind.is_empty() && !crate::storage::KIND_NAMES.contains(&filter.kind.as_str()) {
            return Err(Status::invalid_argument(format!(
                "unknown event kind {:?}; one of {}",
                filter.kind,
                crate::storage::KIND_NAMES.join(", ")
            )));
        }
        let feed = self.store.subscribe();
        let (tx, rx) = mpsc::channel(follow::FOLLOW_BUFFER);
        tokio::spawn(follow::run(
            self.store.clone(),
            filter,
            feed,
            tx,
            self.shutdown.clone(),
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    /// A session's stored rows, undecoded, in storage order; `INVALID_ARGUMENT` without a
    /// session id.
    async fn stored_events(
        &self,
        request: Request<StoredEventsRequest>,
    ) -> Result<Response<StoredEventsResponse>, Status> {
        let StoredEventsRequest { session_id } = request.into_inner();
        if session_id.is_empty() {
            return Err(Status::invalid_argument("session_id is required"));
        }
        let stored = self
            .store
            .stored_events(session_id)
            .await
            .map_err(internal)?;
        Ok(Response::new(stored))
    }

    /// Every event of the window in pages of [`export::PAGE`].
    async fn export(
        &self,
        request: Request<ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let ExportRequest {
            since_unix_us,
            until_unix_us,
        } = request.into_inner();
        if until_unix_us != 0 && until_unix_us <= since_unix_us {
            return Err(Status::invalid_argument("until must be after since"));
        }
        let (tx, rx) = mpsc::channel(export::BUFFERED_PAGES);
        tokio::spawn(export::run(
            self.store.clone(),
            since_unix_us,
            until_unix_us,
            tx,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The `INTERNAL` status for a storage failure, logged.
fn internal(err: StoreError) -> Status {
    let message = crate::report(&err);
    error!(error = %message, "query failed");
    Status::internal(message)
}
