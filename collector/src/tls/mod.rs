//! TLS on the collector's listener: the server certificate (`--tls-cert`, `--tls-key`), client
//! certificates verified against `--client-ca` but optional at the handshake ([`config`]), the
//! handshakes done off the accept loop ([`incoming`]), and which calls need which peer
//! ([`gate`]).
//!
//! A client certificate that does not chain to `--client-ca` (another CA, expired, wrong EKU)
//! fails the handshake; a connection without one is accepted, and [`gate`] refuses it the
//! agents' calls.

pub mod gate;
pub mod incoming;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// The HTTP/2 ALPN id gRPC clients ask for.
const ALPN_H2: &[u8] = b"h2";

/// Errors loading the collector's TLS files.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}", path = path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no PEM certificate.
    #[error("{path} holds no PEM certificate", path = path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A file holds no PEM private key.
    #[error("{path} holds no PEM private key", path = path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the certificates or key (e.g. the key does not match the certificate).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA cannot be used to verify clients.
    #[error("client CA {path}: {source}", path = path.display())]
    ClientCa {
        /// The `--client-ca` file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
}

/// The files of the collector's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server certificate chain, PEM (`--tls-cert`).
    pub cert: PathBuf,
    /// Its private key, PEM (`--tls-key`).
    pub key: PathBuf,
    /// The CA agent certificates must chain to, PEM (`--client-ca`).
    pub client_ca: PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::File {
        path: path.to_owned(),
        source,
    })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::File {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|source| TlsError::File {
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey {
            path: path.to_owned(),
        })
}

/// The rustls server configuration for `files` (ring provider, TLS 1.2 and 1.3, ALPN `h2`):
/// client certificates are verified against the client CA when presented, and optional.
///
/// # Errors
/// [`TlsError`] naming the file that cannot be read or used.
pub fn config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in certs(&files.client_ca)? {
        roots.add(cert)?;
    }
    let client_ca = |source| TlsError::ClientCa {
        path: files.client_ca.clone(),
        source,
    };
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(client_ca)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&files.cert)?, key(&files.key)?)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}
