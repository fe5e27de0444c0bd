//! The approval client against a real collector (gRPC server + SQLite) started in this process;
//! people's decisions are made through the collector's own `Decide` call.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use jitgate_collector::fixtures;
use jitgate_collector::server::Running;
use jitgate_collector::storage::Store;
use jitgate_proto::audit::v1::{DecideRequest, Verdict, approvals_client::ApprovalsClient};

use super::*;

async fn collector() -> (tempfile::TempDir, Running) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("audit.db")).expect("open store");
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let server = Running::start(addr, store).await.expect("start collector");
    (dir, server)
}

fn request(mode: Mode) -> ApprovalRequest {
    ApprovalRequest {
        id: new_approval_id(),
        session_id: "0190a0b0-0000-7000-8000-0000000000aa".into(),
        seq: 3,
        agent_host: "runner-test".into(),
        identity: fixtures::identity(),
        target: "db.prod.internal:5432".into(),
        database: "shop".into(),
        statement: "DELETE FROM public.orders WHERE id = 7".into(),
        fingerprint: "fp-delete-orders".into(),
        tables: vec!["public.orders".into()],
        actions: vec!["delete".into()],
        policy_ids: vec!["deletes-need-approval".into()],
        reason: "deleting orders needs approval".into(),
        mode,
        scope: ScopeKind::Fingerprint,
        grant_ttl: Duration::from_secs(600),
        hold_timeout: Duration::from_secs(60),
        auto_approved_by: None,
    }
}

fn identity_key() -> IdentityKey {
    IdentityKey {
        issuer: fixtures::ISSUER.into(),
        subject: fixtures::SUBJECT.into(),
    }
}

/// A person's decision, through the collector's API as the `jitgate` CLI makes it.
async fn decide(server: &Running, id: &str, verdict: Verdict, by: &str, comment: &str) {
    let mut people = ApprovalsClient::connect(server.url())
        .await
        .expect("connect");
    people
        .decide(DecideRequest {
            approval_id: id.into(),
            verdict: verdict.into(),
            decided_by: by.into(),
            comment: comment.into(),
        })
        .await
        .expect("decide");
}

#[tokio::test]
async fn hold_request_is_approved_while_waiting() {
    let (_dir, server) = collector().await;
    let client = ApprovalClient::new(&server.url()).expect("client");
    let opened = client.open(request(Mode::Hold)).await.expect("open");
    assert!(opened.created);
    assert_eq!(opened.status, Status::Pending);

    let waiter = client.clone();
    let id = opened.id.clone();
    let waiting = tokio::spawn(async move { waiter.wait(&id, Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = SystemTime::now();
    decide(
        &server,
        &opened.id,
        Verdict::Approve,
        "alice",
        "ok for ticket 12",
    )
    .await;
    let outcome = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("wait ends after the decision")
        .expect("task")
        .expect("wait");
    let Outcome::Approved {
        by,
        at,
        comment,
        grant_expires,
    } = outcome
    else {
        panic!("approved expected: {outcome:?}");
    };
    assert_eq!(
        (by.as_str(), comment.as_str()),
        ("alice", "ok for ticket 12")
    );
    assert!(at >= before - Duration::from_secs(1), "{at:?}");
    assert_eq!(grant_expires, None, "hold mode opens no grant");
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn denied_and_expired_and_timed_out() {
    let (_dir, server) = collector().await;
    let client = ApprovalClient::new(&server.url()).expect("client");

    let denied = client.open(request(Mode::Hold)).await.expect("open");
    decide(&server, &denied.id, Verdict::Deny, "bob", "freeze").await;
    assert_eq!(
        client
            .wait(&denied.id, Duration::from_secs(5))
            .await
            .expect("wait"),
        Outcome::Denied {
            by: "bob".into(),
            comment: "freeze".into()
        }
    );

    let mut short = request(Mode::Hold);
    short.hold_timeout = Duration::from_millis(800);
    let short = client.open(short).await.expect("open");
    let outcome = client
        .wait(&short.id, Duration::from_secs(10))
        .await
        .expect("wait");
    assert_eq!(outcome, Outcome::Expired);
    assert!(!outcome.is_approved());

    let pending = client.open(request(Mode::Hold)).await.expect("open");
    let outcome = client
        .wait(&pending.id, Duration::from_millis(300))
        .await
        .expect("wait");
    assert_eq!(outcome, Outcome::TimedOut);

    let unknown = client
        .wait("no-such-id", Duration::from_millis(100))
        .await
        .expect_err("unknown id");
    assert!(
        matches!(unknown, ApprovalError::NotFound { .. }),
        "{unknown:?}"
    );
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn request_mode_grant_is_found_after_approval() {
    let (_dir, server) = collector().await;
    let client = ApprovalClient::new(&server.url()).expect("client");
    let scope = GrantScope {
        target: "db.prod.internal:5432".into(),
        database: "shop".into(),
        fingerprint: "fp-delete-orders".into(),
        ..GrantScope::default()
    };
    assert_eq!(
        client
            .find_grant(&identity_key(), &scope)
            .await
            .expect("find"),
        None
    );
    let req = request(Mode::Request);
    let opened = client.open(req.clone()).await.expect("open");
    let again = client.open(req).await.expect("open again");
    assert_eq!(
        (again.id.as_str(), again.created),
        (opened.id.as_str(), false)
    );
    assert_eq!(
        client
            .find_grant(&identity_key(), &scope)
            .await
            .expect("find"),
        None,
        "no grant while pending"
    );
    decide(&server, &opened.id, Verdict::Approve, "carol", "").await;
    let grant = client
        .find_grant(&identity_key(), &scope)
        .await
        .expect("find")
        .expect("a grant");
    assert_eq!(grant.approval_id, opened.id);
    assert_eq!(grant.approved_by, "carol");
    let left = grant
        .expires
        .duration_since(SystemTime::now())
        .expect("in the future");
    assert!(
        left > Duration::from_secs(590) && left <= Duration::from_secs(600),
        "{left:?}"
    );

    let other = IdentityKey {
        subject: "someone-else".into(),
        ..identity_key()
    };
    assert_eq!(client.find_grant(&other, &scope).await.expect("find"), None);
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn auto_approved_request_is_approved_at_once() {
    let (_dir, server) = collector().await;
    let client = ApprovalClient::new(&server.url()).expect("client");
    let mut req = request(Mode::Request);
    req.scope = ScopeKind::Tables;
    req.auto_approved_by = Some("policy:small-deletes".into());
    let own_scope = GrantScope::of(&req);
    let opened = client.open(req).await.expect("open");
    let own = client
        .find_grant(&IdentityKey::of(&fixtures::identity()), &own_scope)
        .await
        .expect("find")
        .expect("the statement itself is covered");
    assert_eq!(own.approval_id, opened.id);
    assert_eq!(opened.status, Status::Approved);
    let scope = GrantScope {
        tables: vec!["public.orders".into()],
        actions: vec!["delete".into()],
        ..GrantScope::default()
    };
    let grant = client
        .find_grant(&identity_key(), &scope)
        .await
        .expect("find")
        .expect("grant");
    assert_eq!(grant.approved_by, "policy:small-deletes");
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn invalid_requests_are_refused() {
    let (_dir, server) = collector().await;
    let client = ApprovalClient::new(&server.url()).expect("client");
    let mut req = request(Mode::Request);
    req.grant_ttl = Duration::ZERO;
    let err = client.open(req).await.expect_err("no grant ttl");
    assert!(matches!(err, ApprovalError::Refused { .. }), "{err:?}");
    let err = client
        .find_grant(&identity_key(), &GrantScope::default())
        .await
        .expect_err("empty scope");
    assert!(matches!(err, ApprovalError::Refused { .. }), "{err:?}");
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn collector_down_is_an_error_for_every_call() {
    // Reserve a port, then free it: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let client = ApprovalClient::new(&format!("http://{addr}")).expect("client");
    let err = client.open(request(Mode::Hold)).await.expect_err("down");
    assert!(matches!(err, ApprovalError::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    let started = std::time::Instant::now();
    let err = client
        .wait("any", Duration::from_millis(600))
        .await
        .expect_err("down");
    assert!(matches!(err, ApprovalError::Unavailable { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the timeout"
    );
    let scope = GrantScope {
        fingerprint: "fp".into(),
        ..GrantScope::default()
    };
    let err = client
        .find_grant(&identity_key(), &scope)
        .await
        .expect_err("down");
    assert!(matches!(err, ApprovalError::Unavailable { .. }), "{err:?}");

    let err = ApprovalClient::new("not a url").expect_err("invalid");
    assert!(matches!(err, ApprovalError::InvalidUrl { .. }), "{err:?}");
}
