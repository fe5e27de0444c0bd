//! The client side: a rustls server configuration per protected target, with a certificate for
//! the target's names from the local CA. Used after an SSLRequest answered 'S', and for direct
//! TLS (PostgreSQL 17 `sslnegotiation=direct`, ALPN `postgresql`).

use std::sync::Arc;

use rustls::ServerConfig;

use super::TlsError;
use super::ca::LocalCa;

/// ALPN protocol id PostgreSQL uses (PostgreSQL docs 55.2.10 "SSL Session Encryption").
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// A server configuration presenting a certificate for `names`.
pub fn config_for(ca: &LocalCa, names: &[String]) -> Result<Arc<ServerConfig>, TlsError> {
    let (chain, key) = ca.issue(names)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(Arc::new(config))
}
