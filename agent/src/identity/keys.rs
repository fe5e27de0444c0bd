//! An issuer's verification keys: a JWK Set (RFC 7517 §5) turned into `kid` → key, with the
//! asymmetric signature algorithms each key may verify (RFC 7518 §3: RS256/384/512,
//! PS256/384/512, ES256 on P-256, ES384 on P-384; RFC 8037: EdDSA on Ed25519).
//!
//! Symmetric (`kty: oct`) keys, encryption keys (`use: enc`) and keys of unknown types are
//! skipped one by one, so one key the agent cannot use does not make a published set unusable.
//! `alg: none` and the HMAC algorithms are never allowed for any key.

use std::collections::HashMap;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// The asymmetric algorithms the agent accepts at all.
pub const ACCEPTED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// One usable verification key.
#[derive(Clone)]
pub struct VerificationKey {
    /// The key itself.
    pub key: DecodingKey,
    /// The algorithms it may verify: the JWK's `alg` when published, else every accepted
    /// algorithm of its key type and curve.
    pub algorithms: Vec<Algorithm>,
}

/// `kid` → key (a key without `kid` is stored under the empty string).
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, VerificationKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<&String> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("KeySet").field("kids", &kids).finish()
    }
}

/// The document shape, with each key kept raw so one unusable key can be skipped.
#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// Parses a JWK Set document.
    ///
    /// # Errors
    /// A description when the text is not a JWK Set, or when no key in it is usable.
    pub fn parse(text: &[u8]) -> Result<Self, String> {
        let raw: RawSet =
            serde_json::from_slice(text).map_err(|e| format!("not a JWK Set: {e}"))?;
        let mut keys = HashMap::new();
        for value in raw.keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                continue;
            };
            if let Some(usable) = usable(&jwk) {
                keys.insert(jwk.common.key_id.clone().unwrap_or_default(), usable);
            }
        }
        if keys.is_empty() {
            return Err("no usable signature key (RSA, EC P-256/P-384, Ed25519) in the set".into());
        }
        Ok(Self { keys })
    }

    /// The key with id `kid`.
    pub fn get(&self, kid: &str) -> Option<&VerificationKey> {
        self.keys.get(kid)
    }

    /// Whether a key with id `kid` is present.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// How many keys are usable.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is usable (never true for a parsed set).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The key and its algorithms, or `None` when the agent cannot or must not use it.
fn usable(jwk: &Jwk) -> Option<VerificationKey> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let by_type: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        // Symmetric keys (kty "oct") and other curves: never.
        _ => return None,
    };
    let algorithms = match jwk.common.key_algorithm {
        None => by_type,
        Some(published) => {
            let alg = signature_algorithm(published)?;
            by_type.contains(&alg).then(|| vec![alg])?
        }
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerificationKey { key, algorithms })
}

/// The signature algorithm a JWK `alg` names, when it is an accepted one.
fn signature_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    #[test]
    fn rsa_without_alg_allows_rs_and_ps_only() {
        let set = json!({"keys": [{"kty": "RSA", "kid": "a", "n": N, "e": "AQAB"}]});
        let keys = KeySet::parse(set.to_string().as_bytes()).expect("parses");
        let key = keys.get("a").expect("key a");
        assert!(key.algorithms.contains(&Algorithm::PS384));
        assert!(!key.algorithms.contains(&Algorithm::HS256));
        assert!(!key.algorithms.contains(&Algorithm::ES256));
    }

    #[test]
    fn published_alg_narrows_and_mismatch_is_skipped() {
        let set = json!({"keys": [
            {"kty": "RSA", "kid": "rs", "alg": "RS512", "n": N, "e": "AQAB"},
            {"kty": "RSA", "kid": "wrong", "alg": "ES256", "n": N, "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": N, "e": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "XYZ", "kid": "unknown"},
        ]});
        let keys = KeySet::parse(set.to_string().as_bytes()).expect("parses");
        assert_eq!(keys.len(), 1);
        assert_eq!(
            keys.get("rs").map(|k| k.algorithms.clone()),
            Some(vec![Algorithm::RS512])
        );
        assert!(!keys.contains("hmac"));
    }

    #[test]
    fn empty_or_unusable_sets_are_errors() {
        assert!(KeySet::parse(b"{\"keys\": []}").is_err());
        assert!(KeySet::parse(b"not json").is_err());
        let hmac_only = json!({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]});
        assert!(KeySet::parse(hmac_only.to_string().as_bytes()).is_err());
    }
}
