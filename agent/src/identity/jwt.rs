//! JWT validation (RFC 7519) against the configured issuers, with `jsonwebtoken`. Each issuer's
//! keys come from a JWK Set file or from OIDC discovery ([`super::discovery`]); validation is
//! async because an unknown `kid` may refresh the latter.
//!
//! Only asymmetric algorithms are accepted ([`super::keys::ACCEPTED`]): `alg: none` cannot be
//! represented, and HMAC algorithms are refused before any key is used, so a token "signed" with
//! an issuer's public key as an HMAC secret is rejected. The token's `alg` must also be one its
//! key allows (an RSA key never verifies ES256, a key published with `alg` only that one).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::Validation;
use serde_json::{Map, Value};

use super::discovery::{RemoteKeys, discovery_url_of};
use super::http::HttpClient;
use super::keys::{ACCEPTED, KeySet};
use super::{IdentityError, WorkloadIdentity};
use crate::config::IssuerConfig;

/// Allowed clock skew for `exp` and `nbf`, seconds.
pub const LEEWAY_SECS: u64 = 30;

/// Where an issuer's keys come from.
enum Keys {
    /// A JWK Set file, read at start.
    File(Arc<KeySet>),
    /// OIDC discovery, cached and refreshed.
    Remote(Arc<RemoteKeys>),
}

struct Issuer {
    audiences: Vec<String>,
    keys: Keys,
}

/// Validates workload tokens for the configured issuers.
pub struct Validator {
    issuers: HashMap<String, Issuer>,
}

impl Validator {
    /// Loads every issuer's JWK Set file and prepares the discovery issuers (nothing is fetched
    /// until [`Validator::prefetch`] or a token needs it).
    ///
    /// # Errors
    /// [`IdentityError::Jwks`] for a file that cannot be used; [`IdentityError::Discovery`] for
    /// a discovery URL that may not be used.
    pub fn from_config(issuers: &[IssuerConfig], http: &HttpClient) -> Result<Self, IdentityError> {
        let mut map = HashMap::new();
        for cfg in issuers {
            let keys = match (&cfg.jwks_file, cfg.discovery) {
                (Some(path), false) => {
                    let err = |detail: String| IdentityError::Jwks {
                        path: path.clone(),
                        detail,
                    };
                    let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
                    Keys::File(Arc::new(KeySet::parse(&text).map_err(err)?))
                }
                (None, true) => {
                    let url = cfg
                        .discovery_url
                        .clone()
                        .unwrap_or_else(|| discovery_url_of(&cfg.issuer));
                    let interval = Duration::from_secs(cfg.jwks_refresh_min_interval_secs);
                    Keys::Remote(Arc::new(RemoteKeys::new(
                        &cfg.issuer,
                        &url,
                        interval,
                        http.clone(),
                    )?))
                }
                _ => {
                    return Err(IdentityError::Discovery {
                        issuer: cfg.issuer.clone(),
                        detail: "set exactly one of jwks_file and discovery = true".into(),
                    });
                }
            };
            map.insert(
                cfg.issuer.clone(),
                Issuer {
                    audiences: cfg.audiences.clone(),
                    keys,
                },
            );
        }
        Ok(Self { issuers: map })
    }

    /// Starts the first key fetch of every discovery issuer in the background. A failure is
    /// logged and the agent keeps running; that issuer's tokens are refused until keys arrive.
    pub fn prefetch(&self) {
        for issuer in self.issuers.values() {
            if let Keys::Remote(remote) = &issuer.keys {
                let remote = remote.clone();
                tokio::spawn(async move { remote.prefetch().await });
            }
        }
    }

    /// Validates `token`: structure, algorithm, issuer, key, signature, `exp`, `nbf`, `iss`,
    /// `aud`, `sub`.
    ///
    /// # Errors
    /// The [`IdentityError`] naming the failed check.
    pub async fn validate(&self, token: &str) -> Result<WorkloadIdentity, IdentityError> {
        let token = token.trim();
        let header = jsonwebtoken::decode_header(token).map_err(|e| IdentityError::Malformed {
            detail: e.to_string(),
        })?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(IdentityError::Algorithm {
                alg: format!("{:?}", header.alg),
            });
        }
        let iss = unverified_issuer(token)?;
        let issuer = self
            .issuers
            .get(&iss)
            .ok_or_else(|| IdentityError::UnknownIssuer {
                issuer: iss.clone(),
            })?;
        let kid = header.kid.clone().unwrap_or_default();
        let keys = match &issuer.keys {
            Keys::File(keys) => keys.clone(),
            Keys::Remote(remote) => remote.keys_with(&kid).await?,
        };
        let key = keys.get(&kid).ok_or_else(|| IdentityError::UnknownKey {
            kid: kid.clone(),
            issuer: iss.clone(),
            detail: "not in the configured JWKS file".into(),
        })?;
        if !key.algorithms.contains(&header.alg) {
            return Err(IdentityError::Algorithm {
                alg: format!("{:?} (key {kid} allows {:?})", header.alg, key.algorithms),
            });
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&iss]);
        validation.set_audience(&issuer.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| IdentityError::Rejected {
                detail: describe(&e),
            })?;
        Ok(WorkloadIdentity::from_claims(data.claims))
    }
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "token expired (exp is in the past)".into(),
        ErrorKind::ImmatureSignature => "token not yet valid (nbf is in the future)".into(),
        ErrorKind::InvalidAudience => "audience (aud) is not one this runner accepts".into(),
        ErrorKind::InvalidIssuer => "issuer (iss) mismatch".into(),
        ErrorKind::InvalidSignature => "signature does not verify".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("required claim {c} is missing"),
        other => format!("{other:?}"),
    }
}

/// Reads `iss` from the payload before verification, only to choose the issuer's keys.
fn unverified_issuer(token: &str) -> Result<String, IdentityError> {
    let malformed = |detail: &str| IdentityError::Malformed {
        detail: detail.to_owned(),
    };
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| malformed("expected header.payload.signature"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| malformed("payload is not base64url"))?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|_| malformed("payload is not a JSON object"))?;
    value
        .get("iss")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| malformed("payload has no iss claim"))
}
