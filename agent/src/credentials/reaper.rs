//! The reaper: removes session roles that nobody will drop. It only ever considers roles whose
//! name starts with the target's `role_prefix`, that are not superusers, and whose comment
//! carries jitgate's marker ([`super::marker`]); of those it removes
//!
//! - roles made on this host by an agent that is no longer running (a crash, SIGKILL), and roles
//!   of this agent whose session is over but whose drop failed;
//! - roles of any host whose `VALID UNTIL` passed more than [`GRACE`] ago.
//!
//! Each removal terminates the role's backends, then drops its objects per `on_end` in the
//! database its session used, then the role ([`Broker::drop_role`]). It runs once at start and
//! then every [`INTERVAL`].

use std::sync::Arc;
use std::time::Duration;

use super::marker::RoleMarker;
use super::role::DROP_TIMEOUT;
use super::{Broker, CredentialError, sql};

/// Time between passes.
pub const INTERVAL: Duration = Duration::from_secs(60);
/// How long after its `VALID UNTIL` a role of another agent is left to that agent.
pub const GRACE: Duration = Duration::from_secs(60);

/// Why a role is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Made on this host by an agent that is gone, or by this agent for a session that is over.
    Orphaned,
    /// Its `VALID UNTIL` passed more than [`GRACE`] ago.
    Expired,
}

/// Runs a pass over every broker now and then every [`INTERVAL`], forever.
pub async fn run(brokers: Vec<Arc<Broker>>) {
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        for broker in &brokers {
            match broker.reap().await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(target = %broker.target, removed = n, "reaper removed session roles")
                }
                Err(e) => tracing::warn!(target = %broker.target, error = %e, "reaper pass failed"),
            }
        }
    }
}

impl Broker {
    /// Whether the reaper should remove the role `name` with comment `comment` (`expired`:
    /// `VALID UNTIL` passed more than [`GRACE`] ago), and why.
    pub fn reap_reason(&self, name: &str, comment: &str, expired: bool) -> Option<Reason> {
        if !name.starts_with(&self.settings.role_prefix) || self.live.contains(name) {
            return None;
        }
        let marker = RoleMarker::parse(comment)?;
        if marker.host == self.agent.host
            && (marker.instance == self.agent.instance || !self.agent.other_agent_alive(&marker))
        {
            return Some(Reason::Orphaned);
        }
        expired.then_some(Reason::Expired)
    }

    /// One pass: lists the candidate roles and removes those [`Broker::reap_reason`] picks.
    /// Returns how many were removed; a role that cannot be removed is logged and retried on the
    /// next pass.
    pub async fn reap(&self) -> Result<usize, CredentialError> {
        let list = sql::list_roles(&self.settings.role_prefix, GRACE.as_secs())?;
        let rows = self
            .query(
                self.addr,
                &self.settings.broker_database,
                &list,
                "list session roles",
            )
            .await?;
        let mut removed = 0;
        for row in rows {
            let [Some(name), Some(comment), Some(expired)] = row.as_slice() else {
                continue;
            };
            let Some(reason) = self.reap_reason(name, comment, expired == "t") else {
                continue;
            };
            let Some(marker) = RoleMarker::parse(comment) else {
                continue;
            };
            if !self.live.claim(name, &self.target, &marker.database) {
                continue;
            }
            let result = self.reap_one(name, &marker.database).await;
            self.live.remove(name);
            match result {
                Ok(()) => {
                    removed += 1;
                    tracing::info!(role = %name, ?reason, session = %marker.session, host = %marker.host, "reaper removed a session role");
                }
                Err(e) => {
                    tracing::warn!(role = %name, error = %e, "reaper could not remove a session role")
                }
            }
        }
        Ok(removed)
    }

    async fn reap_one(&self, name: &str, database: &str) -> Result<(), CredentialError> {
        let attempt = |db: String| async move {
            // Nobody will end these sessions: terminated at once.
            let dropping = self.drop_role(name, &db, self.addr, Duration::ZERO);
            tokio::time::timeout(DROP_TIMEOUT, dropping)
                .await
                .unwrap_or(Err(CredentialError::Timeout {
                    what: "removing a session role",
                    after: DROP_TIMEOUT,
                }))
        };
        match attempt(database.to_owned()).await {
            // The session's database is gone (3D000): its objects went with it.
            Err(CredentialError::BrokerLogin { .. })
                if database != self.settings.broker_database =>
            {
                attempt(self.settings.broker_database.clone()).await
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::broker::BrokerSetup;
    use crate::credentials::marker::AgentInstance;
    use crate::credentials::{DynamicSettings, LiveRoles, OnEnd};

    fn broker() -> Broker {
        Broker::new(BrokerSetup {
            target: "shop".into(),
            addr: "127.0.0.1:5432".parse().expect("addr"),
            settings: DynamicSettings {
                broker_user: "broker".into(),
                broker_password_file: "/dev/null".into(),
                broker_database: "postgres".into(),
                grant_roles: vec!["ci".into()],
                role_prefix: "jitgate_".into(),
                max_session: Duration::from_secs(3600),
                on_end: OnEnd::DropOwned,
                reassign_to: None,
            },
            password: String::new(),
            tls: None,
            max_message: 1 << 20,
            agent: Arc::new(AgentInstance::current("runner-1")),
            live: Arc::new(LiveRoles::default()),
        })
    }

    fn comment(broker: &Broker, host: &str, instance: &str, pid: u32) -> String {
        RoleMarker {
            host: host.into(),
            agent_pid: pid,
            boot_id: broker.agent.boot_id.clone(),
            instance: instance.into(),
            session: "s".into(),
            database: "shop".into(),
            expires: "2000-01-01 00:00:00+00".into(),
        }
        .to_comment()
    }

    #[test]
    fn only_marked_roles_with_the_prefix_are_ever_taken() {
        let b = broker();
        let ours = comment(&b, "runner-1", &b.agent.instance.clone(), b.agent.pid);
        assert_eq!(b.reap_reason("other_x", &ours, true), None, "no prefix");
        assert_eq!(
            b.reap_reason("jitgate_x", "by hand", true),
            None,
            "no marker"
        );
        assert_eq!(b.reap_reason("jitgate_x", "", true), None, "no comment");
    }

    #[test]
    fn this_host_s_orphans_and_any_expired_role_are_taken() {
        let b = broker();
        let instance = b.agent.instance.clone();
        let ours = comment(&b, "runner-1", &instance, b.agent.pid);
        assert_eq!(
            b.reap_reason("jitgate_a", &ours, false),
            Some(Reason::Orphaned)
        );
        b.live.insert("jitgate_a", "shop", "shop");
        assert_eq!(b.reap_reason("jitgate_a", &ours, true), None, "live");
        // An earlier agent on this host, its pid gone (pid u32::MAX cannot exist).
        let crashed = comment(&b, "runner-1", "old", u32::MAX);
        assert_eq!(
            b.reap_reason("jitgate_b", &crashed, false),
            Some(Reason::Orphaned)
        );
        // Another host's role: only once expired.
        let remote = comment(&b, "runner-2", "x", 1);
        assert_eq!(b.reap_reason("jitgate_c", &remote, false), None);
        assert_eq!(
            b.reap_reason("jitgate_c", &remote, true),
            Some(Reason::Expired)
        );
    }
}
