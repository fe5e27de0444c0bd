//! Issuer keys from OIDC discovery, served by a loopback provider (`{issuer}/.well-known/
//! openid-configuration` → `jwks_uri`): an issuer down when the agent starts does not stop it
//! and its tokens are refused until keys arrive; a rotated key (new `kid`) is fetched on first
//! use, at most once per `jwks_refresh_min_interval_secs`; and while the issuer is down the
//! cached keys keep being accepted.

use std::sync::{Arc, Mutex};

use jitgate_tests::http::{DISCOVERY_PATH, JWKS_PATH, PublishedKeys, oidc_provider};
use jitgate_tests::issuer::Issuer;
use jitgate_tests::process::free_port;
use jitgate_tests::stack::{AUDIENCE, TENANT};

use super::support::*;

/// Least time between key fetches in these tests, seconds.
const INTERVAL: u64 = 4;

/// A stack trusting the discovery issuer `http://127.0.0.1:port`.
fn stack_for(port: u16) -> Option<Stack> {
    stack_with(StackOptions {
        extra_issuers: vec![format!(
            "[[issuers]]\nissuer = \"http://127.0.0.1:{port}\"\naudiences = [\"{AUDIENCE}\"]\n\
             discovery = true\njwks_refresh_min_interval_secs = {INTERVAL}"
        )],
        ..StackOptions::default()
    })
}

/// A token of `issuer` (Entra-shaped claims under the loopback issuer's `iss`).
fn token(issuer: &Issuer) -> String {
    let mut claims = jitgate_tests::claims::entra_sp_claims(
        TENANT,
        APP_ID,
        OBJECT_ID,
        AUDIENCE,
        Duration::from_secs(600),
    );
    claims["iss"] = Value::from(issuer.issuer_url());
    issuer.token(&claims).expect("token")
}

/// `SELECT 1` as a job whose token is `token` (in `JITGATE_OIDC_TOKEN`).
fn connect(stack: &Stack, token: &str) -> Output {
    let mut command = stack.psql_command(false);
    command
        .args(["-c", "SELECT 1"])
        .env("JITGATE_OIDC_TOKEN", token);
    command.output().expect("psql runs")
}

fn wait_interval() {
    std::thread::sleep(Duration::from_millis(INTERVAL * 1000 + 500));
}

#[test]
fn discovery_keys_arrive_late_rotate_and_refresh_at_most_once_per_interval() {
    let port = free_port().expect("port");
    let url = format!("http://127.0.0.1:{port}");
    let k1 = Issuer::new_rsa(&url, "k1").expect("issuer");
    let k2 = Issuer::new_ec(&url, "k2").expect("issuer");
    // The issuer is down while the agent starts: the agent starts anyway.
    let Some(stack) = stack_for(port) else { return };
    let out = connect(&stack, &token(&k1));
    assert!(!out.status.success(), "{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("not available yet"), "{stderr}");

    let keys: PublishedKeys = Arc::new(Mutex::new(vec![k1.jwk()]));
    let provider = oidc_provider(port, keys.clone()).expect("provider");
    wait_interval();
    let out = connect(&stack, &token(&k1));
    assert!(
        out.status.success(),
        "keys fetched once allowed: {}",
        describe(&out)
    );
    assert_eq!(provider.hits(DISCOVERY_PATH), 1);
    assert_eq!(provider.hits(JWKS_PATH), 1);

    // Rotation: k2 is published; right after a fetch, its first token is refused without a
    // request (rate limit), then accepted once the interval has passed.
    if let Ok(mut published) = keys.lock() {
        published.push(k2.jwk());
    }
    let out = connect(&stack, &token(&k2));
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("next refresh is allowed in"),
        "{}",
        describe(&out)
    );
    assert_eq!(provider.hits(JWKS_PATH), 1, "no fetch within the interval");
    wait_interval();
    let out = connect(&stack, &token(&k2));
    assert!(
        out.status.success(),
        "rotated key accepted: {}",
        describe(&out)
    );
    assert_eq!(provider.hits(JWKS_PATH), 2);
    // Known keys need no fetch.
    for issuer in [&k1, &k2] {
        let out = connect(&stack, &token(issuer));
        assert!(out.status.success(), "{}", describe(&out));
    }
    assert_eq!(provider.hits(JWKS_PATH), 2);
    assert_eq!(provider.hits(DISCOVERY_PATH), 2);
}

#[test]
fn cached_discovery_keys_are_accepted_while_the_issuer_is_down() {
    let port = free_port().expect("port");
    let url = format!("http://127.0.0.1:{port}");
    let k1 = Issuer::new_rsa(&url, "k1").expect("issuer");
    let k3 = Issuer::new_rsa(&url, "k3").expect("issuer");
    let keys: PublishedKeys = Arc::new(Mutex::new(vec![k1.jwk()]));
    let provider = oidc_provider(port, keys).expect("provider");
    let Some(stack) = stack_for(port) else { return };
    let out = connect(&stack, &token(&k1));
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(provider.hits(JWKS_PATH), 1, "fetched once, at start");

    drop(provider);
    let out = connect(&stack, &token(&k1));
    assert!(
        out.status.success(),
        "cached key while down: {}",
        describe(&out)
    );

    // An unknown key while the issuer is down: the refresh fails, the reason says so.
    wait_interval();
    let out = connect(&stack, &token(&k3));
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("refreshing the keys failed"),
        "{}",
        describe(&out)
    );
    let out = connect(&stack, &token(&k1));
    assert!(
        out.status.success(),
        "the cache survives a failed refresh: {}",
        describe(&out)
    );
}
