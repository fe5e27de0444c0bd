//! `jitgate replay`: one session as a transcript in `seq` order, each event with its time
//! offset from the session's first event: the start (identity, process and ancestry, CI
//! claims, target, role, TLS), statements (text, parameters, decision with its policies and
//! rule, approval, result summary, the first rows of the masked result sample, errors),
//! approvals (requested, granted, denied, expired, and by whom) and the end; a session without
//! an end is marked still open. `--speed X` prints in real time scaled by X.

use std::io::Write;
use std::time::Duration;

use jitgate_proto::audit::v1::{Event, ResultSample, event::Kind};

use super::{CliError, Ctx, Outcome, QueryClient, human, json};

/// Arguments of `jitgate replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The session to replay.
    pub session: String,
    /// Rows of each statement's result sample to show.
    #[arg(long, default_value_t = 5)]
    pub rows: usize,
    /// Replay in real time scaled by this factor (10 = ten times faster); 0 prints at once.
    #[arg(long, default_value_t = 0.0)]
    pub speed: f64,
}

/// Prints the transcript.
///
/// # Errors
/// [`CliError::UnknownSession`] for a session without events, [`CliError::Rpc`],
/// [`CliError::Output`].
pub async fn run(
    client: &mut QueryClient,
    ctx: &Ctx<'_>,
    args: ReplayArgs,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let events = super::session_events(client, ctx, &args.session).await?;
    let Some(first) = events.first() else {
        return Err(CliError::UnknownSession(args.session));
    };
    let start = first.time_unix_us;
    let mut previous = start;
    if !ctx.json {
        writeln!(out, "session {} (times from its start)", args.session)?;
    }
    for event in &events {
        let wait = pause(event.time_unix_us.saturating_sub(previous), args.speed);
        if !wait.is_zero() {
            out.flush()?;
            tokio::time::sleep(wait).await;
        }
        previous = previous.max(event.time_unix_us);
        if ctx.json {
            json::write_events(out, std::slice::from_ref(event))?;
        } else {
            write_event(out, event, event.time_unix_us - start, args.rows)?;
        }
    }
    let ended = events.iter().any(|e| {
        matches!(
            e.kind,
            Some(Kind::SessionEnded(_) | Kind::SessionRefused(_))
        )
    });
    if !ended && !ctx.json {
        writeln!(out, "(session still open: no end recorded yet)")?;
    }
    Ok(Outcome::Done)
}

/// How long to sleep for a gap of `gap_us` microseconds at `speed` (0 or less: not at all).
pub fn pause(gap_us: i64, speed: f64) -> Duration {
    if speed <= 0.0 || gap_us <= 0 {
        return Duration::ZERO;
    }
    #[expect(clippy::cast_precision_loss, reason = "gaps are far below 2^52 µs")]
    let seconds = gap_us as f64 / 1_000_000.0 / speed;
    Duration::try_from_secs_f64(seconds).unwrap_or(Duration::ZERO)
}

/// `+12.345s`.
fn offset(us: i64) -> String {
    format!("+{}.{:03}s", us / 1_000_000, (us % 1_000_000).abs() / 1_000)
}

/// Writes one event of the transcript.
fn write_event(
    out: &mut dyn Write,
    event: &Event,
    offset_us: i64,
    rows: usize,
) -> std::io::Result<()> {
    let at = offset(offset_us);
    let title = match &event.kind {
        Some(Kind::SessionStarted(_)) => "SESSION START".to_owned(),
        Some(Kind::SessionRefused(_)) => "SESSION REFUSED".to_owned(),
        Some(Kind::SessionEnded(_)) => "SESSION END".to_owned(),
        Some(Kind::Statement(_)) => format!("STATEMENT #{}", event.seq),
        Some(Kind::ApprovalRequested(_)) => "APPROVAL REQUESTED".to_owned(),
        Some(Kind::ApprovalGranted(_)) => "APPROVAL GRANTED".to_owned(),
        Some(Kind::ApprovalDenied(_)) => "APPROVAL DENIED".to_owned(),
        Some(Kind::ApprovalExpired(_)) => "APPROVAL EXPIRED".to_owned(),
        other => crate::storage::kind_name(other.as_ref()).to_uppercase(),
    };
    writeln!(out, "{at:>10}  {title}")?;
    for line in human::details(event) {
        writeln!(out, "{:12}{line}", "")?;
    }
    if let Some(Kind::Statement(s)) = &event.kind
        && let Some(sample) = &s.sample
    {
        write_sample(out, sample, rows)?;
    }
    Ok(())
}

/// The first `rows` rows of a masked result sample as a small table.
fn write_sample(out: &mut dyn Write, sample: &ResultSample, rows: usize) -> std::io::Result<()> {
    if sample.columns.is_empty() || rows == 0 {
        return Ok(());
    }
    let header: Vec<&str> = sample.columns.iter().map(String::as_str).collect();
    let table: Vec<Vec<String>> = sample
        .rows
        .iter()
        .take(rows)
        .map(|row| row.values.iter().map(human::sample_value).collect())
        .collect();
    let mut buffer = Vec::new();
    human::write_table(&mut buffer, &header, &table)?;
    for line in String::from_utf8_lossy(&buffer).lines() {
        writeln!(out, "{:14}| {line}", "")?;
    }
    let more = sample.rows.len().saturating_sub(rows);
    if more > 0 || sample.truncated {
        writeln!(out, "{:14}| … more rows returned than shown", "")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_scale_with_speed() {
        assert_eq!(pause(2_000_000, 10.0), Duration::from_millis(200));
        assert_eq!(pause(2_000_000, 0.0), Duration::ZERO);
        assert_eq!(pause(-5, 1.0), Duration::ZERO);
        assert_eq!(offset(1_234_567), "+1.234s");
    }
}
