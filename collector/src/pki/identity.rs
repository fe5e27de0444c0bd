//! Recognising an agent certificate: after the TLS handshake verified the chain to the
//! collector's `--client-ca` and the validity period, a peer is an agent when its leaf
//! certificate has EKU clientAuth and exactly one SAN URI of the shape
//! `spiffe://jitgate/agent/<name>` with a valid agent name.

use x509_parser::extensions::GeneralName;

use super::{AGENT_URI_PREFIX, valid_agent_name};

/// Why a certificate is not an agent certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAgent {
    /// The DER does not parse as an X.509 certificate.
    #[error("the certificate does not parse")]
    Unparsable,
    /// No extended key usage clientAuth.
    #[error("the certificate lacks extended key usage clientAuth")]
    NoClientAuth,
    /// No SAN URI `spiffe://jitgate/agent/<name>` (or more than one).
    #[error("the certificate has no single SAN URI {AGENT_URI_PREFIX}<name>")]
    NoAgentUri,
}

/// The agent name in the certificate `der` (DER-encoded X.509).
///
/// # Errors
/// [`NotAgent`] saying what is missing.
pub fn agent_name(der: &[u8]) -> Result<String, NotAgent> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| NotAgent::Unparsable)?;
    let client_auth = cert
        .extended_key_usage()
        .map_err(|_| NotAgent::Unparsable)?
        .is_some_and(|eku| eku.value.client_auth);
    if !client_auth {
        return Err(NotAgent::NoClientAuth);
    }
    let san = cert
        .subject_alternative_name()
        .map_err(|_| NotAgent::Unparsable)?
        .ok_or(NotAgent::NoAgentUri)?;
    let mut names = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => uri.strip_prefix(AGENT_URI_PREFIX),
            _ => None,
        });
    match (names.next(), names.next()) {
        (Some(name), None) if valid_agent_name(name) => Ok(name.to_owned()),
        _ => Err(NotAgent::NoAgentUri),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::ca::Ca;

    fn der(pem: &str) -> Vec<u8> {
        let block = rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .expect("one cert")
            .expect("pem");
        block.to_vec()
    }

    #[test]
    fn agent_certificates_name_their_agent_and_others_do_not() {
        let (ca, ca_files) = Ca::generate().expect("ca");
        let agent = ca.issue_agent("runner-7", 30).expect("agent");
        assert_eq!(agent_name(&der(&agent.cert_pem)), Ok("runner-7".to_owned()));
        let server = ca
            .issue_server(&["collector.example".into()], 30)
            .expect("server");
        assert_eq!(
            agent_name(&der(&server.cert_pem)),
            Err(NotAgent::NoClientAuth)
        );
        assert_eq!(
            agent_name(&der(&ca_files.cert_pem)),
            Err(NotAgent::NoClientAuth)
        );
        assert_eq!(agent_name(b"not a certificate"), Err(NotAgent::Unparsable));
    }
}
