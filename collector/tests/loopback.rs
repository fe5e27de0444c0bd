//! Loopback tests: the real tonic server on 127.0.0.1:0 with a temporary SQLite database,
//! driven by tonic clients exactly as the agent and the CLI use it.

use std::time::Duration;

use jitgate_collector::fixtures;
use jitgate_collector::server::Running;
use jitgate_collector::storage::Store;
use jitgate_proto::audit::v1::{
    Ack, Event, EventBatch, ListEventsRequest, ListSessionsRequest,
    audit_ingest_client::AuditIngestClient, audit_query_client::AuditQueryClient, event::Kind,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

async fn start() -> (tempfile::TempDir, Running) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("audit.db")).expect("open store");
    let server = Running::start("127.0.0.1:0".parse().expect("addr"), store)
        .await
        .expect("start server");
    (dir, server)
}

async fn next_ack(acks: &mut Streaming<Ack>) -> Ack {
    tokio::time::timeout(Duration::from_secs(10), acks.message())
        .await
        .expect("ack within 10 s")
        .expect("ack stream ok")
        .expect("ack stream open")
}

#[tokio::test]
async fn ingest_acks_then_query_returns_sessions_and_events() {
    let (_dir, server) = start().await;
    let mut ingest = AuditIngestClient::connect(server.url())
        .await
        .expect("connect ingest");
    let (tx, rx) = mpsc::channel::<EventBatch>(16);
    let mut acks = ingest
        .stream(ReceiverStream::new(rx))
        .await
        .expect("open stream")
        .into_inner();

    let mut sent = fixtures::session_events("s1");
    sent.push(fixtures::refused_event("r1"));
    let ids =
        |events: &[Event]| -> Vec<String> { events.iter().map(|e| e.event_id.clone()).collect() };
    // Two batches; acks list the ids stored, in order.
    let (first, second) = sent.split_at(2);
    for batch in [first, second] {
        tx.send(EventBatch {
            events: batch.to_vec(),
        })
        .await
        .expect("send");
    }
    let mut acked = Vec::new();
    while acked.len() < sent.len() {
        acked.extend(next_ack(&mut acks).await.event_ids);
    }
    assert_eq!(acked, ids(&sent));
    // A resent event (at-least-once delivery) is acknowledged again but stored once.
    tx.send(EventBatch {
        events: vec![sent[1].clone()],
    })
    .await
    .expect("resend");
    assert_eq!(next_ack(&mut acks).await.event_ids, ids(&sent[1..2]));
    drop(tx);
    let end = tokio::time::timeout(Duration::from_secs(10), acks.message())
        .await
        .expect("stream ends");
    assert!(matches!(end, Ok(None)), "clean end, got {end:?}");

    let mut query = AuditQueryClient::connect(server.url())
        .await
        .expect("connect query");
    let sessions = query
        .list_sessions(ListSessionsRequest { limit: 10 })
        .await
        .expect("list sessions")
        .into_inner()
        .sessions;
    let ids: Vec<&str> = sessions.iter().map(|s| s.session_id.as_str()).collect();
    assert_eq!(ids, ["r1", "s1"], "newest first");
    assert!(sessions[0].refused);
    let s1 = &sessions[1];
    assert_eq!(s1.identity.as_ref(), Some(&fixtures::identity()));
    assert_eq!(s1.process.as_ref(), Some(&fixtures::process()));
    assert_eq!((s1.statements, s1.denied), (2, 1));
    assert_eq!(s1.upstream_user, "jit_4242_a1b2");

    let one = query
        .list_sessions(ListSessionsRequest { limit: 1 })
        .await
        .expect("limit 1")
        .into_inner()
        .sessions;
    assert_eq!(one.len(), 1);

    let events = query
        .list_events(ListEventsRequest {
            session_id: "s1".into(),
        })
        .await
        .expect("list events")
        .into_inner()
        .events;
    assert_eq!(events, fixtures::session_events("s1"));
    let Some(Kind::Statement(denied)) = &events[2].kind else {
        panic!("seq 2 is a statement: {:?}", events[2]);
    };
    assert_eq!(denied.text, fixtures::DENIED_SQL);

    let missing = query
        .list_events(ListEventsRequest {
            session_id: String::new(),
        })
        .await
        .expect_err("session id required");
    assert_eq!(missing.code(), tonic::Code::InvalidArgument);

    server.stop().await.expect("stop");
}

#[tokio::test]
async fn shutdown_ends_open_agent_streams_promptly() {
    let (_dir, server) = start().await;
    let mut ingest = AuditIngestClient::connect(server.url())
        .await
        .expect("connect ingest");
    let (tx, rx) = mpsc::channel::<EventBatch>(16);
    let mut acks = ingest
        .stream(ReceiverStream::new(rx))
        .await
        .expect("open stream")
        .into_inner();
    let event = fixtures::session_events("s1").remove(0);
    tx.send(EventBatch {
        events: vec![event.clone()],
    })
    .await
    .expect("send");
    assert_eq!(next_ack(&mut acks).await.event_ids, vec![event.event_id]);

    // The agent keeps its stream open; stopping must neither hang nor wait the full grace.
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(8), server.stop())
        .await
        .expect("stopped before the grace period")
        .expect("stop");
    assert!(started.elapsed() < Duration::from_secs(8));
    let end = tokio::time::timeout(Duration::from_secs(5), acks.message())
        .await
        .expect("stream ends");
    match end {
        Err(status) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}"),
        Ok(other) => panic!("expected UNAVAILABLE, got {other:?}"),
    }
    drop(tx);
}

#[tokio::test]
async fn event_without_id_is_rejected() {
    let (_dir, server) = start().await;
    let mut ingest = AuditIngestClient::connect(server.url())
        .await
        .expect("connect ingest");
    let mut event = fixtures::session_events("s1").remove(0);
    event.event_id.clear();
    let mut acks = ingest
        .stream(tokio_stream::iter(vec![EventBatch {
            events: vec![event],
        }]))
        .await
        .expect("open stream")
        .into_inner();
    let status = tokio::time::timeout(Duration::from_secs(10), acks.message())
        .await
        .expect("answer")
        .expect_err("rejected");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    server.stop().await.expect("stop");
}
