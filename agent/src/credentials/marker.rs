//! jitgate's mark on the roles it creates: a `COMMENT ON ROLE` of the form
//! `jitgate:v1 {"host":…,"agent_pid":…,"boot_id":…,"instance":…,"session":…,"database":…,"expires":…}`
//! that tells people (`\du+`) and the reaper what a role is, where it was made, by which agent
//! run, for which session and database, and until when it may log in.

use serde::{Deserialize, Serialize};

/// How every jitgate role comment starts. The reaper touches no role whose comment does not.
pub const MARKER: &str = "jitgate:v1 ";

/// This agent process, as recorded in its roles' comments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInstance {
    /// The host name in audit events (`agent.host_name` or the kernel hostname).
    pub host: String,
    /// The agent's process id.
    pub pid: u32,
    /// The kernel's boot id (`/proc/sys/kernel/random/boot_id`): a pid means this process only
    /// within one boot.
    pub boot_id: String,
    /// Random id of this agent run, so a pid reused by a later agent is not taken for it.
    pub instance: String,
}

impl AgentInstance {
    /// This process on `host`.
    pub fn current(host: &str) -> Self {
        Self {
            host: host.to_owned(),
            pid: std::process::id(),
            boot_id: boot_id(),
            instance: uuid::Uuid::now_v7().simple().to_string(),
        }
    }

    /// Whether another jitgate agent recorded as `marker` is still running on this host (same
    /// boot, its pid alive and named `jitgate-agent`, not this process).
    pub fn other_agent_alive(&self, marker: &RoleMarker) -> bool {
        if marker.boot_id != self.boot_id || marker.agent_pid == self.pid {
            return false;
        }
        std::fs::read_to_string(format!("/proc/{}/comm", marker.agent_pid))
            .map(|comm| comm.trim() == "jitgate-agent")
            .unwrap_or(false)
    }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// What a role's comment records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleMarker {
    /// [`AgentInstance::host`].
    pub host: String,
    /// [`AgentInstance::pid`].
    pub agent_pid: u32,
    /// [`AgentInstance::boot_id`].
    pub boot_id: String,
    /// [`AgentInstance::instance`].
    pub instance: String,
    /// The session's audit id.
    pub session: String,
    /// The database the session used (where DROP OWNED must run).
    pub database: String,
    /// `VALID UNTIL`, UTC (`2026-11-30 18:27:15+00`).
    pub expires: String,
}

impl RoleMarker {
    /// The comment text: [`MARKER`] then the JSON object.
    pub fn to_comment(&self) -> String {
        // Serialising plain strings and integers cannot fail.
        format!(
            "{MARKER}{}",
            serde_json::to_string(self).unwrap_or_default()
        )
    }

    /// The marker in a role comment, or `None` when the comment is not jitgate's.
    pub fn parse(comment: &str) -> Option<Self> {
        serde_json::from_str(comment.strip_prefix(MARKER)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_round_trip_and_foreign_ones_are_ignored() {
        let marker = RoleMarker {
            host: "runner-1".into(),
            agent_pid: 42,
            boot_id: "b".into(),
            instance: "i".into(),
            session: "s".into(),
            database: "shop's".into(),
            expires: "2026-11-30 18:27:15+00".into(),
        };
        let comment = marker.to_comment();
        assert!(comment.starts_with("jitgate:v1 {"));
        assert_eq!(RoleMarker::parse(&comment), Some(marker));
        assert_eq!(RoleMarker::parse("a person's role"), None);
        assert_eq!(RoleMarker::parse("jitgate:v1 not json"), None);
    }
}
