//! The validated claims of a workload token, with Entra ID, GitHub Actions and GitLab claim
//! names carried as the issuers define them: which kind of issuer a token comes from
//! ([`IssuerKind`]), a label naming the workload the way its platform does (Entra: the
//! application and tenant; GitHub: repository, ref and run; GitLab: project, ref and pipeline),
//! and the audit record.

use serde_json::{Map, Value};

/// A validated workload identity.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadIdentity {
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// `aud`, as a list.
    pub audience: Vec<String>,
    /// `exp` (RFC 7519 §4.1.4), seconds since the Unix epoch, as the token states it (a
    /// fractional NumericDate rounded down): the instant after which the token is no longer
    /// valid. Validation allows [`super::jwt::LEEWAY_SECS`] of clock skew on top; a session
    /// deadline should use this value.
    pub expires_at: i64,
    /// Every claim of the token, for rule matching.
    pub claims: Map<String, Value>,
}

impl WorkloadIdentity {
    /// Builds the identity from a validated claim set.
    pub fn from_claims(claims: Map<String, Value>) -> Self {
        let text = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or_default();
        let audience = string_list(claims.get("aud"));
        Self {
            issuer: text("iss").to_owned(),
            subject: text("sub").to_owned(),
            audience,
            expires_at: numeric_date(claims.get("exp")),
            claims,
        }
    }

    /// A claim as text: strings as is, numbers printed (GitHub's `run_id` is a string, GitLab's
    /// ids are sometimes numbers); empty when absent.
    pub fn claim(&self, name: &str) -> String {
        match self.claims.get(name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            _ => String::new(),
        }
    }

    /// A list claim (`roles`, `groups`, `aud`); a single string counts as a one-element list.
    pub fn claim_list(&self, name: &str) -> Vec<String> {
        string_list(self.claims.get(name))
    }

    /// The first of `names` present with a non-empty value, as text.
    pub fn first_claim(&self, names: &[&str]) -> String {
        names
            .iter()
            .map(|n| self.claim(n))
            .find(|v| !v.is_empty())
            .unwrap_or_default()
    }

    /// Entra application id: `appid` (v1 tokens) or `azp` (v2 tokens).
    pub fn app_id(&self) -> String {
        self.first_claim(&["appid", "azp"])
    }

    /// Repository: GitHub `repository`, or GitLab `project_path`.
    pub fn repository(&self) -> String {
        self.first_claim(&["repository", "project_path"])
    }

    /// CI run: GitHub `run_id`, or GitLab `pipeline_id`.
    pub fn run_id(&self) -> String {
        self.first_claim(&["run_id", "pipeline_id"])
    }

    /// Which kind of issuer the token comes from.
    pub fn kind(&self) -> IssuerKind {
        IssuerKind::of(self)
    }

    /// A short label for messages and logs, in the platform's own terms.
    pub fn label(&self) -> String {
        match self.kind() {
            IssuerKind::Entra => {
                let app = self.app_id();
                let who = if app.is_empty() {
                    format!("object {}", self.subject)
                } else {
                    format!("app {app}")
                };
                format!("entra {who} (tenant {})", self.claim("tid"))
            }
            IssuerKind::GithubActions => format!(
                "github {}@{} (workflow {}, run {})",
                self.repository(),
                self.claim("ref"),
                self.claim("workflow"),
                self.run_id()
            ),
            IssuerKind::Gitlab => format!(
                "gitlab {}@{} (pipeline {}, job {})",
                self.repository(),
                self.claim("ref"),
                self.run_id(),
                self.claim("job_id")
            ),
            IssuerKind::Other => format!("{} ({})", self.subject, self.issuer),
        }
    }

    /// Workflow: GitHub `workflow`, or GitLab `ci_config_ref_uri` (the pipeline definition).
    pub fn workflow(&self) -> String {
        self.first_claim(&["workflow", "ci_config_ref_uri"])
    }

    /// The CI context claims for the audit trail (`SessionStarted.ci`), only those present, in
    /// the fixed order of [`CI_CLAIMS_GITHUB`], [`CI_CLAIMS_GITLAB`] or [`CI_CLAIMS_ENTRA`] by the
    /// issuer's kind (an issuer of another kind: all three lists in that order, each name once).
    /// String claims are carried as they are, others as compact JSON.
    pub fn ci_claims(&self) -> Vec<jitgate_proto::audit::v1::Claim> {
        let lists: &[&[&str]] = match self.kind() {
            IssuerKind::GithubActions => &[CI_CLAIMS_GITHUB],
            IssuerKind::Gitlab => &[CI_CLAIMS_GITLAB],
            IssuerKind::Entra => &[CI_CLAIMS_ENTRA],
            IssuerKind::Other => &[CI_CLAIMS_GITHUB, CI_CLAIMS_GITLAB, CI_CLAIMS_ENTRA],
        };
        let mut seen = std::collections::HashSet::new();
        lists
            .iter()
            .flat_map(|list| list.iter())
            .filter(|name| seen.insert(**name))
            .filter_map(|name| {
                let value = match self.claims.get(*name)? {
                    Value::Null => return None,
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                Some(jitgate_proto::audit::v1::Claim {
                    name: (*name).to_owned(),
                    value,
                })
            })
            .collect()
    }

    /// The identity as an audit record.
    pub fn to_audit(&self) -> jitgate_proto::audit::v1::Identity {
        jitgate_proto::audit::v1::Identity {
            issuer: self.issuer.clone(),
            subject: self.subject.clone(),
            audience: self.audience.clone(),
            tenant_id: self.claim("tid"),
            object_id: self.claim("oid"),
            app_id: self.app_id(),
            roles: self.claim_list("roles"),
            identity_type: self.claim("idtyp"),
            repository: self.repository(),
            git_ref: self.claim("ref"),
            workflow: self.workflow(),
            run_id: self.run_id(),
            expires_at: self.expires_at,
        }
    }
}

/// GitHub Actions claims recorded as CI context, in this order.
pub const CI_CLAIMS_GITHUB: &[&str] = &[
    "repository",
    "ref",
    "sha",
    "workflow",
    "job_workflow_ref",
    "run_id",
    "run_attempt",
    "actor",
    "environment",
    "event_name",
];

/// GitLab CI claims recorded as CI context, in this order.
pub const CI_CLAIMS_GITLAB: &[&str] = &[
    "project_path",
    "ref",
    "pipeline_id",
    "job_id",
    "user_login",
    "environment",
];

/// Entra ID claims recorded as CI context, in this order (`appid` in v1 tokens, `azp` in v2).
pub const CI_CLAIMS_ENTRA: &[&str] = &["tid", "oid", "appid", "azp"];

/// The kinds of issuer whose claim sets jitgate knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerKind {
    /// Microsoft Entra ID: v1 `https://sts.windows.net/{tid}/` or v2
    /// `https://login.microsoftonline.com/{tid}/v2.0`.
    Entra,
    /// GitHub Actions (`https://token.actions.githubusercontent.com`, or a GitHub Enterprise
    /// Server issuer: recognised by `repository`, `run_id` and `workflow`).
    GithubActions,
    /// GitLab CI `id_tokens` (recognised by `project_path` and `pipeline_id`).
    Gitlab,
    /// Any other issuer.
    Other,
}

impl IssuerKind {
    fn of(identity: &WorkloadIdentity) -> Self {
        let iss = identity.issuer.as_str();
        let has = |name: &str| identity.claims.contains_key(name);
        if iss.starts_with("https://login.microsoftonline.com/")
            || iss.starts_with("https://sts.windows.net/")
            || (has("tid") && (has("appid") || has("azp")))
        {
            IssuerKind::Entra
        } else if iss == "https://token.actions.githubusercontent.com"
            || (has("repository") && has("run_id") && has("workflow"))
        {
            IssuerKind::GithubActions
        } else if has("project_path") && has("pipeline_id") {
            IssuerKind::Gitlab
        } else {
            IssuerKind::Other
        }
    }
}

/// A NumericDate (RFC 7519 §2): seconds since the epoch, integer or not; 0 when absent.
fn numeric_date(value: Option<&Value>) -> i64 {
    match value {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f.floor() as i64))
            .unwrap_or(0),
        _ => 0,
    }
}

/// A claim that is a string or a list of strings, as a list (RFC 7519 §4.1.3 allows both for `aud`).
fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity(v: Value) -> WorkloadIdentity {
        match v {
            Value::Object(m) => WorkloadIdentity::from_claims(m),
            _ => unreachable!("test claims are objects"),
        }
    }

    #[test]
    fn entra_v1_and_v2_app_ids() {
        let v1 = identity(json!({"iss": "i", "sub": "s", "appid": "a1", "aud": "x", "exp": 5}));
        assert_eq!(v1.app_id(), "a1");
        assert_eq!(v1.audience, vec!["x"]);
        let v2 = identity(json!({"iss": "i", "sub": "s", "azp": "a2", "aud": ["x", "y"]}));
        assert_eq!(v2.app_id(), "a2");
        assert_eq!(v2.audience, vec!["x", "y"]);
    }

    #[test]
    fn labels_name_the_workload_in_platform_terms() {
        let v1 = identity(
            json!({"iss": "https://sts.windows.net/t1/", "sub": "o", "appid": "a1", "tid": "t1"}),
        );
        assert_eq!(v1.kind(), IssuerKind::Entra);
        assert_eq!(v1.label(), "entra app a1 (tenant t1)");
        let v2 = identity(
            json!({"iss": "https://login.microsoftonline.com/t2/v2.0", "sub": "o", "azp": "a2", "tid": "t2"}),
        );
        assert_eq!(v2.label(), "entra app a2 (tenant t2)");
        let gh = identity(
            json!({"iss": "https://token.actions.githubusercontent.com", "sub": "repo:o/r:ref:refs/heads/main",
            "repository": "o/r", "ref": "refs/heads/main", "workflow": "ci", "run_id": "9"}),
        );
        assert_eq!(gh.kind(), IssuerKind::GithubActions);
        assert_eq!(
            gh.label(),
            "github o/r@refs/heads/main (workflow ci, run 9)"
        );
        let gl = identity(
            json!({"iss": "https://gitlab.example.com", "sub": "project_path:g/p:ref_type:branch:ref:main",
            "project_path": "g/p", "ref": "main", "pipeline_id": "77", "job_id": "501",
            "ci_config_ref_uri": "gitlab.example.com/g/p//.gitlab-ci.yml@refs/heads/main"}),
        );
        assert_eq!(gl.kind(), IssuerKind::Gitlab);
        assert_eq!(gl.label(), "gitlab g/p@main (pipeline 77, job 501)");
        assert_eq!(
            gl.to_audit().workflow,
            "gitlab.example.com/g/p//.gitlab-ci.yml@refs/heads/main"
        );
        let other = identity(json!({"iss": "https://idp.example", "sub": "svc"}));
        assert_eq!(other.label(), "svc (https://idp.example)");
    }

    #[test]
    fn expiry_is_the_exp_claim() {
        assert_eq!(
            identity(json!({"exp": 1_900_000_000})).expires_at,
            1_900_000_000
        );
        assert_eq!(
            identity(json!({"exp": 1_900_000_000.75})).expires_at,
            1_900_000_000
        );
        assert_eq!(identity(json!({})).expires_at, 0);
    }

    #[test]
    fn ci_claims_in_fixed_order() {
        let pairs = |i: &WorkloadIdentity| -> Vec<(String, String)> {
            i.ci_claims()
                .into_iter()
                .map(|c| (c.name, c.value))
                .collect()
        };
        let gh = identity(json!({"iss": "https://token.actions.githubusercontent.com",
            "event_name": "push", "actor": "octo", "run_attempt": 2, "sha": "abc",
            "repository": "o/r", "ref": "refs/heads/main", "workflow": "ci", "run_id": "9",
            "environment": null, "extra": "ignored", "project_path": "not/gitlab"}));
        let want: Vec<(String, String)> = [
            ("repository", "o/r"),
            ("ref", "refs/heads/main"),
            ("sha", "abc"),
            ("workflow", "ci"),
            ("run_id", "9"),
            ("run_attempt", "2"),
            ("actor", "octo"),
            ("event_name", "push"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
        assert_eq!(pairs(&gh), want);
        let gl = identity(
            json!({"project_path": "g/p", "pipeline_id": 77, "ref": "main",
            "job_id": "5", "user_login": "u", "environment": {"name": "prod"}}),
        );
        assert_eq!(
            pairs(&gl),
            [
                ("project_path", "g/p"),
                ("ref", "main"),
                ("pipeline_id", "77"),
                ("job_id", "5"),
                ("user_login", "u"),
                ("environment", "{\"name\":\"prod\"}"),
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        let entra = identity(
            json!({"iss": "https://sts.windows.net/t/", "azp": "a", "oid": "o",
            "tid": "t"}),
        );
        assert_eq!(
            pairs(&entra),
            [("tid", "t"), ("oid", "o"), ("azp", "a")].map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        let other = identity(
            json!({"iss": "https://idp.example", "sub": "svc", "oid": "o",
            "ref": "r", "job_id": 3}),
        );
        assert_eq!(
            pairs(&other),
            [("ref", "r"), ("job_id", "3"), ("oid", "o")]
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
    }

    #[test]
    fn github_and_gitlab_claims() {
        let gh =
            identity(json!({"repository": "org/app", "run_id": "42", "ref": "refs/heads/main"}));
        assert_eq!(
            (gh.repository(), gh.run_id()),
            ("org/app".into(), "42".into())
        );
        let gl = identity(json!({"project_path": "grp/app", "pipeline_id": 7}));
        assert_eq!(
            (gl.repository(), gl.run_id()),
            ("grp/app".into(), "7".into())
        );
    }
}
