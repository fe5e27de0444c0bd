//! `jitgate sessions`: sessions matching filters the collector applies in SQL, newest first.

use std::io::Write;

use jitgate_proto::audit::v1::{Decision, ListSessionsRequest, SessionFilter, SessionSummary};

use super::{CliError, Ctx, Outcome, QueryClient, human, json, timespec};
use crate::storage::now_unix_us;

/// A decision filter on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DecisionArg {
    /// Sessions with a denied statement, or refused (`events`: denied statements, refusals).
    Denied,
    /// Sessions without (`events`: allowed statements).
    Allowed,
}

impl DecisionArg {
    /// The protobuf decision.
    pub fn proto(self) -> Decision {
        match self {
            DecisionArg::Denied => Decision::Denied,
            DecisionArg::Allowed => Decision::Allowed,
        }
    }
}

/// Arguments of `jitgate sessions`.
#[derive(Debug, clap::Args)]
pub struct SessionsArgs {
    /// Only sessions of this identity: its issuer, subject, app id or object id.
    #[arg(long)]
    pub identity: Option<String>,
    /// Only sessions whose token names this repository.
    #[arg(long)]
    pub repo: Option<String>,
    /// Only sessions to this target (`host:port` as the client dialled it).
    #[arg(long)]
    pub target: Option<String>,
    /// Only sessions with a denied statement or refused (denied), or neither (allowed).
    #[arg(long, value_enum)]
    pub decision: Option<DecisionArg>,
    /// Only sessions started since: a duration back from now (1h, 30m, 7d) or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only sessions started before (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Only sessions recorded by the agent on this host.
    #[arg(long)]
    pub agent_host: Option<String>,
    /// Most sessions to list.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

impl SessionsArgs {
    /// The filter these arguments name, times resolved against `now_unix_us`.
    ///
    /// # Errors
    /// [`timespec::TimeError`] for a malformed `--since` / `--until`.
    pub fn filter(&self, now_unix_us: i64) -> Result<SessionFilter, timespec::TimeError> {
        let mut filter = SessionFilter {
            identity: self.identity.clone().unwrap_or_default(),
            repository: self.repo.clone().unwrap_or_default(),
            target: self.target.clone().unwrap_or_default(),
            since_unix_us: timespec::parse_opt(self.since.as_deref(), now_unix_us)?,
            until_unix_us: timespec::parse_opt(self.until.as_deref(), now_unix_us)?,
            agent_host: self.agent_host.clone().unwrap_or_default(),
            ..SessionFilter::default()
        };
        if let Some(decision) = self.decision {
            filter.set_decision(decision.proto());
        }
        Ok(filter)
    }
}

/// Lists the matching sessions.
///
/// # Errors
/// [`CliError::Time`], [`CliError::Rpc`], [`CliError::Output`].
pub async fn run(
    client: &mut QueryClient,
    ctx: &Ctx<'_>,
    args: SessionsArgs,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let filter = args.filter(now_unix_us())?;
    let sessions = list(client, ctx, filter, args.limit).await?;
    if ctx.json {
        json::write_sessions(out, &sessions)?;
    } else {
        human::write_sessions(out, &sessions)?;
    }
    Ok(Outcome::Done)
}

/// The sessions matching `filter`, newest first, at most `limit` (0: the collector's default).
///
/// # Errors
/// [`CliError::Rpc`].
pub async fn list(
    client: &mut QueryClient,
    ctx: &Ctx<'_>,
    filter: SessionFilter,
    limit: u32,
) -> Result<Vec<SessionSummary>, CliError> {
    Ok(client
        .list_sessions(ListSessionsRequest {
            limit,
            filter: Some(filter),
        })
        .await
        .map_err(|status| ctx.rpc(status))?
        .into_inner()
        .sessions)
}
