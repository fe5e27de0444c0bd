//! The `jitgate-collector` process: command-line arguments, the ready line a supervisor or test
//! harness waits for, and shutdown on SIGTERM / SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::approvals::ApprovalOptions;
use crate::query::auth::QueryAuth;
use crate::server::{ServeError, ServerOptions, serve_with};
use crate::storage::{Database, PgOptions, Store};
use crate::tls::TlsFiles;

/// Arguments of `jitgate-collector`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "jitgate-collector",
    version,
    about = "Receives jitgate audit events over gRPC and stores them in SQLite or PostgreSQL",
    args_conflicts_with_subcommands = true
)]
pub struct CollectorArgs {
    /// Address to listen on; port 0 picks a free port (the ready line names the real one).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Where to store: a SQLite database file (created when missing), or a PostgreSQL URL
    /// `postgres://USER@HOST:PORT/DB` (`postgresql://` too; add `?sslmode=disable` for
    /// plaintext on loopback). Never put the password in the URL: use --db-password-file.
    #[arg(long, default_value = "jitgate-audit.db")]
    pub db: String,
    /// File holding the PostgreSQL role's password (first line); must not be readable by
    /// group or others.
    #[arg(long, env = "JITGATE_DB_PASSWORD_FILE")]
    pub db_password_file: Option<PathBuf>,
    /// PEM file of the CA certificates to trust for TLS to PostgreSQL (default: the Mozilla
    /// roots).
    #[arg(long, env = "JITGATE_DB_CA_FILE")]
    pub db_ca_file: Option<PathBuf>,
    /// Most connections to PostgreSQL this collector opens.
    #[arg(long, default_value_t = crate::storage::postgres::DEFAULT_POOL_SIZE)]
    pub db_pool_size: usize,
    /// URL to POST a Slack-compatible `{"text": ...}` message to when an approval request is
    /// opened (e.g. a Slack incoming webhook).
    #[arg(long, env = "JITGATE_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// File holding the token people must present to approve or deny (`jitgate approvals ...`
    /// with `JITGATE_DECIDER_TOKEN`); without it anyone who reaches the collector may decide.
    #[arg(long, env = "JITGATE_DECIDER_TOKEN_FILE")]
    pub decider_token_file: Option<PathBuf>,
    /// File holding the token the `jitgate` CLI must present to read audit data (sessions,
    /// events, follow, verify, export). Without it the query API is refused.
    #[arg(long, env = "JITGATE_QUERY_TOKEN_FILE")]
    pub query_token_file: Option<PathBuf>,
    /// Without --query-token-file, let anyone who reaches the collector query it. For local
    /// development only.
    #[arg(long, conflicts_with = "query_token_file")]
    pub allow_unauthenticated_query: bool,
    /// Delete events, sessions and decided approvals older than this many days; 0 keeps
    /// everything.
    #[arg(long, default_value_t = 0)]
    pub retention_days: u32,
    /// Server certificate chain (PEM) for mutual TLS with agents; with --tls-key and
    /// --client-ca. Without the three, the collector serves plaintext, on loopback only.
    #[arg(long, requires_all = ["tls_key", "client_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, requires_all = ["tls_cert", "client_ca"])]
    pub tls_key: Option<PathBuf>,
    /// CA certificate (PEM) agent client certificates must chain to.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub client_ca: Option<PathBuf>,
    /// `ca init` / `ca issue`: manage the local CA instead of serving.
    #[command(subcommand)]
    pub command: Option<CollectorCommand>,
}

/// Subcommands of `jitgate-collector`; without one it serves.
#[derive(Debug, clap::Subcommand)]
pub enum CollectorCommand {
    /// Create the local CA and issue server and agent certificates.
    Ca {
        /// What to do.
        #[command(subcommand)]
        action: crate::pki::cli::CaCommand,
    },
}

impl CollectorArgs {
    /// The server options these arguments name; reads the token files and checks the
    /// webhook URL.
    ///
    /// # Errors
    /// [`ServeError::TokenFile`] when the token file cannot be read or is empty,
    /// [`ServeError::Webhook`] for a malformed webhook URL, [`ServeError::Tls`] when a TLS file
    /// cannot be used, [`ServeError::PlaintextNotLoopback`] without TLS on a non-loopback
    /// address.
    pub fn options(&self) -> Result<ServerOptions, ServeError> {
        if let Some(url) = &self.webhook_url {
            crate::approvals::webhook::check_url(url)?;
        }
        let decider_token = self
            .decider_token_file
            .as_deref()
            .map(|path| read_token("decider token", path))
            .transpose()?;
        let query = match (&self.query_token_file, self.allow_unauthenticated_query) {
            (Some(path), _) => QueryAuth::Token(read_token("query token", path)?),
            (None, true) => QueryAuth::Open,
            (None, false) => QueryAuth::Refuse,
        };
        Ok(ServerOptions {
            approvals: ApprovalOptions {
                webhook_url: self.webhook_url.clone(),
                decider_token,
                ..ApprovalOptions::default()
            },
            query,
            retention_days: self.retention_days,
            tls: self.tls()?,
        })
    }

    /// The TLS configuration `--tls-cert`, `--tls-key` and `--client-ca` name; without them,
    /// `None` on a loopback address (with a warning) and an error elsewhere.
    fn tls(&self) -> Result<Option<Arc<rustls::ServerConfig>>, ServeError> {
        match (&self.tls_cert, &self.tls_key, &self.client_ca) {
            (Some(cert), Some(key), Some(client_ca)) => Ok(Some(crate::tls::config(&TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: client_ca.clone(),
            })?)),
            _ if self.listen.ip().is_loopback() => {
                warn!(
                    listen = %self.listen,
                    "no --tls-cert: serving plaintext gRPC on loopback; agents are not authenticated"
                );
                Ok(None)
            }
            _ => Err(ServeError::PlaintextNotLoopback { addr: self.listen }),
        }
    }
}

/// Reads a token file, trimmed of surrounding whitespace.
///
/// # Errors
/// [`ServeError::TokenFile`] when it cannot be read or holds only whitespace.
fn read_token(what: &'static str, path: &Path) -> Result<String, ServeError> {
    let err = |source| ServeError::TokenFile {
        what,
        path: path.to_owned(),
        source,
    };
    let token = std::fs::read_to_string(path)
        .map_err(err)?
        .trim()
        .to_owned();
    if token.is_empty() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "empty",
        )));
    }
    Ok(token)
}

/// Opens the database, binds, prints `jitgate-collector listening on <addr>` on standard output
/// (one line, flushed), and serves until SIGTERM or SIGINT, then shuts down gracefully.
///
/// # Errors
/// Any [`ServeError`]: the database cannot be opened, the address cannot be bound, signal
/// handlers cannot be installed, or the server fails.
pub async fn run(args: CollectorArgs) -> Result<(), ServeError> {
    let options = args.options()?;
    if options.query == QueryAuth::Refuse {
        tracing::warn!(
            "no --query-token-file: the query API refuses every call (jitgate sessions, events, ...)"
        );
    }
    let db = Database::parse(&args.db);
    let pg = PgOptions {
        password_file: args.db_password_file.clone(),
        ca_file: args.db_ca_file.clone(),
        pool_size: args.db_pool_size,
        server_options: None,
    };
    let store = Store::connect(&db, pg).await?;
    match &store {
        Store::Sqlite(_) => info!(db = %args.db, backend = "sqlite", "database open"),
        Store::Postgres(pg) => info!(db = %pg.target(), backend = "postgres", "database open"),
    }
    let listen = args.listen;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::LocalAddr)?;
    let shutdown = CancellationToken::new();
    watch_signals(shutdown.clone())?;
    announce(addr).map_err(ServeError::Stdout)?;
    serve_with(listener, store, options, shutdown).await
}

/// Writes the ready line; harnesses parse the address after the last space.
fn announce(addr: SocketAddr) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "jitgate-collector listening on {addr}")?;
    stdout.flush()
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT.
fn watch_signals(shutdown: CancellationToken) -> Result<(), ServeError> {
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signal)?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        info!(signal = name, "shutting down");
        shutdown.cancel();
    });
    Ok(())
}
