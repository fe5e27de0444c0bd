//! `jitgate events`: a session's stored events (`--session ID`), or with `--follow` live
//! events as the collector stores them, filtered by the collector (`AuditQuery.Follow`). A
//! follow runs until interrupted or the collector ends the stream; when the follower fell
//! behind, the collector says how many events it missed and the CLI prints that.

use std::io::Write;

use jitgate_proto::audit::v1::{EventFilter, FollowRequest, follow_item::Item};

use super::sessions::DecisionArg;
use super::{CliError, Ctx, Outcome, QueryClient, human, json};

/// Arguments of `jitgate events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Session id (as listed by `jitgate sessions`); required without --follow.
    #[arg(long)]
    pub session: Option<String>,
    /// Keep printing events as they are stored.
    #[arg(long)]
    pub follow: bool,
    /// With --follow: only sessions of this identity (issuer, subject, app id or object id).
    #[arg(long, requires = "follow")]
    pub identity: Option<String>,
    /// With --follow: only sessions to this target (`host:port`).
    #[arg(long, requires = "follow")]
    pub target: Option<String>,
    /// With --follow: only events of this kind.
    #[arg(
        long,
        requires = "follow",
        value_parser = clap::builder::PossibleValuesParser::new(crate::storage::KIND_NAMES)
    )]
    pub kind: Option<String>,
    /// With --follow: only denied statements and refusals (denied) or allowed statements.
    #[arg(long, value_enum, requires = "follow")]
    pub decision: Option<DecisionArg>,
}

impl EventsArgs {
    /// The collector-side filter of a follow.
    pub fn filter(&self) -> EventFilter {
        let mut filter = EventFilter {
            session_id: self.session.clone().unwrap_or_default(),
            identity: self.identity.clone().unwrap_or_default(),
            target: self.target.clone().unwrap_or_default(),
            kind: self.kind.clone().unwrap_or_default(),
            ..EventFilter::default()
        };
        if let Some(decision) = self.decision {
            filter.set_decision(decision.proto());
        }
        filter
    }
}

/// Prints a session's events, or follows live events.
///
/// # Errors
/// [`CliError::Usage`] without --session or --follow, [`CliError::Rpc`], [`CliError::Output`].
pub async fn run(
    client: &mut QueryClient,
    ctx: &Ctx<'_>,
    args: EventsArgs,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    if !args.follow {
        let Some(session) = args.session else {
            return Err(CliError::Usage("events needs --session ID or --follow"));
        };
        let events = super::session_events(client, ctx, &session).await?;
        if events.is_empty() {
            return Err(CliError::UnknownSession(session));
        }
        if ctx.json {
            json::write_events(out, &events)?;
        } else {
            human::write_events(out, &session, &events)?;
        }
        return Ok(Outcome::Done);
    }
    let mut stream = client
        .follow(FollowRequest {
            filter: Some(args.filter()),
        })
        .await
        .map_err(|status| ctx.rpc(status))?
        .into_inner();
    // On standard error, so standard output carries only events; the collector subscribed
    // before answering, so every event stored from now on is seen.
    eprintln!("jitgate: following events (Ctrl-C to stop)");
    while let Some(item) = stream.message().await.map_err(|status| ctx.rpc(status))? {
        match item.item {
            Some(Item::Event(event)) if ctx.json => json::write_events(out, &[event])?,
            Some(Item::Event(event)) => human::write_live_event(out, &event)?,
            Some(Item::Missed(missed)) if ctx.json => {
                writeln!(out, "{}", serde_json::json!({ "missed": missed }))?;
            }
            Some(Item::Missed(missed)) => {
                writeln!(out, "… missed {missed} events: this follower fell behind")?;
            }
            None => {}
        }
        out.flush()?;
    }
    Ok(Outcome::Done)
}
