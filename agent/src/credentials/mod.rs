//! Upstream credentials: the fixed role of a `static` target, or — the default — a PostgreSQL
//! role made for each session (`dynamic`).
//!
//! For a dynamic target the agent holds a *broker* credential (a role with CREATEROLE whose
//! password file only root may read, [`secret`]). For each session, [`Broker::issue`] creates a
//! role named `role_prefix` + the session id, with a random password the agent keeps in memory
//! (the server gets only its SCRAM-SHA-256 verifier, [`sql`]), `VALID UNTIL` the end of the
//! session's grant (`max_session`, capped by the token's `exp`), membership in `grant_roles` and
//! nothing else, and a comment marking it as jitgate's ([`marker`]). The session logs in as
//! that role. When the session ends, however it ends, its [`RoleLease`] is dropped and the role
//! goes in the background within a bounded time: its backends terminated, its objects dropped
//! or reassigned (`on_end`), the role dropped ([`role`]). Whatever a crash or a failed drop
//! leaves behind, the [`reaper`] removes: at start, this host's roles whose agent is gone;
//! periodically, roles whose `VALID UNTIL` has passed. [`broker`] keeps the broker's
//! connections (through [`crate::proxy::upstream`], with the target's TLS), a few idle per
//! database.

pub mod broker;
pub mod live;
pub mod marker;
pub mod reaper;
pub mod role;
pub mod secret;
pub mod settings;
pub mod sql;

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

pub use broker::Broker;
pub use live::LiveRoles;
pub use marker::AgentInstance;
pub use role::RoleLease;
pub use settings::{CredentialMode, MaxSession, OnEnd};

/// A dynamic target's settings, checked ([`crate::config::TargetConfig::credential`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicSettings {
    /// The broker role (CREATEROLE; member of `reassign_to` when objects are reassigned).
    pub broker_user: String,
    /// Its password file: root-owned, mode 0600 ([`secret::read_root_only`]).
    pub broker_password_file: PathBuf,
    /// Database the broker connects to for listing roles (the reaper).
    pub broker_database: String,
    /// Roles each session role becomes a member of.
    pub grant_roles: Vec<String>,
    /// Start of every session role's name.
    pub role_prefix: String,
    /// Longest life of a session role.
    pub max_session: Duration,
    /// What happens to a session role's objects when it is dropped.
    pub on_end: OnEnd,
    /// New owner of those objects for [`OnEnd::ReassignOwned`].
    pub reassign_to: Option<String>,
}

/// Longest `role_prefix`, bytes: with the 32 hex digits of a session id the name stays within
/// PostgreSQL's 63-byte identifiers (NAMEDATALEN − 1).
pub const MAX_PREFIX: usize = 31;

/// Whether `prefix` is a usable `role_prefix`: 1..=[`MAX_PREFIX`] bytes of lower-case ASCII
/// letters, digits and `_`, starting with a letter or `_`.
pub fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= MAX_PREFIX
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !prefix.as_bytes()[0].is_ascii_digit()
}

/// Errors of the broker and the session roles.
#[derive(Debug, Error)]
pub enum CredentialError {
    /// A secret file could not be read.
    #[error("cannot read {path}: {detail}")]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The broker password file is not root's alone.
    #[error(
        "broker password file {path} must be owned by root and not readable by group or others \
         (mode 0600 or 0400), but it is owned by uid {uid} with mode {mode:04o}; \
         run `chown root {path} && chmod 600 {path}`",
        path = path.display()
    )]
    SecretPermissions {
        /// The file.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// Its permission bits.
        mode: u32,
    },
    /// A name or value holds a byte no SQL identifier or literal may (NUL).
    #[error("{name:?} cannot be used in SQL (NUL byte)")]
    BadName {
        /// The offending text.
        name: String,
    },
    /// The broker could not connect or log in.
    #[error("the broker {user} cannot log in to {addr}: {source}")]
    BrokerLogin {
        /// The broker role.
        user: String,
        /// The server.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: Box<crate::proxy::ProxyError>,
    },
    /// The connection failed while the broker's statement ran.
    #[error("the broker's connection failed while trying to {what}: {source}")]
    BrokerConnection {
        /// What the broker was doing.
        what: &'static str,
        /// Why.
        #[source]
        source: Box<crate::proxy::ProxyError>,
    },
    /// The server refused the broker's statement.
    #[error("the server refused to {what}: {message} (SQLSTATE {sqlstate})")]
    Server {
        /// What the broker was doing.
        what: &'static str,
        /// The server's SQLSTATE.
        sqlstate: String,
        /// The server's message.
        message: String,
    },
    /// The broker's work did not finish in time.
    #[error("{what} took longer than {after:?}")]
    Timeout {
        /// What the broker was doing.
        what: &'static str,
        /// The limit.
        after: Duration,
    },
    /// The token expires too soon to give the session any time.
    #[error(
        "the workload token expires at {expires_at} (seconds since the epoch): no time left for a session"
    )]
    TokenExpiring {
        /// `exp`.
        expires_at: i64,
    },
    /// No randomness for the role's password.
    #[error("cannot generate a password: {0}")]
    Random(String),
}

impl CredentialError {
    /// The server's SQLSTATE when the server refused, else `None`.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Self::Server { sqlstate, .. } => Some(sqlstate),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_short_lowercase_identifiers() {
        assert!(valid_prefix("jitgate_"));
        assert!(valid_prefix("_j1"));
        assert!(!valid_prefix(""));
        assert!(!valid_prefix("1abc"));
        assert!(!valid_prefix("Jit"));
        assert!(!valid_prefix("a-b"));
        assert!(!valid_prefix(&"a".repeat(32)));
    }
}
