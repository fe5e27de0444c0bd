//! `jitgate approvals`: people list pending approval requests and approve or deny them over the
//! collector's `Approvals` API.
//!
//! Deciding names the person: `--as NAME` (or `JITGATE_AS`) is required and recorded as
//! `decided_by`. When the collector requires the decider token, it is read from
//! `JITGATE_DECIDER_TOKEN` (never a flag, so it stays out of process listings).

use std::io::{self, Write};

use jitgate_proto::audit::v1::{
    Approval, DecideRequest, ListApprovalsRequest, Verdict, approvals_client::ApprovalsClient,
};
use serde_json::json;
use tonic::transport::Channel;

use super::{CliError, format_time, human, json as json_out};
use crate::storage::{mode_name, status_name};

/// Environment variable holding the decider token sent with approve / deny.
pub const TOKEN_ENV: &str = "JITGATE_DECIDER_TOKEN";
/// Longest statement text shown in the list table; longer text is cut with `…`.
const STATEMENT_CHARS: usize = 80;

/// `jitgate approvals` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ApprovalsCommand {
    /// List approval requests, newest first (pending only unless --all).
    List {
        /// Every request, decided and expired too.
        #[arg(long)]
        all: bool,
        /// Most requests to list.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only this session's requests.
        #[arg(long)]
        session: Option<String>,
        /// Only this OIDC subject's requests.
        #[arg(long)]
        subject: Option<String>,
    },
    /// Approve a pending request.
    Approve(Decision),
    /// Deny a pending request.
    Deny(Decision),
}

/// Arguments of approve and deny.
#[derive(Debug, clap::Args)]
pub struct Decision {
    /// The approval request id (as listed).
    pub id: String,
    /// Who decides; recorded as `decided_by`.
    #[arg(long = "as", env = "JITGATE_AS", value_name = "NAME")]
    pub decided_by: String,
    /// A note recorded with the decision.
    #[arg(long)]
    pub comment: Option<String>,
}

/// Runs `command` against the collector at `url` over `channel`.
///
/// # Errors
/// [`CliError::Rpc`] when the collector refuses (unknown id, already decided, wrong token),
/// [`CliError::Token`] for a token that cannot be sent, [`CliError::Output`] on write errors.
pub async fn run(
    command: ApprovalsCommand,
    channel: Channel,
    url: &str,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let mut client =
        ApprovalsClient::new(channel).max_decoding_message_size(crate::server::MAX_MESSAGE_BYTES);
    let rpc = |status| CliError::Rpc {
        url: url.to_owned(),
        status,
    };
    match command {
        ApprovalsCommand::List {
            all,
            limit,
            session,
            subject,
        } => {
            let request = ListApprovalsRequest {
                all,
                limit,
                session_id: session.unwrap_or_default(),
                subject: subject.unwrap_or_default(),
            };
            let approvals = client
                .list(request)
                .await
                .map_err(rpc)?
                .into_inner()
                .approvals;
            if json {
                for approval in &approvals {
                    writeln!(out, "{}", approval_json(approval))?;
                }
            } else {
                write_list(out, &approvals, all)?;
            }
        }
        ApprovalsCommand::Approve(decision) => {
            decide(&mut client, decision, Verdict::Approve, url, json, out).await?;
        }
        ApprovalsCommand::Deny(decision) => {
            decide(&mut client, decision, Verdict::Deny, url, json, out).await?;
        }
    }
    Ok(())
}

async fn decide(
    client: &mut ApprovalsClient<Channel>,
    decision: Decision,
    verdict: Verdict,
    url: &str,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let mut request = tonic::Request::new(DecideRequest {
        approval_id: decision.id,
        verdict: verdict.into(),
        decided_by: decision.decided_by,
        comment: decision.comment.unwrap_or_default(),
    });
    if let Ok(token) = std::env::var(TOKEN_ENV) {
        let value = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| CliError::Token)?;
        request
            .metadata_mut()
            .insert(crate::approvals::auth::AUTHORIZATION, value);
    }
    let approval = client
        .decide(request)
        .await
        .map_err(|status| CliError::Rpc {
            url: url.to_owned(),
            status,
        })?
        .into_inner()
        .approval
        .unwrap_or_default();
    if json {
        writeln!(out, "{}", approval_json(&approval))?;
    } else {
        let id = approval
            .request
            .as_ref()
            .map_or("", |r| r.approval_id.as_str());
        write!(
            out,
            "{} {id} by {} at {}",
            status_name(approval.status()),
            approval.decided_by,
            format_time(approval.decided_unix_us)
        )?;
        if approval.grant_expires_unix_us != 0 {
            write!(
                out,
                "; grant until {}",
                format_time(approval.grant_expires_unix_us)
            )?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// Writes `approvals` as a table; `all` adds who decided and when.
fn write_list(out: &mut dyn Write, approvals: &[Approval], all: bool) -> io::Result<()> {
    if approvals.is_empty() {
        let what = if all {
            "approval requests"
        } else {
            "pending approval requests"
        };
        return writeln!(out, "no {what}");
    }
    let mut header = vec![
        "ID",
        "REQUESTED",
        "STATUS",
        "MODE",
        "EXPIRES",
        "TARGET",
        "DATABASE",
    ];
    if all {
        header.push("DECIDED");
    }
    header.extend(["IDENTITY", "STATEMENT"]);
    let rows: Vec<Vec<String>> = approvals
        .iter()
        .map(|a| {
            let r = a.request.clone().unwrap_or_default();
            let mut row = vec![
                r.approval_id.clone(),
                format_time(a.requested_unix_us),
                status_name(a.status()).to_owned(),
                mode_name(r.mode()).to_owned(),
                format_time(r.expires_unix_us),
                human::or_dash(r.target.clone()),
                human::or_dash(r.database.clone()),
            ];
            if all {
                row.push(human::or_dash(human::fields(&[
                    ("by", &a.decided_by),
                    ("at", &decided_at(a)),
                ])));
            }
            row.push(human::or_dash(human::identity(r.identity.as_ref(), false)));
            row.push(short(&r.statement));
            row
        })
        .collect();
    human::write_table(out, &header, &rows)
}

fn decided_at(approval: &Approval) -> String {
    if approval.decided_unix_us == 0 {
        String::new()
    } else {
        format_time(approval.decided_unix_us)
    }
}

/// The statement on one line, cut at [`STATEMENT_CHARS`].
fn short(statement: &str) -> String {
    let flat = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= STATEMENT_CHARS {
        return flat;
    }
    let mut cut: String = flat.chars().take(STATEMENT_CHARS).collect();
    cut.push('…');
    cut
}

/// One approval as a JSON object: the request's fields, status and decision.
pub fn approval_json(a: &Approval) -> serde_json::Value {
    json!({
        "approval_id": a.request.as_ref().map(|r| r.approval_id.clone()),
        "session_id": a.session_id,
        "agent_host": a.agent_host,
        "requested": format_time(a.requested_unix_us),
        "requested_unix_us": a.requested_unix_us,
        "status": status_name(a.status()),
        "decided_by": a.decided_by,
        "decided": (a.decided_unix_us != 0).then(|| format_time(a.decided_unix_us)),
        "decided_unix_us": a.decided_unix_us,
        "comment": a.comment,
        "grant_expires": (a.grant_expires_unix_us != 0).then(|| format_time(a.grant_expires_unix_us)),
        "grant_expires_unix_us": a.grant_expires_unix_us,
        "request": a.request.as_ref().map(json_out::requested),
    })
}
