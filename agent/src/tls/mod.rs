//! TLS on both sides of the agent (rustls): the agent terminates the client's TLS with a
//! certificate issued for the protected destination's names by a local CA ([`ca`], [`server`]),
//! and speaks TLS to the upstream server as each target asks ([`upstream`]).

pub mod ca;
pub mod info;
pub mod server;
pub mod upstream;

use std::path::PathBuf;

use thiserror::Error;

/// Errors setting up TLS.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A key or certificate file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key could not be parsed or generated.
    #[error("certificate error: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused a configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// A PEM file holds no usable certificate.
    #[error("{path}: no certificate found")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
}
