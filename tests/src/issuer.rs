//! A test OIDC issuer with real keys: it signs JWTs (RS256 with RSA 2048, or ES256 with P-256)
//! and publishes the matching JWK Set (RFC 7517), so the agent's identity code is exercised the
//! way a real Entra ID or GitHub Actions issuer would exercise it.
//!
//! It also forges the classic bad tokens for negative tests: HS256 signed with the RSA public
//! key's PEM text (algorithm confusion) and `alg: none` (RFC 7519 §6, unsecured JWT).
//! Claim sets shaped like real issuers' live in [`crate::claims`].

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

/// The issuer's signing key.
enum SigningKey {
    /// RSA 2048, tokens use RS256.
    Rsa(Box<rsa::RsaPrivateKey>),
    /// NIST P-256, tokens use ES256.
    Ec(p256::SecretKey),
}

/// A token issuer: issuer URL, key id and private key.
pub struct Issuer {
    issuer_url: String,
    kid: String,
    key: SigningKey,
    encoding_key: EncodingKey,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer_url", &self.issuer_url)
            .field("kid", &self.kid)
            .field("alg", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// An issuer signing RS256 with a fresh RSA 2048 key.
    pub fn new_rsa(issuer_url: &str, kid: &str) -> anyhow::Result<Self> {
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
            .context("generating an RSA 2048 key")?;
        let der = key.to_pkcs1_der().context("encoding the RSA key")?;
        Ok(Self {
            issuer_url: issuer_url.to_owned(),
            kid: kid.to_owned(),
            encoding_key: EncodingKey::from_rsa_der(der.as_bytes()),
            key: SigningKey::Rsa(Box::new(key)),
        })
    }

    /// An issuer signing ES256 with a fresh P-256 key.
    pub fn new_ec(issuer_url: &str, kid: &str) -> anyhow::Result<Self> {
        let key = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let der = key.to_pkcs8_der().context("encoding the P-256 key")?;
        Ok(Self {
            issuer_url: issuer_url.to_owned(),
            kid: kid.to_owned(),
            encoding_key: EncodingKey::from_ec_der(der.as_bytes()),
            key: SigningKey::Ec(key),
        })
    }

    /// The `iss` this issuer stands for.
    pub fn issuer_url(&self) -> &str {
        &self.issuer_url
    }

    /// The key id in the JWKS and in every token header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// RS256 or ES256.
    pub fn algorithm(&self) -> Algorithm {
        match self.key {
            SigningKey::Rsa(_) => Algorithm::RS256,
            SigningKey::Ec(_) => Algorithm::ES256,
        }
    }

    /// The public key as one JWK (RFC 7517 §4, RFC 7518 §6) with `kid`, `alg` and `use: sig`.
    pub fn jwk(&self) -> Value {
        match &self.key {
            SigningKey::Rsa(key) => json!({
                "kty": "RSA",
                "kid": self.kid,
                "alg": "RS256",
                "use": "sig",
                "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
            }),
            SigningKey::Ec(key) => {
                let point = key.public_key().to_encoded_point(false);
                let coordinate = |c: Option<&p256::FieldBytes>| {
                    c.map(|bytes| URL_SAFE_NO_PAD.encode(bytes))
                        .unwrap_or_default()
                };
                json!({
                    "kty": "EC",
                    "kid": self.kid,
                    "alg": "ES256",
                    "use": "sig",
                    "crv": "P-256",
                    "x": coordinate(point.x()),
                    "y": coordinate(point.y()),
                })
            }
        }
    }

    /// The JWK Set document `{"keys": [..]}` as served at an issuer's `jwks_uri`.
    pub fn jwks_json(&self) -> String {
        json!({ "keys": [self.jwk()] }).to_string()
    }

    /// Writes [`Issuer::jwks_json`] to `path`.
    pub fn write_jwks(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, self.jwks_json())
            .with_context(|| format!("writing JWKS to {}", path.display()))
    }

    /// The public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn public_key_pem(&self) -> anyhow::Result<String> {
        match &self.key {
            SigningKey::Rsa(key) => key
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .context("encoding the RSA public key"),
            SigningKey::Ec(key) => key
                .public_key()
                .to_public_key_pem(LineEnding::LF)
                .context("encoding the EC public key"),
        }
    }

    /// A token with `claims` signed by this issuer (RS256/ES256, header `kid` set).
    pub fn token(&self, claims: &Value) -> anyhow::Result<String> {
        self.token_with(self.algorithm(), claims)
    }

    /// A token signed with this issuer's key under another algorithm of the same family (e.g.
    /// PS256 or RS512 with the RSA key), header `kid` set.
    pub fn token_with(&self, alg: Algorithm, claims: &Value) -> anyhow::Result<String> {
        let mut header = Header::new(alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding_key).context("signing a token")
    }

    /// Algorithm confusion: an HS256 token whose HMAC key is the public key's PEM text, with
    /// this issuer's `kid`. A verifier that lets the token pick the algorithm accepts it.
    pub fn hs256_with_public_key(&self, claims: &Value) -> anyhow::Result<String> {
        let pem = self.public_key_pem()?;
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(pem.as_bytes()))
            .context("signing an HS256 token")
    }

    /// An unsecured JWT (`alg: none`, empty signature) with this issuer's `kid`.
    pub fn alg_none_token(&self, claims: &Value) -> String {
        let header = json!({ "alg": "none", "typ": "JWT", "kid": self.kid });
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;
    use std::time::Duration;

    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;
    use crate::claims::{entra_sp_claims, entra_v2_issuer, github_claims};

    const TENANT: &str = "8d3c1a6e-2f4b-4c5d-9e7f-0a1b2c3d4e5f";
    static RSA: LazyLock<Issuer> =
        LazyLock::new(|| Issuer::new_rsa(&entra_v2_issuer(TENANT), "rsa-1").expect("RSA issuer"));

    /// Verifies `token` against `issuer`'s published JWKS the way a relying party would.
    fn verify(issuer: &Issuer, token: &str, audience: &str) -> anyhow::Result<Value> {
        let jwks: JwkSet = serde_json::from_str(&issuer.jwks_json())?;
        let header = jsonwebtoken::decode_header(token)?;
        let kid = header.kid.context("token has no kid")?;
        let jwk = jwks.find(&kid).context("kid not in JWKS")?;
        let mut validation = Validation::new(issuer.algorithm());
        validation.set_audience(&[audience]);
        validation.set_issuer(&[issuer.issuer_url()]);
        let data = jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk)?, &validation)?;
        Ok(data.claims)
    }

    #[test]
    fn rs256_entra_token_verifies_against_jwks() -> anyhow::Result<()> {
        let claims = entra_sp_claims(
            TENANT,
            "11111111-2222-3333-4444-555555555555",
            "66666666-7777-8888-9999-000000000000",
            "api://jitgate",
            Duration::from_secs(300),
        );
        let token = RSA.token(&claims)?;
        let verified = verify(&RSA, &token, "api://jitgate")?;
        assert_eq!(verified["idtyp"], "app");
        assert_eq!(verified["sub"], verified["oid"]);
        assert_eq!(
            jsonwebtoken::decode_header(&token)?.kid.as_deref(),
            Some("rsa-1")
        );
        Ok(())
    }

    #[test]
    fn es256_github_token_verifies_against_jwks() -> anyhow::Result<()> {
        let issuer = Issuer::new_ec(crate::claims::GITHUB_ISSUER, "ec-1")?;
        let claims = github_claims(
            "acme/shop",
            "refs/heads/main",
            "deploy",
            4242,
            "jitgate",
            Duration::from_secs(300),
        );
        let token = issuer.token(&claims)?;
        let verified = verify(&issuer, &token, "jitgate")?;
        assert_eq!(verified["sub"], "repo:acme/shop:ref:refs/heads/main");
        assert_eq!(issuer.jwk()["crv"], "P-256");
        Ok(())
    }

    #[test]
    fn forged_tokens_are_rejected() -> anyhow::Result<()> {
        let claims = entra_sp_claims(
            TENANT,
            "app",
            "oid",
            "api://jitgate",
            Duration::from_secs(60),
        );
        let confused = RSA.hs256_with_public_key(&claims)?;
        assert_eq!(
            jsonwebtoken::decode_header(&confused)?.alg,
            Algorithm::HS256
        );
        assert!(verify(&RSA, &confused, "api://jitgate").is_err());

        let none = RSA.alg_none_token(&claims);
        assert!(none.ends_with('.'));
        assert!(verify(&RSA, &none, "api://jitgate").is_err());

        let other = Issuer::new_ec(RSA.issuer_url(), "rsa-1")?;
        let wrong_key = other.token(&claims)?;
        assert!(verify(&RSA, &wrong_key, "api://jitgate").is_err());
        Ok(())
    }

    #[test]
    fn jwks_has_rfc7517_fields() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("jwks.json");
        RSA.write_jwks(&path)?;
        let jwks: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], "RSA");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["alg"], "RS256");
        assert_eq!(key["e"], "AQAB");
        assert!(
            RSA.public_key_pem()?
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
        Ok(())
    }
}
