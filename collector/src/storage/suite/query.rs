//! Suite cases for the query API's storage side: session filters, stored rows in storage order,
//! export paging, retention, and the live feed.

use jitgate_proto::audit::v1::{ApprovalMode, Decision, Event, SessionFilter};
use prost::Message;
use tokio::sync::broadcast;

use super::approvals::new_approval;
use crate::fixtures;
use crate::storage::{ApprovalFilter, ExportCursor, FEED_CAPACITY, Store, Swept};

async fn with_samples(store: &Store) {
    let mut events = fixtures::session_events("s1");
    events.push(fixtures::refused_event("r1"));
    events.extend(fixtures::rich_session_events("g1"));
    store.insert(events).await.expect("insert");
}

async fn ids(store: &Store, filter: SessionFilter) -> Vec<String> {
    store
        .find_sessions(filter, 0)
        .await
        .expect("sessions")
        .into_iter()
        .map(|s| s.session_id)
        .collect()
}

/// Every session filter, alone and combined with AND.
pub async fn session_filters_match_in_sql(store: Store) {
    with_samples(&store).await;
    assert_eq!(
        ids(&store, SessionFilter::default()).await,
        ["g1", "r1", "s1"]
    );
    for identity in [
        fixtures::ISSUER,
        fixtures::SUBJECT,
        fixtures::APP_ID,
        fixtures::OBJECT_ID,
    ] {
        let filter = SessionFilter {
            identity: identity.into(),
            ..SessionFilter::default()
        };
        assert_eq!(ids(&store, filter).await, ["s1"], "{identity}");
    }
    let repo = SessionFilter {
        repository: fixtures::OTHER_REPO.into(),
        ..SessionFilter::default()
    };
    assert_eq!(ids(&store, repo).await, ["g1"]);
    let target = SessionFilter {
        target: "db.prod.internal:5432".into(),
        ..SessionFilter::default()
    };
    assert_eq!(ids(&store, target).await, ["r1", "s1"]);
    let mut denied = SessionFilter::default();
    denied.set_decision(Decision::Denied);
    assert_eq!(
        ids(&store, denied).await,
        ["r1", "s1"],
        "a denial or a refusal"
    );
    let mut allowed = SessionFilter::default();
    allowed.set_decision(Decision::Allowed);
    assert_eq!(ids(&store, allowed).await, ["g1"]);
    let window = SessionFilter {
        since_unix_us: fixtures::START_US + 1,
        until_unix_us: fixtures::START_US + 3_600_000_000,
        ..SessionFilter::default()
    };
    assert_eq!(ids(&store, window).await, ["r1"]);
    let host = SessionFilter {
        agent_host: "runner-02".into(),
        ..SessionFilter::default()
    };
    assert_eq!(ids(&store, host).await, ["g1"]);
    let nothing = SessionFilter {
        identity: "nobody".into(),
        repository: fixtures::OTHER_REPO.into(),
        ..SessionFilter::default()
    };
    assert!(
        ids(&store, nothing).await.is_empty(),
        "filters combine with AND"
    );
}

/// Stored rows come back by the stored `seq` column, payloads untouched.
pub async fn stored_rows_keep_storage_order_not_payload_order(store: Store) {
    with_samples(&store).await;
    store
        .execute_for_tests(
            "UPDATE events SET seq = 99 WHERE event_id = 's1-1';
             UPDATE events SET seq = 1 WHERE event_id = 's1-2';
             UPDATE events SET seq = 2 WHERE event_id = 's1-1';",
        )
        .await
        .expect("swap");
    let rows = store.stored_events("s1".into()).await.expect("rows").events;
    let order: Vec<(u64, &str)> = rows.iter().map(|r| (r.seq, r.event_id.as_str())).collect();
    assert_eq!(order, [(0, "s1-0"), (1, "s1-2"), (2, "s1-1"), (3, "s1-3")]);
    let decoded = Event::decode(rows[1].payload.as_slice()).expect("decode");
    assert_eq!(decoded.seq, 2, "the payload is returned as stored");
}

/// Paging with the cursor sees every event once; `since` inclusive, `until` exclusive.
pub async fn export_pages_cover_the_window_exactly_once(store: Store) {
    with_samples(&store).await;
    let total = 4 + 1 + 5;
    let mut cursor = ExportCursor::default();
    let mut seen = Vec::new();
    loop {
        let page = store.export_page(0, 0, cursor, 3).await.expect("page");
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        cursor = ExportCursor {
            time_unix_us: last.time_unix_us,
            event_id: last.event_id.clone(),
        };
        seen.extend(page.into_iter().map(|e| e.event_id));
    }
    assert_eq!(seen.len(), total);
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), total, "no event twice");
    let start = fixtures::START_US;
    let window = store
        .export_page(
            start + 1_000_000,
            start + 3_000_000,
            ExportCursor::default(),
            100,
        )
        .await
        .expect("window");
    let ids: Vec<&str> = window.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["s1-1", "s1-2"], "since inclusive, until exclusive");
}

/// Retention deletes old events, then sessions left without events; idempotent.
pub async fn retention_sweeps_old_rows_in_batches(store: Store) {
    with_samples(&store).await;
    // Cut between the sample session s1 (+0..3 s), the refusal r1 (+10 min) and g1 (+1 h).
    let cutoff = fixtures::START_US + 60_000_000;
    let swept = store.sweep(cutoff, 2).await.expect("sweep");
    assert_eq!(
        swept,
        Swept {
            events: 4,
            sessions: 1,
            approvals: 0
        }
    );
    assert!(store.events("s1".into()).await.expect("events").is_empty());
    assert_eq!(ids(&store, SessionFilter::default()).await, ["g1", "r1"]);
    assert_eq!(store.events("g1".into()).await.expect("events").len(), 5);
    assert_eq!(
        store.sweep(cutoff, 2).await.expect("again"),
        Swept::default(),
        "idempotent"
    );
    let everything = store.sweep(i64::MAX, 1).await.expect("all");
    assert_eq!((everything.events, everything.sessions), (6, 2));
    assert!(ids(&store, SessionFilter::default()).await.is_empty());
}

/// Retention never deletes a pending approval; a decided old one goes.
pub async fn retention_keeps_pending_approvals_and_removes_decided_ones(store: Store) {
    for id in ["a-pending", "a-denied"] {
        let mut new = new_approval(id, ApprovalMode::Hold, 0);
        new.requested_unix_us = 10;
        new.request.expires_unix_us = i64::MAX;
        store.open_approval(new).await.expect("open");
    }
    store
        .decide("a-denied".into(), false, "b".into(), String::new(), 15)
        .await
        .expect("deny");
    let swept = store.sweep(1_000, 10).await.expect("sweep");
    assert_eq!(swept.approvals, 1);
    let all = ApprovalFilter {
        all: true,
        ..ApprovalFilter::default()
    };
    let left: Vec<String> = store
        .list_approvals(all)
        .await
        .expect("list")
        .into_iter()
        .filter_map(|a| a.request.map(|r| r.approval_id))
        .collect();
    assert_eq!(left, ["a-pending"]);
}

/// New events reach the feed once, in batch order, after their commit; duplicates do not.
pub async fn feed_carries_new_events_once_after_commit(store: Store) {
    let mut feed = store.subscribe();
    let mut events = fixtures::session_events("s1");
    // Not in (session, id) order, which a backend may use internally.
    events.reverse();
    store.insert(events.clone()).await.expect("insert");
    store.insert(events.clone()).await.expect("resend");
    for expected in &events {
        let got = feed.try_recv().expect("event on the feed");
        assert_eq!(&*got, expected);
    }
    assert_eq!(store.events("s1".into()).await.expect("committed").len(), 4);
    assert!(
        feed.try_recv().is_err(),
        "resent duplicates are not published"
    );
}

/// A follower that does not read loses the oldest events and is told how many.
pub async fn a_slow_follower_is_told_what_it_missed_and_ingest_never_waits(store: Store) {
    let mut feed = store.subscribe();
    let extra = 10;
    let kinds: Vec<_> = (0..FEED_CAPACITY + extra)
        .map(|_| fixtures::session_kinds()[1].clone())
        .collect();
    let events = fixtures::seal_session("big", "h", fixtures::START_US, kinds);
    // Nobody reads: the insert still completes.
    store.insert(events).await.expect("insert");
    match feed.try_recv() {
        Err(broadcast::error::TryRecvError::Lagged(missed)) => {
            assert_eq!(missed, u64::try_from(extra).expect("small"));
        }
        other => panic!("expected a lag report, got {other:?}"),
    }
    let next = feed.try_recv().expect("the oldest event still held");
    assert_eq!(next.seq, u64::try_from(extra).expect("small"));
}

/// The ledger keeps the highest chained `seq` received and its hash, whatever order events
/// arrive in; collector-written events never move it; deleting events leaves it alone.
pub async fn the_ledger_keeps_the_last_chained_event_received(store: Store) {
    let events = fixtures::session_events("s1");
    let last = events.last().expect("events").clone();
    for event in events.iter().rev() {
        store.insert(vec![event.clone()]).await.expect("insert");
    }
    let mut by_collector = events[0].clone();
    by_collector.event_id = "s1-collector".into();
    by_collector.seq = 99;
    by_collector.hash.clear();
    by_collector.prev_hash.clear();
    by_collector.origin = jitgate_proto::audit::v1::Origin::Collector.into();
    store.insert(vec![by_collector]).await.expect("insert");
    store
        .execute_for_tests(&format!(
            "DELETE FROM events WHERE event_id = '{}'",
            last.event_id
        ))
        .await
        .expect("delete the tail");
    let stored = store.stored_events("s1".into()).await.expect("rows");
    let ledger = stored.ledger.expect("a ledger");
    assert_eq!(ledger.last_seq, i64::try_from(last.seq).expect("small"));
    assert_eq!(ledger.last_hash, last.hash);
    assert_eq!(
        stored.events.len(),
        events.len(),
        "one cut, one collector event"
    );
    let none = store.stored_events("nope".into()).await.expect("rows");
    assert!(none.ledger.is_none() && none.events.is_empty());
}
