//! A `jitgate-collector` process for one test: started on an ephemeral 127.0.0.1 port with its
//! own SQLite file in a temp dir, killed (by pid) and cleaned up on Drop.
//!
//! Contract with the collector binary: `jitgate-collector --listen 127.0.0.1:0 --db <file>`
//! prints `jitgate-collector listening on <addr>` on stdout once it accepts connections.

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

/// How long the collector may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running collector; the process is killed and its temp dir removed when dropped.
#[derive(Debug)]
pub struct CollectorGuard {
    // Field order matters: the process goes before its database directory.
    child: ChildGuard,
    addr: SocketAddr,
    dir: TempDir,
}

impl CollectorGuard {
    /// Starts `bin` (a `jitgate-collector`) and waits for its listening line.
    ///
    /// Errors when the binary cannot be spawned, exits, or does not print the line within
    /// [`START_TIMEOUT`] (its output so far is quoted).
    pub fn start(bin: &Path) -> anyhow::Result<Self> {
        Self::start_with(bin, &[])
    }

    /// Starts `bin` with `extra` arguments after `--listen` and `--db` (e.g. `--webhook-url
    /// URL`, `--decider-token-file PATH`) and waits for its listening line, as
    /// [`CollectorGuard::start`].
    pub fn start_with(bin: &Path, extra: &[OsString]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("jitgate-collector-")
            .tempdir()
            .context("creating the collector temp dir")?;
        let mut command = Command::new(bin);
        command
            .args(["--listen", "127.0.0.1:0", "--db"])
            .arg(dir.path().join("audit.db"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("collector.log"))?);
        let mut child = ChildGuard::spawn(&mut command, "jitgate-collector")?;
        let stdout = child
            .child_mut()
            .stdout
            .take()
            .context("collector stdout")?;
        let line = wait_for_line(stdout, LISTENING_PREFIX, START_TIMEOUT)
            .with_context(|| format!("waiting for {} to listen", bin.display()))?;
        let addr = parse_listening_line(&line)?;
        Ok(Self { child, addr, dir })
    }

    /// The gRPC endpoint URL, `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the collector listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The collector's SQLite database file.
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("audit.db")
    }

    /// The collector's process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
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
