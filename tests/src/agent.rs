//! A running `jitgate-agent` as an RAII guard: started with a config file, ready once it prints
//! its `jitgate-agent ready on <addr>` line; on Drop it gets SIGTERM (then SIGKILL), and its
//! pinned kernel programs are removed with `jitgate-agent unload` so nothing stays attached.

use std::fs::File;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::process::{ChildGuard, wait_for_line};

/// Prefix of the agent's readiness line on stdout.
pub const READY_PREFIX: &str = "jitgate-agent ready on ";

/// How long the agent may take to load its programs and bind.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running agent.
pub struct AgentGuard {
    child: Option<ChildGuard>,
    bin: PathBuf,
    config: PathBuf,
    pin_dir: PathBuf,
    listen: SocketAddrV4,
    log: PathBuf,
}

impl AgentGuard {
    /// Starts `bin run --config config`, logging stderr to `log`; `pin_dir` must be the config's
    /// `bpf_pin_dir` (removed on Drop).
    pub fn start(bin: &Path, config: &Path, pin_dir: &Path, log: &Path) -> anyhow::Result<Self> {
        let mut guard = Self {
            child: None,
            bin: bin.to_owned(),
            config: config.to_owned(),
            pin_dir: pin_dir.to_owned(),
            listen: SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 0),
            log: log.to_owned(),
        };
        guard.spawn()?;
        Ok(guard)
    }

    /// Starts a new agent process on the same configuration and pin directory in place of this
    /// one, which is first killed with SIGKILL if it still runs (its pins stay: the new agent
    /// replaces them). The new agent logs to `log`.
    pub fn restart(&mut self, log: &Path) -> anyhow::Result<()> {
        self.kill();
        self.log = log.to_owned();
        self.spawn()
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = &self.log;
        let stderr = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(&self.bin);
        command
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info,jitgate_agent=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = ChildGuard::spawn(&mut command, "jitgate-agent")?;
        let stdout = child.child_mut().stdout.take().context("agent stdout")?;
        self.child = Some(child);
        let line = wait_for_line(stdout, READY_PREFIX, START_TIMEOUT).with_context(|| {
            format!(
                "waiting for the agent to be ready; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        })?;
        self.listen = line
            .trim()
            .trim_start_matches(READY_PREFIX)
            .parse()
            .with_context(|| format!("parsing the agent's ready line {line:?}"))?;
        Ok(())
    }

    /// The agent's IPv4 listener.
    pub fn listen(&self) -> SocketAddrV4 {
        self.listen
    }

    /// The agent's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::pid)
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the agent process, if it runs.
    pub fn signal(&self, signal: i32) {
        if let Some(pid) = self.pid().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) on the pid of our own un-reaped child: it cannot be reused yet.
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the agent with SIGKILL and waits for it, leaving its pinned programs attached (as a
    /// crashed agent would).
    pub fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            drop(child);
        }
    }

    /// Stops the agent with SIGTERM, waiting up to 10 s (then SIGKILL).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.pid()) {
            // SAFETY: kill(2) on the pid of our own un-reaped child: it cannot be reused yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Detaches the kernel programs: `jitgate-agent unload --pin-dir …`.
    pub fn unload(&self) -> anyhow::Result<()> {
        let status = Command::new(&self.bin)
            .arg("unload")
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .stdout(Stdio::null())
            .status()
            .context("running jitgate-agent unload")?;
        anyhow::ensure!(status.success(), "jitgate-agent unload failed: {status}");
        Ok(())
    }
}

impl Drop for AgentGuard {
    fn drop(&mut self) {
        self.stop();
        if let Err(e) = self.unload() {
            eprintln!("warning: {e:#}");
        }
        let _ = std::fs::remove_dir_all(&self.pin_dir);
    }
}
