//! The agent's own audit trail: one chain per agent run (session id = a UUIDv7 made at start)
//! with `AgentStarted`, `PolicyReloaded` (SIGHUP), `SpoolOverflow` (the spool crossing its size
//! limit, either way) and `AgentStopped` (SIGTERM/SIGINT).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use jitgate_proto::audit::v1 as pb;
use sha2::{Digest as _, Sha256};

use crate::audit::{AuditSink, SessionAudit};
use crate::policy::{PolicyEngine, PolicySlot};

/// What the agent does while its spool is full (`SpoolOverflow.action`).
pub const FULL_ACTION: &str = "refusing new sessions (SQLSTATE 53400); open sessions continue";

/// The lifecycle chain of this agent run.
#[derive(Debug)]
pub struct Lifecycle {
    audit: Mutex<SessionAudit>,
    policy_file: PathBuf,
}

/// Hex SHA-256 of the file at `path`, or an empty string when it cannot be read.
pub fn sha256_file(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| jitgate_proto::chain::hex(&Sha256::digest(bytes)))
        .unwrap_or_default()
}

impl Lifecycle {
    /// Starts the run's chain and records `AgentStarted` (version, pid, hashes of the
    /// configuration and policy files, events found in the spool).
    pub fn start(sink: &AuditSink, config_file: &Path, policy_file: &Path) -> Arc<Lifecycle> {
        let mut audit = SessionAudit::start(sink.clone());
        audit.record(pb::event::Kind::AgentStarted(pb::AgentStarted {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            config_sha256: sha256_file(config_file),
            policy_sha256: sha256_file(policy_file),
            spooled_events: sink.found_at_start(),
        }));
        Arc::new(Lifecycle {
            audit: Mutex::new(audit),
            policy_file: policy_file.to_owned(),
        })
    }

    /// The run's session id.
    pub fn session_id(&self) -> String {
        self.lock().session_id().to_owned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SessionAudit> {
        self.audit.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, kind: pb::event::Kind) -> u64 {
        self.lock().record(kind)
    }

    /// Reads the policy file again: a valid set replaces the one in `slot` for new sessions; an
    /// invalid one leaves it in force. Records `PolicyReloaded` either way.
    pub fn reload_policy(&self, slot: &PolicySlot) {
        let sha = sha256_file(&self.policy_file);
        let event = match PolicyEngine::from_file(&self.policy_file) {
            Ok(engine) => {
                let policies = engine.len();
                slot.replace(Arc::new(engine));
                tracing::info!(file = %self.policy_file.display(), policies, "policies reloaded");
                pb::PolicyReloaded {
                    policy_sha256: sha,
                    applied: true,
                    error: String::new(),
                    policies: u32::try_from(policies).unwrap_or(u32::MAX),
                }
            }
            Err(e) => {
                let policies = slot.current().len();
                tracing::error!(file = %self.policy_file.display(), error = %e,
                    "policy reload refused; the previous policies stay in force");
                pb::PolicyReloaded {
                    policy_sha256: sha,
                    applied: false,
                    error: e.to_string(),
                    policies: u32::try_from(policies).unwrap_or(u32::MAX),
                }
            }
        };
        self.record(pb::event::Kind::PolicyReloaded(event));
    }

    /// Records `SpoolOverflow` each time the spool crosses its limit (`cleared = false`) and
    /// each time it is back below (`cleared = true`), for as long as the process runs.
    pub async fn watch_overflow(self: Arc<Self>, sink: AuditSink) {
        let mut state = sink.spool().state();
        let mut full = false;
        loop {
            let now = *state.borrow_and_update();
            if now.full() != full {
                full = now.full();
                if full {
                    tracing::error!(
                        bytes = now.bytes,
                        max = now.max_bytes,
                        "audit spool full: refusing new sessions"
                    );
                } else {
                    tracing::info!(bytes = now.bytes, "audit spool below its limit again");
                }
                self.record(pb::event::Kind::SpoolOverflow(pb::SpoolOverflow {
                    bytes: now.bytes,
                    max_bytes: now.max_bytes,
                    action: if full {
                        FULL_ACTION.to_owned()
                    } else {
                        "accepting new sessions again".to_owned()
                    },
                    cleared: !full,
                }));
            }
            if state.changed().await.is_err() {
                return;
            }
        }
    }

    /// Records `AgentStopped` and waits (at most 5 s) until it is committed.
    pub async fn stopped(&self, reason: &str, open_sessions: u64) {
        let ticket = self.record(pb::event::Kind::AgentStopped(pb::AgentStopped {
            reason: reason.to_owned(),
            open_sessions,
        }));
        let mut durable = self.lock().durable();
        let committed = durable.wait_for(|n| *n >= ticket);
        if tokio::time::timeout(std::time::Duration::from_secs(5), committed)
            .await
            .is_err()
        {
            tracing::error!("AgentStopped not committed to the audit spool within 5 s");
        }
    }
}
