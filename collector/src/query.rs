//! The `AuditQuery` gRPC service: the read side used by the `jitgate` CLI (and later the web
//! page). Thin: each call is one [`Store`] query run off the async runtime.

use jitgate_proto::audit::v1::{
    ListEventsRequest, ListEventsResponse, ListSessionsRequest, ListSessionsResponse,
    audit_query_server::AuditQuery,
};
use tonic::{Request, Response, Status};
use tracing::error;

use crate::storage::{Store, StoreError};

/// Implementation of `jitgate.audit.v1.AuditQuery`.
#[derive(Clone, Debug)]
pub struct QueryService {
    store: Store,
}

impl QueryService {
    /// A query service reading from `store`.
    pub fn new(store: Store) -> QueryService {
        QueryService { store }
    }
}

#[tonic::async_trait]
impl AuditQuery for QueryService {
    /// Sessions newest first; `limit` 0 means the storage default, large limits are capped
    /// (see [`crate::storage::MAX_SESSION_LIMIT`]).
    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        let ListSessionsRequest { limit } = request.into_inner();
        let sessions = self.store.sessions(limit).await.map_err(internal)?;
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
}

fn internal(err: StoreError) -> Status {
    let message = crate::report(&err);
    error!(error = %message, "query failed");
    Status::internal(message)
}
