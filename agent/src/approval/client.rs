//! [`ApprovalClient`]: the agent's gRPC client of the collector's `Approvals` service.
//!
//! One lazily connected tonic channel (HTTP/2, multiplexed) shared by every session; cloning the
//! client is cheap. `open` and `find_grant` are single calls bounded by [`CALL_TIMEOUT`];
//! `wait` long-polls the collector until the request is decided or its own timeout passes,
//! calling again when the collector ends one poll early (its per-call cap) and retrying every
//! [`RETRY_INTERVAL`] while the collector is unreachable, but never past the caller's timeout.

use std::time::Duration;

use jitgate_proto::audit::v1 as pb;
use jitgate_proto::audit::v1::approvals_client::ApprovalsClient;
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use super::ApprovalError;
use super::types::{
    ApprovalRequest, Grant, GrantScope, IdentityKey, Opened, Outcome, Status, time_of,
};

/// Longest wait for a TCP connection to the collector.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest single `Open` or `FindGrant` call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between `Wait` attempts while the collector is unavailable.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(250);
/// Extra time the transport gives a `Wait` call beyond its long-poll timeout.
const WAIT_SLACK: Duration = Duration::from_secs(5);

/// Client of the collector's approvals API (the `[agent].collector` endpoint).
#[derive(Clone, Debug)]
pub struct ApprovalClient {
    client: ApprovalsClient<Channel>,
    url: String,
}

impl ApprovalClient {
    /// A client for the collector at `endpoint` (e.g. `http://127.0.0.1:50051`). Connects on
    /// first use, so a collector that is down now is not an error here. Must be called inside a
    /// Tokio runtime.
    ///
    /// # Errors
    /// [`ApprovalError::InvalidUrl`] when `endpoint` is not a valid URI.
    pub fn new(endpoint: &str) -> Result<ApprovalClient, ApprovalError> {
        ApprovalClient::with_tls(endpoint, None)
    }

    /// Like [`ApprovalClient::new`], with `tls` for an `https://` collector
    /// ([`crate::collector_tls::from_config`]).
    ///
    /// # Errors
    /// [`ApprovalError::InvalidUrl`] when `endpoint` is not a valid URI or `tls` holds unusable
    /// PEM.
    pub fn with_tls(
        endpoint: &str,
        tls: Option<&tonic::transport::ClientTlsConfig>,
    ) -> Result<ApprovalClient, ApprovalError> {
        let invalid = |source| ApprovalError::InvalidUrl {
            url: endpoint.to_owned(),
            source,
        };
        let plain = Endpoint::from_shared(endpoint.to_owned())
            .map_err(invalid)?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        let channel = crate::collector_tls::apply(plain, tls)
            .map_err(invalid)?
            .connect_lazy();
        Ok(ApprovalClient {
            client: ApprovalsClient::new(channel),
            url: endpoint.to_owned(),
        })
    }

    /// The collector URL this client talks to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Opens `request` at the collector (idempotent by its id: retrying returns the stored
    /// request with `created: false`). The collector notifies people (its webhook) for a pending
    /// request.
    ///
    /// # Errors
    /// [`ApprovalError::Unavailable`] when the collector cannot be reached in
    /// [`CALL_TIMEOUT`], [`ApprovalError::Refused`] when it rejects the request (e.g. no
    /// identity), [`ApprovalError::Malformed`] for an answer without the approval.
    pub async fn open(&self, request: ApprovalRequest) -> Result<Opened, ApprovalError> {
        let mut call = tonic::Request::new(request.to_proto());
        call.set_timeout(CALL_TIMEOUT);
        let response = self
            .client
            .clone()
            .open(call)
            .await
            .map_err(|status| self.error(status, &request.id))?
            .into_inner();
        let approval = response
            .approval
            .ok_or(ApprovalError::Malformed { field: "approval" })?;
        Ok(Opened {
            id: request.id,
            created: response.created,
            status: Status::of(approval.status()),
        })
    }

    /// Waits up to `timeout` for request `id` to be decided. Returns [`Outcome::TimedOut`] when
    /// `timeout` passes first (the request may still be approved later; in hold mode pass the
    /// hold timeout, after which the collector expires it).
    ///
    /// # Errors
    /// [`ApprovalError::Unavailable`] when the collector was unreachable until `timeout` passed,
    /// [`ApprovalError::NotFound`] for an unknown id, [`ApprovalError::Refused`] or
    /// [`ApprovalError::Malformed`] otherwise.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Outcome, ApprovalError> {
        let deadline = Instant::now() + timeout;
        let mut client = self.client.clone();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut call = tonic::Request::new(pb::WaitRequest {
                approval_id: id.to_owned(),
                timeout_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
            });
            call.set_timeout(left + WAIT_SLACK);
            match client.wait(call).await {
                Ok(response) => {
                    let approval = response
                        .into_inner()
                        .approval
                        .ok_or(ApprovalError::Malformed { field: "approval" })?;
                    if let Some(outcome) = outcome_of(&approval) {
                        return Ok(outcome);
                    }
                    if Instant::now() >= deadline {
                        return Ok(Outcome::TimedOut);
                    }
                }
                Err(status) => {
                    let err = self.error(status, id);
                    let retry = matches!(err, ApprovalError::Unavailable { .. })
                        && Instant::now() + RETRY_INTERVAL < deadline;
                    if !retry {
                        return Err(err);
                    }
                    tokio::time::sleep(RETRY_INTERVAL).await;
                }
            }
        }
    }

    /// The live grant of `identity` covering `scope`, if any (the one expiring last).
    ///
    /// # Errors
    /// [`ApprovalError::Unavailable`] when the collector cannot be reached in
    /// [`CALL_TIMEOUT`], [`ApprovalError::Refused`] when the scope is empty (neither a
    /// fingerprint nor tables and actions), [`ApprovalError::Malformed`] for a grant without
    /// its request.
    pub async fn find_grant(
        &self,
        identity: &IdentityKey,
        scope: &GrantScope,
    ) -> Result<Option<Grant>, ApprovalError> {
        let mut call = tonic::Request::new(pb::FindGrantRequest {
            issuer: identity.issuer.clone(),
            subject: identity.subject.clone(),
            target: scope.target.clone(),
            database: scope.database.clone(),
            fingerprint: scope.fingerprint.clone(),
            tables: scope.tables.clone(),
            actions: scope.actions.clone(),
        });
        call.set_timeout(CALL_TIMEOUT);
        let response = self
            .client
            .clone()
            .find_grant(call)
            .await
            .map_err(|status| self.error(status, ""))?
            .into_inner();
        let Some(grant) = response.grant else {
            return Ok(None);
        };
        let request = grant
            .request
            .ok_or(ApprovalError::Malformed { field: "request" })?;
        Ok(Some(Grant {
            approval_id: request.approval_id,
            approved_by: grant.decided_by,
            expires: time_of(grant.grant_expires_unix_us),
        }))
    }

    /// The typed error for a failed call about approval `id`.
    fn error(&self, status: tonic::Status, id: &str) -> ApprovalError {
        let url = self.url.clone();
        match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                ApprovalError::Unavailable {
                    url,
                    source: Box::new(status),
                }
            }
            Code::NotFound => ApprovalError::NotFound { id: id.to_owned() },
            _ => ApprovalError::Refused {
                url,
                source: Box::new(status),
            },
        }
    }
}

/// The outcome a decided (or expired) approval means; `None` while pending.
fn outcome_of(approval: &pb::Approval) -> Option<Outcome> {
    match Status::of(approval.status()) {
        Status::Pending => None,
        Status::Approved => Some(Outcome::Approved {
            by: approval.decided_by.clone(),
            at: time_of(approval.decided_unix_us),
            comment: approval.comment.clone(),
            grant_expires: (approval.grant_expires_unix_us != 0)
                .then(|| time_of(approval.grant_expires_unix_us)),
        }),
        Status::Denied => Some(Outcome::Denied {
            by: approval.decided_by.clone(),
            comment: approval.comment.clone(),
        }),
        Status::Expired => Some(Outcome::Expired),
    }
}
