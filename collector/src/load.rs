//! An ingest load generator for `cargo xtask bench`: simulated agents stream sealed audit
//! sessions to a collector over `AuditIngest.Stream`, the way the agent does (batches, a window
//! of unacknowledged events), and the generator measures how many events per second the
//! collector stores and acknowledges.
//!
//! Each simulated agent has its own HTTP/2 connection and streams whole sessions: a
//! `SessionStarted`, `statements_per_session` `Statement` events with a result sample (about the
//! size the agent records for a small query), and a `SessionEnded`, each chained with
//! [`jitgate_proto::chain::seal`]. The run is bounded by the number of events, not by time.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jitgate_proto::audit::v1::{
    Decision, Event, EventBatch, Identity, Process, ResultSample, SampleRow, SampleValue,
    SessionEnded, SessionStarted, Statement, audit_ingest_client::AuditIngestClient, event::Kind,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity as TlsIdentity};

/// What one load run does.
#[derive(Clone, Debug)]
pub struct LoadPlan {
    /// Collector URL, e.g. `http://127.0.0.1:50051`.
    pub collector: String,
    /// Concurrent simulated agents (one connection and one stream each).
    pub agents: usize,
    /// Events each agent sends (rounded up to whole sessions).
    pub events_per_agent: usize,
    /// Statement events per session (plus a start and an end event).
    pub statements_per_session: usize,
    /// Events per `EventBatch` (the agent's `BATCH`).
    pub batch: usize,
    /// Most events sent and not yet acknowledged per agent (the agent's `WINDOW`).
    pub window: usize,
    /// For an `https://` collector: the CA to verify it with and the agent certificate and key
    /// to present (as `jitgate-collector ca issue --agent` writes them).
    pub tls: Option<LoadTls>,
}

/// PEM files of a mutual-TLS load run.
#[derive(Clone, Debug)]
pub struct LoadTls {
    /// CA certificate the collector's certificate chains to.
    pub ca: std::path::PathBuf,
    /// Agent certificate.
    pub cert: std::path::PathBuf,
    /// Its private key.
    pub key: std::path::PathBuf,
}

/// What one load run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadResult {
    /// Events sent and acknowledged, all agents together.
    pub events: u64,
    /// Encoded bytes of those events.
    pub bytes: u64,
    /// From the first send to the last acknowledgement.
    pub elapsed: Duration,
}

impl LoadResult {
    /// Acknowledged events per second.
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Errors of a load run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The collector URL does not parse.
    #[error("invalid collector URL {0:?}")]
    Url(String),
    /// A TLS file cannot be read.
    #[error("cannot read {path}")]
    TlsFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS settings were refused.
    #[error("TLS settings")]
    Tls(#[source] tonic::transport::Error),
    /// No connection to the collector.
    #[error("cannot connect to the collector")]
    Connect(#[source] tonic::transport::Error),
    /// The collector refused or broke the stream.
    #[error("ingest stream failed")]
    Status(#[source] Box<tonic::Status>),
    /// The collector closed the stream before acknowledging everything.
    #[error("the collector acknowledged {acked} of {sent} events and closed the stream")]
    Incomplete {
        /// Events sent.
        sent: u64,
        /// Events acknowledged.
        acked: u64,
    },
    /// A simulated agent's task failed.
    #[error("load task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// Runs `plan` and returns the totals once every event is acknowledged.
///
/// # Errors
/// [`LoadError`] when the collector cannot be reached or a stream fails.
pub async fn run(plan: &LoadPlan) -> Result<LoadResult, LoadError> {
    let mut endpoint = Endpoint::from_shared(plan.collector.clone())
        .map_err(|_| LoadError::Url(plan.collector.clone()))?;
    if let Some(tls) = &plan.tls {
        let read = |path: &std::path::PathBuf| {
            std::fs::read(path).map_err(|source| LoadError::TlsFile {
                path: path.clone(),
                source,
            })
        };
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&tls.ca)?))
            .identity(TlsIdentity::from_pem(read(&tls.cert)?, read(&tls.key)?));
        endpoint = endpoint.tls_config(config).map_err(LoadError::Tls)?;
    }
    // Connect every agent and build its events before the clock starts.
    let mut agents = Vec::with_capacity(plan.agents);
    for index in 0..plan.agents {
        let channel = endpoint.connect().await.map_err(LoadError::Connect)?;
        agents.push((channel, agent_events(index, plan)));
    }
    let bytes = agents
        .iter()
        .flat_map(|(_, events)| events.iter())
        .map(|e| prost::Message::encoded_len(e) as u64)
        .sum();
    let started = Instant::now();
    let tasks: Vec<_> = agents
        .into_iter()
        .map(|(channel, events)| {
            tokio::spawn(stream_agent(channel, events, plan.batch, plan.window))
        })
        .collect();
    let mut events = 0;
    for task in tasks {
        events += task.await??;
    }
    Ok(LoadResult {
        events,
        bytes,
        elapsed: started.elapsed(),
    })
}

/// Streams `events` in batches of `batch`, keeping at most `window` unacknowledged; returns the
/// number acknowledged (= sent).
async fn stream_agent(
    channel: Channel,
    events: Vec<Event>,
    batch: usize,
    window: usize,
) -> Result<u64, LoadError> {
    let sent = events.len() as u64;
    let (tx, rx) = mpsc::channel::<EventBatch>(4);
    let mut client = AuditIngestClient::new(channel);
    let mut acks = client
        .stream(ReceiverStream::new(rx))
        .await
        .map_err(|s| LoadError::Status(Box::new(s)))?
        .into_inner();
    let mut pending: HashSet<String> = HashSet::new();
    let mut chunks = events.chunks(batch.max(1));
    let mut acked: u64 = 0;
    let mut next = chunks.next();
    while acked < sent {
        let room = next.is_some_and(|c| pending.len() + c.len() <= window.max(batch));
        if room && let Some(chunk) = next.take() {
            pending.extend(chunk.iter().map(|e| e.event_id.clone()));
            let message = EventBatch {
                events: chunk.to_vec(),
            };
            if tx.send(message).await.is_err() {
                break;
            }
            next = chunks.next();
            continue;
        }
        match acks.next().await {
            Some(Ok(ack)) => {
                for id in ack.event_ids {
                    if pending.remove(&id) {
                        acked += 1;
                    }
                }
            }
            Some(Err(status)) => return Err(LoadError::Status(Box::new(status))),
            None => break,
        }
    }
    drop(tx);
    if acked < sent {
        return Err(LoadError::Incomplete { sent, acked });
    }
    Ok(acked)
}

/// The sealed sessions agent `index` sends: at least `plan.events_per_agent` events.
fn agent_events(index: usize, plan: &LoadPlan) -> Vec<Event> {
    let per_session = plan.statements_per_session + 2;
    let sessions = plan.events_per_agent.div_ceil(per_session).max(1);
    let host = format!("load-agent-{index}");
    let mut events = Vec::with_capacity(sessions * per_session);
    for _ in 0..sessions {
        let session_id = uuid::Uuid::now_v7().to_string();
        let mut prev = Vec::new();
        let kinds = std::iter::once(started(index))
            .chain((0..plan.statements_per_session).map(statement))
            .chain(std::iter::once(Kind::SessionEnded(SessionEnded {
                reason: "client terminated".into(),
                statements: plan.statements_per_session as u64,
                denied: 0,
            })));
        for (seq, kind) in (0u64..).zip(kinds) {
            let mut event = Event {
                event_id: uuid::Uuid::now_v7().to_string(),
                session_id: session_id.clone(),
                seq,
                time_unix_us: now_us(),
                agent_host: host.clone(),
                kind: Some(kind),
                ..Event::default()
            };
            prev = jitgate_proto::chain::seal(&mut event, &prev).to_vec();
            events.push(event);
        }
    }
    events
}

fn started(index: usize) -> Kind {
    Kind::SessionStarted(SessionStarted {
        identity: Some(Identity {
            issuer: "https://token.actions.githubusercontent.com".into(),
            subject: format!("repo:example/app{index}:ref:refs/heads/main"),
            repository: format!("example/app{index}"),
            ..Identity::default()
        }),
        process: Some(Process {
            pid: 4242,
            tgid: 4242,
            comm: "psql".into(),
            exe: "/usr/bin/psql".into(),
            ..Process::default()
        }),
        target: "db.prod.internal:5432".into(),
        database: "shop".into(),
        user: "ci".into(),
        upstream_user: "jit_load".into(),
        ..SessionStarted::default()
    })
}

fn statement(n: usize) -> Kind {
    let value = |text: String| SampleValue { null: false, text };
    Kind::Statement(Statement {
        text: format!(
            "SELECT id, email, total FROM orders WHERE customer_id = {n} ORDER BY id LIMIT 5"
        ),
        protocol: "simple".into(),
        kinds: vec!["select".into()],
        tables: vec!["public.orders".into()],
        decision: Decision::Allowed.into(),
        rows: 5,
        bytes: 210,
        masked_cells: 5,
        command_tag: "SELECT 5".into(),
        duration_us: 350,
        fingerprint: "a1b2c3d4e5f60718".into(),
        sample: Some(ResultSample {
            columns: vec!["id".into(), "email".into(), "total".into()],
            rows: (0..5)
                .map(|row| SampleRow {
                    values: vec![
                        value(format!("{}", n * 5 + row)),
                        value("****@example.com".into()),
                        value(format!("{}.00", 10 + row)),
                    ],
                })
                .collect(),
            truncated: false,
        }),
        ..Statement::default()
    })
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
