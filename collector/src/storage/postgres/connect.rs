//! Opening the PostgreSQL backend: the URL (no password in it), the password file (owner-only),
//! TLS (rustls; `sslmode` from the URL), the connection pool, and startup errors that say
//! which of "cannot connect" and "login refused" happened.

use std::io::BufReader;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;

use crate::storage::StoreError;

/// Connections in the pool when [`PgOptions::pool_size`] is 0.
pub const DEFAULT_POOL_SIZE: usize = 8;
/// How long a connection attempt (TCP, TLS, authentication) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a storage call waits for a free pooled connection.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach PostgreSQL besides the URL.
#[derive(Clone, Debug, Default)]
pub struct PgOptions {
    /// File holding the role's password (first line); must not be readable by group or others.
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA certificates to trust for TLS; the Mozilla roots (webpki-roots) when
    /// unset.
    pub ca_file: Option<PathBuf>,
    /// Most pooled connections; 0 means [`DEFAULT_POOL_SIZE`].
    pub pool_size: usize,
    /// Run-time parameters for every connection (`options` of the startup packet, e.g.
    /// `-c search_path=s1`; tests use it to give each test its own schema).
    pub server_options: Option<String>,
}

/// The parsed URL with the password from the file applied, and `host:port/db` for messages.
pub(super) struct Target {
    pub config: tokio_postgres::Config,
    pub display: String,
    pub user: String,
}

/// Parses `url`, refuses a password in it, and applies `options`.
///
/// # Errors
/// [`StoreError::BadUrl`], [`StoreError::PasswordFile`].
pub(super) fn target(url: &str, options: &PgOptions) -> Result<Target, StoreError> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|err| StoreError::BadUrl {
        reason: format!("{err}"),
    })?;
    if config.get_password().is_some() {
        return Err(StoreError::BadUrl {
            reason: "it carries a password; put it in a file named by --db-password-file".into(),
        });
    }
    let user = config.get_user().unwrap_or_default().to_owned();
    if user.is_empty() {
        return Err(StoreError::BadUrl {
            reason: "no user name (postgres://USER@host:port/db)".into(),
        });
    }
    if let Some(path) = &options.password_file {
        config.password(read_password(path)?);
    }
    if let Some(server_options) = &options.server_options {
        config.options(server_options);
    }
    config.connect_timeout(CONNECT_TIMEOUT);
    config.application_name("jitgate-collector");
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let display = format!(
        "{}:{port}/{}",
        hosts.join(","),
        config.get_dbname().unwrap_or(&user)
    );
    Ok(Target {
        config,
        display,
        user,
    })
}

/// Reads the password from the first line of `path`, which must be owner-only.
fn read_password(path: &Path) -> Result<String, StoreError> {
    let fail = |reason: String| StoreError::PasswordFile {
        path: path.to_owned(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|err| fail(err.to_string()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(fail(format!(
            "mode {mode:04o} lets group or others read it; chmod 600"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|err| fail(err.to_string()))?;
    let password = text.lines().next().unwrap_or_default();
    if password.is_empty() {
        return Err(fail("empty".into()));
    }
    Ok(password.to_owned())
}

/// Builds the pool (TLS unless `sslmode=disable`) and makes one connection, so a wrong address
/// or password fails at startup with a clear error.
///
/// # Errors
/// [`StoreError::CaFile`], [`StoreError::Connect`], [`StoreError::Auth`], [`StoreError::Pool`].
pub(super) async fn pool(target: Target, options: &PgOptions) -> Result<Pool, StoreError> {
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = if target.config.get_ssl_mode() == SslMode::Disable {
        Manager::from_config(target.config.clone(), tokio_postgres::NoTls, manager_config)
    } else {
        let tls = tls(options.ca_file.as_deref())?;
        Manager::from_config(target.config.clone(), tls, manager_config)
    };
    let size = match options.pool_size {
        0 => DEFAULT_POOL_SIZE,
        n => n,
    };
    let pool = Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(WAIT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|err| StoreError::Pool(err.to_string()))?;
    match pool.get().await {
        Ok(_client) => Ok(pool),
        Err(deadpool_postgres::PoolError::Backend(source)) => Err(classify(&target, source)),
        Err(other) => Err(StoreError::Pool(format!("{} ({other})", target.display))),
    }
}

/// Tells a refused login from a failed connection.
fn classify(target: &Target, source: tokio_postgres::Error) -> StoreError {
    let refused = matches!(
        source.code(),
        Some(&SqlState::INVALID_PASSWORD | &SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
    ) || source.to_string().contains("password missing");
    if refused {
        StoreError::Auth {
            target: target.display.clone(),
            user: target.user.clone(),
            source,
        }
    } else {
        StoreError::Connect {
            target: target.display.clone(),
            source,
        }
    }
}

/// The rustls connector: roots from `ca_file` (PEM) or webpki-roots.
fn tls(ca_file: Option<&Path>) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let fail = |reason: String| StoreError::CaFile {
                path: path.to_owned(),
                reason,
            };
            let file = std::fs::File::open(path).map_err(|err| fail(err.to_string()))?;
            for cert in rustls_pemfile::certs(&mut BufReader::new(file)) {
                let cert = cert.map_err(|err| fail(err.to_string()))?;
                roots.add(cert).map_err(|err| fail(err.to_string()))?;
            }
            if roots.is_empty() {
                return Err(fail("no PEM certificate in it".into()));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| StoreError::Tls(err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Connects to `url` as [`super::PgStore::connect`] does (same URL rules, password file and
/// TLS) and runs `sql` (one or more statements) without touching the collector's schema; for
/// administration and tests (e.g. `CREATE SCHEMA`).
///
/// # Errors
/// As [`super::PgStore::connect`], and [`StoreError::Postgres`] when `sql` fails.
pub async fn run_sql(url: &str, options: &PgOptions, sql: &str) -> Result<(), StoreError> {
    let target = target(url, options)?;
    let options = PgOptions {
        pool_size: 1,
        ..options.clone()
    };
    let pool = pool(target, &options).await?;
    let client = pool.get().await?;
    client.batch_execute(sql).await?;
    Ok(())
}
