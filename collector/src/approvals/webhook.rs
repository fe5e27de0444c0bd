//! Notification of people when an approval request is opened: a Slack-compatible incoming
//! webhook message, `{"text": "..."}`, POSTed to the configured URL.
//!
//! Sending never delays or fails the agent's `Open` call: each message goes out on its own task
//! with a bounded timeout ([`TIMEOUT`]); failures are logged at warn level and dropped.

use std::time::Duration;

use jitgate_proto::audit::v1::Approval;
use tracing::{debug, warn};

use crate::cli::format_time;
use crate::storage::mode_name;

/// Longest wait for the webhook receiver, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Longest statement text quoted in a message; longer text is cut with `…`.
pub const STATEMENT_CHARS: usize = 500;

/// Errors of webhook setup.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The HTTP client could not be built (TLS backend initialisation).
    #[error("cannot build the webhook HTTP client")]
    Client(#[source] reqwest::Error),
    /// The webhook URL is not an absolute http(s) URL.
    #[error("the webhook URL is not an absolute http(s) URL")]
    Url,
}

/// Posts approval notifications to one URL.
#[derive(Clone, Debug)]
pub struct Webhook {
    client: reqwest::Client,
    url: String,
}

impl Webhook {
    /// A webhook posting to `url`.
    ///
    /// # Errors
    /// [`WebhookError::Url`] for a URL that is not absolute http(s) (the URL itself is not
    /// repeated: incoming-webhook URLs are secrets), [`WebhookError::Client`] when the HTTP
    /// client cannot be built.
    pub fn new(url: String) -> Result<Webhook, WebhookError> {
        check_url(&url)?;
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .build()
            .map_err(WebhookError::Client)?;
        Ok(Webhook { client, url })
    }

    /// Sends the notification for `approval` on a background task.
    pub fn notify(&self, approval: &Approval) {
        let body = serde_json::json!({ "text": message(approval) });
        let (client, url) = (self.client.clone(), self.url.clone());
        let id = approval
            .request
            .as_ref()
            .map(|r| r.approval_id.clone())
            .unwrap_or_default();
        tokio::spawn(async move {
            match client.post(&url).json(&body).send().await {
                Ok(response) if response.status().is_success() => {
                    debug!(approval = %id, "webhook notified");
                }
                Ok(response) => {
                    warn!(approval = %id, status = %response.status(), "webhook refused the notification");
                }
                Err(err) => {
                    warn!(approval = %id, error = %crate::report(&err), "webhook notification failed");
                }
            }
        });
    }
}

/// Checks that `url` is an absolute http(s) URL with a host.
///
/// # Errors
/// [`WebhookError::Url`] otherwise.
pub fn check_url(url: &str) -> Result<(), WebhookError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| WebhookError::Url)?;
    if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() {
        Ok(())
    } else {
        Err(WebhookError::Url)
    }
}

/// The message text: who asks for what on which database, why, and the commands that decide.
pub fn message(approval: &Approval) -> String {
    let request = approval.request.clone().unwrap_or_default();
    let identity = request.identity.clone().unwrap_or_default();
    let mut who = identity.subject.clone();
    for extra in [&identity.repository, &identity.app_id, &identity.workflow] {
        if !extra.is_empty() {
            who = format!("{who} ({extra})");
            break;
        }
    }
    let mut statement: String = request.statement.chars().take(STATEMENT_CHARS).collect();
    if request.statement.chars().count() > STATEMENT_CHARS {
        statement.push('…');
    }
    let policies = if request.policy_ids.is_empty() {
        String::new()
    } else {
        format!(" (policy {})", request.policy_ids.join(", "))
    };
    let id = &request.approval_id;
    format!(
        "jitgate: approval requested ({mode}) by {who} on {target}/{database} from {host}{policies}: {reason}\n```{statement}```\nApprove: `jitgate approvals approve {id} --as NAME`  Deny: `jitgate approvals deny {id} --as NAME`  (expires {expires})",
        mode = mode_name(request.mode()),
        target = request.target,
        database = request.database,
        host = approval.agent_host,
        reason = request.reason,
        expires = format_time(request.expires_unix_us),
    )
}
