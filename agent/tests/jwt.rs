//! JWT validation against real keys: tokens signed by a test issuer with a freshly generated RSA
//! or P-256 key, checked by the agent's [`Validator`] against the issuer's JWKS file. (Keys from
//! OIDC discovery are exercised end to end in `tests/tests/end_to_end/discovery.rs`.)

use std::time::Duration;

use jitgate_agent::config::IssuerConfig;
use jitgate_agent::identity::http::HttpClient;
use jitgate_agent::identity::{IdentityError, Validator, WorkloadIdentity};
use jitgate_tests::claims::{entra_sp_claims, entra_v2_issuer, github_claims, now_secs};
use jitgate_tests::issuer::Issuer;
use serde_json::Value;

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const AUDIENCE: &str = "api://jitgate";

struct Fixture {
    issuer: Issuer,
    validator: Validator,
    _dir: tempfile::TempDir,
}

fn fixture(issuer: Issuer) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let jwks = dir.path().join("jwks.json");
    issuer.write_jwks(&jwks).expect("jwks written");
    let validator = Validator::from_config(
        &[IssuerConfig {
            issuer: issuer.issuer_url().to_owned(),
            audiences: vec![AUDIENCE.to_owned()],
            jwks_file: Some(jwks),
            discovery: false,
            discovery_url: None,
            jwks_refresh_min_interval_secs: 30,
        }],
        &HttpClient::new().expect("http client"),
    )
    .expect("validator");
    Fixture {
        issuer,
        validator,
        _dir: dir,
    }
}

impl Fixture {
    /// Validates on a current-thread runtime (validation is async for discovery issuers).
    fn validate(&self, token: &str) -> Result<WorkloadIdentity, IdentityError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(self.validator.validate(token))
    }
}

fn entra() -> Fixture {
    fixture(Issuer::new_rsa(&entra_v2_issuer(TENANT), "k1").expect("rsa issuer"))
}

fn claims() -> Value {
    entra_sp_claims(TENANT, "app-1", "oid-1", AUDIENCE, Duration::from_secs(600))
}

#[test]
fn good_rs256_token_yields_entra_claims() {
    let f = entra();
    let token = f.issuer.token(&claims()).expect("token");
    let id = f.validate(&token).expect("valid token");
    assert_eq!(id.issuer, entra_v2_issuer(TENANT));
    assert_eq!(id.subject, "oid-1");
    assert_eq!(id.claim("oid"), "oid-1");
    assert_eq!(id.claim("tid"), TENANT);
    assert_eq!(id.app_id(), "app-1");
    assert_eq!(id.claim("idtyp"), "app");
    assert_eq!(Some(id.expires_at), claims_exp(&token));
}

/// The `exp` of a token's payload, read without verification.
fn claims_exp(token: &str) -> Option<i64> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?["exp"].as_i64()
}

#[test]
fn entra_v1_token_uses_appid() {
    let f = fixture(
        Issuer::new_rsa(&jitgate_tests::claims::entra_v1_issuer(TENANT), "v1").expect("rsa issuer"),
    );
    let c = jitgate_tests::claims::entra_v1_sp_claims(
        TENANT,
        "app-v1",
        "oid-v1",
        AUDIENCE,
        Duration::from_secs(600),
    );
    let id = f
        .validate(&f.issuer.token(&c).expect("token"))
        .expect("valid token");
    assert_eq!(id.app_id(), "app-v1");
    assert_eq!(id.label(), format!("entra app app-v1 (tenant {TENANT})"));
}

#[test]
fn an_algorithm_the_key_was_not_published_for_is_rejected() {
    // The issuer publishes its RSA key with alg RS256; a PS256 signature by the same key is
    // refused, as the JWK's alg narrows what the key verifies.
    let f = entra();
    let token = f
        .issuer
        .token_with(jsonwebtoken::Algorithm::PS256, &claims())
        .expect("token");
    let e = rejected(&f, &token);
    assert!(matches!(e, IdentityError::Algorithm { .. }), "{e}");
}

#[test]
fn good_es256_github_token_yields_ci_claims() {
    let url = "https://token.actions.githubusercontent.com";
    let f = fixture(Issuer::new_ec(url, "gh1").expect("ec issuer"));
    let c = github_claims(
        "acme/shop",
        "refs/heads/main",
        "deploy",
        4242,
        AUDIENCE,
        Duration::from_secs(600),
    );
    let token = f.issuer.token(&c).expect("token");
    let id = f.validate(&token).expect("valid token");
    assert_eq!(id.repository(), "acme/shop");
    assert_eq!(id.claim("ref"), "refs/heads/main");
    assert_eq!(id.run_id(), "4242");
}

fn rejected(f: &Fixture, token: &str) -> IdentityError {
    match f.validate(token) {
        Ok(id) => panic!("token must be rejected, got {id:?}"),
        Err(e) => e,
    }
}

#[test]
fn expired_token_is_rejected() {
    let f = entra();
    let mut c = claims();
    c["exp"] = Value::from(now_secs() - 3600);
    let e = rejected(&f, &f.issuer.token(&c).expect("token"));
    assert!(e.to_string().contains("expired"), "{e}");
}

#[test]
fn not_yet_valid_token_is_rejected() {
    let f = entra();
    let mut c = claims();
    c["nbf"] = Value::from(now_secs() + 3600);
    let e = rejected(&f, &f.issuer.token(&c).expect("token"));
    assert!(e.to_string().contains("not yet valid"), "{e}");
}

#[test]
fn wrong_audience_is_rejected() {
    let f = entra();
    let mut c = claims();
    c["aud"] = Value::from("api://something-else");
    let e = rejected(&f, &f.issuer.token(&c).expect("token"));
    assert!(e.to_string().contains("audience"), "{e}");
}

#[test]
fn unknown_issuer_is_rejected() {
    let f = entra();
    let other = Issuer::new_rsa("https://evil.example/", "k1").expect("issuer");
    let mut c = claims();
    c["iss"] = Value::from("https://evil.example/");
    let e = rejected(&f, &other.token(&c).expect("token"));
    assert!(matches!(e, IdentityError::UnknownIssuer { .. }), "{e}");
}

#[test]
fn token_signed_by_another_key_is_rejected() {
    let f = entra();
    let impostor = Issuer::new_rsa(&entra_v2_issuer(TENANT), "k1").expect("issuer");
    let e = rejected(&f, &impostor.token(&claims()).expect("token"));
    assert!(e.to_string().contains("signature"), "{e}");
}

#[test]
fn alg_none_is_rejected() {
    let f = entra();
    let e = rejected(&f, &f.issuer.alg_none_token(&claims()));
    assert!(
        matches!(
            e,
            IdentityError::Malformed { .. } | IdentityError::Algorithm { .. }
        ),
        "{e}"
    );
}

#[test]
fn hs256_signed_with_the_public_key_is_rejected() {
    let f = entra();
    let token = f.issuer.hs256_with_public_key(&claims()).expect("token");
    let e = rejected(&f, &token);
    assert!(matches!(e, IdentityError::Algorithm { .. }), "{e}");
}

#[test]
fn garbage_is_malformed() {
    let f = entra();
    for token in ["", "abc", "a.b.c", "....", "eyJhbGciOiJSUzI1NiJ9.%%%.sig"] {
        let e = rejected(&f, token);
        assert!(
            matches!(e, IdentityError::Malformed { .. }),
            "{token:?}: {e}"
        );
    }
}
