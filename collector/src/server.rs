//! The collector's gRPC server: `AuditIngest`, `AuditQuery` and `Approvals` on one listener,
//! plaintext or mutual TLS ([`crate::tls`], with [`crate::tls::gate`] in front of every
//! service), with graceful shutdown.
//!
//! Shutdown order: cancelling the token stops accepting connections, ends open ingest calls
//! after their current batch (agents then reconnect and resend anything unacknowledged), ends
//! open approval `Wait` calls with `UNAVAILABLE`, and lets query calls finish. Connections still open after [`SHUTDOWN_GRACE`] are dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Largest gRPC message accepted from an agent (an `EventBatch`; agents send at most 1 MiB of
/// events per batch) or sent to the CLI (a session's events), bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

use jitgate_proto::audit::v1::{
    approvals_server::ApprovalsServer, audit_ingest_server::AuditIngestServer,
    audit_query_server::AuditQueryServer,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tracing::{info, warn};

use crate::approvals::webhook::WebhookError;
use crate::approvals::{ApprovalOptions, ApprovalsService};
use crate::ingest::IngestService;
use crate::query::QueryService;
use crate::query::auth::QueryAuth;
use crate::storage::{Store, StoreError};
use crate::tls::gate::{GateLayer, PeerPolicy};

/// Longest wait for open connections to finish after shutdown was requested.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// HTTP/2 keepalive ping interval, so dead agent connections are noticed.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// Errors of the collector daemon.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The database could not be opened.
    #[error("storage")]
    Store(#[from] StoreError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// The socket error (address in use, permission denied, ...).
        #[source]
        source: std::io::Error,
    },
    /// The bound socket's local address could not be read.
    #[error("cannot read the listening address")]
    LocalAddr(#[source] std::io::Error),
    /// The ready line could not be written to standard output.
    #[error("cannot write to standard output")]
    Stdout(#[source] std::io::Error),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signal(#[source] std::io::Error),
    /// A token file (`--decider-token-file`, `--query-token-file`) could not be read or is empty.
    #[error("cannot read the {what} file {path}")]
    TokenFile {
        /// Which token: "decider token" or "query token".
        what: &'static str,
        /// The file named by the flag.
        path: std::path::PathBuf,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// The approval webhook's HTTP client could not be built.
    #[error("approval webhook")]
    Webhook(#[from] WebhookError),
    /// The TLS files could not be loaded.
    #[error("TLS")]
    Tls(#[from] crate::tls::TlsError),
    /// Plaintext was asked for on an address other than loopback.
    #[error(
        "refusing to serve without TLS on {addr}, which is not a loopback address: \
         pass --tls-cert, --tls-key and --client-ca (see `jitgate-collector ca`)"
    )]
    PlaintextNotLoopback {
        /// The listen address.
        addr: SocketAddr,
    },
    /// The gRPC server failed while serving.
    #[error("grpc server")]
    Transport(#[from] tonic::transport::Error),
}

/// What a server is started with besides its listener and store.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// Settings of the approvals service (webhook, decider token, timeouts).
    pub approvals: ApprovalOptions,
    /// Who may call `AuditQuery` (default: nobody, see [`QueryAuth`]).
    pub query: QueryAuth,
    /// Delete what is older than this many days (0: keep forever); see [`crate::retention`].
    pub retention_days: u32,
    /// Mutual TLS ([`crate::tls::config`]); `None` serves plaintext and lets every call through
    /// the gate.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Serves `AuditIngest`, `AuditQuery` and `Approvals` (default [`ServerOptions`]) on `listener`
/// until `shutdown` is cancelled; see [`serve_with`].
///
/// # Errors
/// As [`serve_with`].
pub async fn serve(
    listener: TcpListener,
    store: Store,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    serve_with(listener, store, ServerOptions::default(), shutdown).await
}

/// Serves `AuditIngest`, `AuditQuery` and `Approvals` on `listener` until `shutdown` is
/// cancelled, then shuts down gracefully (see the module docs). Returns once the server has
/// stopped.
///
/// # Errors
/// [`ServeError::Webhook`] when the webhook client cannot be built,
/// [`ServeError::Transport`] when the server fails.
pub async fn serve_with(
    listener: TcpListener,
    store: Store,
    options: ServerOptions,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().map_err(ServeError::LocalAddr)?;
    let ingest = IngestService::new(store.clone(), shutdown.clone());
    let approvals = ApprovalsService::start(store.clone(), options.approvals, shutdown.clone())?;
    let query = QueryService::new(store.clone(), shutdown.clone());
    let query = AuditQueryServer::new(query).max_encoding_message_size(MAX_MESSAGE_BYTES);
    crate::retention::spawn(store, options.retention_days, shutdown.clone());
    let policy = match options.tls {
        Some(_) => PeerPolicy::Mtls,
        None => PeerPolicy::Plaintext,
    };
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE))
        .tcp_nodelay(true)
        .layer(GateLayer::new(policy))
        .add_service(AuditIngestServer::new(ingest).max_decoding_message_size(MAX_MESSAGE_BYTES))
        .add_service(InterceptedService::new(query, options.query))
        .add_service(ApprovalsServer::new(approvals).max_encoding_message_size(MAX_MESSAGE_BYTES));
    let stopped = shutdown.clone().cancelled_owned();
    let server: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> =
        match options.tls {
            None => Box::pin(
                router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), stopped),
            ),
            Some(config) => Box::pin(router.serve_with_incoming_shutdown(
                crate::tls::incoming::incoming(listener, config, shutdown.clone()),
                stopped,
            )),
        };
    info!(%addr, tls = options_tls_name(policy), "serving");
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        result = server => result?,
        () = deadline => warn!(grace = ?SHUTDOWN_GRACE, "connections still open after the grace period; dropping them"),
    }
    info!(%addr, "stopped");
    Ok(())
}

fn options_tls_name(policy: PeerPolicy) -> &'static str {
    match policy {
        PeerPolicy::Mtls => "mutual TLS",
        PeerPolicy::Plaintext => "none (plaintext)",
    }
}

/// A server started on a background task, for tests and embedding: [`Running::addr`] is the
/// bound address, [`Running::stop`] shuts it down and waits.
#[derive(Debug)]
pub struct Running {
    /// The address the server is bound to (the real port when 0 was requested).
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl Running {
    /// Binds `addr` (port 0 picks a free port) and serves `store` with default
    /// [`ServerOptions`] on a spawned task.
    ///
    /// # Errors
    /// [`ServeError::Bind`] when the address cannot be bound.
    pub async fn start(addr: SocketAddr, store: Store) -> Result<Running, ServeError> {
        Running::start_with(addr, store, ServerOptions::default()).await
    }

    /// Binds `addr` (port 0 picks a free port) and serves `store` with `options` on a spawned
    /// task.
    ///
    /// # Errors
    /// [`ServeError::Bind`] when the address cannot be bound.
    pub async fn start_with(
        addr: SocketAddr,
        store: Store,
        options: ServerOptions,
    ) -> Result<Running, ServeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let addr = listener.local_addr().map_err(ServeError::LocalAddr)?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve_with(listener, store, options, shutdown.clone()));
        Ok(Running {
            addr,
            shutdown,
            task,
        })
    }

    /// The `http://` URL of the server, as agents and the CLI expect it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests shutdown and waits for the server to stop.
    ///
    /// # Errors
    /// What the server returned; a panicked server task is reported as
    /// [`ServeError::Store`] with [`StoreError::Task`].
    pub async fn stop(self) -> Result<(), ServeError> {
        self.shutdown.cancel();
        self.task
            .await
            .map_err(|err| ServeError::Store(StoreError::Task(err)))?
    }
}
