//! The runner's local certificate authority: created once (`jitgate-agent ca init`), its
//! certificate distributed to jobs that verify the server (`sslmode=verify-full`), its key kept
//! root-only. The agent issues short leaf certificates from it for the names of each protected
//! destination, so a client that dials `db.internal:5432` sees a certificate for `db.internal`.

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::TlsError;

/// File names inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// The CA's private key (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";

/// A loaded local CA.
pub struct LocalCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::File {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), TlsError> {
    use std::io::Write as _;
    let err = |source| TlsError::File {
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

impl LocalCa {
    /// Creates a new CA (ECDSA P-256) in `dir`: `ca.crt` (0644) and `ca.key` (0600). Refuses to
    /// overwrite an existing CA.
    pub fn create(dir: &Path, common_name: &str) -> Result<PathBuf, TlsError> {
        std::fs::create_dir_all(dir).map_err(|source| TlsError::File {
            path: dir.to_owned(),
            source,
        })?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, common_name);
        name.push(DnType::OrganizationName, "jitgate");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(10 * 365);
        let cert = params.self_signed(&key)?;
        write(&dir.join(CA_KEY_FILE), &key.serialize_pem(), 0o600)?;
        write(&dir.join(CA_CERT_FILE), &cert.pem(), 0o644)?;
        Ok(dir.join(CA_CERT_FILE))
    }

    /// Loads a CA from its certificate and key PEM files.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let key = KeyPair::from_pem(&read(key_path)?)?;
        let params = CertificateParams::from_ca_cert_pem(&read(cert_path)?)?;
        // Re-creating the CA certificate from its own parameters and key gives an issuer with
        // the same name and key identifier, which is all a signature needs.
        let cert = params.self_signed(&key)?;
        Ok(Self { cert, key })
    }

    /// Issues a server certificate for `names` (DNS names or IP addresses), valid for 30 days.
    /// Returns the chain (leaf, CA) and the leaf's key.
    pub fn issue(
        &self,
        names: &[String],
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        for name in names {
            let san = match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.clone().try_into()?),
            };
            if !params.subject_alt_names.contains(&san) {
                params.subject_alt_names.push(san);
            }
        }
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(30);
        let leaf = params.signed_by(&key, &self.cert, &self.key)?;
        let chain = vec![leaf.der().clone(), self.cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((chain, key))
    }
}
