//! Loopback tests: the real tonic server on 127.0.0.1:0 with a temporary SQLite database,
//! driven by tonic clients exactly as the agent and the CLI use it.

use std::time::Duration;

use jitgate_collector::fixtures;
use jitgate_collector::query::auth::QueryAuth;
use jitgate_collector::server::{Running, ServerOptions};
use jitgate_collector::storage::Store;
use jitgate_collector::storage::suite::on_every_backend;
use jitgate_proto::audit::v1::{
    Ack, Event, EventBatch, ListEventsRequest, ListSessionsRequest,
    audit_ingest_client::AuditIngestClient, audit_query_client::AuditQueryClient, event::Kind,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

async fn start(store: Store) -> Running {
    // The query API is open here: these tests are about ingest and reading back.
    let options = ServerOptions {
        query: QueryAuth::Open,
        ..ServerOptions::default()
    };
    Running::start_with("127.0.0.1:0".parse().expect("addr"), store, options)
        .await
        .expect("start server")
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
    on_every_backend(|store| {
        Box::pin(async move {
            let server = start(store).await;
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
            let ids = |events: &[Event]| -> Vec<String> {
                events.iter().map(|e| e.event_id.clone()).collect()
            };
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
                .list_sessions(ListSessionsRequest {
                    limit: 10,
                    filter: None,
                })
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
                .list_sessions(ListSessionsRequest {
                    limit: 1,
                    filter: None,
                })
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
        })
    })
    .await;
}

#[tokio::test]
async fn shutdown_ends_open_agent_streams_promptly() {
    on_every_backend(|store| {
        Box::pin(async move {
            let server = start(store).await;
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
        })
    })
    .await;
}

#[tokio::test]
async fn event_without_id_is_rejected() {
    on_every_backend(|store| {
        Box::pin(async move {
            let server = start(store).await;
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
        })
    })
    .await;
}

/// The review's forgery: an agent sends events claiming to be collector-written (outside the
/// hash chain) and a second `SessionStarted` with another identity. The forged batch is refused
/// with INVALID_ARGUMENT and stored not at all; a second `SessionStarted` cannot rewrite the
/// session's identity.
#[tokio::test]
async fn forged_collector_events_are_refused_and_a_session_keeps_its_first_identity() {
    use jitgate_proto::audit::v1::{Identity, Origin, SessionStarted};
    on_every_backend(|store| {
        Box::pin(async move {
            let server = start(store).await;
            let mut ingest = AuditIngestClient::connect(server.url())
                .await
                .expect("connect ingest");
            let victim = fixtures::session_events("victim");
            let mut forged = victim[1].clone();
            forged.event_id = "forged-1".into();
            forged.seq = 7;
            forged.origin = Origin::Collector.into();
            let result = ingest
                .stream(tokio_stream::iter(vec![EventBatch {
                    events: vec![forged],
                }]))
                .await;
            let status = match result {
                Err(status) => status,
                Ok(response) => {
                    let mut acks = response.into_inner();
                    match acks.message().await {
                        Err(status) => status,
                        Ok(other) => panic!("forged event not refused: {other:?}"),
                    }
                }
            };
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

            let mut rival = victim[0].clone();
            rival.event_id = "rival-0".into();
            if let Some(Kind::SessionStarted(s)) = &mut rival.kind {
                *s = SessionStarted {
                    identity: Some(Identity {
                        issuer: "https://evil".into(),
                        ..Identity::default()
                    }),
                    ..s.clone()
                };
            }
            let mut events = victim.clone();
            events.push(rival);
            let (tx, rx) = mpsc::channel::<EventBatch>(4);
            let mut acks = AuditIngestClient::connect(server.url())
                .await
                .expect("connect ingest")
                .stream(ReceiverStream::new(rx))
                .await
                .expect("open stream")
                .into_inner();
            let total = events.len();
            tx.send(EventBatch { events }).await.expect("send");
            let mut acked = 0;
            while acked < total {
                acked += next_ack(&mut acks).await.event_ids.len();
            }
            let mut query = AuditQueryClient::connect(server.url())
                .await
                .expect("connect query");
            let sessions = query
                .list_sessions(ListSessionsRequest::default())
                .await
                .expect("sessions")
                .into_inner()
                .sessions;
            let stored = sessions
                .iter()
                .find(|s| s.session_id == "victim")
                .expect("victim listed");
            let issuer = stored.identity.as_ref().map(|i| i.issuer.as_str());
            assert_ne!(issuer, Some("https://evil"), "{stored:?}");
            let events = query
                .list_events(ListEventsRequest {
                    session_id: "victim".into(),
                })
                .await
                .expect("events")
                .into_inner()
                .events;
            assert!(events.iter().all(|e| e.event_id != "forged-1"));
            server.stop().await.expect("stop");
        })
    })
    .await;
}
