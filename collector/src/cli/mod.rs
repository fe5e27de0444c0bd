//! The `jitgate` command line for security teams, over the collector's `AuditQuery` API:
//! sessions ([`sessions`]), a session's events and live events ([`follow`]), a session as a
//! transcript ([`replay`]), hash-chain verification ([`verify`]) and SIEM export ([`export`]),
//! as aligned text ([`human`]) or JSON lines ([`json`]); and approval requests ([`approvals`]).
//!
//! Query calls carry the query token ([`token`]); approving and denying carry the decider token.

pub mod approvals;
pub mod export;
pub mod follow;
pub mod human;
pub mod json;
pub mod replay;
pub mod sessions;
pub mod timespec;
pub mod tls;
pub mod token;
pub mod verify;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use jitgate_proto::audit::v1::{ListEventsRequest, audit_query_client::AuditQueryClient};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Default collector URL when neither `--collector` nor `JITGATE_COLLECTOR` is given.
pub const DEFAULT_COLLECTOR: &str = "http://127.0.0.1:50051";
/// Longest wait for the TCP connection to the collector.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one query's answer to begin (streams may then run longer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The query client the subcommands use: a channel with the query token attached.
pub type QueryClient = AuditQueryClient<InterceptedService<Channel, token::Bearer>>;

/// Arguments of `jitgate`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "jitgate",
    version,
    about = "Inspect, follow, replay, verify and export jitgate audit sessions; approve or deny \
             approval requests"
)]
pub struct Cli {
    /// Collector URL.
    #[arg(long, global = true, env = "JITGATE_COLLECTOR", default_value = DEFAULT_COLLECTOR)]
    pub collector: String,
    /// File holding the query token (else the token itself from JITGATE_QUERY_TOKEN).
    #[arg(long, global = true, env = token::FILE_ENV)]
    pub query_token_file: Option<PathBuf>,
    /// CA certificate (PEM) the collector's server certificate must chain to; needed for an
    /// `https://` collector.
    #[arg(long, global = true, env = "JITGATE_CA")]
    pub ca: Option<std::path::PathBuf>,
    /// Print one JSON object per line instead of aligned text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to show.
    #[command(subcommand)]
    pub command: Command,
}

/// `jitgate` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List sessions, newest first, filtered by the collector.
    Sessions(sessions::SessionsArgs),
    /// Show every event of one session in order, or (--follow) live events as they are stored.
    Events(follow::EventsArgs),
    /// Show one session as a transcript with time offsets from its start.
    Replay(replay::ReplayArgs),
    /// Recompute the hash chain of a session (or of every session since a time) and report
    /// deleted, altered or reordered events. Exit 0 intact, 1 broken, 2 error.
    Verify(verify::VerifyArgs),
    /// Stream every event of a time window, one JSON object per line (for a SIEM).
    Export(export::ExportArgs),
    /// List, approve and deny approval requests.
    Approvals {
        /// What to do.
        #[command(subcommand)]
        action: approvals::ApprovalsCommand,
    },
}

/// How a command that succeeded ended; `jitgate verify` tells intact from broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done (verify: every chain intact).
    Done,
    /// Verify found a broken chain.
    Broken,
}

/// Errors of the `jitgate` CLI.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The collector URL is not a valid URI.
    #[error("invalid collector URL {url:?}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// The parser's complaint.
        #[source]
        source: tonic::transport::Error,
    },
    /// No connection to the collector could be made.
    #[error("cannot reach the jitgate collector at {url}")]
    Connect {
        /// The collector URL.
        url: String,
        /// The transport error (connection refused, timeout, DNS, ...).
        #[source]
        source: tonic::transport::Error,
    },
    /// The collector answered with an error: its gRPC code and message, with what to do for the
    /// codes a person can fix.
    #[error(
        "the jitgate collector at {url} refused the request ({}): {}{}",
        status_name(.status.code()),
        .status.message(),
        status_hint(.status)
    )]
    Rpc {
        /// The collector URL.
        url: String,
        /// The gRPC status returned.
        status: tonic::Status,
    },
    /// The decider token (`JITGATE_DECIDER_TOKEN`) is not a valid header value.
    #[error("JITGATE_DECIDER_TOKEN holds characters that cannot be sent")]
    Token,
    /// The query token could not be read or sent.
    #[error("query token")]
    QueryToken(#[from] token::TokenError),
    /// A `--since` / `--until` value is neither a duration nor an RFC 3339 time.
    #[error("invalid time")]
    Time(#[from] timespec::TimeError),
    /// `jitgate verify` or `replay` named a session the collector has no events of.
    #[error("no events stored for session {0}")]
    UnknownSession(String),
    /// A command line combination that cannot work (e.g. `verify` without a session or --since).
    #[error("{0}")]
    Usage(&'static str),
    /// The collector's TLS cannot be set up (`--ca`).
    #[error(transparent)]
    Tls(#[from] tls::CliTlsError),
    /// Writing the output failed.
    #[error("cannot write output")]
    Output(#[from] std::io::Error),
}

/// Runs `cli`, printing to standard output. A closed pipe (`jitgate sessions | head`) is not an
/// error.
///
/// # Errors
/// See [`CliError`].
pub async fn run(cli: Cli) -> Result<Outcome, CliError> {
    let mut stdout = std::io::stdout().lock();
    match run_to(cli, &mut stdout).await {
        Err(CliError::Output(err)) if err.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(Outcome::Done)
        }
        other => other,
    }
}

/// Runs `cli`, writing its output to `out`.
///
/// # Errors
/// See [`CliError`].
pub async fn run_to(cli: Cli, out: &mut dyn Write) -> Result<Outcome, CliError> {
    let Cli {
        collector,
        query_token_file,
        ca,
        json,
        command,
    } = cli;
    let channel = connect(&collector, ca.as_deref()).await?;
    if let Command::Approvals { action } = command {
        approvals::run(action, channel, &collector, json, out).await?;
        out.flush()?;
        return Ok(Outcome::Done);
    }
    let bearer = token::Bearer::load(query_token_file.as_deref())?;
    let mut client = AuditQueryClient::with_interceptor(channel, bearer)
        .max_decoding_message_size(crate::server::MAX_MESSAGE_BYTES);
    let ctx = Ctx {
        url: &collector,
        json,
    };
    let outcome = match command {
        Command::Sessions(args) => sessions::run(&mut client, &ctx, args, out).await?,
        Command::Events(args) => follow::run(&mut client, &ctx, args, out).await?,
        Command::Replay(args) => replay::run(&mut client, &ctx, args, out).await?,
        Command::Verify(args) => verify::run(&mut client, &ctx, args, out).await?,
        Command::Export(args) => export::run(&mut client, &ctx, args, out).await?,
        Command::Approvals { .. } => Outcome::Done,
    };
    out.flush()?;
    Ok(outcome)
}

/// What every query subcommand needs besides its client and arguments.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The collector URL, for error messages.
    pub url: &'a str,
    /// `--json`.
    pub json: bool,
}

impl Ctx<'_> {
    /// Wraps a failed call's status with the collector URL.
    pub fn rpc(&self, source: tonic::Status) -> CliError {
        CliError::Rpc {
            url: self.url.to_owned(),
            status: source,
        }
    }
}

/// Every event of `session_id` in `seq` order, as the collector decodes them.
///
/// # Errors
/// [`CliError::Rpc`].
pub async fn session_events(
    client: &mut QueryClient,
    ctx: &Ctx<'_>,
    session_id: &str,
) -> Result<Vec<jitgate_proto::audit::v1::Event>, CliError> {
    Ok(client
        .list_events(ListEventsRequest {
            session_id: session_id.to_owned(),
        })
        .await
        .map_err(|status| ctx.rpc(status))?
        .into_inner()
        .events)
}

async fn connect(url: &str, ca: Option<&std::path::Path>) -> Result<Channel, CliError> {
    let invalid = |source| CliError::InvalidUrl {
        url: url.to_owned(),
        source,
    };
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(invalid)?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT);
    if url.starts_with("https://") {
        endpoint = endpoint
            .tls_config(tls::client_config(ca)?)
            .map_err(invalid)?;
    }
    endpoint
        .connect()
        .await
        .map_err(|source| CliError::Connect {
            url: url.to_owned(),
            source,
        })
}

/// Formats microseconds since the Unix epoch as RFC 3339 in UTC with microseconds, e.g.
/// `2026-11-01T09:30:00.000812Z`; values outside the calendar's range print as `@<n>us`.
pub fn format_time(unix_us: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_us) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{unix_us}us"))
}

/// A gRPC status code as people read it (`PERMISSION_DENIED` → "permission denied").
fn status_name(code: tonic::Code) -> String {
    format!("{code:?}")
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            let space = (i > 0 && c.is_uppercase()).then_some(' ');
            space.into_iter().chain(c.to_lowercase())
        })
        .collect()
}

/// What to do about a status a person can fix, as a sentence after the message; nothing when
/// the collector's message already names a setting (`JITGATE_…`, `--…`).
fn status_hint(status: &tonic::Status) -> &'static str {
    if status.message().contains("JITGATE_") || status.message().contains("--") {
        return "";
    }
    match status.code() {
        tonic::Code::Unauthenticated => {
            "; give the collector's token: JITGATE_QUERY_TOKEN or --query-token-file for queries, JITGATE_DECIDER_TOKEN for approvals"
        }
        tonic::Code::PermissionDenied => "; this credential may not do that",
        tonic::Code::Unavailable => "; is the collector running, and is the URL right?",
        tonic::Code::Cancelled => {
            "; a collector serving TLS needs an https:// URL (and --ca / JITGATE_CA)"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_utc() {
        assert_eq!(
            format_time(crate::fixtures::START_US),
            "2026-11-01T09:30:00Z"
        );
        assert_eq!(format_time(812), "1970-01-01T00:00:00.000812Z");
        assert_eq!(format_time(i64::MAX), format!("@{}us", i64::MAX));
    }
}
