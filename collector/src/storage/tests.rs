//! Storage tests on a real SQLite file in a temporary directory.

use jitgate_proto::audit::v1::event::Kind;

use super::*;
use crate::fixtures;

fn open_temp() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("audit.db")).expect("open store");
    (dir, store)
}

#[test]
fn inserts_and_reads_events_in_seq_order() {
    let (_dir, store) = open_temp();
    let mut events = fixtures::session_events("s1");
    events.reverse();
    assert_eq!(store.insert_blocking(&events).expect("insert"), 4);

    let read = store.events_blocking("s1").expect("events");
    let seqs: Vec<u64> = read.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [0, 1, 2, 3]);
    assert_eq!(read[1], fixtures::session_events("s1")[1]);
    assert!(store.events_blocking("nope").expect("events").is_empty());
}

#[test]
fn duplicate_event_is_ignored() {
    let (_dir, store) = open_temp();
    let events = fixtures::session_events("s1");
    assert_eq!(store.insert_blocking(&events).expect("first"), 4);
    assert_eq!(store.insert_blocking(&events).expect("again"), 0);
    assert_eq!(store.insert_blocking(&events[1..2]).expect("one"), 0);

    assert_eq!(store.events_blocking("s1").expect("events").len(), 4);
    let sessions = store.sessions_blocking(0).expect("sessions");
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].statements, 2, "resent statement counted once");
    assert_eq!(sessions[0].denied, 1);
}

#[test]
fn session_row_aggregates_events() {
    let (_dir, store) = open_temp();
    store
        .insert_blocking(&fixtures::session_events("s1"))
        .expect("insert");
    let sessions = store.sessions_blocking(10).expect("sessions");
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

#[test]
fn out_of_order_events_aggregate_the_same() {
    let (_dir, store) = open_temp();
    let events = fixtures::session_events("s1");
    // Statement and end first, then the start: as after a reconnect that resent a tail.
    store.insert_blocking(&events[2..]).expect("tail");
    store.insert_blocking(&events[..2]).expect("head");
    let s = &store.sessions_blocking(1).expect("sessions")[0];
    assert_eq!(s.started_unix_us, fixtures::START_US);
    assert_eq!((s.statements, s.denied), (2, 1));
    assert_eq!(
        s.identity.as_ref().map(|i| i.subject.as_str()),
        Some(fixtures::SUBJECT)
    );
}

#[test]
fn ended_totals_cover_unseen_statements() {
    let (_dir, store) = open_temp();
    let events = fixtures::session_events("s1");
    // Only start and end stored: the reported totals stand in for the missing statements.
    store
        .insert_blocking(&[events[0].clone(), events[3].clone()])
        .expect("insert");
    let s = &store.sessions_blocking(1).expect("sessions")[0];
    assert_eq!((s.statements, s.denied), (2, 1));
}

#[test]
fn refused_session_and_newest_first() {
    let (_dir, store) = open_temp();
    store
        .insert_blocking(&fixtures::session_events("old"))
        .expect("insert");
    store
        .insert_blocking(&[fixtures::refused_event("new")])
        .expect("insert");
    let sessions = store.sessions_blocking(0).expect("sessions");
    let ids: Vec<&str> = sessions.iter().map(|s| s.session_id.as_str()).collect();
    assert_eq!(ids, ["new", "old"]);
    assert!(sessions[0].refused);
    assert_eq!(sessions[0].refused_reason, "no identity token for pid 4242");
    assert_eq!(sessions[0].process.as_ref().map(|p| p.pid), Some(4242));
    assert_eq!(store.sessions_blocking(1).expect("limit").len(), 1);
}

#[test]
fn rejects_event_without_id_and_stores_nothing_of_the_batch() {
    let (_dir, store) = open_temp();
    let mut events = fixtures::session_events("s1");
    events[2].event_id.clear();
    let err = store.insert_blocking(&events).expect_err("missing id");
    assert!(matches!(
        err,
        StoreError::MissingField { field: "event_id" }
    ));
    assert!(store.events_blocking("s1").expect("events").is_empty());
}

#[test]
fn unknown_kind_is_stored() {
    let (_dir, store) = open_temp();
    let mut event = fixtures::session_events("s1").remove(1);
    event.kind = None;
    assert_eq!(store.insert_blocking(&[event]).expect("insert"), 1);
    assert_eq!(kind_name(None), "unknown");
    assert!(!matches!(
        store.events_blocking("s1").expect("events")[0].kind,
        Some(Kind::Statement(_))
    ));
}

#[test]
fn reopen_keeps_data_and_uses_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.db");
    Store::open(&path)
        .expect("open")
        .insert_blocking(&fixtures::session_events("s1"))
        .expect("insert");
    let store = Store::open(&path).expect("reopen");
    assert_eq!(store.events_blocking("s1").expect("events").len(), 4);
    let conn = Connection::open(&path).expect("raw open");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn async_methods_run_off_the_runtime() {
    let (_dir, store) = open_temp();
    let stored = store
        .insert(fixtures::session_events("s1"))
        .await
        .expect("insert");
    assert_eq!(stored, 4);
    assert_eq!(store.sessions(0).await.expect("sessions").len(), 1);
    assert_eq!(store.events("s1".into()).await.expect("events").len(), 4);
}
