//! The per-session SHA-256 hash chain of audit events (`Event.prev_hash`, `Event.hash`).
//!
//! The agent [`seal`]s each event of a session in `seq` order: `prev_hash` is the previous
//! event's `hash` (empty for `seq` 0) and `hash` is SHA-256 over the event's protobuf encoding
//! with `hash` left empty. Protobuf encoding by prost is deterministic for one schema version
//! (fields in number order, no maps in these messages), so anyone holding the events recomputes
//! the same hashes. [`verify`] walks a session's stored events and reports every event that was
//! deleted, altered, duplicated or moved.
//!
//! What the chain shows: the stored events are the ones the agent sealed, complete and in order,
//! up to the last stored event. What it cannot show alone: that events were cut from the end of
//! a session that never recorded `SessionEnded` ([`Report::ended`] tells), or a chain rewritten
//! in full by someone who can also recompute every hash after the change.
//!
//! Events the collector writes (`Origin::Collector`, approval lifecycle) are outside the chain.

use prost::Message;
use sha2::{Digest, Sha256};

use crate::audit::v1::{Event, Origin, event::Kind};

/// Length of a SHA-256 digest in bytes.
pub const HASH_LEN: usize = 32;

/// SHA-256 of `event` encoded with its `hash` field empty.
pub fn event_hash(event: &Event) -> [u8; HASH_LEN] {
    let mut unsealed = event.clone();
    unsealed.hash.clear();
    Sha256::digest(unsealed.encode_to_vec()).into()
}

/// Links `event` after the event whose hash is `prev_hash` (empty for a session's first event),
/// marks it as written by the agent and sets its `hash`; returns that hash, which the next
/// event of the session links to.
pub fn seal(event: &mut Event, prev_hash: &[u8]) -> [u8; HASH_LEN] {
    event.origin = Origin::Agent.into();
    event.prev_hash = prev_hash.to_vec();
    event.hash.clear();
    let hash = event_hash(event);
    event.hash = hash.to_vec();
    hash
}

/// Whether `event` belongs to the agent's chain (everything but collector-written events).
pub fn is_chained(event: &Event) -> bool {
    event.origin() != Origin::Collector
}

/// One break in a session's chain, naming the event by its position in the stored order and
/// its `seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// The event's content does not match its `hash`: it was altered after sealing.
    Altered {
        /// `seq` the stored event claims.
        seq: u64,
        /// Its `event_id`.
        event_id: String,
    },
    /// Events between two stored ones are missing (deleted): `seq` jumps from `after` to `next`.
    Missing {
        /// `seq` of the last event before the gap (`None`: the gap is at the start).
        after: Option<u64>,
        /// `seq` of the first event after the gap.
        next: u64,
    },
    /// An event appears where a later or earlier `seq` belongs: events were moved.
    Reordered {
        /// `seq` of the event found out of place.
        seq: u64,
        /// `seq` expected at that position.
        expected: u64,
    },
    /// Two stored events claim the same `seq`.
    Duplicate {
        /// The repeated `seq`.
        seq: u64,
    },
    /// The event's `prev_hash` is not the previous event's `hash`, while `seq` is consecutive:
    /// the previous event was replaced (or this one re-linked).
    BrokenLink {
        /// `seq` of the event whose link does not match.
        seq: u64,
    },
    /// An event marked collector-written that carries chain fields: an agent event relabelled
    /// to take it out of the chain.
    Relabelled {
        /// Its `seq`.
        seq: u64,
        /// Its `event_id`.
        event_id: String,
    },
    /// An agent event without a hash (written by an agent from before the chain, or stripped).
    Unsealed {
        /// Its `seq`.
        seq: u64,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Altered { seq, event_id } => {
                write!(
                    f,
                    "event seq {seq} ({event_id}) was altered: its content does not match its hash"
                )
            }
            Finding::Missing {
                after: Some(after),
                next,
            } => {
                write!(
                    f,
                    "events seq {}..={} are missing (deleted) between seq {after} and seq {next}",
                    after + 1,
                    next - 1
                )
            }
            Finding::Missing { after: None, next } => {
                write!(
                    f,
                    "events seq 0..={} are missing (deleted) before seq {next}",
                    next - 1
                )
            }
            Finding::Reordered { seq, expected } => {
                write!(
                    f,
                    "event seq {seq} is out of order: seq {expected} belongs at its position"
                )
            }
            Finding::Duplicate { seq } => write!(f, "seq {seq} appears more than once"),
            Finding::BrokenLink { seq } => write!(
                f,
                "event seq {seq} does not link to the stored event before it: that event was replaced"
            ),
            Finding::Unsealed { seq } => write!(f, "event seq {seq} carries no hash"),
            Finding::Relabelled { seq, event_id } => write!(
                f,
                "event seq {seq} ({event_id}) is marked collector-written but carries an agent's \
                 hash: it was relabelled to hide it from the chain"
            ),
        }
    }
}

/// The result of [`verify`] for one session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Agent events checked.
    pub events: u64,
    /// Collector-written events seen and left out of the chain.
    pub collector_events: u64,
    /// Whether the last chained event is `SessionEnded` (or `AgentStopped` for an agent run):
    /// without it the session is still open, or its tail was cut.
    pub ended: bool,
    /// `hash` of the last chained event (hex), the session's head.
    pub head: String,
    /// Every break found, in stored order; empty = the chain holds.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether the chain holds (no finding).
    pub fn intact(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Checks the chain of one session's events in the order they were stored (normally by `seq`;
/// pass storage order, not a re-sorted list, so moved events show).
pub fn verify<'a>(events: impl IntoIterator<Item = &'a Event>) -> Report {
    let mut report = Report::default();
    let mut expected: u64 = 0;
    let mut prev: Option<&Event> = None;
    let mut seen = std::collections::HashSet::new();
    for event in events {
        if !is_chained(event) {
            report.collector_events += 1;
            // The collector writes its events without chain fields; one that carries them was
            // sealed by an agent and relabelled to hide it from the chain.
            if !event.hash.is_empty() || !event.prev_hash.is_empty() {
                report.findings.push(Finding::Relabelled {
                    seq: event.seq,
                    event_id: event.event_id.clone(),
                });
            }
            continue;
        }
        report.events += 1;
        if !seen.insert(event.seq) {
            report.findings.push(Finding::Duplicate { seq: event.seq });
            continue;
        }
        if event.hash.is_empty() {
            report.findings.push(Finding::Unsealed { seq: event.seq });
        } else if event_hash(event)[..] != event.hash[..] {
            report.findings.push(Finding::Altered {
                seq: event.seq,
                event_id: event.event_id.clone(),
            });
        }
        if event.seq > expected {
            report.findings.push(Finding::Missing {
                after: prev.map(|p| p.seq),
                next: event.seq,
            });
        } else if event.seq < expected {
            report.findings.push(Finding::Reordered {
                seq: event.seq,
                expected,
            });
        } else {
            let link_ok = match prev {
                None => event.prev_hash.is_empty(),
                Some(p) => p.hash == event.prev_hash,
            };
            if !link_ok {
                report.findings.push(Finding::BrokenLink { seq: event.seq });
            }
        }
        expected = expected.max(event.seq + 1);
        prev = Some(event);
    }
    if let Some(last) = prev {
        report.ended = matches!(
            last.kind,
            Some(Kind::SessionEnded(_) | Kind::AgentStopped(_) | Kind::SessionRefused(_))
        );
        report.head = hex(&last.hash);
    }
    report
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::v1::{SessionEnded, Statement};

    fn chain(n: u64) -> Vec<Event> {
        let mut prev = Vec::new();
        (0..n)
            .map(|seq| {
                let kind = if seq + 1 == n {
                    Kind::SessionEnded(SessionEnded::default())
                } else {
                    Kind::Statement(Statement {
                        text: format!("select {seq}"),
                        ..Statement::default()
                    })
                };
                let mut event = Event {
                    event_id: format!("e{seq}"),
                    session_id: "s".into(),
                    seq,
                    kind: Some(kind),
                    ..Event::default()
                };
                prev = seal(&mut event, &prev).to_vec();
                event
            })
            .collect()
    }

    #[test]
    fn an_untouched_chain_verifies_and_is_ended() {
        let report = verify(&chain(5));
        assert!(report.intact(), "{:?}", report.findings);
        assert_eq!(report.events, 5);
        assert!(report.ended);
        assert_eq!(report.head.len(), 64);
    }

    #[test]
    fn an_altered_event_is_named() {
        let mut events = chain(5);
        if let Some(Kind::Statement(s)) = &mut events[2].kind {
            s.text = "select 'innocent'".into();
        }
        let report = verify(&events);
        assert_eq!(
            report.findings,
            vec![Finding::Altered {
                seq: 2,
                event_id: "e2".into()
            }]
        );
    }

    #[test]
    fn an_altered_event_with_a_recomputed_hash_breaks_the_next_link() {
        let mut events = chain(5);
        if let Some(Kind::Statement(s)) = &mut events[2].kind {
            s.text = "select 'innocent'".into();
        }
        let prev = events[1].hash.clone();
        seal(&mut events[2], &prev);
        assert_eq!(
            verify(&events).findings,
            vec![Finding::BrokenLink { seq: 3 }]
        );
    }

    #[test]
    fn a_deleted_event_is_a_gap() {
        let mut events = chain(5);
        events.remove(2);
        let report = verify(&events);
        assert_eq!(
            report.findings,
            vec![Finding::Missing {
                after: Some(1),
                next: 3
            }]
        );
        let mut events = chain(3);
        events.remove(0);
        assert_eq!(
            verify(&events).findings,
            vec![Finding::Missing {
                after: None,
                next: 1
            }]
        );
    }

    #[test]
    fn swapped_events_are_reordered() {
        let mut events = chain(5);
        events.swap(1, 3);
        let findings = verify(&events).findings;
        assert!(
            findings.contains(&Finding::Missing {
                after: Some(0),
                next: 3
            }),
            "{findings:?}"
        );
        assert!(
            findings.contains(&Finding::Reordered {
                seq: 1,
                expected: 4
            }),
            "{findings:?}"
        );
    }

    #[test]
    fn an_agent_event_relabelled_as_collector_written_is_named() {
        let mut events = chain(5);
        events[4].origin = Origin::Collector.into();
        let findings = verify(&events).findings;
        assert!(
            findings.contains(&Finding::Relabelled {
                seq: 4,
                event_id: "e4".into()
            }),
            "{findings:?}"
        );
    }

    #[test]
    fn a_cut_tail_leaves_the_session_not_ended() {
        let mut events = chain(5);
        events.pop();
        let report = verify(&events);
        assert!(report.intact());
        assert!(!report.ended);
    }

    #[test]
    fn collector_events_are_outside_the_chain() {
        let mut events = chain(3);
        events.insert(
            1,
            Event {
                event_id: "a/requested".into(),
                seq: 1,
                origin: Origin::Collector.into(),
                ..Event::default()
            },
        );
        let report = verify(&events);
        assert!(report.intact(), "{:?}", report.findings);
        assert_eq!(report.collector_events, 1);
    }
}
