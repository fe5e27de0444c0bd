//! TLS from the agent to the collector, shared by audit delivery ([`crate::audit`]) and the
//! approvals client ([`crate::approval`]): an `https://` collector URL is verified against
//! `[audit] collector_ca`, and the agent authenticates with `[audit] client_cert` /
//! `client_key` (issued by `jitgate-collector ca issue --agent NAME`; the collector requires it
//! for the agents' calls). The key file must be root's alone (owned by root, mode 0600 or 0400),
//! as the broker password file ([`crate::credentials::secret`]).
//!
//! Settings are checked at startup: `https://` needs `collector_ca`; `client_cert` and
//! `client_key` come together; TLS settings with an `http://` URL are an error. A file that is
//! missing, unreadable or holds no PEM certificate or key is an error naming it.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::config::AuditSection;
use crate::credentials::secret::not_root_only;

/// Errors of the collector TLS settings.
#[derive(Debug, thiserror::Error)]
pub enum CollectorTlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}", path = path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A certificate file holds no PEM certificate.
    #[error("{path} holds no PEM certificate", path = path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no PEM private key.
    #[error("{path} holds no PEM private key", path = path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key file may be read by others than root.
    #[error(
        "collector client key {path} must be owned by root and not readable by group or others \
         (mode 0600 or 0400), but it is owned by uid {uid} with mode {mode:04o}; \
         run `chown root {path} && chmod 600 {path}`",
        path = path.display()
    )]
    KeyPermissions {
        /// The file.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// Its permission bits.
        mode: u32,
    },
    /// The settings do not fit together (naming the keys).
    #[error("invalid [audit] TLS settings: {0}")]
    Settings(String),
}

/// The client TLS for `collector` (the `[agent] collector` URL) from the `[audit]` section:
/// `None` for no collector or an `http://` one without TLS settings.
///
/// # Errors
/// [`CollectorTlsError`] for settings that do not fit the URL or a file that cannot be used.
pub fn from_config(
    collector: Option<&str>,
    audit: &AuditSection,
) -> Result<Option<ClientTlsConfig>, CollectorTlsError> {
    let https = collector.is_some_and(|url| url.starts_with("https://"));
    let any = audit.collector_ca.is_some() || audit.client_cert.is_some();
    let settings = |what: &str| Err(CollectorTlsError::Settings(what.to_owned()));
    if audit.client_cert.is_some() != audit.client_key.is_some() {
        return settings("client_cert and client_key go together");
    }
    if !https {
        return if any || audit.client_key.is_some() {
            settings("collector_ca, client_cert and client_key need an https:// agent.collector")
        } else {
            Ok(None)
        };
    }
    let Some(ca) = &audit.collector_ca else {
        return settings("an https:// agent.collector needs collector_ca");
    };
    let identity = match (&audit.client_cert, &audit.client_key) {
        (Some(cert), Some(key)) => Some((read(cert)?, read_key(key)?)),
        _ => {
            tracing::warn!(
                "no [audit] client_cert: a collector requiring agent certificates refuses this agent"
            );
            None
        }
    };
    let ca_pem = read(ca)?;
    check_certificate(ca, &ca_pem)?;
    if let (Some((cert_pem, key_pem)), Some(cert), Some(key)) =
        (&identity, &audit.client_cert, &audit.client_key)
    {
        check_certificate(cert, cert_pem)?;
        check_key(key, key_pem)?;
    }
    Ok(Some(client_config(&ca_pem, identity.as_ref())))
}

/// A client TLS configuration trusting the CA certificates in `ca_pem` and, with `identity`
/// (certificate chain PEM, private key PEM), authenticating with it. Nothing is parsed here;
/// [`apply`] fails for unusable PEM.
pub fn client_config(ca_pem: &[u8], identity: Option<&(Vec<u8>, Vec<u8>)>) -> ClientTlsConfig {
    let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
    match identity {
        Some((cert, key)) => config.identity(Identity::from_pem(cert, key)),
        None => config,
    }
}

/// `endpoint` with `tls` applied (none: unchanged).
///
/// # Errors
/// The transport error when the certificates or key do not parse.
pub fn apply(
    endpoint: Endpoint,
    tls: Option<&ClientTlsConfig>,
) -> Result<Endpoint, tonic::transport::Error> {
    match tls {
        Some(tls) => endpoint.tls_config(tls.clone()),
        None => Ok(endpoint),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CollectorTlsError> {
    std::fs::read(path).map_err(|source| CollectorTlsError::File {
        path: path.to_owned(),
        source,
    })
}

/// Reads the client key, which must be root's alone (checked on the opened file).
fn read_key(path: &Path) -> Result<Vec<u8>, CollectorTlsError> {
    use std::io::Read as _;
    let err = |source| CollectorTlsError::File {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(err)?;
    let meta = file.metadata().map_err(err)?;
    if let Some((uid, mode)) = not_root_only(&meta) {
        return Err(CollectorTlsError::KeyPermissions {
            path: path.to_owned(),
            uid,
            mode,
        });
    }
    let mut pem = Vec::new();
    file.read_to_end(&mut pem).map_err(err)?;
    Ok(pem)
}

fn check_certificate(path: &Path, pem: &[u8]) -> Result<(), CollectorTlsError> {
    match rustls_pemfile::certs(&mut &pem[..]).next() {
        Some(Ok(_)) => Ok(()),
        _ => Err(CollectorTlsError::NoCertificate {
            path: path.to_owned(),
        }),
    }
}

fn check_key(path: &Path, pem: &[u8]) -> Result<(), CollectorTlsError> {
    match rustls_pemfile::private_key(&mut &pem[..]) {
        Ok(Some(_)) => Ok(()),
        _ => Err(CollectorTlsError::NoKey {
            path: path.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn section(ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>) -> AuditSection {
        AuditSection {
            collector_ca: ca.map(Path::to_owned),
            client_cert: cert.map(Path::to_owned),
            client_key: key.map(Path::to_owned),
            ..AuditSection::default()
        }
    }

    /// A CA and an agent certificate from the collector's own issuer.
    fn files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        use jitgate_collector::pki::ca::Ca;
        let (ca, ca_pem) = Ca::generate().expect("ca");
        let agent = ca.issue_agent("runner-1", 1).expect("agent");
        let paths = (dir.join("ca.crt"), dir.join("a.crt"), dir.join("a.key"));
        std::fs::write(&paths.0, ca_pem.cert_pem).expect("write");
        std::fs::write(&paths.1, agent.cert_pem).expect("write");
        std::fs::write(&paths.2, agent.key_pem).expect("write");
        std::fs::set_permissions(&paths.2, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        (paths.0, paths.1, paths.2)
    }

    fn running_as_root() -> bool {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false)
    }

    #[test]
    fn settings_must_fit_the_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca, cert, key) = files(dir.path());
        let plain = Some("http://127.0.0.1:50051");
        let https = Some("https://127.0.0.1:50051");
        assert!(matches!(
            from_config(plain, &section(None, None, None)),
            Ok(None)
        ));
        assert!(matches!(
            from_config(None, &section(None, None, None)),
            Ok(None)
        ));
        for (url, audit) in [
            (plain, section(Some(&ca), None, None)),
            (https, section(None, None, None)),
            (https, section(Some(&ca), Some(&cert), None)),
            (https, section(Some(&ca), None, Some(&key))),
        ] {
            let err = from_config(url, &audit).expect_err("refused");
            assert!(matches!(err, CollectorTlsError::Settings(_)), "{err}");
        }
        assert!(matches!(
            from_config(https, &section(Some(&ca), None, None)),
            Ok(Some(_))
        ));
        if running_as_root() {
            assert!(matches!(
                from_config(https, &section(Some(&ca), Some(&cert), Some(&key))),
                Ok(Some(_))
            ));
        }
    }

    #[test]
    fn a_missing_or_non_pem_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca, _, _) = files(dir.path());
        let https = Some("https://127.0.0.1:50051");
        let missing = dir.path().join("missing.crt");
        let err = from_config(https, &section(Some(&missing), None, None)).expect_err("missing");
        assert!(err.to_string().contains("missing.crt"), "{err}");
        let garbage = dir.path().join("garbage.crt");
        std::fs::write(&garbage, "not pem").expect("write");
        let err = from_config(https, &section(Some(&garbage), None, None)).expect_err("garbage");
        assert!(
            matches!(err, CollectorTlsError::NoCertificate { .. }),
            "{err}"
        );
        assert!(from_config(https, &section(Some(&ca), None, None)).is_ok());
    }

    #[test]
    fn a_client_key_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca, cert, key) = files(dir.path());
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let err = from_config(
            Some("https://127.0.0.1:50051"),
            &section(Some(&ca), Some(&cert), Some(&key)),
        )
        .expect_err("0640 refused");
        assert!(
            matches!(err, CollectorTlsError::KeyPermissions { mode: 0o640, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("a.key"), "{err}");
    }
}
