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
        let audience = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
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
        match self.claims.get(name) {
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    }

    /// Entra application id: `appid` (v1 tokens) or `azp` (v2 tokens).
    pub fn app_id(&self) -> String {
        let appid = self.claim("appid");
        if appid.is_empty() {
            self.claim("azp")
        } else {
            appid
        }
    }

    /// Repository: GitHub `repository`, or GitLab `project_path`.
    pub fn repository(&self) -> String {
        let repo = self.claim("repository");
        if repo.is_empty() {
            self.claim("project_path")
        } else {
            repo
        }
    }

    /// CI run: GitHub `run_id`, or GitLab `pipeline_id`.
    pub fn run_id(&self) -> String {
        let run = self.claim("run_id");
        if run.is_empty() {
            self.claim("pipeline_id")
        } else {
            run
        }
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
