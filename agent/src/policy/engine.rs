//! The Cedar policy set (`cedar-policy`), validated at load against the schema the agent ships
//! (`jitgate.cedarschema`, [`SCHEMA_TEXT`]), and one authorization request at a time.
//!
//! Policies name themselves and explain denials with annotations:
//! `@id("ci-no-ddl")` (the name shown to clients and in audit; default Cedar's `policyN`),
//! `@reason("schema changes go through the migration pipeline")`, and on policies that can
//! be lifted by approval, `@approval("hold" | "request")` and `@grant_ttl("900")` (seconds a
//! request-mode grant stays open).
//!
//! Evaluation errors fail closed: a request whose evaluation reported an error is denied, even
//! when Cedar's own answer (which skips erroring policies) would allow it.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::OnceLock;

use cedar_policy::{
    Authorizer, Decision as CedarDecision, Entities, PolicyId, PolicySet, Request, Schema,
    ValidationMode, Validator,
};
use thiserror::Error;

/// The shipped Cedar schema (Cedar schema format).
pub const SCHEMA_TEXT: &str = include_str!("jitgate.cedarschema");

/// The Cedar namespace of every jitgate entity type and action.
pub const NAMESPACE: &str = "Jitgate";

/// Errors loading policies.
#[derive(Debug, Error)]
pub enum PolicyError {
    /// The policy file could not be read.
    #[error("cannot read policy file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The policy text is not valid Cedar.
    #[error("policies from {origin} do not parse:\n{detail}")]
    Parse {
        /// Where the text came from.
        origin: String,
        /// Cedar's diagnostics.
        detail: String,
    },
    /// The policies do not validate against jitgate's schema.
    #[error("policies from {origin} do not validate against the jitgate schema:\n{detail}")]
    Invalid {
        /// Where the text came from.
        origin: String,
        /// Cedar's validation errors, one per line.
        detail: String,
    },
    /// An annotation has a value the agent cannot use.
    #[error("policy {policy} from {origin}: {detail}")]
    Annotation {
        /// Where the text came from.
        origin: String,
        /// The policy's id.
        policy: String,
        /// What is wrong.
        detail: String,
    },
    /// The shipped schema does not load (a build defect).
    #[error("the shipped Cedar schema does not load: {0}")]
    Schema(String),
}

/// How an approval is asked for (`@approval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalMode {
    /// The client waits for the decision.
    Hold,
    /// The statement is refused with a request id; approval opens a grant for a rerun.
    Request,
}

impl ApprovalMode {
    /// `hold` or `request`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hold => "hold",
            Self::Request => "request",
        }
    }
}

/// A policy that decided a request, with its annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRef {
    /// `@id`, or Cedar's id.
    pub id: String,
    /// `@reason`, if any.
    pub reason: Option<String>,
    /// `@approval`, if any.
    pub approval: Option<ApprovalMode>,
    /// `@grant_ttl`, seconds, if any.
    pub grant_ttl: Option<u64>,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// The policies that determined it: the satisfied permits when allowed, the satisfied
    /// forbids when denied (empty: nothing permits it).
    pub policies: Vec<PolicyRef>,
    /// Evaluation errors (the request is then denied).
    pub errors: Vec<String>,
}

/// The loaded, validated policy set.
pub struct PolicyEngine {
    policies: PolicySet,
    authorizer: Authorizer,
    origin: String,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("origin", &self.origin)
            .field("policies", &self.policies.policies().count())
            .finish()
    }
}

/// The shipped schema, loaded once.
pub fn schema() -> Result<&'static Schema, PolicyError> {
    static SCHEMA: OnceLock<Result<Schema, String>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Schema::from_cedarschema_str(SCHEMA_TEXT)
                .map(|(schema, _warnings)| schema)
                .map_err(|e| format!("{e:?}"))
        })
        .as_ref()
        .map_err(|e| PolicyError::Schema(e.clone()))
}

impl PolicyEngine {
    /// Loads and validates the policies in `path`.
    pub fn from_file(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_text(&text, &path.display().to_string())
    }

    /// Parses `text` (from `origin`, for messages) and validates it strictly against the schema.
    pub fn from_text(text: &str, origin: &str) -> Result<Self, PolicyError> {
        let policies = PolicySet::from_str(text).map_err(|e| PolicyError::Parse {
            origin: origin.to_owned(),
            detail: miette_report(&e),
        })?;
        let result = Validator::new(schema()?.clone()).validate(&policies, ValidationMode::Strict);
        if !result.validation_passed() {
            let detail: Vec<String> = result
                .validation_errors()
                .map(|e| format!("  - {e}"))
                .collect();
            return Err(PolicyError::Invalid {
                origin: origin.to_owned(),
                detail: detail.join("\n"),
            });
        }
        let engine = Self {
            policies,
            authorizer: Authorizer::new(),
            origin: origin.to_owned(),
        };
        let mut seen = std::collections::BTreeSet::new();
        for policy in engine.policies.policies() {
            let named = engine.policy_ref(policy.id())?;
            if !seen.insert(named.id.clone()) {
                return Err(PolicyError::Annotation {
                    origin: origin.to_owned(),
                    policy: named.id,
                    detail: "two policies have this @id; denials and the audit trail name \
                             policies by it"
                        .into(),
                });
            }
        }
        Ok(engine)
    }

    /// Where the policies came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// How many policies are loaded.
    pub fn len(&self) -> usize {
        self.policies.policies().count()
    }

    /// Whether no policy is loaded (everything is denied).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decides one request.
    pub fn authorize(&self, request: &Request, entities: &Entities) -> Verdict {
        let response = self
            .authorizer
            .is_authorized(request, &self.policies, entities);
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| e.to_string())
            .collect();
        let policies = response
            .diagnostics()
            .reason()
            .filter_map(|id| self.policy_ref(id).ok())
            .collect();
        Verdict {
            allowed: response.decision() == CedarDecision::Allow && errors.is_empty(),
            policies,
            errors,
        }
    }

    fn policy_ref(&self, id: &PolicyId) -> Result<PolicyRef, PolicyError> {
        let annotation = |key: &str| self.policies.annotation(id, key).map(str::to_owned);
        let name = annotation("id").unwrap_or_else(|| id.to_string());
        let bad = |detail: String| PolicyError::Annotation {
            origin: self.origin.clone(),
            policy: name.clone(),
            detail,
        };
        let approval = match annotation("approval").as_deref() {
            None => None,
            Some("hold") => Some(ApprovalMode::Hold),
            Some("request") => Some(ApprovalMode::Request),
            Some(other) => {
                return Err(bad(format!(
                    "@approval(\"{other}\") must be \"hold\" or \"request\""
                )));
            }
        };
        let grant_ttl = match annotation("grant_ttl") {
            None => None,
            Some(text) => Some(text.parse::<u64>().map_err(|_| {
                bad(format!(
                    "@grant_ttl(\"{text}\") must be a number of seconds"
                ))
            })?),
        };
        Ok(PolicyRef {
            id: name.clone(),
            reason: annotation("reason"),
            approval,
            grant_ttl,
        })
    }
}

/// Cedar's parse errors as one readable block.
fn miette_report(e: &cedar_policy::ParseErrors) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_schema_loads() {
        schema().expect("schema loads");
    }

    #[test]
    fn policies_outside_the_schema_are_rejected() {
        let err = PolicyEngine::from_text(
            r#"permit(principal, action == Jitgate::Action::"selekt", resource);"#,
            "test",
        )
        .expect_err("unknown action");
        assert!(matches!(err, PolicyError::Invalid { .. }), "{err}");
        let err = PolicyEngine::from_text(
            r#"permit(principal, action, resource) when { principal.repo == "x" };"#,
            "test",
        )
        .expect_err("unknown attribute");
        assert!(matches!(err, PolicyError::Invalid { .. }), "{err}");
        let err = PolicyEngine::from_text(
            r#"@approval("later") forbid(principal, action, resource);"#,
            "test",
        )
        .expect_err("bad annotation");
        assert!(matches!(err, PolicyError::Annotation { .. }), "{err}");
        let err = PolicyEngine::from_text(
            r#"@id("a") forbid(principal, action, resource); @id("a") permit(principal, action, resource);"#,
            "test",
        )
        .expect_err("duplicate @id");
        assert!(err.to_string().contains("two policies"), "{err}");
    }
}
