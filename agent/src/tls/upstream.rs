//! The upstream side: TLS to the protected server as the target's `upstream_tls` mode says
//! (libpq's `sslmode` names): `disable`, `prefer` (TLS when offered, no verification), `require`
//! (TLS, no verification), `verify-full` (TLS, chain to the configured CA file or the public
//! roots, name checked). Also the `tls-server-end-point` channel binding data (RFC 5929) for
//! SCRAM-SHA-256-PLUS.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;
use sha2::Digest as _;

use super::TlsError;

/// How the agent protects its connection to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTlsMode {
    /// Plain TCP.
    Disable,
    /// TLS if the server offers it, without verification.
    #[default]
    Prefer,
    /// TLS or fail, without verification.
    Require,
    /// TLS or fail; the chain and the server name are verified.
    VerifyFull,
}

/// Accepts any certificate (modes `prefer` and `require`, as libpq does), still checking the
/// handshake signatures so the session key belongs to the presented certificate.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client configuration for `mode`; `None` for `disable`.
pub fn client_config(
    mode: UpstreamTlsMode,
    ca_file: Option<&Path>,
) -> Result<Option<Arc<ClientConfig>>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match mode {
        UpstreamTlsMode::Disable => return Ok(None),
        UpstreamTlsMode::Prefer | UpstreamTlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth(),
        UpstreamTlsMode::VerifyFull => {
            let mut roots = RootCertStore::empty();
            match ca_file {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|source| TlsError::File {
                        path: path.to_owned(),
                        source,
                    })?;
                    let mut any = false;
                    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                        let cert = cert.map_err(|source| TlsError::File {
                            path: path.to_owned(),
                            source,
                        })?;
                        roots.add(cert)?;
                        any = true;
                    }
                    if !any {
                        return Err(TlsError::NoCertificate {
                            path: path.to_owned(),
                        });
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(Some(Arc::new(config)))
}

/// `tls-server-end-point` channel binding data (RFC 5929 §4.1): the hash of the server's
/// certificate. SHA-256 is used, as RFC 5929 prescribes for certificates signed with SHA-1 or
/// MD5 and as PostgreSQL's servers with SHA-256 (or stronger-hashed, approximated here) certs use.
pub fn server_end_point(cert: &CertificateDer<'_>) -> Vec<u8> {
    sha2::Sha256::digest(cert.as_ref()).to_vec()
}
