//! `jitgate-agent policy check` and `policy explain`: validate a policy file against the
//! shipped schema, and show what the agent would decide for a token's claims and a query
//! string — the analysis, every request with its verdict and deciding policies, and the
//! decision.

use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value};

use super::decide::{Decision, SessionFacts, SessionPolicy};
use super::engine::{PolicyEngine, PolicyError};
use super::{Analysis, analysis};
use crate::identity::WorkloadIdentity;

/// Errors of `policy explain`.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The policies do not load.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The token file cannot be read or is not a JWT.
    #[error("token: {0}")]
    Token(String),
    /// The SQL does not parse (the agent would refuse it with 42601).
    #[error("the SQL does not parse, so the agent refuses it (42601): {0}")]
    Sql(String),
}

/// The claims of a JWT, read without checking its signature (explain shows what policy
/// decides for these claims; the agent validates tokens before policy ever sees them).
pub fn unverified_claims(token: &str) -> Result<Map<String, Value>, ExplainError> {
    let payload = token
        .trim()
        .split('.')
        .nth(1)
        .ok_or_else(|| ExplainError::Token("expected header.payload.signature".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| ExplainError::Token(format!("payload is not base64url: {e}")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ExplainError::Token("payload is not a JSON object".into())),
    }
}

/// The report `policy explain` prints, and its exit status: 0 allow, 1 deny, 2 approval.
pub fn explain(
    engine: Arc<PolicyEngine>,
    claims: Map<String, Value>,
    facts: SessionFacts,
    search_path: &[String],
    sql: &str,
) -> Result<(String, i32), ExplainError> {
    let identity = WorkloadIdentity::from_claims(claims);
    let analysis: Arc<Analysis> =
        Arc::new(analysis::analyze(sql).map_err(|e| ExplainError::Sql(e.message))?);
    let mut policy = SessionPolicy::new(engine, &identity, facts, search_path)?;
    let mut out = String::new();
    let _ = writeln!(out, "principal: {}", identity.label());
    let _ = writeln!(out, "statements: {}", analysis.statements);
    let classes: Vec<&str> = analysis.kinds.iter().map(|k| k.as_str()).collect();
    let _ = writeln!(out, "classes: {}", classes.join(", "));
    let dangerous: Vec<&str> = analysis.dangerous.iter().copied().collect();
    let _ = writeln!(out, "dangerous: {}", dangerous.join(", "));
    if let Some(reason) = &analysis.integrity {
        let _ = writeln!(out, "refused before policy: {reason}");
    }
    let _ = writeln!(out, "requests:");
    for traced in policy.trace(&analysis)? {
        let ids: Vec<&str> = traced
            .verdict
            .policies
            .iter()
            .map(|p| p.id.as_str())
            .collect();
        let _ = writeln!(
            out,
            "  {:<5} {} on {}  [{}]{}",
            if traced.verdict.allowed {
                "allow"
            } else {
                "deny"
            },
            traced.action,
            traced.resource,
            if ids.is_empty() {
                "no policy".to_owned()
            } else {
                ids.join(", ")
            },
            if traced.verdict.errors.is_empty() {
                String::new()
            } else {
                format!("  errors: {}", traced.verdict.errors.join("; "))
            }
        );
    }
    let decided = policy.decide(&analysis);
    let code = match &decided {
        Decision::Allow { .. } => 0,
        Decision::Deny(_) => 1,
        Decision::Approval(_) => 2,
    };
    let decision = match decided {
        Decision::Allow { policies } => format!("ALLOW (permitted by {})", policies.join(", ")),
        Decision::Deny(d) => format!("DENY 42501 [{}] {}", d.rule, d.reason),
        Decision::Approval(a) => format!(
            "APPROVAL ({} mode{}{}) [{}] {}",
            a.mode.as_str(),
            if a.mode == super::ApprovalMode::Request {
                format!(", grant {} s", a.grant_ttl)
            } else {
                String::new()
            },
            a.auto_approved_by
                .map(|p| format!(", approved automatically by {p}"))
                .unwrap_or_default(),
            a.policies.join(", "),
            a.reason
        ),
    };
    let _ = writeln!(out, "decision: {decision}");
    Ok((out, code))
}
