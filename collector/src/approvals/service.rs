//! The `jitgate.audit.v1.Approvals` gRPC service.
//!
//! Every state change (a decision, an expiry) bumps a [`watch`] counter; `Wait` calls re-read
//! their request when it moves, and otherwise sleep until the request's own deadline (then
//! expire it themselves, not waiting for the sweeper) or the end of the wait. On PostgreSQL,
//! where several collectors may share the database and a decision may arrive through another
//! one, they also re-read every [`SHARED_DB_POLL`].

use std::sync::Arc;
use std::time::Duration;

use jitgate_proto::audit::v1::{
    Approval, ApprovalStatus, DecideRequest, DecideResponse, FindGrantRequest, FindGrantResponse,
    ListApprovalsRequest, ListApprovalsResponse, OpenRequest, OpenResponse, Verdict, WaitRequest,
    WaitResponse, approvals_server::Approvals,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{error, info};

use super::webhook::{Webhook, WebhookError};
use super::{ApprovalOptions, auth, sweeper, validate};
use crate::cli::format_time;
use crate::storage::{
    ApprovalFilter, DecideOutcome, GrantQuery, Store, StoreError, now_unix_us, status_name,
};

/// How often a `Wait` re-reads its request from a shared PostgreSQL database, where a decision
/// may arrive through another collector.
pub const SHARED_DB_POLL: Duration = Duration::from_secs(1);

/// Implementation of `jitgate.audit.v1.Approvals`.
#[derive(Clone, Debug)]
pub struct ApprovalsService {
    store: Store,
    changes: Arc<watch::Sender<u64>>,
    webhook: Option<Webhook>,
    options: Arc<ApprovalOptions>,
    shutdown: CancellationToken,
}

impl ApprovalsService {
    /// The service over `store`; starts the expiry sweeper, which stops with `shutdown` (as do
    /// open `Wait` calls).
    ///
    /// # Errors
    /// [`WebhookError`] when a webhook URL is configured and its HTTP client cannot be built.
    pub fn start(
        store: Store,
        options: ApprovalOptions,
        shutdown: CancellationToken,
    ) -> Result<ApprovalsService, WebhookError> {
        let webhook = options.webhook_url.clone().map(Webhook::new).transpose()?;
        let (changes, _) = watch::channel(0);
        let changes = Arc::new(changes);
        tokio::spawn(sweeper::run(
            store.clone(),
            changes.clone(),
            options.sweep_interval,
            shutdown.clone(),
        ));
        Ok(ApprovalsService {
            store,
            changes,
            webhook,
            options: Arc::new(options),
            shutdown,
        })
    }

    /// When a `Wait` re-reads its request even without a local change: on PostgreSQL another
    /// collector sharing the database may have decided it ([`SHARED_DB_POLL`] from now); never
    /// on SQLite, where this process is the only writer.
    fn recheck(&self) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        match self.store {
            Store::Postgres(_) => now + SHARED_DB_POLL,
            Store::Sqlite(_) => now + Duration::from_secs(3600),
        }
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    async fn expire_due(&self) -> Result<(), Status> {
        let expired = self
            .store
            .expire_due(now_unix_us())
            .await
            .map_err(internal)?;
        if expired > 0 {
            self.changed();
        }
        Ok(())
    }

    async fn get(&self, id: String) -> Result<Approval, Status> {
        let found = self.store.approval(id).await.map_err(internal)?;
        found.ok_or_else(|| Status::not_found("no approval request with this id"))
    }
}

#[tonic::async_trait]
impl Approvals for ApprovalsService {
    async fn open(&self, request: Request<OpenRequest>) -> Result<Response<OpenResponse>, Status> {
        let now = now_unix_us();
        let new = validate::new_approval(request.into_inner(), now, self.options.default_pending)?;
        let (approval, created) = self.store.open_approval(new).await.map_err(internal)?;
        if created {
            let id = approval.request.as_ref().map(|r| r.approval_id.as_str());
            info!(
                approval = id,
                status = status_name(approval.status()),
                "approval requested"
            );
            if approval.status() == ApprovalStatus::Pending {
                if let Some(webhook) = &self.webhook {
                    webhook.notify(&approval);
                }
            } else {
                self.changed();
            }
        }
        Ok(Response::new(OpenResponse {
            approval: Some(approval),
            created,
        }))
    }

    async fn wait(&self, request: Request<WaitRequest>) -> Result<Response<WaitResponse>, Status> {
        let WaitRequest {
            approval_id,
            timeout_ms,
        } = request.into_inner();
        let wait = Duration::from_millis(timeout_ms).min(self.options.max_wait);
        let end = tokio::time::Instant::now() + wait;
        let mut changes = self.changes.subscribe();
        loop {
            changes.borrow_and_update();
            let approval = self.get(approval_id.clone()).await?;
            if approval.status() != ApprovalStatus::Pending {
                return Ok(Response::new(WaitResponse {
                    approval: Some(approval),
                }));
            }
            let deadline = approval.request.as_ref().map_or(0, |r| r.expires_unix_us);
            let left_us = u64::try_from(deadline.saturating_sub(now_unix_us())).unwrap_or(0);
            if left_us == 0 {
                self.expire_due().await?;
                continue;
            }
            let expiry = tokio::time::Instant::now() + Duration::from_micros(left_us);
            if end <= tokio::time::Instant::now() {
                return Ok(Response::new(WaitResponse {
                    approval: Some(approval),
                }));
            }
            tokio::select! {
                () = self.shutdown.cancelled() => {
                    return Err(Status::unavailable("collector shutting down"));
                }
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Err(Status::unavailable("collector shutting down"));
                    }
                }
                () = tokio::time::sleep_until(expiry.min(end).min(self.recheck())) => {}
            }
        }
    }

    async fn find_grant(
        &self,
        request: Request<FindGrantRequest>,
    ) -> Result<Response<FindGrantResponse>, Status> {
        let r = request.into_inner();
        if r.issuer.is_empty() || r.subject.is_empty() {
            return Err(Status::invalid_argument("issuer and subject are required"));
        }
        if r.fingerprint.is_empty() && (r.tables.is_empty() || r.actions.is_empty()) {
            return Err(Status::invalid_argument(
                "a fingerprint, or tables and actions, are required",
            ));
        }
        let query = GrantQuery {
            issuer: r.issuer,
            subject: r.subject,
            target: r.target,
            database: r.database,
            fingerprint: r.fingerprint,
            tables: r.tables,
            actions: r.actions,
        };
        let grant = self
            .store
            .find_grant(query, now_unix_us())
            .await
            .map_err(internal)?;
        Ok(Response::new(FindGrantResponse { grant }))
    }

    async fn list(
        &self,
        request: Request<ListApprovalsRequest>,
    ) -> Result<Response<ListApprovalsResponse>, Status> {
        let r = request.into_inner();
        self.expire_due().await?;
        let filter = ApprovalFilter {
            all: r.all,
            limit: r.limit,
            session_id: r.session_id,
            subject: r.subject,
        };
        let approvals = self.store.list_approvals(filter).await.map_err(internal)?;
        Ok(Response::new(ListApprovalsResponse { approvals }))
    }

    async fn decide(
        &self,
        request: Request<DecideRequest>,
    ) -> Result<Response<DecideResponse>, Status> {
        auth::check(self.options.decider_token.as_deref(), request.metadata())?;
        let r = request.into_inner();
        let approve = match r.verdict() {
            Verdict::Approve => true,
            Verdict::Deny => false,
            Verdict::Unspecified => {
                return Err(Status::invalid_argument("verdict must be approve or deny"));
            }
        };
        let decided_by = r.decided_by.trim().to_owned();
        if decided_by.is_empty() {
            return Err(Status::invalid_argument(
                "decided_by is required (jitgate approvals ... --as NAME)",
            ));
        }
        let id = r.approval_id.clone();
        let comment = r.comment;
        let by = decided_by.clone();
        let outcome = self
            .store
            .decide(id, approve, by, comment, now_unix_us())
            .await
            .map_err(internal)?;
        self.changed();
        match outcome {
            DecideOutcome::Decided(approval) => {
                info!(approval = %r.approval_id, by = %decided_by,
                    status = status_name(approval.status()), "approval decided");
                Ok(Response::new(DecideResponse {
                    approval: Some(approval),
                }))
            }
            DecideOutcome::NotPending(approval) => Err(Status::failed_precondition(format!(
                "approval {} is already {}{}",
                r.approval_id,
                status_name(approval.status()),
                decided(&approval)
            ))),
            DecideOutcome::NotFound => Err(Status::not_found(format!(
                "no approval request {}",
                r.approval_id
            ))),
        }
    }
}

/// ` by NAME at TIME` for a decided request, ` at TIME` for an expired one.
fn decided(approval: &Approval) -> String {
    let at = format_time(approval.decided_unix_us);
    if approval.decided_by.is_empty() {
        format!(" at {at}")
    } else {
        format!(" by {} at {at}", approval.decided_by)
    }
}

fn internal(err: StoreError) -> Status {
    let message = crate::report(&err);
    error!(error = %message, "approvals storage failed");
    Status::internal(message)
}
