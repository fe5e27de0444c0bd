//! `AuditQuery.Follow`: live events, filtered by the collector.
//!
//! Each call subscribes to the store's feed ([`Store::subscribe`]), which carries every event
//! after its commit. A task per call matches events against the [`EventFilter`] and forwards
//! the matching ones; identity and target filters need the session's facts, which come from the
//! event itself (`session_started`, `session_refused`) or the `sessions` row (cached per call).
//! A follower that reads too slowly misses events on the feed and gets a `missed` item with
//! their count; ingest never waits for it.

use std::collections::HashMap;
use std::sync::Arc;

use jitgate_proto::audit::v1::{
    Decision, Event, EventFilter, FollowItem, event::Kind, follow_item::Item,
};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::{debug, warn};

use crate::storage::{SessionFacts, Store, decision_name, kind_name};

/// Items buffered towards one follower.
pub const FOLLOW_BUFFER: usize = 256;
/// Sessions whose facts one follower keeps cached before the cache is emptied.
const FACTS_CACHE: usize = 10_000;

/// Runs one follower until it disconnects, the feed ends or `shutdown` is cancelled.
pub async fn run(
    store: Store,
    filter: EventFilter,
    mut feed: broadcast::Receiver<Arc<Event>>,
    out: mpsc::Sender<Result<FollowItem, Status>>,
    shutdown: CancellationToken,
) {
    let mut matcher = Matcher::new(filter);
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => {
                let _ = out.send(Err(Status::unavailable("collector shutting down"))).await;
                return;
            }
            () = out.closed() => return,
            received = feed.recv() => received,
        };
        let item = match received {
            Ok(event) => {
                if !matcher.matches(&store, &event).await {
                    continue;
                }
                Item::Event(Event::clone(&event))
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                debug!(missed, "follower fell behind");
                Item::Missed(missed)
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let item = Ok(FollowItem { item: Some(item) });
        tokio::select! {
            () = shutdown.cancelled() => return,
            sent = out.send(item) => if sent.is_err() { return },
        }
    }
}

/// Matches events against one follower's filter.
#[derive(Debug)]
pub struct Matcher {
    filter: EventFilter,
    facts: HashMap<String, SessionFacts>,
}

impl Matcher {
    /// A matcher for `filter`.
    pub fn new(filter: EventFilter) -> Matcher {
        Matcher {
            filter,
            facts: HashMap::new(),
        }
    }

    /// Whether `event` passes the filter; looks the session's facts up in `store` when the
    /// filter names an identity or target (a failed lookup counts as no match).
    pub async fn matches(&mut self, store: &Store, event: &Event) -> bool {
        let f = &self.filter;
        if !f.session_id.is_empty() && f.session_id != event.session_id {
            return false;
        }
        if !f.kind.is_empty() && f.kind != kind_name(event.kind.as_ref()) {
            return false;
        }
        if !decision_matches(f.decision(), event) {
            return false;
        }
        if f.identity.is_empty() && f.target.is_empty() {
            return true;
        }
        let Some(facts) = self.facts_of(store, event).await else {
            return false;
        };
        let f = &self.filter;
        (f.identity.is_empty() || facts.identities.contains(&f.identity))
            && (f.target.is_empty() || facts.target == f.target)
    }

    async fn facts_of(&mut self, store: &Store, event: &Event) -> Option<SessionFacts> {
        match &event.kind {
            Some(Kind::SessionStarted(started)) => {
                let i = started.identity.clone().unwrap_or_default();
                let facts = SessionFacts {
                    identities: [i.issuer, i.subject, i.app_id, i.object_id],
                    target: started.target.clone(),
                };
                self.remember(&event.session_id, facts.clone());
                return Some(facts);
            }
            Some(Kind::SessionRefused(refused)) => {
                return Some(SessionFacts {
                    target: refused.target.clone(),
                    ..SessionFacts::default()
                });
            }
            _ => {}
        }
        if let Some(facts) = self.facts.get(&event.session_id) {
            return Some(facts.clone());
        }
        let id = event.session_id.clone();
        match store.session_facts(id).await {
            Ok(Some(facts)) => {
                // A row without a start yet (events arrived out of order) is asked again later.
                if !facts.target.is_empty() {
                    self.remember(&event.session_id, facts.clone());
                }
                Some(facts)
            }
            Ok(None) => None,
            Err(err) => {
                warn!(error = %crate::report(&err), "follow: session lookup failed");
                None
            }
        }
    }

    fn remember(&mut self, session_id: &str, facts: SessionFacts) {
        if self.facts.len() >= FACTS_CACHE {
            self.facts.clear();
        }
        self.facts.insert(session_id.to_owned(), facts);
    }
}

/// `denied` matches denied statements and refused sessions, `allowed` allowed statements.
fn decision_matches(wanted: Decision, event: &Event) -> bool {
    match (wanted, &event.kind) {
        (Decision::Unspecified, _) => true,
        (Decision::Denied, Some(Kind::SessionRefused(_))) => true,
        (_, Some(Kind::Statement(s))) => decision_name(s.decision()) == decision_name(wanted),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    async fn matching(store: &Store, filter: EventFilter, events: &[Event]) -> Vec<String> {
        let mut matcher = Matcher::new(filter);
        let mut ids = Vec::new();
        for event in events {
            if matcher.matches(store, event).await {
                ids.push(event.event_id.clone());
            }
        }
        ids
    }

    #[tokio::test]
    async fn filters_by_session_kind_decision_identity_and_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("audit.db")).expect("open");
        let mut events = fixtures::session_events("s1");
        events.push(fixtures::refused_event("r1"));
        events.extend(fixtures::rich_session_events("g1"));
        store.insert(events.clone()).await.expect("insert");

        let all = matching(&store, EventFilter::default(), &events).await;
        assert_eq!(all.len(), events.len());
        let session = EventFilter {
            session_id: "r1".into(),
            ..EventFilter::default()
        };
        assert_eq!(matching(&store, session, &events).await, ["r1-0"]);
        let mut denied = EventFilter::default();
        denied.set_decision(Decision::Denied);
        assert_eq!(matching(&store, denied, &events).await, ["s1-2", "r1-0"]);
        let statements = EventFilter {
            kind: "statement".into(),
            identity: fixtures::OTHER_SUBJECT.into(),
            ..EventFilter::default()
        };
        assert_eq!(
            matching(&store, statements, &events).await,
            ["g1-1", "g1-2"]
        );
        let by_app = EventFilter {
            identity: fixtures::APP_ID.into(),
            ..EventFilter::default()
        };
        assert_eq!(
            matching(&store, by_app, &events).await,
            ["s1-0", "s1-1", "s1-2", "s1-3"],
            "facts from the sessions row for events after the start"
        );
        let target = EventFilter {
            target: "db.prod.internal:5432".into(),
            kind: "session_refused".into(),
            ..EventFilter::default()
        };
        assert_eq!(matching(&store, target, &events).await, ["r1-0"]);
    }

    #[tokio::test]
    async fn run_forwards_matches_and_reports_lag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("audit.db")).expect("open");
        let (tx, mut rx) = mpsc::channel(FOLLOW_BUFFER);
        let filter = EventFilter {
            kind: "session_ended".into(),
            ..EventFilter::default()
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(
            store.clone(),
            filter,
            store.subscribe(),
            tx,
            shutdown.clone(),
        ));
        store
            .insert(fixtures::session_events("s1"))
            .await
            .expect("insert");
        let item = rx.recv().await.expect("item").expect("ok");
        match item.item {
            Some(Item::Event(event)) => assert_eq!(event.event_id, "s1-3"),
            other => panic!("expected the end event, got {other:?}"),
        }
        shutdown.cancel();
        let last = rx.recv().await.expect("closing status");
        assert_eq!(last.err().map(|s| s.code()), Some(tonic::Code::Unavailable));
        task.await.expect("task ends");
    }

    #[tokio::test]
    async fn a_follower_that_fell_behind_is_told_how_many_it_missed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("audit.db")).expect("open");
        let feed = store.subscribe();
        let extra = 7;
        let kinds = (0..crate::storage::FEED_CAPACITY + extra)
            .map(|_| fixtures::session_kinds()[1].clone())
            .collect();
        // Ingest runs ahead while the follower has not read anything.
        store
            .insert(fixtures::seal_session(
                "big",
                "h",
                fixtures::START_US,
                kinds,
            ))
            .await
            .expect("insert");
        let (tx, mut rx) = mpsc::channel(FOLLOW_BUFFER);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(
            store.clone(),
            EventFilter::default(),
            feed,
            tx,
            shutdown.clone(),
        ));
        let first = rx.recv().await.expect("item").expect("ok");
        assert_eq!(first.item, Some(Item::Missed(7)));
        let next = rx.recv().await.expect("item").expect("ok");
        match next.item {
            Some(Item::Event(event)) => assert_eq!(event.seq, 7, "the oldest event still held"),
            other => panic!("expected an event, got {other:?}"),
        }
        shutdown.cancel();
        task.await.expect("task ends");
    }
}
