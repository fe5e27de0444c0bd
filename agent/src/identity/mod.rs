//! Workload identity: which OIDC-authenticated workload a connecting process is.
//!
//! [`process`] reads the kernel's process facts and finds the process's token through its
//! environment and its ancestors' (within the runner cgroup); [`jwt`] validates the token
//! against the configured issuers' JWKS (RFC 7519, RFC 7517) and extracts the claims
//! ([`claims`]) that policy and audit use.

pub mod claims;
pub mod creds;
pub mod jwt;
pub mod process;

pub use claims::WorkloadIdentity;
pub use jwt::Validator;

use std::path::PathBuf;

use thiserror::Error;

/// Why a connection has no usable identity. Every variant is answered with SQLSTATE 28000
/// (invalid_authorization_specification) and a message the job's owner can act on.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// Neither the process nor an ancestor in the runner cgroup names a token file.
    #[error(
        "no OIDC token: process {pid} ({comm}) and its ancestors in the CI job set none of {vars}"
    )]
    NoToken {
        /// The connecting process.
        pid: u32,
        /// Its command name.
        comm: String,
        /// The environment variables looked for, comma-separated.
        vars: String,
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
    #[error("the OIDC token's algorithm {alg} is not accepted (RS256 and ES256 are)")]
    Algorithm {
        /// The header's `alg`.
        alg: String,
    },
    /// No key in the issuer's JWKS matches the token's `kid`.
    #[error("no key {kid:?} in the JWKS of issuer {issuer}")]
    UnknownKey {
        /// The header's `kid`.
        kid: String,
        /// The issuer.
        issuer: String,
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
