//! JWT validation (RFC 7519) against configured issuers and their JWK Sets (RFC 7517), with
//! `jsonwebtoken`. Only asymmetric algorithms are accepted (RS256, ES256): `alg: none` cannot be
//! represented, and HMAC algorithms are refused before any key is used, so a token "signed" with
//! an issuer's public key as an HMAC secret is rejected.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::{IdentityError, WorkloadIdentity};
use crate::config::IssuerConfig;

/// Accepted signature algorithms.
const ACCEPTED: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

struct Issuer {
    audiences: Vec<String>,
    /// `kid` → (key, its algorithm).
    keys: HashMap<String, (DecodingKey, Algorithm)>,
}

/// Validates workload tokens for the configured issuers.
pub struct Validator {
    issuers: HashMap<String, Issuer>,
    /// Allowed clock skew for `exp`/`nbf`, seconds.
    leeway: u64,
}

impl Validator {
    /// Loads every issuer's JWKS file.
    pub fn from_config(issuers: &[IssuerConfig]) -> Result<Self, IdentityError> {
        let mut map = HashMap::new();
        for cfg in issuers {
            let keys = load_jwks(&cfg.jwks_file)?;
            map.insert(
                cfg.issuer.clone(),
                Issuer {
                    audiences: cfg.audiences.clone(),
                    keys,
                },
            );
        }
        Ok(Self {
            issuers: map,
            leeway: 30,
        })
    }

    /// Validates `token`: structure, issuer, algorithm, key, signature, `exp`, `nbf`, `iss`, `aud`.
    pub fn validate(&self, token: &str) -> Result<WorkloadIdentity, IdentityError> {
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
        let (key, key_alg) = issuer
            .keys
            .get(&kid)
            .ok_or_else(|| IdentityError::UnknownKey {
                kid: kid.clone(),
                issuer: iss.clone(),
            })?;
        if *key_alg != header.alg {
            return Err(IdentityError::Algorithm {
                alg: format!("{:?} (key {kid} is {:?})", header.alg, key_alg),
            });
        }
        let mut validation = Validation::new(*key_alg);
        validation.set_issuer(&[&iss]);
        validation.set_audience(&issuer.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway;
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation).map_err(|e| {
                IdentityError::Rejected {
                    detail: describe(&e),
                }
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

/// Loads a JWK Set, keeping the RSA and EC P-256 keys usable with an accepted algorithm.
fn load_jwks(path: &Path) -> Result<HashMap<String, (DecodingKey, Algorithm)>, IdentityError> {
    let err = |detail: String| IdentityError::Jwks {
        path: path.to_owned(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let set: JwkSet = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        use jsonwebtoken::jwk::AlgorithmParameters;
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec)
                if ec.curve == jsonwebtoken::jwk::EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            _ => continue,
        };
        let kid = jwk.common.key_id.clone().unwrap_or_default();
        let key = DecodingKey::from_jwk(jwk).map_err(|e| err(format!("key {kid}: {e}")))?;
        keys.insert(kid, (key, alg));
    }
    if keys.is_empty() {
        return Err(err("no RS256 or ES256 keys in the set".into()));
    }
    Ok(keys)
}
