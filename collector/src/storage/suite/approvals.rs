//! Suite cases for approvals, with the clock passed in.

use jitgate_proto::audit::v1::{
    ApprovalMode, ApprovalRequested, ApprovalStatus, GrantScope, event::Kind,
};

use crate::fixtures;
use crate::storage::{ApprovalFilter, DecideOutcome, GrantQuery, NewApproval, Store, kind_name};

const T0: i64 = fixtures::START_US;
const SECOND: i64 = 1_000_000;

/// A request of session `s1` (seq 5, runner-01) pending for `pending_s` seconds from `T0`.
pub fn new_approval(id: &str, mode: ApprovalMode, pending_s: i64) -> NewApproval {
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

async fn decide(store: &Store, id: &str, approve: bool, by: &str, now: i64) -> DecideOutcome {
    store
        .decide(id.into(), approve, by.into(), String::new(), now)
        .await
        .expect("decide")
}

/// Expiry happens at the deadline, once, with its event; a later decision finds it expired.
pub async fn expiry_happens_at_the_deadline_and_is_recorded_once(store: Store) {
    store
        .open_approval(new_approval("a1", ApprovalMode::Hold, 10))
        .await
        .expect("open");
    let expire = |now| store.expire_due(now);
    assert_eq!(expire(T0 + 10 * SECOND - 1).await.expect("early"), 0);
    assert_eq!(expire(T0 + 10 * SECOND).await.expect("due"), 1);
    assert_eq!(expire(T0 + 20 * SECOND).await.expect("again"), 0);
    let a = store
        .approval("a1".into())
        .await
        .expect("read")
        .expect("found");
    assert_eq!(a.status(), ApprovalStatus::Expired);
    assert_eq!(a.decided_unix_us, T0 + 10 * SECOND);
    let late = decide(&store, "a1", true, "alice", T0 + 11 * SECOND).await;
    assert!(matches!(late, DecideOutcome::NotPending(_)));
    let events = store.events("s1".into()).await.expect("events");
    let kinds: Vec<&str> = events.iter().map(|e| kind_name(e.kind.as_ref())).collect();
    assert_eq!(kinds, ["approval_requested", "approval_expired"]);
    assert!(
        events
            .iter()
            .all(|e| e.seq == 5 && e.agent_host == "runner-01")
    );
}

/// A decision after the deadline expires the request first; an unknown id is `NotFound`.
pub async fn a_decision_after_the_deadline_finds_the_request_expired(store: Store) {
    store
        .open_approval(new_approval("a1", ApprovalMode::Hold, 10))
        .await
        .expect("open");
    let outcome = decide(&store, "a1", true, "alice", T0 + 30 * SECOND).await;
    let DecideOutcome::NotPending(a) = outcome else {
        panic!("expired first: {outcome:?}");
    };
    assert_eq!(a.status(), ApprovalStatus::Expired);
    assert_eq!(
        decide(&store, "nope", true, "a", T0).await,
        DecideOutcome::NotFound
    );
}

/// A request-mode grant lives from its approval for `grant_ttl_s`.
pub async fn grant_lives_from_approval_for_its_ttl(store: Store) {
    store
        .open_approval(new_approval("a1", ApprovalMode::Request, 3600))
        .await
        .expect("open");
    let find = |now| store.find_grant(grant_query(), now);
    assert!(find(T0).await.expect("find").is_none());
    let approved_at = T0 + 5 * SECOND;
    let outcome = store
        .decide("a1".into(), true, "alice".into(), "ok".into(), approved_at)
        .await
        .expect("decide");
    let DecideOutcome::Decided(a) = outcome else {
        panic!("decided: {outcome:?}");
    };
    assert_eq!(a.grant_expires_unix_us, approved_at + 60 * SECOND);
    assert_eq!(a.comment, "ok");
    let live = find(approved_at + 59 * SECOND).await.expect("find");
    assert_eq!(live.map(|g| g.decided_by), Some("alice".to_owned()));
    assert!(
        find(approved_at + 60 * SECOND)
            .await
            .expect("find")
            .is_none()
    );
    let Some(Kind::ApprovalGranted(granted)) =
        &store.events("s1".into()).await.expect("events")[1].kind
    else {
        panic!("granted event");
    };
    assert_eq!(granted.grant_expires_unix_us, approved_at + 60 * SECOND);
}

/// Approved hold requests and denied requests open no grant.
pub async fn hold_approvals_and_denials_open_no_grant(store: Store) {
    for (id, mode) in [("hold", ApprovalMode::Hold), ("req", ApprovalMode::Request)] {
        store
            .open_approval(new_approval(id, mode, 60))
            .await
            .expect("open");
    }
    decide(&store, "hold", true, "a", T0).await;
    decide(&store, "req", false, "b", T0).await;
    assert!(
        store
            .find_grant(grant_query(), T0 + 1)
            .await
            .expect("find")
            .is_none()
    );
}

/// Listing: pending only by default, newest first; `all`, subject, session and limit filters.
pub async fn list_filters_pending_session_and_subject(store: Store) {
    for id in ["a1", "a2", "a3"] {
        store
            .open_approval(new_approval(id, ApprovalMode::Hold, 60))
            .await
            .expect("open");
    }
    decide(&store, "a2", false, "b", T0).await;
    let list = |filter| store.list_approvals(filter);
    let pending = list(ApprovalFilter::default()).await.expect("list");
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
    assert_eq!(list(all).await.expect("all").len(), 3);
    let other_subject = ApprovalFilter {
        all: true,
        subject: "nobody".into(),
        ..ApprovalFilter::default()
    };
    assert!(list(other_subject).await.expect("none").is_empty());
    let limited = ApprovalFilter {
        all: true,
        limit: 1,
        session_id: "s1".into(),
        ..ApprovalFilter::default()
    };
    assert_eq!(list(limited).await.expect("one").len(), 1);
}

/// An automatically approved request is stored approved with its requested and granted events
/// in that order; opening the same id again returns it unchanged, `created = false`.
pub async fn auto_approved_request_is_idempotent_with_both_events(store: Store) {
    let mut new = new_approval("auto", ApprovalMode::Request, 60);
    new.auto_approved_by = Some("policy:p1".into());
    let (first, created) = store.open_approval(new.clone()).await.expect("open");
    assert!(created);
    assert_eq!(first.status(), ApprovalStatus::Approved);
    assert_eq!(first.decided_by, "policy:p1");
    assert_eq!(first.grant_expires_unix_us, T0 + 60 * SECOND);
    let (again, created) = store.open_approval(new).await.expect("again");
    assert!(!created);
    assert_eq!(again, first);
    let events = store.events("s1".into()).await.expect("events");
    let kinds: Vec<&str> = events.iter().map(|e| kind_name(e.kind.as_ref())).collect();
    assert_eq!(kinds, ["approval_requested", "approval_granted"]);
}

/// Several deciders (possibly on different collectors) at once: exactly one decision wins,
/// the others see it decided, and one decision event is written.
pub async fn concurrent_decisions_decide_once(store: Store) {
    store
        .open_approval(new_approval("a1", ApprovalMode::Request, 3600))
        .await
        .expect("open");
    let deciders = (0..8).map(|n| {
        let store = store.clone();
        async move {
            store
                .decide(
                    "a1".into(),
                    n % 2 == 0,
                    format!("person{n}"),
                    String::new(),
                    T0 + SECOND,
                )
                .await
                .expect("decide")
        }
    });
    let outcomes = futures::future::join_all(deciders).await;
    let decided: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            DecideOutcome::Decided(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(decided.len(), 1, "{outcomes:?}");
    let winner = decided[0];
    for outcome in &outcomes {
        if let DecideOutcome::NotPending(a) = outcome {
            assert_eq!(a.decided_by, winner.decided_by, "losers see the winner");
        }
    }
    let events = store.events("s1".into()).await.expect("events");
    assert_eq!(events.len(), 2, "requested + one decision");
}
