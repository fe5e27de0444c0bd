//! A `jitgate-collector` process for one test: started on an ephemeral 127.0.0.1 port with its
//! own SQLite file in a temp dir (or the PostgreSQL database it is given, see
//! [`crate::collector_db`]), killed (by pid) and cleaned up on Drop. A test can stop it
//! ([`CollectorGuard::stop`]) and start it again on the same address and database
//! ([`CollectorGuard::restart`]), as an outage would.
//!
//! By default it serves mutual TLS: the guard makes a CA, a server certificate for 127.0.0.1 and
//! an agent certificate ([`AGENT_NAME`]) in its temp dir with the collector's own
//! `jitgate-collector ca` commands ([`CollectorCerts`]); [`CollectorGuard::start_plaintext`]
//! starts it without TLS.
//!
//! Contract with the collector binary: `jitgate-collector --listen 127.0.0.1:0 --db <file>`
//! prints `jitgate-collector listening on <addr>` on stdout once it accepts connections.
//!
//! The guard starts the collector with a query token (`--query-token-file`, a file in its temp
//! dir) unless the caller passes `--query-token-file` or `--allow-unauthenticated-query`
//! itself; [`CollectorGuard::cli`] runs `jitgate` with that token.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use tempfile::TempDir;

use crate::process::{ChildGuard, wait_for_line};

/// The line prefix the collector prints once it listens.
pub const LISTENING_PREFIX: &str = "jitgate-collector listening on ";

/// The query token the guard gives the collector (tests only; not a secret).
pub const QUERY_TOKEN: &str = "jitgate-test-query-token";

/// How long the collector may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Name of the agent certificate the guard issues.
pub const AGENT_NAME: &str = "runner-1";

/// The TLS files of a collector started with mutual TLS, all in its temp dir.
#[derive(Debug, Clone)]
pub struct CollectorCerts {
    /// The CA directory (`ca.crt`, `ca.key`, and the issued certificates).
    pub dir: PathBuf,
    /// The CA certificate: the collector's `--client-ca`, the agent's `collector_ca`, the CLI's
    /// `--ca`.
    pub ca: PathBuf,
    /// The agent certificate for [`AGENT_NAME`].
    pub agent_cert: PathBuf,
    /// Its key (mode 0600).
    pub agent_key: PathBuf,
}

impl CollectorCerts {
    /// Makes a CA in `dir` with `bin ca init`, a server certificate for 127.0.0.1 and localhost
    /// and an agent certificate for [`AGENT_NAME`] with `bin ca issue`.
    pub fn create(bin: &Path, dir: &Path) -> anyhow::Result<Self> {
        run_ca(bin, &["init", "--dir"], dir, &[])?;
        run_ca(
            bin,
            &["issue", "--dir"],
            dir,
            &["--server", "--san", "127.0.0.1,localhost"],
        )?;
        run_ca(bin, &["issue", "--dir"], dir, &["--agent", AGENT_NAME])?;
        Ok(Self {
            dir: dir.to_owned(),
            ca: dir.join("ca.crt"),
            agent_cert: dir.join(format!("agent-{AGENT_NAME}.crt")),
            agent_key: dir.join(format!("agent-{AGENT_NAME}.key")),
        })
    }

    /// The collector's TLS flags for these files.
    pub fn server_args(&self) -> Vec<OsString> {
        vec![
            "--tls-cert".into(),
            self.dir.join("server.crt").into(),
            "--tls-key".into(),
            self.dir.join("server.key").into(),
            "--client-ca".into(),
            self.ca.clone().into(),
        ]
    }

    /// Keys of the agent's `[audit]` section (TOML lines) for these files.
    pub fn agent_audit_keys(&self) -> String {
        format!(
            "collector_ca = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
            self.ca.display(),
            self.agent_cert.display(),
            self.agent_key.display()
        )
    }
}

/// Runs `bin ca <args> <dir> <more>` and fails with its output when it fails.
pub fn run_ca(bin: &Path, args: &[&str], dir: &Path, more: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(bin)
        .arg("ca")
        .args(args)
        .arg(dir)
        .args(more)
        .output()
        .with_context(|| format!("running {} ca {args:?}", bin.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "{} ca {args:?} {more:?} failed: {}",
        bin.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// A running collector; the process is killed and its temp dir removed when dropped.
#[derive(Debug)]
pub struct CollectorGuard {
    // Field order matters: the process goes before its database directory.
    child: Option<ChildGuard>,
    addr: SocketAddr,
    certs: Option<CollectorCerts>,
    bin: PathBuf,
    /// Every argument after `--listen` (database, TLS files, query token, the caller's), kept
    /// for [`CollectorGuard::restart`].
    extra: Vec<OsString>,
    dir: TempDir,
}

impl CollectorGuard {
    /// Starts `bin` (a `jitgate-collector`) with mutual TLS and waits for its listening line.
    ///
    /// Errors when the certificates cannot be made, or the binary cannot be spawned, exits, or
    /// does not print the line within [`START_TIMEOUT`] (its output so far is quoted).
    pub fn start(bin: &Path) -> anyhow::Result<Self> {
        Self::start_with(bin, &[])
    }

    /// Starts `bin` with mutual TLS and `extra` arguments after `--listen`, `--db` and the TLS
    /// flags (e.g. `--webhook-url URL`, `--decider-token-file PATH`) and waits for its
    /// listening line, as [`CollectorGuard::start`].
    pub fn start_with(bin: &Path, extra: &[OsString]) -> anyhow::Result<Self> {
        Self::launch(bin, None, extra, true)
    }

    /// Starts `bin` without TLS (plaintext gRPC on 127.0.0.1) and `extra` arguments.
    pub fn start_plaintext(bin: &Path, extra: &[OsString]) -> anyhow::Result<Self> {
        Self::launch(bin, None, extra, false)
    }

    /// Starts `bin` without TLS, storing where `db` says (`--db URL --db-password-file PATH`,
    /// e.g. [`crate::collector_db::CollectorDb::args`]), with `extra` arguments, and waits for
    /// its listening line, as [`CollectorGuard::start`].
    pub fn start_on(bin: &Path, db: &[OsString], extra: &[OsString]) -> anyhow::Result<Self> {
        Self::launch(bin, Some(db), extra, false)
    }

    /// Starts `bin` storing where `db` says (the temp dir's SQLite file when `None`), with
    /// mutual TLS when `tls`, and `extra` arguments; waits for its listening line.
    pub fn launch(
        bin: &Path,
        db: Option<&[OsString]>,
        extra: &[OsString],
        tls: bool,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("jitgate-collector-")
            .tempdir()
            .context("creating the collector temp dir")?;
        let token_file = dir.path().join("query-token");
        std::fs::write(&token_file, format!("{QUERY_TOKEN}\n"))
            .context("writing the query token file")?;
        let certs = tls
            .then(|| CollectorCerts::create(bin, &dir.path().join("pki")))
            .transpose()?;
        let mut args: Vec<OsString> = match db {
            Some(db) => db.to_vec(),
            None => vec!["--db".into(), dir.path().join("audit.db").into_os_string()],
        };
        args.extend(certs.iter().flat_map(CollectorCerts::server_args));
        args.extend(extra.iter().cloned());
        let own_query_auth = extra
            .iter()
            .any(|a| a == "--query-token-file" || a == "--allow-unauthenticated-query");
        if !own_query_auth {
            args.push("--query-token-file".into());
            args.push(token_file.into_os_string());
        }
        let (child, addr) = spawn(bin, &args, "127.0.0.1:0", dir.path(), "collector.log")?;
        Ok(Self {
            child: Some(child),
            addr,
            certs,
            bin: bin.to_owned(),
            extra: args,
            dir,
        })
    }

    /// Kills the collector (SIGKILL, by pid) and waits for it; its database stays.
    pub fn stop(&mut self) {
        drop(self.child.take());
    }

    /// Starts the collector again (after [`CollectorGuard::stop`]; a running one is killed
    /// first) on the same address and database, logging to `collector-restarted.log`.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let (child, addr) = spawn(
            &self.bin,
            &self.extra,
            &self.addr.to_string(),
            self.dir.path(),
            "collector-restarted.log",
        )?;
        anyhow::ensure!(addr == self.addr, "restarted on {addr}, not {}", self.addr);
        self.child = Some(child);
        Ok(())
    }

    /// The gRPC endpoint URL: `https://<addr>` with TLS, `http://<addr>` without.
    pub fn url(&self) -> String {
        let scheme = if self.certs.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The TLS files, when it serves mutual TLS.
    pub fn certs(&self) -> Option<&CollectorCerts> {
        self.certs.as_ref()
    }

    /// Points a `jitgate` CLI command at this collector: `JITGATE_COLLECTOR`, and `JITGATE_CA`
    /// with TLS.
    pub fn cli_env<'a>(&self, command: &'a mut Command) -> &'a mut Command {
        command.env("JITGATE_COLLECTOR", self.url());
        match &self.certs {
            Some(certs) => command.env("JITGATE_CA", &certs.ca),
            None => command.env_remove("JITGATE_CA"),
        }
    }

    /// The collector's log file (its stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("collector.log")
    }

    /// The address the collector listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The collector's standard error (its log) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("collector.log")).unwrap_or_default()
    }

    /// The collector's SQLite database file (absent when it stores in PostgreSQL).
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("audit.db")
    }

    /// The file holding [`QUERY_TOKEN`], as `JITGATE_QUERY_TOKEN_FILE` expects it.
    pub fn query_token_file(&self) -> PathBuf {
        self.dir.path().join("query-token")
    }

    /// A `jitgate` command (`cli` is the binary) aimed at this collector with its query token.
    pub fn cli(&self, cli: &Path) -> Command {
        let mut command = Command::new(cli);
        self.cli_env(&mut command)
            .env("JITGATE_QUERY_TOKEN_FILE", self.query_token_file())
            .env_remove("JITGATE_QUERY_TOKEN")
            .stdin(Stdio::null());
        command
    }

    /// The collector's process id (0 while stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, ChildGuard::pid)
    }
}

/// Spawns `bin --listen LISTEN ARGS…` (`args` name the database, TLS, tokens) logging to `log` in
/// `dir`, and waits for its listening line.
fn spawn(
    bin: &Path,
    args: &[OsString],
    listen: &str,
    dir: &Path,
    log: &str,
) -> anyhow::Result<(ChildGuard, SocketAddr)> {
    let mut command = Command::new(bin);
    command
        .args(["--listen", listen])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join(log))?);
    let mut child = ChildGuard::spawn(&mut command, "jitgate-collector")?;
    let stdout = child
        .child_mut()
        .stdout
        .take()
        .context("collector stdout")?;
    let line = wait_for_line(stdout, LISTENING_PREFIX, START_TIMEOUT)
        .with_context(|| format!("waiting for {} to listen", bin.display()))?;
    Ok((child, parse_listening_line(&line)?))
}

/// Extracts the socket address from a `jitgate-collector listening on <addr>` line.
pub fn parse_listening_line(line: &str) -> anyhow::Result<SocketAddr> {
    let (_, rest) = line
        .split_once(LISTENING_PREFIX)
        .with_context(|| format!("not a listening line: {line:?}"))?;
    let addr = rest.split_whitespace().next().unwrap_or_default();
    addr.parse()
        .with_context(|| format!("bad address {addr:?} in {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_listening_line() -> anyhow::Result<()> {
        let addr = parse_listening_line("jitgate-collector listening on 127.0.0.1:45123")?;
        assert_eq!(addr.port(), 45123);
        assert!(parse_listening_line("listening somewhere").is_err());
        assert!(parse_listening_line("jitgate-collector listening on nowhere").is_err());
        Ok(())
    }
}
