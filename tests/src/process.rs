//! Child processes for the harness: a guard that kills and reaps what it spawned (by pid, never by
//! name), a free-port finder, a "wait until the child prints X" helper, and where the jitgate
//! binaries under test live.
//!
//! The binaries come from `JITGATE_AGENT_BIN`, `JITGATE_COLLECTOR_BIN` and `JITGATE_CLI_BIN`
//! (`cargo xtask test` sets them from cargo's own build report); without them the harness falls
//! back to `<target dir>/debug/<name>`.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

/// Environment variable naming the `jitgate-agent` binary under test.
pub const AGENT_BIN_ENV: &str = "JITGATE_AGENT_BIN";
/// Environment variable naming the `jitgate-collector` binary under test.
pub const COLLECTOR_BIN_ENV: &str = "JITGATE_COLLECTOR_BIN";
/// Environment variable naming the `jitgate` CLI binary under test.
pub const CLI_BIN_ENV: &str = "JITGATE_CLI_BIN";

/// A spawned child process that is killed (SIGKILL) and waited for when the guard is dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    label: String,
}

impl ChildGuard {
    /// Spawns `command`; `label` names the process in errors (e.g. `"jitgate-collector"`).
    pub fn spawn(command: &mut Command, label: &str) -> anyhow::Result<Self> {
        let child = command
            .spawn()
            .with_context(|| format!("spawning {label}: {command:?}"))?;
        Ok(Self {
            child,
            label: label.to_owned(),
        })
    }

    /// Wraps an already spawned child.
    pub fn new(child: Child, label: &str) -> Self {
        Self {
            child,
            label: label.to_owned(),
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The label given at spawn time.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Mutable access to the child, e.g. to take its stdout or stdin.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// `Ok(Some(status))` when the child has already exited, `Ok(None)` while it runs.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        self.child
            .try_wait()
            .with_context(|| format!("polling {} (pid {})", self.label, self.pid()))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // `Child::kill` signals this exact pid; an already exited child makes it fail harmlessly.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, release it).
///
/// Another process may take it before the caller binds; callers that can retry should.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    Ok(listener
        .local_addr()
        .context("reading local address")?
        .port())
}

/// Reads `reader` line by line until a line contains `pattern`; returns that line.
///
/// Reading happens on a background thread that keeps draining the stream after the match, so a
/// child writing more output never blocks on a full pipe. Fails on timeout or end of stream,
/// quoting the lines seen so far.
pub fn wait_for_line<R>(reader: R, pattern: &str, timeout: Duration) -> anyhow::Result<String>
where
    R: Read + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<std::io::Result<String>>();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let failed = line.is_err();
            // After the caller has its line the receiver is gone; keep draining regardless.
            let _ = tx.send(line);
            if failed {
                break;
            }
        }
    });

    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok(line)) if line.contains(pattern) => return Ok(line),
            Ok(Ok(line)) => seen.push(line),
            Ok(Err(error)) => return Err(error).context("reading child output"),
            Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                "no line containing {pattern:?} within {timeout:?}; output so far:\n{}",
                seen.join("\n")
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!(
                "output ended before a line containing {pattern:?}; output was:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// Whether this process runs with effective uid 0 (root integration tests need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Paths of the jitgate binaries under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bins {
    /// `jitgate-agent`.
    pub agent: PathBuf,
    /// `jitgate-collector`.
    pub collector: PathBuf,
    /// `jitgate` (the CLI).
    pub jitgate_cli: PathBuf,
}

impl Bins {
    /// Sets the three `JITGATE_*_BIN` variables on `command` so a child harness finds these.
    pub fn export_to(&self, command: &mut Command) {
        let Bins {
            agent,
            collector,
            jitgate_cli,
        } = self;
        command
            .env(AGENT_BIN_ENV, agent)
            .env(COLLECTOR_BIN_ENV, collector)
            .env(CLI_BIN_ENV, jitgate_cli);
    }
}

/// The binaries under test: from the `JITGATE_*_BIN` variables, else `<target>/debug/<name>`
/// where `<target>` is `CARGO_TARGET_DIR` or the workspace's `target/`.
pub fn bins() -> Bins {
    let debug_dir = target_dir().join("debug");
    let pick = |var: &str, name: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| debug_dir.join(name))
    };
    Bins {
        agent: pick(AGENT_BIN_ENV, "jitgate-agent"),
        collector: pick(COLLECTOR_BIN_ENV, "jitgate-collector"),
        jitgate_cli: pick(CLI_BIN_ENV, "jitgate"),
    }
}

/// The workspace root (the parent of this crate's manifest directory).
pub fn workspace_root() -> &'static Path {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest)
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("target"),
    }
}

/// Turns a failed command's output into an error quoting its stderr.
pub fn checked(what: &str, output: &Output) -> anyhow::Result<()> {
    ensure!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim(),
        String::from_utf8_lossy(&output.stdout).trim()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable() -> anyhow::Result<()> {
        let port = free_port()?;
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
        Ok(())
    }

    #[test]
    fn wait_for_line_finds_pattern_and_times_out() -> anyhow::Result<()> {
        let input = b"starting\nlistening on 127.0.0.1:4242\nmore\n".to_vec();
        let line = wait_for_line(
            std::io::Cursor::new(input),
            "listening on",
            Duration::from_secs(5),
        )?;
        assert_eq!(line, "listening on 127.0.0.1:4242");

        let error = wait_for_line(
            std::io::Cursor::new(b"a\nb\n".to_vec()),
            "zzz",
            Duration::from_secs(5),
        )
        .expect_err("pattern is absent");
        assert!(error.to_string().contains("output ended"), "{error}");
        Ok(())
    }

    #[test]
    fn child_guard_kills_on_drop() -> anyhow::Result<()> {
        let guard = ChildGuard::spawn(Command::new("sleep").arg("30"), "sleep")?;
        let pid = guard.pid();
        drop(guard);
        // The child was reaped, so its /proc entry is gone.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        Ok(())
    }
}
