//! The `jitgate-collector` process: command-line arguments, the ready line a supervisor or test
//! harness waits for, and shutdown on SIGTERM / SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::approvals::ApprovalOptions;
use crate::server::{ServeError, ServerOptions, serve_with};
use crate::storage::Store;

/// Arguments of `jitgate-collector`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "jitgate-collector",
    version,
    about = "Receives jitgate audit events over gRPC and stores them in SQLite"
)]
pub struct CollectorArgs {
    /// Address to listen on; port 0 picks a free port (the ready line names the real one).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// SQLite database file; created when missing.
    #[arg(long, default_value = "jitgate-audit.db")]
    pub db: PathBuf,
    /// URL to POST a Slack-compatible `{"text": ...}` message to when an approval request is
    /// opened (e.g. a Slack incoming webhook).
    #[arg(long, env = "JITGATE_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// File holding the token people must present to approve or deny (`jitgate approvals ...`
    /// with `JITGATE_DECIDER_TOKEN`); without it anyone who reaches the collector may decide.
    #[arg(long, env = "JITGATE_DECIDER_TOKEN_FILE")]
    pub decider_token_file: Option<PathBuf>,
}

impl CollectorArgs {
    /// The server options these arguments name; reads the decider token file and checks the
    /// webhook URL.
    ///
    /// # Errors
    /// [`ServeError::TokenFile`] when the token file cannot be read or is empty,
    /// [`ServeError::Webhook`] for a malformed webhook URL.
    pub fn options(&self) -> Result<ServerOptions, ServeError> {
        if let Some(url) = &self.webhook_url {
            crate::approvals::webhook::check_url(url)?;
        }
        let decider_token = match &self.decider_token_file {
            None => None,
            Some(path) => {
                let token = std::fs::read_to_string(path)
                    .map_err(|source| ServeError::TokenFile {
                        path: path.clone(),
                        source,
                    })?
                    .trim()
                    .to_owned();
                if token.is_empty() {
                    return Err(ServeError::TokenFile {
                        path: path.clone(),
                        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "empty"),
                    });
                }
                Some(token)
            }
        };
        Ok(ServerOptions {
            approvals: ApprovalOptions {
                webhook_url: self.webhook_url.clone(),
                decider_token,
                ..ApprovalOptions::default()
            },
        })
    }
}

/// Opens the database, binds, prints `jitgate-collector listening on <addr>` on standard output
/// (one line, flushed), and serves until SIGTERM or SIGINT, then shuts down gracefully.
///
/// # Errors
/// Any [`ServeError`]: the database cannot be opened, the address cannot be bound, signal
/// handlers cannot be installed, or the server fails.
pub async fn run(args: CollectorArgs) -> Result<(), ServeError> {
    let options = args.options()?;
    let CollectorArgs { listen, db, .. } = args;
    let store = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || Store::open(&db))
            .await
            .map_err(crate::storage::StoreError::Task)??
    };
    info!(db = %db.display(), "database open");
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
