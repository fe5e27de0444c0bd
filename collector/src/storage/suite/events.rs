//! Suite cases for events and session rows.

use jitgate_proto::audit::v1::event::Kind;

use crate::fixtures;
use crate::storage::{Store, StoreError, kind_name};

/// Events come back in `seq` order whatever the insert order; unknown sessions have none.
pub async fn inserts_and_reads_events_in_seq_order(store: Store) {
    let mut events = fixtures::session_events("s1");
    events.reverse();
    assert_eq!(store.insert(events).await.expect("insert"), 4);
    let read = store.events("s1".into()).await.expect("events");
    let seqs: Vec<u64> = read.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [0, 1, 2, 3]);
    assert_eq!(read[1], fixtures::session_events("s1")[1]);
    assert!(
        store
            .events("nope".into())
            .await
            .expect("events")
            .is_empty()
    );
}

/// A resent event is stored and counted once.
pub async fn duplicate_event_is_ignored(store: Store) {
    let events = fixtures::session_events("s1");
    assert_eq!(store.insert(events.clone()).await.expect("first"), 4);
    assert_eq!(store.insert(events.clone()).await.expect("again"), 0);
    assert_eq!(store.insert(events[1..2].to_vec()).await.expect("one"), 0);
    assert_eq!(store.events("s1".into()).await.expect("events").len(), 4);
    let sessions = store.sessions(0).await.expect("sessions");
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].statements, 2, "resent statement counted once");
    assert_eq!(sessions[0].denied, 1);
}

/// The session row holds identity, process, target and counts from the events.
pub async fn session_row_aggregates_events(store: Store) {
    store
        .insert(fixtures::session_events("s1"))
        .await
        .expect("insert");
    let sessions = store.sessions(10).await.expect("sessions");
    let s = &sessions[0];
    assert_eq!(s.session_id, "s1");
    assert_eq!(s.started_unix_us, fixtures::START_US);
    assert_eq!(s.ended_unix_us, fixtures::START_US + 3_000_000);
    assert_eq!(s.identity.as_ref(), Some(&fixtures::identity()));
    assert_eq!(s.process.as_ref(), Some(&fixtures::process()));
    assert_eq!(s.target, "db.prod.internal:5432");
    assert_eq!(s.database, "shop");
    assert_eq!(s.upstream_user, "jit_4242_a1b2");
    assert_eq!((s.statements, s.denied), (2, 1));
    assert_eq!(s.agent_host, "runner-01");
    assert!(!s.refused);
}

/// Tail first, then head (as after a reconnect): the same row.
pub async fn out_of_order_events_aggregate_the_same(store: Store) {
    let events = fixtures::session_events("s1");
    store.insert(events[2..].to_vec()).await.expect("tail");
    store.insert(events[..2].to_vec()).await.expect("head");
    let s = &store.sessions(1).await.expect("sessions")[0];
    assert_eq!(s.started_unix_us, fixtures::START_US);
    assert_eq!((s.statements, s.denied), (2, 1));
    assert_eq!(
        s.identity.as_ref().map(|i| i.subject.as_str()),
        Some(fixtures::SUBJECT)
    );
}

/// Only start and end stored: the reported totals stand in for the missing statements.
pub async fn ended_totals_cover_unseen_statements(store: Store) {
    let events = fixtures::session_events("s1");
    store
        .insert(vec![events[0].clone(), events[3].clone()])
        .await
        .expect("insert");
    let s = &store.sessions(1).await.expect("sessions")[0];
    assert_eq!((s.statements, s.denied), (2, 1));
}

/// A refusal makes a refused session row; sessions list newest first and honour the limit.
pub async fn refused_session_and_newest_first(store: Store) {
    store
        .insert(fixtures::session_events("old"))
        .await
        .expect("insert");
    store
        .insert(vec![fixtures::refused_event("new")])
        .await
        .expect("insert");
    let sessions = store.sessions(0).await.expect("sessions");
    let ids: Vec<&str> = sessions.iter().map(|s| s.session_id.as_str()).collect();
    assert_eq!(ids, ["new", "old"]);
    assert!(sessions[0].refused);
    assert_eq!(sessions[0].refused_reason, "no identity token for pid 4242");
    assert_eq!(sessions[0].process.as_ref().map(|p| p.pid), Some(4242));
    assert_eq!(store.sessions(1).await.expect("limit").len(), 1);
}

/// One event without an id: the whole batch is refused and nothing stored.
pub async fn rejects_event_without_id_and_stores_nothing_of_the_batch(store: Store) {
    let mut events = fixtures::session_events("s1");
    events[2].event_id.clear();
    let err = store.insert(events).await.expect_err("missing id");
    assert!(matches!(
        err,
        StoreError::MissingField { field: "event_id" }
    ));
    assert!(store.events("s1".into()).await.expect("events").is_empty());
    assert!(store.sessions(0).await.expect("sessions").is_empty());
}

/// An event of a kind this collector does not know is stored as `unknown`.
pub async fn unknown_kind_is_stored(store: Store) {
    let mut event = fixtures::session_events("s1").remove(1);
    event.kind = None;
    assert_eq!(store.insert(vec![event]).await.expect("insert"), 1);
    assert_eq!(kind_name(None), "unknown");
    assert!(!matches!(
        store.events("s1".into()).await.expect("events")[0].kind,
        Some(Kind::Statement(_))
    ));
}

/// Several writers (collectors sharing one database) storing overlapping batches of one
/// session at once: every event stored once, every statement counted once.
pub async fn concurrent_inserts_of_one_session_count_once(store: Store) {
    let events = fixtures::session_events("s1");
    let mut statements = Vec::new();
    for n in 0..40u64 {
        let mut event = events[1].clone();
        event.event_id = format!("s1/stmt/{n}");
        event.seq = 10 + n;
        statements.push(event);
    }
    let writers = (0..8).map(|w| {
        let store = store.clone();
        // Each writer sends everything, starting at a different place.
        let mut batch = statements.clone();
        batch.rotate_left(w * 5);
        batch.extend(events.clone());
        async move { store.insert(batch).await.expect("insert") }
    });
    let stored: usize = futures::future::join_all(writers).await.into_iter().sum();
    assert_eq!(stored, 44, "each event stored by exactly one writer");
    assert_eq!(store.events("s1".into()).await.expect("events").len(), 44);
    let s = &store.sessions(0).await.expect("sessions")[0];
    // 40 allowed statements + the fixture's allowed and denied one.
    assert_eq!((s.statements, s.denied), (42, 1));
}

/// An agent's lifecycle chain is a session row marked `agent_run`, running until its
/// `agent_stopped`; client sessions are never marked.
pub async fn an_agent_run_is_marked_and_ends_at_agent_stopped(store: Store) {
    use jitgate_proto::audit::v1::{AgentStarted, AgentStopped, Event};
    let event = |seq: u64, kind: Kind| Event {
        event_id: format!("run-{seq}"),
        session_id: "run".into(),
        seq,
        time_unix_us: fixtures::START_US + i64::try_from(seq).unwrap_or(0) * 1_000_000,
        agent_host: "runner-01".into(),
        kind: Some(kind),
        ..Event::default()
    };
    store
        .insert(vec![event(0, Kind::AgentStarted(AgentStarted::default()))])
        .await
        .expect("insert");
    store
        .insert(fixtures::session_events("s1"))
        .await
        .expect("insert");
    let run = |sessions: Vec<jitgate_proto::audit::v1::SessionSummary>| {
        sessions.into_iter().find(|s| s.session_id == "run")
    };
    let listed = store
        .find_sessions(Default::default(), 0)
        .await
        .expect("sessions");
    assert!(
        listed
            .iter()
            .all(|s| s.agent_run == (s.session_id == "run")),
        "{listed:?}"
    );
    let running = run(listed).expect("the run is listed");
    assert_eq!(running.ended_unix_us, 0);
    store
        .insert(vec![event(1, Kind::AgentStopped(AgentStopped::default()))])
        .await
        .expect("insert");
    let stopped = run(store
        .find_sessions(Default::default(), 0)
        .await
        .expect("sessions"))
    .expect("the run is listed");
    assert!(stopped.agent_run);
    assert_eq!(stopped.ended_unix_us, fixtures::START_US + 1_000_000);
}
