//! A session's own role: made by [`Broker::issue`] before the session logs in, held by a
//! [`RoleLease`], and dropped in the background when the lease is dropped — on every way a
//! session ends, since the lease lives in the session's upstream connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::marker::RoleMarker;
use super::sql::{self, NewRole};
use super::{Broker, CredentialError};

/// How long making a role (broker connection included) may take.
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long dropping a role (terminating its backends, its objects, the role) may take; then it
/// is left to the reaper.
pub const DROP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a finished session's backend gets to exit by itself (its connection is closed and a
/// query it was running has been cancelled) before it is terminated.
pub const EXIT_GRACE: Duration = Duration::from_secs(3);
/// Shortest grant worth starting a session for.
const MIN_GRANT: Duration = Duration::from_secs(5);

/// A session role that exists on the server. Dropping the lease drops the role (in a
/// background task, bounded by [`DROP_TIMEOUT`]; failures are logged and left to the reaper).
pub struct RoleLease {
    broker: Arc<Broker>,
    role: String,
    password: String,
    valid_until: SystemTime,
    database: String,
    addr: SocketAddr,
}

impl RoleLease {
    /// The role's name.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// Its password (known only to the agent; the server holds a SCRAM verifier).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Its `VALID UNTIL`: the session must be over by then.
    pub fn valid_until(&self) -> SystemTime {
        self.valid_until
    }
}

impl Drop for RoleLease {
    fn drop(&mut self) {
        self.broker.drop_role_in_background(
            std::mem::take(&mut self.role),
            std::mem::take(&mut self.database),
            self.addr,
        );
    }
}

/// 32 random bytes as 64 hex digits (256 bits; hex needs no SASLprep or quoting).
fn random_password() -> Result<String, CredentialError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| CredentialError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The grant's end: `now + max_session`, but not after the token's `exp` (seconds since the
/// epoch), in whole seconds.
fn grant_end(
    now: SystemTime,
    max_session: Duration,
    token_exp: i64,
) -> Result<SystemTime, CredentialError> {
    let by_config = now + max_session;
    let by_token = u64::try_from(token_exp)
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
        .map_err(|_| CredentialError::TokenExpiring {
            expires_at: token_exp,
        })?;
    let end = by_config.min(by_token);
    let secs = end
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let end = UNIX_EPOCH + Duration::from_secs(secs);
    if end < now + MIN_GRANT {
        return Err(CredentialError::TokenExpiring {
            expires_at: token_exp,
        });
    }
    Ok(end)
}

impl Broker {
    /// Creates the role of session `session_id` (audit id) for `database` on `addr`:
    /// `role_prefix` + the session id's 32 hex digits, a random password given to the server
    /// only as a SCRAM-SHA-256 verifier, `VALID UNTIL` now + `max_session` capped by the token's
    /// `exp` (`token_exp`, seconds since the epoch), member of `grant_roles`, the broker a
    /// member of it, commented with jitgate's marker. Bounded by [`CREATE_TIMEOUT`]; on any
    /// failure nothing is left behind (one implicit transaction).
    pub async fn issue(
        self: &Arc<Self>,
        addr: SocketAddr,
        database: &str,
        session_id: &str,
        token_exp: i64,
    ) -> Result<RoleLease, CredentialError> {
        let valid_until = grant_end(SystemTime::now(), self.settings.max_session, token_exp)?;
        let role = format!(
            "{}{}",
            self.settings.role_prefix,
            session_id.replace('-', "")
        );
        let password = random_password()?;
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        let marker = RoleMarker {
            host: self.agent.host.clone(),
            agent_pid: self.agent.pid,
            boot_id: self.agent.boot_id.clone(),
            instance: self.agent.instance.clone(),
            session: session_id.to_owned(),
            database: database.to_owned(),
            expires: sql::timestamp(valid_until),
        };
        let create = sql::create_role(&NewRole {
            name: &role,
            verifier: &verifier,
            valid_until,
            grant_roles: &self.settings.grant_roles,
            broker: &self.settings.broker_user,
            comment: &marker.to_comment(),
        })?;
        // Live before it exists, so the reaper never takes it.
        self.live.insert(&role, &self.target, database);
        let started = std::time::Instant::now();
        let created = tokio::time::timeout(
            CREATE_TIMEOUT,
            self.query(addr, database, &create, "create the session's role"),
        )
        .await
        .unwrap_or(Err(CredentialError::Timeout {
            what: "creating the session's role",
            after: CREATE_TIMEOUT,
        }));
        if let Err(e) = created {
            // A timeout may have left the role behind: the reaper finds it once not live.
            self.live.remove(&role);
            return Err(e);
        }
        tracing::debug!(%role, until = %marker.expires, elapsed = ?started.elapsed(), "session role created");
        Ok(RoleLease {
            broker: self.clone(),
            role,
            password,
            valid_until,
            database: database.to_owned(),
            addr,
        })
    }

    /// Drops `role` (of a session in `database` on `addr`) in a background task bounded by
    /// [`DROP_TIMEOUT`], unless another task already is. Failures are logged; the reaper
    /// retries.
    pub fn drop_role_in_background(
        self: &Arc<Self>,
        role: String,
        database: String,
        addr: SocketAddr,
    ) {
        if role.is_empty() || !self.live.claim(&role, &self.target, &database) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.live.remove(&role);
            return;
        };
        let broker = self.clone();
        let task = async move {
            let dropping = broker.drop_role(&role, &database, addr, EXIT_GRACE);
            let result = tokio::time::timeout(DROP_TIMEOUT, dropping)
                .await
                .unwrap_or(Err(CredentialError::Timeout {
                    what: "dropping the session's role",
                    after: DROP_TIMEOUT,
                }));
            match result {
                Ok(()) => tracing::debug!(%role, "session role dropped"),
                Err(e) => {
                    tracing::warn!(%role, error = %e, "session role not dropped; the reaper will retry")
                }
            }
            broker.live.remove(&role);
        };
        self.drops.spawn_on(task, &runtime);
    }

    /// Waits up to `grace` for `role`'s backends to exit by themselves, terminates those left,
    /// then `[REASSIGN OWNED]`, `DROP OWNED`, `DROP ROLE` in `database` per `on_end`
    /// ([`sql::drop_role`]).
    pub async fn drop_role(
        &self,
        role: &str,
        database: &str,
        addr: SocketAddr,
        grace: Duration,
    ) -> Result<(), CredentialError> {
        let deadline = tokio::time::Instant::now() + grace;
        let count = sql::count_backends(role)?;
        while tokio::time::Instant::now() < deadline {
            let rows = self
                .query(addr, database, &count, "count the role's sessions")
                .await?;
            let left = rows.first().and_then(|r| r.first().cloned().flatten());
            if left.as_deref() == Some("0") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.query(
            addr,
            database,
            &sql::terminate_backends(role)?,
            "end the role's sessions",
        )
        .await?;
        let statements = sql::drop_role(
            role,
            self.settings.on_end,
            self.settings.reassign_to.as_deref(),
        )?;
        self.query(addr, database, &statements, "drop the session's role")
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grant_ends_at_max_session_or_the_token_expiry() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        let end = grant_end(now, hour, 2_000_000).expect("ok");
        assert_eq!(end, now + hour);
        let end = grant_end(now, hour, 1_000_600).expect("ok");
        assert_eq!(end, UNIX_EPOCH + Duration::from_secs(1_000_600));
        assert!(grant_end(now, hour, 1_000_001).is_err());
        assert!(grant_end(now, hour, -1).is_err());
    }

    #[test]
    fn passwords_are_long_and_random() {
        let (a, b) = (random_password().expect("a"), random_password().expect("b"));
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
