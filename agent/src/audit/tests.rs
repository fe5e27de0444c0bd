//! Audit delivery against a real collector (gRPC server + SQLite) started in this process.

use std::net::SocketAddr;
use std::time::Duration;

use jitgate_collector::fixtures;
use jitgate_collector::server::Running;
use jitgate_collector::storage::Store;
use jitgate_proto::audit::v1::event::Kind;

use super::{AuditSink, SessionAudit, new_session_id};

async fn collector_on(addr: SocketAddr) -> (tempfile::TempDir, Store, Running) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("audit.db")).expect("open store");
    let server = Running::start(addr, store.clone())
        .await
        .expect("start collector");
    (dir, store, server)
}

fn record_sample_session(sink: &AuditSink) -> String {
    let mut session = SessionAudit::start(sink.clone());
    for kind in fixtures::session_kinds() {
        session.record(kind);
    }
    assert_eq!(session.next_seq(), 4);
    session.session_id().to_owned()
}

#[tokio::test]
async fn events_are_delivered_and_acknowledged() {
    let (_dir, store, server) = collector_on("127.0.0.1:0".parse().expect("addr")).await;
    let sink = AuditSink::spawn(Some(server.url()), "runner-test".into());
    let session_id = record_sample_session(&sink);

    assert_eq!(sink.flush(Duration::from_secs(20)).await, 0);
    let stats = sink.stats();
    assert_eq!((stats.recorded, stats.acked, stats.dropped), (4, 4, 0));

    let events = store.events(session_id.clone()).await.expect("events");
    assert_eq!(events.len(), 4);
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [0, 1, 2, 3]);
    for event in &events {
        assert_eq!(event.agent_host, "runner-test");
        assert!(
            uuid::Uuid::parse_str(&event.event_id).is_ok(),
            "{}",
            event.event_id
        );
        assert!(event.time_unix_us > fixtures::START_US - 365 * 86_400_000_000);
    }
    let Some(Kind::Statement(statement)) = &events[1].kind else {
        panic!("seq 1 is a statement: {:?}", events[1]);
    };
    assert_eq!(statement.text, fixtures::ALLOWED_SQL);

    let sessions = store.sessions(0).await.expect("sessions");
    assert_eq!(sessions[0].session_id, session_id);
    assert_eq!(sessions[0].identity.as_ref(), Some(&fixtures::identity()));
    assert_eq!((sessions[0].statements, sessions[0].denied), (2, 1));
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn events_recorded_before_the_collector_starts_are_delivered() {
    // Reserve a port, then free it: nothing listens there until the collector starts.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let sink = AuditSink::spawn(Some(format!("http://{addr}")), "runner-test".into());
    let session_id = record_sample_session(&sink);

    assert_eq!(
        sink.flush(Duration::from_millis(300)).await,
        4,
        "nobody to ack yet"
    );

    let (_dir, store, server) = collector_on(addr).await;
    assert_eq!(sink.flush(Duration::from_secs(20)).await, 0);
    assert_eq!(store.events(session_id).await.expect("events").len(), 4);
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn delivery_resumes_after_a_collector_restart() {
    let (dir, store, server) = collector_on("127.0.0.1:0".parse().expect("addr")).await;
    let addr = server.addr;
    let sink = AuditSink::spawn(Some(server.url()), "runner-test".into());
    let mut session = SessionAudit::new(sink.clone(), new_session_id());
    let mut kinds = fixtures::session_kinds().into_iter();
    for kind in kinds.by_ref().take(2) {
        session.record(kind);
    }
    assert_eq!(sink.flush(Duration::from_secs(20)).await, 0);

    server.stop().await.expect("stop");
    drop(store);
    for kind in kinds {
        session.record(kind);
    }
    assert_eq!(sink.flush(Duration::from_millis(300)).await, 2);

    let store = Store::open(&dir.path().join("audit.db")).expect("reopen");
    let server = Running::start(addr, store.clone())
        .await
        .expect("restart collector");
    assert_eq!(sink.flush(Duration::from_secs(20)).await, 0);
    let events = store
        .events(session.session_id().to_owned())
        .await
        .expect("events");
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [0, 1, 2, 3]);
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn without_a_collector_events_are_logged_and_count_as_delivered() {
    let sink = AuditSink::spawn(None, "runner-test".into());
    record_sample_session(&sink);
    assert_eq!(sink.flush(Duration::from_secs(5)).await, 0);
    assert_eq!(sink.stats().acked, 4);
}

#[tokio::test]
async fn invalid_collector_url_is_rejected_by_try_spawn() {
    let err = AuditSink::try_spawn(Some("not a url".into()), "h".into()).expect_err("invalid");
    assert!(err.to_string().contains("not a url"), "{err}");
}

#[tokio::test]
async fn a_full_queue_holds_a_sessions_events_back_instead_of_dropping_them() {
    // No collector yet: nothing leaves the queue of 8.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let sink = AuditSink::with_capacity(&format!("http://{addr}"), "runner-test".into(), 8);
    let mut session = SessionAudit::new(sink.clone(), new_session_id());
    for _ in 0..5 {
        for kind in fixtures::session_kinds() {
            session.record(kind);
        }
    }
    assert!(session.has_backlog(), "20 events do not fit a queue of 8");
    let stats = sink.stats();
    assert_eq!(stats.dropped, 0);
    assert!(stats.recorded <= 8 + super::delivery::WINDOW as u64);

    let (_dir, store, server) = collector_on(addr).await;
    tokio::time::timeout(Duration::from_secs(30), session.drain())
        .await
        .expect("the backlog drains once the collector is there");
    assert_eq!(sink.flush(Duration::from_secs(30)).await, 0);
    let events = store
        .events(session.session_id().to_owned())
        .await
        .expect("events");
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..20).collect::<Vec<u64>>(), "all of them, in order");
    assert_eq!(sink.stats().dropped, 0);
    server.stop().await.expect("stop");
}
