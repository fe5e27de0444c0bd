//! `jitgate export`: every event of a time window as JSON lines for a SIEM, streamed page by
//! page from the collector (`AuditQuery.Export`) and written as each page arrives.

use std::io::Write;

use jitgate_proto::audit::v1::ExportRequest;

use super::{CliError, Ctx, Outcome, QueryClient, json, timespec};
use crate::storage::now_unix_us;

/// Output formats of `jitgate export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per event and line, the fields of `jitgate events --json`.
    Jsonl,
}

/// Arguments of `jitgate export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Events at or after: a duration back from now (1h, 7d) or an RFC 3339 time.
    #[arg(long)]
    pub since: String,
    /// Events before (same forms); default: now and later.
    #[arg(long)]
    pub until: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
}

/// Streams the window to `out`.
///
/// # Errors
/// [`CliError::Time`], [`CliError::Rpc`] (also mid-stream), [`CliError::Output`].
pub async fn run(
    client: &mut QueryClient,
    ctx: &Ctx<'_>,
    args: ExportArgs,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let now = now_unix_us();
    let request = ExportRequest {
        since_unix_us: timespec::parse(&args.since, now)?,
        until_unix_us: timespec::parse_opt(args.until.as_deref(), now)?,
    };
    let mut pages = client
        .export(request)
        .await
        .map_err(|status| ctx.rpc(status))?
        .into_inner();
    while let Some(page) = pages.message().await.map_err(|status| ctx.rpc(status))? {
        match args.format {
            Format::Jsonl => json::write_events(out, &page.events)?,
        }
    }
    Ok(Outcome::Done)
}
