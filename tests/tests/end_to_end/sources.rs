//! Token sources besides the token file: a JWT in an environment variable (the default
//! `JITGATE_OIDC_TOKEN`, and a GitLab-style variable the configuration names), the GitHub Actions
//! token request against a loopback token service (allowed, outside the allowed URLs, wrong
//! request token), and the token as the startup password with real `psql`.

use jitgate_tests::claims::{GITHUB_ISSUER, github_claims, gitlab_claims};
use jitgate_tests::http::{HttpServer, Response};
use jitgate_tests::issuer::Issuer;

use super::support::*;

const GITLAB_ISSUER: &str = "https://gitlab.example.com";
const AUDIENCE: &str = jitgate_tests::stack::AUDIENCE;

/// An `[[issuers]]` table for `issuer` with its JWKS written under `dir`.
fn issuer_table(issuer: &Issuer, dir: &std::path::Path, name: &str) -> String {
    let path = dir.join(format!("{name}-jwks.json"));
    issuer.write_jwks(&path).expect("jwks written");
    format!(
        "[[issuers]]\nissuer = \"{}\"\naudiences = [\"{AUDIENCE}\"]\njwks_file = \"{}\"",
        issuer.issuer_url(),
        path.display()
    )
}

/// The `session_started` event of the session that ran `needle`.
fn started_identity(stack: &Stack, needle: &str) -> Value {
    let events = events_with(stack, needle);
    let started = events
        .iter()
        .find(|e| e["kind"] == "session_started")
        .expect("session_started");
    started["session_started"]["identity"].clone()
}

#[test]
fn a_token_in_an_environment_variable_identifies_the_job() {
    let keys = tempfile::tempdir().expect("temp dir");
    let gitlab = Issuer::new_rsa(GITLAB_ISSUER, "gl-1").expect("issuer");
    let Some(stack) = stack_with(StackOptions {
        identity: Some(r#"env_token_vars = ["JITGATE_OIDC_TOKEN", "CI_DB_ID_TOKEN"]"#.into()),
        extra_issuers: vec![issuer_table(&gitlab, keys.path(), "gitlab")],
        ..StackOptions::default()
    }) else {
        return;
    };

    // The default variable, with the stack's Entra token.
    let entra = std::fs::read_to_string(&stack.token_file).expect("token");
    let mut command = stack.psql_command(false);
    command
        .args(["-c", "SELECT 'env-entra'"])
        .env("JITGATE_OIDC_TOKEN", entra.trim());
    let out = command.output().expect("psql runs");
    assert!(out.status.success(), "{}", describe(&out));
    let identity = started_identity(&stack, "env-entra");
    assert_eq!(identity["object_id"], OBJECT_ID);

    // A variable named by the pipeline (GitLab `id_tokens`), with a GitLab token.
    let claims = gitlab_claims(
        GITLAB_ISSUER,
        "acme/shop",
        "main",
        31337,
        AUDIENCE,
        Duration::from_secs(600),
    );
    let mut command = stack.psql_command(false);
    command
        .args(["-c", "SELECT 'env-gitlab'"])
        .env("CI_DB_ID_TOKEN", gitlab.token(&claims).expect("token"));
    let out = command.output().expect("psql runs");
    assert!(out.status.success(), "{}", describe(&out));
    let identity = started_identity(&stack, "env-gitlab");
    assert_eq!(identity["issuer"], GITLAB_ISSUER);
    assert_eq!(identity["repository"], "acme/shop");
    assert_eq!(identity["run_id"], "31337");
    assert_eq!(identity["git_ref"], "main");
    assert_eq!(identity["expires_at"], claims["exp"]);

    // A variable holding something that is not a token: refused, naming why.
    let mut command = stack.psql_command(false);
    command
        .args(["-c", "SELECT 1"])
        .env("JITGATE_OIDC_TOKEN", "not-a-jwt");
    let out = command.output().expect("psql runs");
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("not a valid JWT"),
        "{}",
        describe(&out)
    );
}

const REQUEST_TOKEN: &str = "request-token-of-the-job";

#[test]
fn the_github_actions_token_request_is_made_only_to_allowed_urls() {
    let keys = tempfile::tempdir().expect("temp dir");
    let github = Issuer::new_ec(GITHUB_ISSUER, "gh-1").expect("issuer");
    let claims = github_claims(
        "acme/shop",
        "refs/heads/main",
        "deploy",
        4242,
        AUDIENCE,
        Duration::from_secs(600),
    );
    let token = github.token(&claims).expect("token");
    let answer = serde_json::json!({ "value": token }).to_string();
    let service = HttpServer::start(move |request| {
        let bearer = format!("Bearer {REQUEST_TOKEN}");
        match request.headers.get("authorization") {
            Some(auth) if *auth == bearer => Response::ok(answer.clone()),
            _ => Response::status(401),
        }
    })
    .expect("token service");
    let Some(stack) = stack_with(StackOptions {
        identity: Some(format!(
            "github_audience = \"{AUDIENCE}\"\ngithub_allowed_urls = [\"{}/token\"]",
            service.url()
        )),
        extra_issuers: vec![issuer_table(&github, keys.path(), "github")],
        ..StackOptions::default()
    }) else {
        return;
    };
    let job = |url: &str, request_token: &str, sql: &str| {
        let mut command = stack.psql_command(false);
        command
            .args(["-c", sql])
            .env("ACTIONS_ID_TOKEN_REQUEST_URL", url)
            .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", request_token);
        command.output().expect("psql runs")
    };

    // GitHub's own URLs carry a query already; the audience is appended.
    let url = format!("{}/token/idtoken?api-version=2.0", service.url());
    let out = job(&url, REQUEST_TOKEN, "SELECT 'from-github'");
    assert!(out.status.success(), "{}", describe(&out));
    let requests = service.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].path, "/token/idtoken");
    assert_eq!(
        requests[0].query,
        "api-version=2.0&audience=api%3A%2F%2Fjitgate"
    );
    let identity = started_identity(&stack, "from-github");
    assert_eq!(identity["issuer"], GITHUB_ISSUER);
    assert_eq!(identity["repository"], "acme/shop");
    assert_eq!(identity["run_id"], "4242");
    assert_eq!(identity["workflow"], "deploy");

    // A URL outside the allowed prefixes (another path on the same server, another host,
    // another scheme) is never called.
    for outside in [
        format!("{}/other?api-version=2.0", service.url()),
        format!("http://127.0.0.2:{}/token?x=1", service.port()),
        format!("https://127.0.0.1:{}/token?x=1", service.port()),
    ] {
        let out = job(&outside, REQUEST_TOKEN, "SELECT 1");
        assert!(!out.status.success(), "{}", describe(&out));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("not under an allowed URL"), "{stderr}");
    }
    assert_eq!(service.requests().len(), 1, "nothing else was requested");

    // The service refusing the request token: refused with its answer.
    let out = job(&url, "wrong", "SELECT 1");
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(text(&out.stderr).contains("HTTP 401"), "{}", describe(&out));
    assert!(
        !text(&out.stderr).contains("wrong"),
        "the request token is never shown: {}",
        describe(&out)
    );
}

#[test]
fn a_token_as_the_startup_password_is_taken_where_the_target_allows_it() {
    let Some(stack) = stack_with(StackOptions {
        accept_token_password: true,
        ..StackOptions::default()
    }) else {
        return;
    };
    let token = std::fs::read_to_string(&stack.token_file).expect("token");
    let psql = |password: &str, sslmode: &str, sql: &str| {
        let mut command = stack.psql_command(false);
        command
            .args(["-c", sql])
            .env("PGPASSWORD", password.trim())
            .env("PGSSLMODE", sslmode);
        command.output().expect("psql runs")
    };

    let out = psql(&token, "require", "SELECT 'password-token'");
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(text(&out.stdout).trim(), "password-token");
    let identity = started_identity(&stack, "password-token");
    assert_eq!(identity["object_id"], OBJECT_ID);

    // Not a token: 28000.
    let out = psql("hunter2", "require", "SELECT 1");
    assert!(!out.status.success(), "{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("not a valid JWT"), "{stderr}");

    // Without TLS the agent does not ask for the password (startup_password_requires_tls).
    let out = psql(&token, "disable", "SELECT 1");
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("over TLS only"),
        "{}",
        describe(&out)
    );

    // A token file still wins when present (token_file comes first).
    let out = stack.psql("SELECT 'file-first'", true).expect("psql runs");
    assert!(out.status.success(), "{}", describe(&out));
}

#[test]
fn a_token_as_the_startup_password_is_refused_where_the_target_does_not_allow_it() {
    let Some(stack) = stack() else { return };
    let token = std::fs::read_to_string(&stack.token_file).expect("token");
    let mut command = stack.psql_command(false);
    command
        .args(["-c", "SELECT 1"])
        .env("PGPASSWORD", token.trim());
    let out = command.output().expect("psql runs");
    assert!(!out.status.success(), "{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no OIDC token"), "{stderr}");
    assert!(stderr.contains("not accepted by this target"), "{stderr}");
}
