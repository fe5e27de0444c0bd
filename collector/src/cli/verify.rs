//! `jitgate verify`: checks a session's hash chain on this side of the wire. The collector
//! sends the stored rows undecoded and in storage order (`AuditQuery.StoredEvents`); the CLI
//! decodes them and recomputes the chain with [`jitgate_proto::chain::verify`], so the verdict
//! does not rest on trusting the collector. Besides the chain's findings it reports rows that
//! no longer decode, rows whose stored `seq` / `event_id` columns disagree with the event they
//! hold, and a chain that ends before the last event the collector received (its
//! [`ChainLedger`]): events cut from the end, which the chain alone cannot show.

use std::io::Write;

use jitgate_proto::audit::v1::{
    ChainLedger, Event, SessionFilter, StoredEvent, StoredEventsRequest,
};
use jitgate_proto::chain::{self, Finding, Report};
use prost::Message;
use serde_json::json;

use super::{CliError, Ctx, Outcome, QueryClient, timespec};
use crate::storage::{MAX_SESSION_LIMIT, now_unix_us};

/// Arguments of `jitgate verify`: one session, or every session of a window.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["session", "since"])))]
pub struct VerifyArgs {
    /// The session to verify.
    pub session: Option<String>,
    /// Verify every session started since (1h, 7d or an RFC 3339 time).
    #[arg(long)]
    pub since: Option<String>,
    /// With --since: sessions started before (same forms).
    #[arg(long, requires = "since")]
    pub until: Option<String>,
}

/// One fault found in a session, named by kind and `seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// `deleted`, `altered`, `reordered`, `duplicate`, `broken link`, `unsealed`,
    /// `undecodable`, `mislabelled`, `relabelled` or `ledger`.
    pub kind: &'static str,
    /// The `seq` the fault is about.
    pub seq: u64,
    /// A sentence for people.
    pub message: String,
}

/// The verdict on one session.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The session.
    pub session_id: String,
    /// What the chain check found.
    pub report: Report,
    /// Every fault, the chain's findings after the row checks.
    pub faults: Vec<Fault>,
}

impl Verdict {
    /// Whether nothing was found.
    pub fn intact(&self) -> bool {
        self.faults.is_empty()
    }
}

/// Checks `rows` (one session's stored rows in storage order) against each other and against
/// the session's `ledger`.
pub fn check(session_id: &str, rows: &[StoredEvent], ledger: Option<&ChainLedger>) -> Verdict {
    let mut faults = Vec::new();
    let mut events: Vec<Event> = Vec::with_capacity(rows.len());
    for row in rows {
        match Event::decode(row.payload.as_slice()) {
            Ok(event) => {
                if event.seq != row.seq || event.event_id != row.event_id {
                    faults.push(Fault {
                        kind: "mislabelled",
                        seq: row.seq,
                        message: format!(
                            "stored row seq {} ({}) holds event seq {} ({})",
                            row.seq, row.event_id, event.seq, event.event_id
                        ),
                    });
                }
                events.push(event);
            }
            Err(err) => faults.push(Fault {
                kind: "undecodable",
                seq: row.seq,
                message: format!(
                    "stored row seq {} ({}) no longer decodes ({err}): altered",
                    row.seq, row.event_id
                ),
            }),
        }
    }
    let report = chain::verify(&events);
    faults.extend(report.findings.iter().map(fault));
    if let Some(ledger) = ledger {
        faults.extend(ledger_fault(&events, ledger));
    }
    Verdict {
        session_id: session_id.to_owned(),
        report,
        faults,
    }
}

/// A fault when the stored chain ends before the last chained event the collector received,
/// that event no longer carries the hash it arrived with, or the ledger ends before the stored
/// chain (it was rewound). The ledger and the rows are read in one snapshot, so a live session
/// shows none of these.
fn ledger_fault(events: &[Event], ledger: &ChainLedger) -> Option<Fault> {
    let last = events
        .iter()
        .filter(|e| chain::is_chained(e))
        .max_by_key(|e| e.seq);
    let Ok(received) = u64::try_from(ledger.last_seq) else {
        return last.map(|last| Fault {
            kind: "ledger",
            seq: last.seq,
            message: format!(
                "seq {} is stored but the collector's ledger records no event received: the \
                 ledger was reset",
                last.seq
            ),
        });
    };
    match last {
        Some(last) if last.seq > received => Some(Fault {
            kind: "ledger",
            seq: last.seq,
            message: format!(
                "seq {} is stored but the collector's ledger ends at seq {received}: the ledger \
                 was rewound",
                last.seq
            ),
        }),
        Some(last) if last.seq == received => (last.hash != ledger.last_hash).then(|| Fault {
            kind: "altered",
            seq: received,
            message: format!(
                "the last event, seq {received}, does not carry the hash it arrived with ({}): \
                 it was replaced",
                chain::hex(&ledger.last_hash)
            ),
        }),
        _ => {
            let from = last.map_or(0, |l| l.seq + 1);
            Some(Fault {
                kind: "deleted",
                seq: from,
                message: format!(
                    "events seq {from}..={received} reached the collector but are no longer \
                     stored: the end of the session was cut"
                ),
            })
        }
    }
}

fn fault(finding: &Finding) -> Fault {
    let (kind, seq) = match finding {
        Finding::Altered { seq, .. } => ("altered", *seq),
        Finding::Missing { after, next } => ("deleted", after.map_or(0, |a| a + 1).min(*next)),
        Finding::Reordered { seq, .. } => ("reordered", *seq),
        Finding::Duplicate { seq } => ("duplicate", *seq),
        Finding::BrokenLink { seq } => ("broken link", *seq),
        Finding::Unsealed { seq } => ("unsealed", *seq),
        Finding::Relabelled { seq, .. } => ("relabelled", *seq),
    };
    Fault {
        kind,
        seq,
        message: finding.to_string(),
    }
}

/// Verifies the named session or every session of the window; [`Outcome::Broken`] when any
/// chain is broken.
///
/// # Errors
/// [`CliError::UnknownSession`] for a session without stored events, [`CliError::Rpc`],
/// [`CliError::Time`], [`CliError::Output`].
pub async fn run(
    client: &mut QueryClient,
    ctx: &Ctx<'_>,
    args: VerifyArgs,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let ids = match (&args.session, &args.since) {
        (Some(session), _) => vec![session.clone()],
        (None, Some(since)) => {
            let now = now_unix_us();
            let filter = SessionFilter {
                since_unix_us: timespec::parse(since, now)?,
                until_unix_us: timespec::parse_opt(args.until.as_deref(), now)?,
                ..SessionFilter::default()
            };
            every_session(client, ctx, filter).await?
        }
        (None, None) => return Err(CliError::Usage("verify needs a SESSION or --since")),
    };
    let mut broken = 0usize;
    for id in &ids {
        let stored = client
            .stored_events(StoredEventsRequest {
                session_id: id.clone(),
            })
            .await
            .map_err(|status| ctx.rpc(status))?
            .into_inner();
        let rows = stored.events;
        // No rows: unknown, or swept by retention (which removes the row after its events).
        if rows.is_empty() {
            if args.session.is_some() {
                return Err(CliError::UnknownSession(id.clone()));
            }
            // Swept by retention between listing and reading: nothing to verify.
            continue;
        }
        let verdict = check(id, &rows, stored.ledger.as_ref());
        broken += usize::from(!verdict.intact());
        if ctx.json {
            write_json(out, &verdict)?;
        } else {
            write_human(out, &verdict)?;
        }
    }
    if args.since.is_some() && !ctx.json {
        writeln!(
            out,
            "{} sessions verified: {} intact, {broken} broken",
            ids.len(),
            ids.len() - broken
        )?;
    }
    Ok(if broken == 0 {
        Outcome::Done
    } else {
        Outcome::Broken
    })
}

/// Every session matching `filter`, however many: pages of [`MAX_SESSION_LIMIT`] newest
/// first, each next page ending just after the oldest start seen (ids seen are skipped, so
/// sessions sharing a start time are neither lost nor counted twice).
async fn every_session(
    client: &mut QueryClient,
    ctx: &Ctx<'_>,
    mut filter: SessionFilter,
) -> Result<Vec<String>, CliError> {
    let mut seen = std::collections::HashSet::new();
    let mut ids = Vec::new();
    loop {
        let page = super::sessions::list(client, ctx, filter.clone(), MAX_SESSION_LIMIT).await?;
        let full = page.len() >= usize::try_from(MAX_SESSION_LIMIT).unwrap_or(usize::MAX);
        let oldest = page.iter().map(|s| s.started_unix_us).min();
        let mut new = 0;
        for session in page {
            if seen.insert(session.session_id.clone()) {
                ids.push(session.session_id);
                new += 1;
            }
        }
        match oldest {
            Some(oldest) if full && new > 0 => filter.until_unix_us = oldest.saturating_add(1),
            _ => return Ok(ids),
        }
    }
}

/// Writes the verdict for people.
///
/// # Errors
/// The writer's I/O error.
pub fn write_human(out: &mut dyn Write, v: &Verdict) -> std::io::Result<()> {
    let r = &v.report;
    let state = if v.intact() { "INTACT" } else { "BROKEN" };
    writeln!(out, "session {}: {state}", v.session_id)?;
    writeln!(
        out,
        "  events:  {} chained, {} collector-written (outside the chain)",
        r.events, r.collector_events
    )?;
    let ended = if r.ended {
        "yes"
    } else {
        "no (still open, or its tail was cut)"
    };
    writeln!(out, "  ended:   {ended}")?;
    writeln!(
        out,
        "  head:    {}",
        if r.head.is_empty() { "-" } else { &r.head }
    )?;
    for f in &v.faults {
        writeln!(out, "  {}: seq {}: {}", f.kind, f.seq, f.message)?;
    }
    Ok(())
}

/// Writes the verdict as one JSON object.
///
/// # Errors
/// The writer's I/O error.
pub fn write_json(out: &mut dyn Write, v: &Verdict) -> std::io::Result<()> {
    let faults: Vec<_> = v
        .faults
        .iter()
        .map(|f| json!({ "kind": f.kind, "seq": f.seq, "message": f.message }))
        .collect();
    let object = json!({
        "session_id": v.session_id,
        "intact": v.intact(),
        "events": v.report.events,
        "collector_events": v.report.collector_events,
        "ended": v.report.ended,
        "head": v.report.head,
        "findings": faults,
    });
    writeln!(out, "{object}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn rows(events: &[Event]) -> Vec<StoredEvent> {
        events
            .iter()
            .map(|e| StoredEvent {
                seq: e.seq,
                event_id: e.event_id.clone(),
                payload: e.encode_to_vec(),
            })
            .collect()
    }

    #[test]
    fn intact_and_each_fault() {
        let events = fixtures::session_events("s1");
        let v = check("s1", &rows(&events), None);
        assert!(v.intact(), "{:?}", v.faults);
        assert!(v.report.ended);

        let mut deleted = rows(&events);
        deleted.remove(1);
        let v = check("s1", &deleted, None);
        assert_eq!(
            v.faults.iter().map(|f| (f.kind, f.seq)).collect::<Vec<_>>(),
            [("deleted", 1)]
        );

        let mut garbled = rows(&events);
        garbled[2].payload.truncate(5);
        let kinds: Vec<_> = check("s1", &garbled, None)
            .faults
            .iter()
            .map(|f| f.kind)
            .collect();
        assert!(kinds.contains(&"undecodable"), "{kinds:?}");

        let mut relabelled = rows(&events);
        relabelled.swap(1, 2);
        relabelled[1].seq = 1;
        relabelled[2].seq = 2;
        let v = check("s1", &relabelled, None);
        assert!(
            v.faults
                .iter()
                .any(|f| f.kind == "mislabelled" && f.seq == 1)
        );
        assert!(v.faults.iter().any(|f| f.kind == "reordered"));
    }

    #[test]
    fn a_cut_tail_shows_against_the_ledger() {
        let events = fixtures::session_events("s1");
        let last = events.last().expect("events");
        let ledger = ChainLedger {
            last_seq: i64::try_from(last.seq).expect("small"),
            last_hash: last.hash.clone(),
        };
        assert!(check("s1", &rows(&events), Some(&ledger)).intact());

        let cut = rows(&events[..events.len() - 2]);
        assert!(
            check("s1", &cut, None).intact(),
            "the chain alone cannot tell"
        );
        let v = check("s1", &cut, Some(&ledger));
        let from = last.seq - 1;
        assert_eq!(
            v.faults.iter().map(|f| (f.kind, f.seq)).collect::<Vec<_>>(),
            [("deleted", from)]
        );
        assert!(
            v.faults[0]
                .message
                .contains(&format!("{from}..={}", last.seq))
        );

        let reset = ChainLedger {
            last_seq: -1,
            last_hash: Vec::new(),
        };
        let v = check("s1", &cut, Some(&reset));
        assert_eq!(
            v.faults.iter().map(|f| f.kind).collect::<Vec<_>>(),
            ["ledger"],
            "a ledger reset along with the cut"
        );
        let behind = ChainLedger {
            last_seq: 0,
            last_hash: events[0].hash.clone(),
        };
        let v = check("s1", &rows(&events), Some(&behind));
        assert_eq!(
            v.faults.iter().map(|f| f.kind).collect::<Vec<_>>(),
            ["ledger"],
            "a ledger rewound behind the chain"
        );

        let mut replaced = events.clone();
        let end = replaced.len() - 1;
        replaced[end].time_unix_us += 1;
        let prev = replaced[end - 1].hash.clone();
        chain::seal(&mut replaced[end], &prev);
        let v = check("s1", &rows(&replaced), Some(&ledger));
        assert_eq!(
            v.faults.iter().map(|f| f.kind).collect::<Vec<_>>(),
            ["altered"],
            "a resealed last event"
        );
    }
}
