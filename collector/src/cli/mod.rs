//! The `jitgate` command line for security teams: lists sessions and a session's events from
//! the collector's `AuditQuery` API, as aligned text ([`human`]) or JSON lines ([`json`]), and
//! lists and decides approval requests ([`approvals`]).

pub mod approvals;
pub mod human;
pub mod json;

use std::io::Write;
use std::time::Duration;

use jitgate_proto::audit::v1::{
    ListEventsRequest, ListSessionsRequest, audit_query_client::AuditQueryClient,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tonic::transport::{Channel, Endpoint};

/// Default collector URL when neither `--collector` nor `JITGATE_COLLECTOR` is given.
pub const DEFAULT_COLLECTOR: &str = "http://127.0.0.1:50051";
/// Longest wait for the TCP connection to the collector.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one query.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Arguments of `jitgate`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "jitgate",
    version,
    about = "Inspect jitgate audit sessions and events; approve or deny approval requests"
)]
pub struct Cli {
    /// Collector URL.
    #[arg(long, global = true, env = "JITGATE_COLLECTOR", default_value = DEFAULT_COLLECTOR)]
    pub collector: String,
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
    /// List sessions, newest first.
    Sessions {
        /// Most sessions to list.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show every event of one session in order.
    Events {
        /// Session id (as listed by `jitgate sessions`).
        #[arg(long)]
        session: String,
    },
    /// List, approve and deny approval requests.
    Approvals {
        /// What to do.
        #[command(subcommand)]
        action: approvals::ApprovalsCommand,
    },
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
    /// The collector answered with an error.
    #[error("the jitgate collector at {url} failed the request")]
    Rpc {
        /// The collector URL.
        url: String,
        /// The gRPC status returned.
        #[source]
        source: tonic::Status,
    },
    /// The decider token (`JITGATE_DECIDER_TOKEN`) is not a valid header value.
    #[error("JITGATE_DECIDER_TOKEN holds characters that cannot be sent")]
    Token,
    /// Writing the output failed.
    #[error("cannot write output")]
    Output(#[from] std::io::Error),
}

/// Runs `cli`, printing to standard output. A closed pipe (`jitgate sessions | head`) is not an
/// error.
///
/// # Errors
/// See [`CliError`].
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    match run_to(cli, &mut stdout).await {
        Err(CliError::Output(err)) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Runs `cli`, writing its output to `out`.
///
/// # Errors
/// See [`CliError`].
pub async fn run_to(cli: Cli, out: &mut dyn Write) -> Result<(), CliError> {
    let Cli {
        collector,
        json,
        command,
    } = cli;
    let channel = connect(&collector).await?;
    let mut client = AuditQueryClient::new(channel.clone())
        .max_decoding_message_size(crate::server::MAX_MESSAGE_BYTES);
    let rpc = |source| CliError::Rpc {
        url: collector.clone(),
        source,
    };
    match command {
        Command::Sessions { limit } => {
            let sessions = client
                .list_sessions(ListSessionsRequest { limit })
                .await
                .map_err(rpc)?
                .into_inner()
                .sessions;
            if json {
                json::write_sessions(out, &sessions)?;
            } else {
                human::write_sessions(out, &sessions)?;
            }
        }
        Command::Events { session } => {
            let events = client
                .list_events(ListEventsRequest {
                    session_id: session.clone(),
                })
                .await
                .map_err(rpc)?
                .into_inner()
                .events;
            if json {
                json::write_events(out, &events)?;
            } else {
                human::write_events(out, &session, &events)?;
            }
        }
        Command::Approvals { action } => {
            approvals::run(action, channel, &collector, json, out).await?;
        }
    }
    out.flush()?;
    Ok(())
}

async fn connect(url: &str) -> Result<Channel, CliError> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|source| CliError::InvalidUrl {
            url: url.to_owned(),
            source,
        })?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT);
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
