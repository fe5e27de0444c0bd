//! The collector's local certificate authority for mutual TLS between agents and the collector:
//! creating the CA and issuing server and agent certificates ([`ca`]), the `jitgate-collector ca`
//! commands ([`cli`]), and recognising an agent certificate presented by a peer ([`identity`]).
//!
//! Certificate shapes (ECDSA P-256, PEM files):
//! - CA: `CN=jitgate collector CA, O=jitgate`, basic constraints CA with path length 0, key
//!   usages keyCertSign and cRLSign, valid [`ca::CA_VALIDITY_DAYS`] days.
//! - Server: SANs as given (DNS names or IP addresses), EKU serverAuth, valid
//!   [`ca::DEFAULT_LEAF_DAYS`] days unless `--days` says otherwise.
//! - Agent: `CN=<name>`, SAN URI `spiffe://jitgate/agent/<name>` ([`AGENT_URI_PREFIX`], the
//!   SPIFFE ID shape), EKU clientAuth, valid [`ca::DEFAULT_LEAF_DAYS`] days unless `--days`.

pub mod ca;
pub mod cli;
pub mod identity;

use std::path::PathBuf;

/// SAN URI prefix of agent certificates; the agent's name follows.
pub const AGENT_URI_PREFIX: &str = "spiffe://jitgate/agent/";

/// Errors of the local CA.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A certificate or key file could not be read or written.
    #[error("{path}: {source}", path = path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key could not be generated, parsed or signed.
    #[error("certificate error: {0}")]
    Certificate(#[from] rcgen::Error),
    /// An agent name is not 1 to 63 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
    #[error(
        "invalid agent name {0:?}: use 1 to 63 of A-Z a-z 0-9 . _ - starting with a letter or digit"
    )]
    AgentName(String),
    /// A server certificate needs at least one SAN.
    #[error("a server certificate needs at least one --san (DNS name or IP address)")]
    NoSan,
    /// The validity is not 1 to 3650 days.
    #[error("--days must be 1 to 3650, not {0}")]
    Days(u32),
}

/// Whether `name` may be an agent name: 1 to 63 characters of `A-Z a-z 0-9 . _ -`, the first a
/// letter or digit (it becomes part of a URI and of file names).
pub fn valid_agent_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
