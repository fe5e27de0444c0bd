//! Where protected values flow in a statement, decided from its lineage
//! ([`crate::policy::lineage`]) against the session's protected columns ([`MaskCatalog`]):
//! which output columns carry a protected value (and so are masked), and which statements are
//! refused or held for approval because no safe mask exists for what they do with one.
//!
//! - An output that is a protected column unchanged (through any alias, sub-select, CTE or set
//!   operation) is masked with the column's strategy.
//! - An output computed from protected columns (`lower(email)`, `string_agg(email, ',')`,
//!   `to_jsonb(c)`, a whole row) follows each rule's `expressions` setting: `deny` (the default)
//!   refuses the statement; `mask` masks the output as a whole with the rule's strategy, or NULL
//!   when rules with different strategies meet in one value.
//! - Predicates over protected columns (`WHERE email LIKE 'a%'`, `ORDER BY email`) follow each
//!   rule's `predicates` setting: `allow` (the default, so lookups and joins on masked columns
//!   still work), `deny`, or `approval`.
//! - A protected value stored anywhere but a protected column (`INSERT INTO scratch SELECT
//!   email …`, `UPDATE … SET name = email`, `CREATE TABLE … AS`, `set_config`, advisory locks,
//!   large objects) would later be read unmasked: refused. So is anything but a column's own
//!   values, unchanged, stored in a protected column.
//! - `COPY … TO` data is masked by column position ([`super::copy`]); a COPY whose protected
//!   columns cannot be placed (a `*` followed by more columns) or whose ENCODING is not UTF8 is
//!   refused.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::{MaskCatalog, MaskStrategy};
use crate::policy::lineage::{Lineage, Output, Part, Source};

/// What a rule does with values computed from its column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExpression {
    /// Refuse the statement (42501), naming the column and the output.
    #[default]
    Deny,
    /// Mask the computed output as a whole with the rule's strategy.
    Mask,
}

/// What a rule does with statements whose predicates read its column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnPredicate {
    /// Run them: the rows returned are masked; which rows return is not.
    #[default]
    Allow,
    /// Refuse them.
    Deny,
    /// Run them once approved (as a Cedar `approve` would be asked for).
    Approval,
}

/// A protected column's rule, as resolved in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskRule {
    /// `schema.table.column`.
    pub column: String,
    /// How its values are replaced.
    pub strategy: MaskStrategy,
    /// Computed values.
    pub expressions: OnExpression,
    /// Predicates.
    pub predicates: OnPredicate,
    /// Set for a view column computed from protected columns ([`super::views`]): reading it
    /// is reading a computed value.
    pub computed: bool,
    /// The column's position (1-based) among its relation's columns, as `*` and `COPY table`
    /// list them, when known.
    pub position: Option<usize>,
}

/// Why a statement cannot run as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Refused: the message for the client (ErrorResponse 42501) and the audit trail.
    Deny(String),
    /// Runs once approved: why, and the protected columns concerned.
    Approval {
        /// Why, for the client, the approver and the audit trail.
        reason: String,
        /// `schema.table.column` of each column concerned.
        columns: Vec<String>,
        /// The masks of its result once approved.
        overlay: Overlay,
    },
}

/// Masks for output columns that the RowDescription cannot attribute to a protected column
/// (table OID 0: expressions, set operations; every column of a `FETCH` from a cursor whose
/// query computes values).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overlay {
    /// By output position, when positions are known.
    pub placed: Vec<Option<MaskStrategy>>,
    /// For every column without a table OID, when a `*` made positions unknown.
    pub unplaced: Option<MaskStrategy>,
}

impl Overlay {
    /// Whether it masks nothing.
    pub fn is_empty(&self) -> bool {
        self.unplaced.is_none() && self.placed.iter().all(Option::is_none)
    }

    /// The mask for output `index`, a field with table OID `table_oid`.
    pub fn get(&self, index: usize, table_oid: u32) -> Option<&MaskStrategy> {
        self.placed
            .get(index)
            .and_then(Option::as_ref)
            .or(self.unplaced.as_ref().filter(|_| table_oid == 0))
    }

    /// The same masks with positions forgotten (a result whose width is not the one expected).
    pub fn unplace(&self) -> Self {
        let all: Vec<&MaskStrategy> = self.placed.iter().flatten().chain(&self.unplaced).collect();
        Self {
            placed: Vec::new(),
            unplaced: one_of(all),
        }
    }
}

/// One strategy for a value made from several rules' columns: theirs when they agree, else NULL.
fn one_of<'a>(strategies: impl IntoIterator<Item = &'a MaskStrategy>) -> Option<MaskStrategy> {
    let mut found: Option<&MaskStrategy> = None;
    for s in strategies {
        match found {
            Some(f) if f != s => return Some(MaskStrategy::Null),
            _ => found = Some(s),
        }
    }
    found.cloned()
}

/// The rules `sources` name, in a stable order.
fn rules<'c>(catalog: &'c MaskCatalog, sources: &BTreeSet<Source>) -> Vec<&'c MaskRule> {
    let mut found: Vec<&MaskRule> = sources.iter().flat_map(|s| catalog.rules_of(s)).collect();
    found.sort_by(|a, b| a.column.cmp(&b.column));
    found.dedup_by(|a, b| a.column == b.column);
    found
}

fn names(rules: &[&MaskRule]) -> String {
    rules
        .iter()
        .map(|r| r.column.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The overlay for a statement's result when it runs (approved, if it needed approval); a
/// statement refused outright gets every column without a table OID nulled.
pub fn overlay(catalog: &MaskCatalog, lineage: &Lineage) -> Overlay {
    match check(catalog, lineage) {
        Ok(overlay) | Err(Refusal::Approval { overlay, .. }) => overlay,
        Err(Refusal::Deny(_)) => Overlay {
            placed: Vec::new(),
            unplaced: Some(MaskStrategy::Null),
        },
    }
}

/// Decides one statement: the overlay for its result, or why it cannot run.
///
/// # Errors
/// [`Refusal`] as the module documentation describes.
pub fn check(catalog: &MaskCatalog, lineage: &Lineage) -> Result<Overlay, Refusal> {
    if !catalog.has_rules() {
        return Ok(Overlay::default());
    }
    for write in &lineage.writes {
        let carried = rules(catalog, &write.sources);
        if carried.is_empty() {
            continue;
        }
        let into_rules = match &write.into {
            Some(into) if matches!(into.part, Part::Column(_)) => catalog.rules_of(into),
            _ => Vec::new(),
        };
        // Only a protected column's own values, unchanged, may be stored in it: anything else
        // would show through its mask (a substring of another column, four characters at a
        // time under a keep-last-4 rule).
        let own_copy = write.direct
            && carried.len() == 1
            && into_rules.iter().any(|r| r.column == carried[0].column);
        if own_copy {
            continue;
        }
        let message = match (&write.into, into_rules.first()) {
            (None, _) => format!(
                "jitgate: this statement keeps values of protected column {} where jitgate \
                 cannot mask them (a new relation, a setting, a lock, a large object, a sequence \
                 or a notification)",
                names(&carried)
            ),
            (Some(_), Some(into)) => format!(
                "jitgate: this statement stores a value made from protected column {} in \
                 protected column {}; only a column's own values, unchanged, may be stored in it",
                names(&carried),
                into.column
            ),
            (Some(into), None) => format!(
                "jitgate: this statement stores values of protected column {} in {}, where they \
                 would be read unmasked",
                names(&carried),
                into.relation
            ),
        };
        return Err(Refusal::Deny(message));
    }
    let mut approval = Vec::new();
    let read = rules(catalog, &lineage.predicates);
    for rule in &read {
        match rule.predicates {
            OnPredicate::Allow => {}
            OnPredicate::Deny => {
                return Err(Refusal::Deny(format!(
                    "jitgate: this statement filters, orders or groups by protected column {} \
                     (its rule sets predicates = \"deny\")",
                    rule.column
                )));
            }
            OnPredicate::Approval => approval.push(rule.column.clone()),
        }
    }
    let mut overlay = Overlay::default();
    let mut unplaced: Vec<MaskStrategy> = Vec::new();
    let mut positions_known = true;
    for (index, output) in lineage.outputs.iter().enumerate() {
        let origin = match output {
            Output::Star(relation) => {
                if lineage.copy.is_some() && catalog.protects_relation(relation) {
                    // COPY data has no RowDescription: the table's protected columns are
                    // placed by their positions, which only a last `*` keeps.
                    let positions = catalog.positions_of(relation);
                    match positions {
                        Some(positions)
                            if positions_known && index + 1 == lineage.outputs.len() =>
                        {
                            for (position, strategy) in positions {
                                let at = index + position;
                                if overlay.placed.len() <= at {
                                    overlay.placed.resize(at + 1, None);
                                }
                                overlay.placed[at] = Some(strategy);
                            }
                        }
                        _ => {
                            return Err(copy_refusal(&format!(
                                "{relation}, which has protected columns, with other columns \
                                 after it"
                            )));
                        }
                    }
                }
                positions_known = false;
                continue;
            }
            Output::Column(origin) => origin,
        };
        let carried = rules(catalog, &origin.sources);
        if carried.is_empty() {
            if positions_known {
                overlay.placed.push(None);
            }
            continue;
        }
        let plain = origin.direct
            && origin
                .sources
                .iter()
                .all(|s| matches!(s.part, Part::Column(_)))
            && carried.iter().all(|r| !r.computed);
        if !plain && let Some(rule) = carried.iter().find(|r| r.expressions == OnExpression::Deny) {
            return Err(Refusal::Deny(format!(
                "jitgate: output column {} is computed from protected column {}, and a computed \
                 value cannot be masked safely; select the column itself (it is masked), or set \
                 expressions = \"mask\" on its rule",
                index + 1,
                rule.column
            )));
        }
        let strategy = one_of(carried.iter().map(|r| &r.strategy)).unwrap_or(MaskStrategy::Null);
        if positions_known {
            overlay.placed.push(Some(strategy));
        } else {
            unplaced.push(strategy);
        }
    }
    overlay.unplaced = one_of(&unplaced);
    if lineage.copy.is_some()
        && !overlay.is_empty()
        && lineage
            .copy_encoding
            .as_deref()
            .is_some_and(|e| !matches!(e, "utf8" | "utf-8" | "unicode"))
    {
        // The masker reads the data as UTF-8 (where a byte below 0x80 is always that
        // character); another encoding's multi-byte characters can hide a delimiter.
        return Err(copy_refusal(
            "protected columns in an ENCODING other than UTF8, which jitgate cannot mask",
        ));
    }
    if !approval.is_empty() {
        return Err(Refusal::Approval {
            reason: format!(
                "filtering, ordering or grouping by protected column {} needs approval",
                approval.join(", ")
            ),
            columns: approval,
            overlay,
        });
    }
    Ok(overlay)
}

fn copy_refusal(what: &str) -> Refusal {
    Refusal::Deny(format!(
        "jitgate: COPY ... TO of {what} is not allowed: its protected values cannot be placed \
         and masked; name the columns, or use SELECT"
    ))
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
