//! The validated claims of a workload token, with Entra ID, GitHub Actions and GitLab claim
//! names carried as the issuers define them.

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
    /// `exp`, seconds since the Unix epoch.
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
            expires_at: claims.get("exp").and_then(Value::as_i64).unwrap_or(0),
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

    /// A short label for messages: `sub` at `iss`.
    pub fn label(&self) -> String {
        format!("{} ({})", self.subject, self.issuer)
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
            workflow: self.claim("workflow"),
            run_id: self.run_id(),
            expires_at: self.expires_at,
        }
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
