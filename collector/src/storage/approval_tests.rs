//! Approval storage tests on a real SQLite file, with the clock passed in.

use jitgate_proto::audit::v1::{
    ApprovalMode, ApprovalRequested, ApprovalStatus, GrantScope, event::Kind,
};

use super::*;
use crate::fixtures;

const T0: i64 = fixtures::START_US;
const SECOND: i64 = 1_000_000;

fn open_temp() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("audit.db")).expect("open store");
    (dir, store)
}

fn new_approval(id: &str, mode: ApprovalMode, pending_s: i64) -> NewApproval {
    NewApproval {
        request: ApprovalRequested {
            approval_id: id.into(),
            identity: Some(fixtures::identity()),
            target: "db:5432".into(),
            database: "shop".into(),
            statement: "DELETE FROM orders".into(),
            fingerprint: "fp1".into(),
            tables: vec!["orders".into(), "refunds".into()],
            actions: vec!["delete".into()],
            mode: mode.into(),
            grant_scope: GrantScope::Fingerprint.into(),
            grant_ttl_s: 60,
            expires_unix_us: T0 + pending_s * SECOND,
            ..ApprovalRequested::default()
        },
        session_id: "s1".into(),
        seq: 5,
        agent_host: "runner-01".into(),
        requested_unix_us: T0,
        auto_approved_by: None,
    }
}

fn grant_query() -> GrantQuery {
    GrantQuery {
        issuer: fixtures::ISSUER.into(),
        subject: fixtures::SUBJECT.into(),
        fingerprint: "fp1".into(),
        ..GrantQuery::default()
    }
}

#[test]
fn expiry_happens_at_the_deadline_and_is_recorded_once() {
    let (_dir, store) = open_temp();
    store
        .open_approval_blocking(&new_approval("a1", ApprovalMode::Hold, 10))
        .expect("open");
    assert_eq!(
        store
            .expire_due_blocking(T0 + 10 * SECOND - 1)
            .expect("early"),
        0
    );
    assert_eq!(store.expire_due_blocking(T0 + 10 * SECOND).expect("due"), 1);
    assert_eq!(
        store.expire_due_blocking(T0 + 20 * SECOND).expect("again"),
        0
    );
    let a = store.approval_blocking("a1").expect("read").expect("found");
    assert_eq!(a.status(), ApprovalStatus::Expired);
    assert_eq!(a.decided_unix_us, T0 + 10 * SECOND);
    let late = store
        .decide_blocking("a1", true, "alice", "", T0 + 11 * SECOND)
        .expect("decide");
    assert!(matches!(late, DecideOutcome::NotPending(_)));
    let events = store.events_blocking("s1").expect("events");
    let kinds: Vec<&str> = events.iter().map(|e| kind_name(e.kind.as_ref())).collect();
    assert_eq!(kinds, ["approval_requested", "approval_expired"]);
    assert!(
        events
            .iter()
            .all(|e| e.seq == 5 && e.agent_host == "runner-01")
    );
}

#[test]
fn a_decision_after_the_deadline_finds_the_request_expired() {
    let (_dir, store) = open_temp();
    store
        .open_approval_blocking(&new_approval("a1", ApprovalMode::Hold, 10))
        .expect("open");
    let outcome = store
        .decide_blocking("a1", true, "alice", "", T0 + 30 * SECOND)
        .expect("decide");
    let DecideOutcome::NotPending(a) = outcome else {
        panic!("expired first: {outcome:?}");
    };
    assert_eq!(a.status(), ApprovalStatus::Expired);
    assert_eq!(
        store
            .decide_blocking("nope", true, "a", "", T0)
            .expect("decide"),
        DecideOutcome::NotFound
    );
}

#[test]
fn grant_lives_from_approval_for_its_ttl() {
    let (_dir, store) = open_temp();
    store
        .open_approval_blocking(&new_approval("a1", ApprovalMode::Request, 3600))
        .expect("open");
    assert!(
        store
            .find_grant_blocking(&grant_query(), T0)
            .expect("find")
            .is_none()
    );
    let approved_at = T0 + 5 * SECOND;
    let outcome = store
        .decide_blocking("a1", true, "alice", "ok", approved_at)
        .expect("decide");
    let DecideOutcome::Decided(a) = outcome else {
        panic!("decided: {outcome:?}");
    };
    assert_eq!(a.grant_expires_unix_us, approved_at + 60 * SECOND);
    let live = store
        .find_grant_blocking(&grant_query(), approved_at + 59 * SECOND)
        .expect("find");
    assert_eq!(live.map(|g| g.decided_by), Some("alice".to_owned()));
    assert!(
        store
            .find_grant_blocking(&grant_query(), approved_at + 60 * SECOND)
            .expect("find")
            .is_none()
    );
    let Some(Kind::ApprovalGranted(granted)) =
        &store.events_blocking("s1").expect("events")[1].kind
    else {
        panic!("granted event");
    };
    assert_eq!(granted.grant_expires_unix_us, approved_at + 60 * SECOND);
}

#[test]
fn hold_approvals_and_denials_open_no_grant() {
    let (_dir, store) = open_temp();
    store
        .open_approval_blocking(&new_approval("hold", ApprovalMode::Hold, 60))
        .expect("open");
    store
        .open_approval_blocking(&new_approval("req", ApprovalMode::Request, 60))
        .expect("open");
    store
        .decide_blocking("hold", true, "a", "", T0)
        .expect("approve");
    store
        .decide_blocking("req", false, "b", "no", T0)
        .expect("deny");
    assert!(
        store
            .find_grant_blocking(&grant_query(), T0 + 1)
            .expect("find")
            .is_none()
    );
}

#[test]
fn list_filters_pending_session_and_subject() {
    let (_dir, store) = open_temp();
    for id in ["a1", "a2", "a3"] {
        store
            .open_approval_blocking(&new_approval(id, ApprovalMode::Hold, 60))
            .expect("open");
    }
    store
        .decide_blocking("a2", false, "b", "", T0)
        .expect("deny");
    let pending = store
        .list_approvals_blocking(&ApprovalFilter::default())
        .expect("list");
    let ids: Vec<String> = pending
        .iter()
        .filter_map(|a| a.request.as_ref().map(|r| r.approval_id.clone()))
        .collect();
    assert_eq!(
        ids,
        ["a3", "a1"],
        "pending, newest first (same time: id descending)"
    );
    let all = ApprovalFilter {
        all: true,
        ..ApprovalFilter::default()
    };
    assert_eq!(store.list_approvals_blocking(&all).expect("all").len(), 3);
    let other_subject = ApprovalFilter {
        all: true,
        subject: "nobody".into(),
        ..ApprovalFilter::default()
    };
    assert!(
        store
            .list_approvals_blocking(&other_subject)
            .expect("none")
            .is_empty()
    );
    let limited = ApprovalFilter {
        all: true,
        limit: 1,
        session_id: "s1".into(),
        ..ApprovalFilter::default()
    };
    assert_eq!(
        store.list_approvals_blocking(&limited).expect("one").len(),
        1
    );
}

#[test]
fn version_1_database_gains_the_approvals_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.db");
    drop(Store::open(&path).expect("create"));
    {
        let conn = Connection::open(&path).expect("raw");
        conn.execute_batch("DROP TABLE approvals; PRAGMA user_version = 1;")
            .expect("make it version 1");
    }
    let store = Store::open(&path).expect("migrate");
    store
        .open_approval_blocking(&new_approval("a1", ApprovalMode::Hold, 60))
        .expect("approvals work");
    let conn = Connection::open(&path).expect("raw");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, SCHEMA_VERSION);
}
