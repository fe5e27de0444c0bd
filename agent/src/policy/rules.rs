//! Deny rules: statement classes denied to the identities a rule matches. A query string is
//! denied when any of its statements (top-level or nested) has a denied class.

use super::{Analysis, StatementKind};
use crate::config::DenyRuleConfig;
use crate::identity::WorkloadIdentity;

/// Why a statement was denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The rule id, or `parse` for unparseable SQL.
    pub rule: String,
    /// The denied class, when a class rule decided.
    pub kind: Option<StatementKind>,
    /// The message for the client and the audit trail.
    pub reason: String,
}

/// The decision for one query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward it.
    Allow,
    /// Answer with ErrorResponse 42501 and do not run it.
    Deny(Denial),
}

/// The configured deny rules.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<DenyRuleConfig>,
}

impl Policy {
    /// A policy of `rules`, evaluated in order; the first matching denial wins.
    pub fn new(rules: Vec<DenyRuleConfig>) -> Self {
        Self { rules }
    }

    /// Decides `analysis` for `identity`.
    pub fn decide(&self, identity: &WorkloadIdentity, analysis: &Analysis) -> Decision {
        for rule in &self.rules {
            if !matches(rule, identity) {
                continue;
            }
            if analysis.kinds.contains(&StatementKind::Do) && !rule.deny.is_empty() {
                // A DO block runs procedural code (and any SQL it builds at run time) that the
                // parser cannot see into, so it could run any class this rule denies.
                let denied: Vec<&str> = rule.deny.iter().map(|k| k.as_str()).collect();
                return Decision::Deny(Denial {
                    rule: rule.id.clone(),
                    kind: Some(StatementKind::Do),
                    reason: format!(
                        "jitgate: DO blocks are denied for {} by rule \"{}\", because code inside \
                         them could run statements the rule denies ({})",
                        identity.label(),
                        rule.id,
                        denied.join(", ")
                    ),
                });
            }
            if let Some(kind) = analysis.kinds.iter().find(|k| rule.deny.contains(k)) {
                let why = rule
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                return Decision::Deny(Denial {
                    rule: rule.id.clone(),
                    kind: Some(*kind),
                    reason: format!(
                        "jitgate: {} statements are denied for {} by rule \"{}\"{why}",
                        kind.as_str().to_uppercase(),
                        identity.label(),
                        rule.id,
                    ),
                });
            }
        }
        Decision::Allow
    }
}

/// Whether every claim condition of `rule` holds for `identity`.
fn matches(rule: &DenyRuleConfig, identity: &WorkloadIdentity) -> bool {
    rule.matches.iter().all(|(claim, expected)| {
        identity.claim(claim) == *expected || identity.claim_list(claim).contains(expected)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::analysis::analyze;
    use serde_json::json;

    fn identity() -> WorkloadIdentity {
        let claims = json!({"iss": "https://issuer", "sub": "ci", "roles": ["Deployer"]});
        match claims {
            serde_json::Value::Object(m) => WorkloadIdentity::from_claims(m),
            _ => unreachable!("object"),
        }
    }

    fn rule(id: &str, matches: &[(&str, &str)], deny: &[StatementKind]) -> DenyRuleConfig {
        DenyRuleConfig {
            id: id.into(),
            matches: matches
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            deny: deny.to_vec(),
            reason: None,
        }
    }

    #[test]
    fn matching_rule_denies_its_kinds_only() {
        let p = Policy::new(vec![rule(
            "ci-no-ddl",
            &[("iss", "https://issuer")],
            &[StatementKind::Ddl, StatementKind::Truncate],
        )]);
        let id = identity();
        let drop = analyze("DROP TABLE customers").expect("parses");
        match p.decide(&id, &drop) {
            Decision::Deny(d) => {
                assert_eq!(d.rule, "ci-no-ddl");
                assert!(
                    d.reason.contains("DDL") && d.reason.contains("ci-no-ddl"),
                    "{}",
                    d.reason
                );
            }
            Decision::Allow => panic!("DROP TABLE must be denied"),
        }
        let select = analyze("SELECT * FROM customers").expect("parses");
        assert_eq!(p.decide(&id, &select), Decision::Allow);
    }

    #[test]
    fn one_denied_statement_denies_the_string() {
        let p = Policy::new(vec![rule("r", &[], &[StatementKind::Truncate])]);
        let a = analyze("SELECT 1; TRUNCATE orders").expect("parses");
        assert!(matches!(p.decide(&identity(), &a), Decision::Deny(_)));
    }

    #[test]
    fn do_blocks_are_denied_by_any_rule_that_denies_something() {
        let p = Policy::new(vec![rule("r", &[], &[StatementKind::Ddl])]);
        let a = analyze("DO $$ BEGIN EXECUTE 'DROP TABLE customers'; END $$").expect("parses");
        match p.decide(&identity(), &a) {
            Decision::Deny(d) => assert!(d.reason.contains("DO blocks"), "{}", d.reason),
            Decision::Allow => panic!("a DO block can run DDL"),
        }
        let none = Policy::new(vec![rule("r", &[], &[])]);
        assert_eq!(none.decide(&identity(), &a), Decision::Allow);
    }

    #[test]
    fn rule_for_other_identity_does_not_apply() {
        let p = Policy::new(vec![rule(
            "r",
            &[("iss", "https://other")],
            &[StatementKind::Ddl],
        )]);
        let a = analyze("DROP TABLE t").expect("parses");
        assert_eq!(p.decide(&identity(), &a), Decision::Allow);
    }

    #[test]
    fn list_claims_match_by_membership() {
        let p = Policy::new(vec![rule(
            "r",
            &[("roles", "Deployer")],
            &[StatementKind::Delete],
        )]);
        let a = analyze("DELETE FROM t").expect("parses");
        assert!(matches!(p.decide(&identity(), &a), Decision::Deny(_)));
    }
}
