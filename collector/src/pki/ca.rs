//! Creating the collector's CA and issuing certificates from it with rcgen. Keys are written
//! with mode 0600, certificates 0644; existing files are never overwritten.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use super::{AGENT_URI_PREFIX, PkiError, valid_agent_name};

/// The CA certificate's file name in the CA directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// The CA key's file name in the CA directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";
/// The server certificate's file name.
pub const SERVER_CERT_FILE: &str = "server.crt";
/// The server key's file name (mode 0600).
pub const SERVER_KEY_FILE: &str = "server.key";
/// How long the CA is valid, days (about ten years).
pub const CA_VALIDITY_DAYS: u32 = 3650;
/// How long server and agent certificates are valid unless `--days` says otherwise, days.
pub const DEFAULT_LEAF_DAYS: u32 = 365;
/// How far back `notBefore` is set, so clocks slightly behind still accept a new certificate.
const BACKDATE: time::Duration = time::Duration::hours(1);

/// A certificate and key written to disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8, mode 0600).
    pub key: PathBuf,
}

/// A certificate and key in memory, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

/// The file names of agent `name`'s certificate and key: `agent-<name>.crt`, `agent-<name>.key`.
pub fn agent_files(name: &str) -> (String, String) {
    (format!("agent-{name}.crt"), format!("agent-{name}.key"))
}

/// A loaded CA that can issue certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::File {
        path: path.to_owned(),
        source,
    })
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), PkiError> {
    let err = |source| PkiError::File {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    file.write_all(text.as_bytes()).map_err(err)
}

fn validity(params: &mut CertificateParams, days: u32) -> Result<(), PkiError> {
    if !(1..=CA_VALIDITY_DAYS).contains(&days) {
        return Err(PkiError::Days(days));
    }
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + time::Duration::days(i64::from(days));
    Ok(())
}

impl Issued {
    /// Writes the certificate (0644) and key (0600) into `dir` under the given file names,
    /// refusing to overwrite either.
    ///
    /// # Errors
    /// [`PkiError::File`] when a file exists or cannot be written.
    pub fn write(&self, dir: &Path, cert_file: &str, key_file: &str) -> Result<Written, PkiError> {
        let written = Written {
            cert: dir.join(cert_file),
            key: dir.join(key_file),
        };
        for path in [&written.cert, &written.key] {
            if path.exists() {
                return Err(PkiError::File {
                    path: path.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "exists; not overwritten",
                    ),
                });
            }
        }
        write_new(&written.key, &self.key_pem, 0o600)?;
        write_new(&written.cert, &self.cert_pem, 0o644)?;
        Ok(written)
    }
}

impl Ca {
    /// A new CA (ECDSA P-256, valid [`CA_VALIDITY_DAYS`] days), in memory.
    ///
    /// # Errors
    /// [`PkiError::Certificate`] when generation fails.
    pub fn generate() -> Result<(Ca, Issued), PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "jitgate collector CA");
        name.push(DnType::OrganizationName, "jitgate");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, CA_VALIDITY_DAYS)?;
        let cert = params.self_signed(&key)?;
        let issued = Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok((Ca { cert, key }, issued))
    }

    /// Creates a CA in `dir` (created when missing): `ca.crt` (0644) and `ca.key` (0600).
    ///
    /// # Errors
    /// [`PkiError::File`] when the directory cannot be created or a CA file already exists.
    pub fn init(dir: &Path) -> Result<Written, PkiError> {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::File {
            path: dir.to_owned(),
            source,
        })?;
        let (_, issued) = Ca::generate()?;
        issued.write(dir, CA_CERT_FILE, CA_KEY_FILE)
    }

    /// Loads the CA in `dir` (`ca.crt`, `ca.key`).
    ///
    /// # Errors
    /// [`PkiError::File`] when a file cannot be read, [`PkiError::Certificate`] when it does not
    /// parse.
    pub fn load(dir: &Path) -> Result<Ca, PkiError> {
        Ca::from_pem(
            &read(&dir.join(CA_CERT_FILE))?,
            &read(&dir.join(CA_KEY_FILE))?,
        )
    }

    /// A CA from its certificate and key, PEM.
    ///
    /// # Errors
    /// [`PkiError::Certificate`] when either does not parse.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let params = CertificateParams::from_ca_cert_pem(cert_pem)?;
        // Re-signing the CA's own parameters with its key gives an issuer with the same name
        // and key identifier, which is all that signing a leaf needs.
        let cert = params.self_signed(&key)?;
        Ok(Ca { cert, key })
    }

    /// A server certificate for `sans` (each an IP address or a DNS name), EKU serverAuth,
    /// valid `days` days.
    ///
    /// # Errors
    /// [`PkiError::NoSan`] without SANs, [`PkiError::Days`] for a validity out of range,
    /// [`PkiError::Certificate`] for a name rcgen refuses.
    pub fn issue_server(&self, sans: &[String], days: u32) -> Result<Issued, PkiError> {
        let sans: Vec<&str> = sans
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect();
        let first = *sans.first().ok_or(PkiError::NoSan)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        for san in &sans {
            let san = match san.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*san).try_into()?),
            };
            if !params.subject_alt_names.contains(&san) {
                params.subject_alt_names.push(san);
            }
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, first);
        dn.push(DnType::OrganizationName, "jitgate");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, days)
    }

    /// An agent certificate for `name`: `CN=<name>`, SAN URI `spiffe://jitgate/agent/<name>`,
    /// EKU clientAuth, valid `days` days.
    ///
    /// # Errors
    /// [`PkiError::AgentName`] for a name outside the allowed characters, [`PkiError::Days`],
    /// [`PkiError::Certificate`].
    pub fn issue_agent(&self, name: &str, days: u32) -> Result<Issued, PkiError> {
        if !valid_agent_name(name) {
            return Err(PkiError::AgentName(name.to_owned()));
        }
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = vec![SanType::URI(
            format!("{AGENT_URI_PREFIX}{name}").try_into()?,
        )];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "jitgate agents");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, days)
    }

    fn sign(&self, mut params: CertificateParams, days: u32) -> Result<Issued, PkiError> {
        validity(&mut params, days)?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::GeneralName;

    fn parsed<T>(
        pem: &str,
        check: impl FnOnce(&x509_parser::certificate::X509Certificate) -> T,
    ) -> T {
        let der = rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .expect("one cert")
            .expect("pem");
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
        check(&cert)
    }

    fn days_valid(cert: &x509_parser::certificate::X509Certificate) -> i64 {
        let validity = cert.validity();
        (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400
    }

    #[test]
    fn server_certificate_has_its_sans_server_auth_and_the_stated_validity() {
        let (ca, _) = Ca::generate().expect("ca");
        let issued = ca
            .issue_server(&["collector.example".into(), "127.0.0.1".into()], 30)
            .expect("issue");
        parsed(&issued.cert_pem, |cert| {
            let eku = cert.extended_key_usage().expect("eku").expect("present");
            assert!(eku.value.server_auth && !eku.value.client_auth);
            let san = cert
                .subject_alternative_name()
                .expect("san")
                .expect("present");
            assert_eq!(
                san.value.general_names,
                vec![
                    GeneralName::DNSName("collector.example"),
                    GeneralName::IPAddress(&[127, 0, 0, 1]),
                ]
            );
            // 30 days plus the hour of backdating.
            assert_eq!(days_valid(cert), 30);
            assert!(!cert.is_ca());
        });
        assert!(matches!(ca.issue_server(&[], 30), Err(PkiError::NoSan)));
        assert!(matches!(
            ca.issue_server(&["x".into()], 0),
            Err(PkiError::Days(0))
        ));
    }

    #[test]
    fn agent_certificate_has_its_uri_client_auth_and_the_stated_validity() {
        let (ca, ca_issued) = Ca::generate().expect("ca");
        let issued = ca.issue_agent("runner-1", 90).expect("issue");
        parsed(&issued.cert_pem, |cert| {
            let eku = cert.extended_key_usage().expect("eku").expect("present");
            assert!(eku.value.client_auth && !eku.value.server_auth);
            let san = cert
                .subject_alternative_name()
                .expect("san")
                .expect("present");
            assert_eq!(
                san.value.general_names,
                vec![GeneralName::URI("spiffe://jitgate/agent/runner-1")]
            );
            assert_eq!(days_valid(cert), 90);
        });
        parsed(&ca_issued.cert_pem, |cert| {
            assert!(cert.is_ca());
            assert_eq!(days_valid(cert), i64::from(CA_VALIDITY_DAYS));
        });
        for bad in ["", "-x", "a/b", "a b", &"x".repeat(64)] {
            assert!(
                matches!(ca.issue_agent(bad, 90), Err(PkiError::AgentName(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_loaded_ca_issues_certificates_its_certificate_verifies() {
        let dir = tempfile::tempdir().expect("tempdir");
        Ca::init(dir.path()).expect("init");
        let ca = Ca::load(dir.path()).expect("load");
        let agent = ca.issue_agent("a1", 1).expect("issue");
        let ca_pem = std::fs::read_to_string(dir.path().join(CA_CERT_FILE)).expect("ca.crt");
        parsed(&ca_pem, |ca_cert| {
            parsed(&agent.cert_pem, |leaf| {
                assert_eq!(leaf.issuer(), ca_cert.subject());
                leaf.verify_signature(Some(ca_cert.public_key()))
                    .expect("signed by the CA on disk");
            });
        });
    }
}
