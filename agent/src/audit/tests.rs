//! Audit delivery against a real collector (gRPC server + SQLite) started in this process.

use std::net::SocketAddr;
use std::time::Duration;

use jitgate_collector::fixtures;
use jitgate_collector::server::Running;
use jitgate_collector::storage::Store;
use jitgate_proto::audit::v1::event::Kind;

use super::spool::SpoolSync;
use super::{AuditSink, SessionAudit, SpoolSettings, new_session_id};

/// A sink with its own spool in a fresh temporary directory (kept alive by the returned dir).
fn sink_to(collector: Option<String>, max_bytes: u64) -> (tempfile::TempDir, AuditSink) {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = open_in(dir.path(), collector, max_bytes);
    (dir, sink)
}

fn open_in(dir: &std::path::Path, collector: Option<String>, max_bytes: u64) -> AuditSink {
    let settings = SpoolSettings {
        dir: dir.join("spool"),
        max_bytes,
        sync: SpoolSync::Normal,
    };
    AuditSink::open(&settings, collector, None, "runner-test".into()).expect("open sink")
}

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
    let (_spool, sink) = sink_to(Some(server.url()), 1 << 30);
    let session_id = record_sample_session(&sink);

    assert_eq!(sink.flush(Duration::from_secs(20)).await, 0);
    let stats = sink.stats();
    assert_eq!((stats.recorded, stats.acked, stats.spooled), (4, 4, 0));

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
    let (_spool, sink) = sink_to(Some(format!("http://{addr}")), 1 << 30);
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
    let (_spool, sink) = sink_to(Some(server.url()), 1 << 30);
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
    let (_spool, sink) = sink_to(None, 1 << 30);
    record_sample_session(&sink);
    assert_eq!(sink.flush(Duration::from_secs(5)).await, 0);
    assert_eq!(sink.stats().acked, 4);
}

#[tokio::test]
async fn invalid_collector_url_is_rejected_by_try_spawn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = SpoolSettings {
        dir: dir.path().join("spool"),
        max_bytes: 1 << 20,
        sync: SpoolSync::Full,
    };
    let err = AuditSink::open(&settings, Some("not a url".into()), None, "h".into())
        .expect_err("invalid");
    assert!(err.to_string().contains("not a url"), "{err}");
}

/// A collector address nothing listens on (yet).
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

#[tokio::test]
async fn events_recorded_before_a_restart_are_delivered_by_the_next_run() {
    let addr = free_addr();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_owned();
    // The first run, in its own runtime, ends (and its delivery task with it) undelivered.
    let session_id = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let sink = open_in(&path, Some(format!("http://{addr}")), 1 << 30);
            let mut session = SessionAudit::start(sink.clone());
            for kind in fixtures::session_kinds() {
                session.record(kind);
            }
            session.flush().await;
            assert_eq!(sink.stats().spooled, 4, "committed, nobody to ack");
            session.session_id().to_owned()
        })
    })
    .join()
    .expect("first run");
    let sink = open_in(dir.path(), Some(format!("http://{addr}")), 1 << 30);
    assert_eq!(sink.found_at_start(), 4);
    let (_db, store, server) = collector_on(addr).await;
    assert_eq!(sink.flush(Duration::from_secs(20)).await, 0);
    let events = store.events(session_id).await.expect("events");
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [0, 1, 2, 3]);
    let report = jitgate_proto::chain::verify(&events);
    assert!(report.intact(), "{report:?}");
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn session_events_are_sealed_onto_one_chain_in_the_spool() {
    let (_spool, sink) = sink_to(Some(format!("http://{}", free_addr())), 1 << 30);
    let mut session = SessionAudit::start(sink.clone());
    let mut tickets = Vec::new();
    for kind in fixtures::session_kinds() {
        tickets.push(session.record(kind));
    }
    assert!(tickets.windows(2).all(|w| w[0] < w[1]), "{tickets:?}");
    session.flush().await;
    let rows = sink.spool().read_after(0, 100).expect("read");
    let events: Vec<jitgate_proto::audit::v1::Event> = rows
        .iter()
        .map(|r| prost::Message::decode(r.body.as_slice()).expect("decode"))
        .collect();
    assert_eq!(events.len(), 4);
    assert!(events[0].prev_hash.is_empty());
    assert_eq!(events[1].prev_hash, events[0].hash);
    let report = jitgate_proto::chain::verify(&events);
    assert!(report.intact(), "{report:?}");
}

#[tokio::test]
async fn a_full_spool_says_so_and_keeps_every_event() {
    // No collector: nothing leaves the spool.
    let addr = free_addr();
    let (_spool, sink) = sink_to(Some(format!("http://{addr}")), 200);
    assert!(sink.full_message().is_none());
    let mut session = SessionAudit::new(sink.clone(), new_session_id());
    for _ in 0..5 {
        for kind in fixtures::session_kinds() {
            session.record(kind);
        }
    }
    session.flush().await;
    let message = sink.full_message().expect("full");
    assert!(message.starts_with("audit spool full ("), "{message}");
    assert!(
        message.contains(&format!("the collector at http://{addr}")),
        "{message}"
    );
    assert_eq!(sink.stats().spooled, 20, "full, yet nothing dropped");

    let (_dir, store, server) = collector_on(addr).await;
    assert_eq!(sink.flush(Duration::from_secs(30)).await, 0);
    assert!(sink.full_message().is_none(), "drained below the limit");
    let events = store
        .events(session.session_id().to_owned())
        .await
        .expect("events");
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..20).collect::<Vec<u64>>(), "all of them, in order");
    assert!(jitgate_proto::chain::verify(&events).intact());
    server.stop().await.expect("stop");
}
