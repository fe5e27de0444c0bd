//! Claim sets shaped like the workload tokens jitgate accepts in CI: Microsoft Entra ID
//! service-principal access tokens (v2 and v1), GitHub Actions OIDC tokens and GitLab CI
//! `id_tokens`.
//!
//! Shapes follow Microsoft's "Access token claims reference" and GitHub's "About security
//! hardening with OpenID Connect"; values are fake but well-formed (GUIDs, numeric dates in
//! seconds since the Unix epoch). Sign them with [`crate::issuer::Issuer::token`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// `iss` of GitHub Actions OIDC tokens.
pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// `iss` of Entra ID v2.0 access tokens for `tenant`.
pub fn entra_v2_issuer(tenant: &str) -> String {
    format!("https://login.microsoftonline.com/{tenant}/v2.0")
}

/// `iss` of Entra ID v1.0 access tokens for `tenant`.
pub fn entra_v1_issuer(tenant: &str) -> String {
    format!("https://sts.windows.net/{tenant}/")
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// An Entra v2.0 app-only (service principal, client credentials) access token claim set.
///
/// `iss` is [`entra_v2_issuer`]; `sub` = `oid` = `object_id` (the service principal);
/// `azp` = `app_id` (the client application); `idtyp: "app"`, `roles: []`; `iat`/`nbf` now and
/// `exp` now + `ttl`. v2 tokens carry `azp`, not the v1 `appid` — see [`entra_v1_sp_claims`].
/// Add `roles` or other claims on the returned value as needed.
pub fn entra_sp_claims(
    tenant: &str,
    app_id: &str,
    object_id: &str,
    audience: &str,
    ttl: Duration,
) -> Value {
    let now = now_secs();
    json!({
        "aud": audience,
        "iss": entra_v2_issuer(tenant),
        "iat": now,
        "nbf": now,
        "exp": now + ttl.as_secs(),
        "aio": "E2RgYDBcaT7hkm3/dhQPy6fXdzWUAA==",
        "azp": app_id,
        "azpacr": "1",
        "idtyp": "app",
        "oid": object_id,
        "rh": "0.AXEAbq3SjTx7dUy8jOEqZ3oPrQ.",
        "roles": [],
        "sub": object_id,
        "tid": tenant,
        "uti": "pP8Zb0mXbEKQp8bDnTX4AA",
        "ver": "2.0",
    })
}

/// An Entra v1.0 app-only access token claim set: like [`entra_sp_claims`] but with
/// `iss` = [`entra_v1_issuer`], `appid`/`appidacr` instead of `azp`/`azpacr`, `ver: "1.0"`.
pub fn entra_v1_sp_claims(
    tenant: &str,
    app_id: &str,
    object_id: &str,
    audience: &str,
    ttl: Duration,
) -> Value {
    let now = now_secs();
    json!({
        "aud": audience,
        "iss": entra_v1_issuer(tenant),
        "iat": now,
        "nbf": now,
        "exp": now + ttl.as_secs(),
        "appid": app_id,
        "appidacr": "1",
        "idp": entra_v1_issuer(tenant),
        "idtyp": "app",
        "oid": object_id,
        "roles": [],
        "sub": object_id,
        "tid": tenant,
        "ver": "1.0",
    })
}

/// A GitHub Actions OIDC token claim set for a push-triggered run on `git_ref`.
///
/// `repository` is `org/repo`; `sub` is `repo:<repository>:ref:<git_ref>`; `workflow` is the
/// workflow's name and its file is assumed to be `.github/workflows/<workflow>.yml`; `run_id`
/// is rendered as a string as GitHub does; `exp` is now + `ttl`.
pub fn github_claims(
    repository: &str,
    git_ref: &str,
    workflow: &str,
    run_id: u64,
    audience: &str,
    ttl: Duration,
) -> Value {
    let now = now_secs();
    let owner = repository.split('/').next().unwrap_or(repository);
    let workflow_ref = format!("{repository}/.github/workflows/{workflow}.yml@{git_ref}");
    json!({
        "jti": format!("{:x}-{run_id}", now),
        "sub": format!("repo:{repository}:ref:{git_ref}"),
        "aud": audience,
        "iss": GITHUB_ISSUER,
        "iat": now,
        "nbf": now,
        "exp": now + ttl.as_secs(),
        "ref": git_ref,
        "ref_type": "branch",
        "ref_protected": "true",
        "sha": "2f1c6b0a9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a",
        "repository": repository,
        "repository_id": "712345678",
        "repository_owner": owner,
        "repository_owner_id": "98765432",
        "repository_visibility": "private",
        "run_id": run_id.to_string(),
        "run_number": "17",
        "run_attempt": "1",
        "actor": "octocat",
        "actor_id": "583231",
        "workflow": workflow,
        "workflow_ref": workflow_ref,
        "job_workflow_ref": workflow_ref,
        "event_name": "push",
        "runner_environment": "self-hosted",
    })
}

/// A GitLab CI `id_tokens` claim set (GitLab docs "OpenID Connect (OIDC) Authentication Using
/// ID Tokens") for a branch pipeline of `project_path` on `git_ref`, issued by `issuer` (the
/// GitLab instance's URL); ids are strings as GitLab renders them; `exp` is now + `ttl`.
pub fn gitlab_claims(
    issuer: &str,
    project_path: &str,
    git_ref: &str,
    pipeline_id: u64,
    audience: &str,
    ttl: Duration,
) -> Value {
    let now = now_secs();
    let namespace = project_path
        .rsplit_once('/')
        .map_or(project_path, |(ns, _)| ns);
    let host = issuer.trim_start_matches("https://").trim_end_matches('/');
    json!({
        "iss": issuer,
        "sub": format!("project_path:{project_path}:ref_type:branch:ref:{git_ref}"),
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + ttl.as_secs(),
        "jti": format!("{now:x}-{pipeline_id}"),
        "namespace_id": "4242",
        "namespace_path": namespace,
        "project_id": "1717",
        "project_path": project_path,
        "user_id": "11",
        "user_login": "ci-bot",
        "pipeline_id": pipeline_id.to_string(),
        "pipeline_source": "push",
        "job_id": "90210",
        "ref": git_ref,
        "ref_type": "branch",
        "ref_path": format!("refs/heads/{git_ref}"),
        "ref_protected": "true",
        "runner_id": 7,
        "runner_environment": "self-hosted",
        "ci_config_ref_uri": format!("{host}/{project_path}//.gitlab-ci.yml@refs/heads/{git_ref}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entra_v2_shape() {
        let claims = entra_sp_claims("tid", "app", "oid", "api://x", Duration::from_secs(600));
        assert_eq!(claims["iss"], "https://login.microsoftonline.com/tid/v2.0");
        assert_eq!(claims["sub"], "oid");
        assert_eq!(claims["azp"], "app");
        assert!(claims.get("appid").is_none());
        let (Some(iat), Some(exp)) = (claims["iat"].as_u64(), claims["exp"].as_u64()) else {
            panic!("numeric dates expected: {claims}");
        };
        assert_eq!(exp - iat, 600);
    }

    #[test]
    fn entra_v1_shape() {
        let claims = entra_v1_sp_claims("tid", "app", "oid", "api://x", Duration::from_secs(60));
        assert_eq!(claims["iss"], "https://sts.windows.net/tid/");
        assert_eq!(claims["appid"], "app");
    }

    #[test]
    fn github_shape() {
        let claims = github_claims(
            "acme/shop",
            "refs/heads/main",
            "ci",
            7,
            "aud",
            Duration::ZERO,
        );
        assert_eq!(claims["repository_owner"], "acme");
        assert_eq!(claims["run_id"], "7");
        assert_eq!(
            claims["workflow_ref"],
            "acme/shop/.github/workflows/ci.yml@refs/heads/main"
        );
    }
}
