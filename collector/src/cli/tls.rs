//! The CLI's TLS to an `https://` collector: the collector's certificate is verified against
//! `--ca` / `JITGATE_CA` (the collector CA's `ca.crt`). The CLI presents no client certificate;
//! people authenticate with tokens.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig};

/// Why the CLI's TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum CliTlsError {
    /// `https://` without a CA to verify the collector with.
    #[error(
        "an https:// collector needs --ca FILE (or JITGATE_CA): the CA certificate its server certificate was issued by"
    )]
    NoCa,
    /// The CA file cannot be read.
    #[error("cannot read the CA certificate {path}", path = path.display())]
    Read {
        /// The `--ca` file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The CA file holds no PEM certificate.
    #[error("{path} holds no PEM certificate", path = path.display())]
    NoCertificate {
        /// The `--ca` file.
        path: PathBuf,
    },
}

/// The TLS configuration trusting the CA certificate in `ca`.
///
/// # Errors
/// [`CliTlsError`] without `ca`, or when it cannot be read or holds no certificate.
pub fn client_config(ca: Option<&Path>) -> Result<ClientTlsConfig, CliTlsError> {
    let path = ca.ok_or(CliTlsError::NoCa)?;
    let pem = std::fs::read(path).map_err(|source| CliTlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    if !matches!(
        rustls_pemfile::certs(&mut pem.as_slice()).next(),
        Some(Ok(_))
    ) {
        return Err(CliTlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
}
