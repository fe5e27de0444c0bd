//! Workload identity: which OIDC-authenticated workload a connecting process is.
//!
//! [`identify`] drives it: [`liveness`] checks that `/proc/<tgid>` still is the process the
//! kernel recorded at `connect` (start time, uid, cgroup, comm) and [`socket`] that it holds
//! the connection's client socket, [`sources`] finds the token —
//! a file ([`token_file`], opened with the job's credentials through [`creds`]), a variable, the
//! GitHub Actions request ([`github`]) or the startup password ([`startup_password`]) — in the
//! environments of the process and its ancestors in the runner cgroup ([`process`]), and [`jwt`]
//! validates it (RFC 7519) against the issuer's keys ([`keys`], RFC 7517) from a file or from
//! OIDC discovery ([`discovery`], over [`http`]). [`claims`] is the identity policy and audit
//! use.

pub mod ancestry;
pub mod claims;
pub mod creds;
pub mod discovery;
pub mod github;
pub mod http;
pub mod identify;
pub mod jwt;
pub mod keys;
pub mod liveness;
pub mod process;
pub mod scrub;
pub mod socket;
pub mod sources;
pub mod startup_password;
pub mod token_file;

pub use claims::WorkloadIdentity;
pub use identify::{Identified, Identifier, PasswordChannel};
pub use jwt::Validator;

use std::path::PathBuf;

use thiserror::Error;

/// Why a connection has no usable identity. Every variant is answered with SQLSTATE 28000
/// (invalid_authorization_specification) and a message the job's owner can act on.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// No configured source gave a token.
    #[error(
        "no OIDC token: process {pid} ({comm}) and its ancestors in the CI job gave none; looked for {looked}"
    )]
    NoToken {
        /// The connecting process.
        pid: u32,
        /// Its command name.
        comm: String,
        /// What was looked for, in order.
        looked: String,
    },
    /// The process that connected is gone or is no longer the same process.
    #[error("process {pid} that opened the connection is gone or changed ({detail})")]
    ProcessGone {
        /// The kernel-recorded tgid.
        pid: u32,
        /// What did not match.
        detail: String,
    },
    /// The token file named in the environment could not be used.
    #[error("token file {path} (from ${var} of process {pid}) cannot be used: {detail}")]
    TokenFile {
        /// The file as named.
        path: PathBuf,
        /// The variable that named it.
        var: String,
        /// The process whose environment named it.
        pid: u32,
        /// Why (not found, not readable by the process's user, too large, …).
        detail: String,
    },
    /// The token is not a well-formed JWT.
    #[error("the OIDC token is not a valid JWT: {detail}")]
    Malformed {
        /// What is wrong.
        detail: String,
    },
    /// The token's issuer is not configured.
    #[error("the OIDC token's issuer {issuer:?} is not trusted by this runner")]
    UnknownIssuer {
        /// The `iss` claim.
        issuer: String,
    },
    /// The signing algorithm is not an accepted asymmetric one.
    #[error(
        "the OIDC token's algorithm {alg} is not accepted (RS256/384/512, PS256/384/512, ES256, ES384 and EdDSA are)"
    )]
    Algorithm {
        /// The header's `alg`.
        alg: String,
    },
    /// No key in the issuer's JWKS matches the token's `kid`.
    #[error("no key {kid:?} in the JWKS of issuer {issuer}: {detail}")]
    UnknownKey {
        /// The header's `kid`.
        kid: String,
        /// The issuer.
        issuer: String,
        /// Whether a refresh was tried, and how it went.
        detail: String,
    },
    /// The keys of a discovery issuer have never been fetched successfully.
    #[error("the keys of issuer {issuer} are not available yet: {detail}")]
    KeysUnavailable {
        /// The issuer.
        issuer: String,
        /// The last fetch failure, and when the next attempt is allowed.
        detail: String,
    },
    /// An issuer's discovery configuration cannot be used.
    #[error("issuer {issuer}: {detail}")]
    Discovery {
        /// The issuer.
        issuer: String,
        /// What is wrong.
        detail: String,
    },
    /// The identity configuration cannot be used.
    #[error("[identity]: {detail}")]
    Config {
        /// What is wrong.
        detail: String,
    },
    /// The job's GitHub Actions token request URL is not one the agent may call.
    #[error(
        "the GitHub Actions token request URL {url} (from $ACTIONS_ID_TOKEN_REQUEST_URL of process {pid}) is not under an allowed URL (github_allowed_urls)"
    )]
    GithubUrlNotAllowed {
        /// The URL without query or credentials.
        url: String,
        /// The process whose environment held it.
        pid: u32,
    },
    /// The GitHub Actions token request failed.
    #[error("the GitHub Actions token request of process {pid} failed: {detail}")]
    GithubRequest {
        /// The process whose environment held the request variables.
        pid: u32,
        /// Why.
        detail: String,
    },
    /// The client did not send a usable password when asked for its token.
    #[error("no token as password: {detail}")]
    StartupPassword {
        /// Why.
        detail: String,
    },
    /// Signature, expiry, not-before, audience or issuer check failed.
    #[error("the OIDC token was rejected: {detail}")]
    Rejected {
        /// The failed check, e.g. "token expired".
        detail: String,
    },
    /// A JWKS file could not be loaded.
    #[error("cannot load JWKS {path}: {detail}")]
    Jwks {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
}
