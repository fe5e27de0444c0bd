//! Views and materialized views over protected columns, resolved through the server's catalog
//! when a session starts: the views whose rewrite rules depend on a protected table
//! (`pg_depend` → `pg_rewrite`), each one's definition (`pg_get_viewdef`) read with the same
//! lineage as statements ([`crate::policy::lineage`]). A view column that is a protected column
//! unchanged is protected with that column's strategy; one computed from protected columns is
//! protected as computed (its rule's `expressions` setting applies to reading it). RowDescription
//! names a view's columns by the view's OID, so these are added by (view OID, attnum) too.
//! Views over such views are found in the next round, up to [`ROUNDS`].

use super::MaskCatalog;
use super::flow::{MaskRule, OnExpression};
use crate::policy::lineage::{self, Output, Part};

/// Rounds of views over views resolved.
pub const ROUNDS: usize = 4;

/// The query for views depending on the tables `oids`, or `None` when there are none. Returns
/// `view oid, schema, view name, attnum, attname, definition` as text, one row per column.
pub fn dependents_query(oids: &std::collections::BTreeSet<u32>) -> Option<String> {
    if oids.is_empty() {
        return None;
    }
    let list: Vec<String> = oids.iter().map(u32::to_string).collect();
    Some(format!(
        "SELECT DISTINCT v.oid::text, n.nspname::text, v.relname::text, a.attnum::text, \
         a.attname::text, pg_catalog.pg_get_viewdef(v.oid) \
         FROM pg_catalog.pg_depend d \
         JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid \
         JOIN pg_catalog.pg_class v ON v.oid = r.ev_class \
         JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = v.oid AND a.attnum > 0 \
         AND NOT a.attisdropped \
         WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
         AND d.refobjid IN ({}) AND v.oid <> d.refobjid AND v.relkind IN ('v', 'm') \
         ORDER BY 1, 4",
        list.join(", ")
    ))
}

/// Adds the protected columns of the views in `rows` (from [`dependents_query`]) to `catalog`.
/// Returns the OIDs of views that gained one (for the next round).
pub fn add(
    catalog: &mut MaskCatalog,
    rows: &[Vec<Option<String>>],
) -> std::collections::BTreeSet<u32> {
    let mut added = std::collections::BTreeSet::new();
    let mut parsed: Option<(String, Vec<Output>)> = None;
    for row in rows {
        let [
            Some(oid),
            Some(schema),
            Some(view),
            Some(attnum),
            Some(attname),
            Some(definition),
        ] = &row[..]
        else {
            continue;
        };
        let (Ok(oid_n), Ok(attnum_n)) = (oid.parse::<u32>(), attnum.parse::<i16>()) else {
            continue;
        };
        if parsed.as_ref().is_none_or(|(o, _)| o != oid) {
            parsed = Some((oid.clone(), outputs_of(definition)));
        }
        let Some((_, outputs)) = &parsed else {
            continue;
        };
        let index = usize::try_from(attnum_n - 1).unwrap_or(usize::MAX);
        let rules: Vec<MaskRule> = match outputs.get(index) {
            Some(Output::Column(origin)) => origin
                .sources
                .iter()
                .flat_map(|s| catalog.rules_of(s))
                .cloned()
                .map(|r| {
                    let plain = origin.direct
                        && origin
                            .sources
                            .iter()
                            .all(|s| matches!(s.part, Part::Column(_)));
                    MaskRule {
                        computed: r.computed || !plain,
                        ..r
                    }
                })
                .collect(),
            // A `*` inside a view is expanded when it is created; a definition the agent cannot
            // place (or parse) protects every column as computed.
            _ => vec![MaskRule {
                column: format!("{schema}.{view}.{attname}"),
                strategy: super::MaskStrategy::Null,
                expressions: OnExpression::Deny,
                predicates: super::flow::OnPredicate::Allow,
                computed: true,
                position: None,
            }],
        };
        let Some(first) = rules.first() else { continue };
        let computed = rules.len() > 1 || first.computed;
        let strategy = if rules.len() == 1 && !first.computed {
            first.strategy.clone()
        } else {
            super::MaskStrategy::Null
        };
        let rule = MaskRule {
            column: format!("{schema}.{view}.{attname} (from {})", first.column),
            strategy: strategy.clone(),
            expressions: if rules.iter().any(|r| r.expressions == OnExpression::Deny) {
                OnExpression::Deny
            } else {
                OnExpression::Mask
            },
            predicates: first.predicates,
            computed,
            position: usize::try_from(attnum_n).ok(),
        };
        catalog.insert(oid_n, attnum_n, strategy);
        catalog.insert_rule(schema, view, attname, rule);
        added.insert(oid_n);
    }
    added
}

fn outputs_of(definition: &str) -> Vec<Output> {
    let Ok(parsed) = pg_query::parse(definition) else {
        return Vec::new();
    };
    let Some(stmt) = parsed.protobuf.stmts.first().and_then(|s| s.stmt.as_ref()) else {
        return Vec::new();
    };
    match serde_json::to_value(stmt) {
        Ok(tree) => lineage::of_statement(&tree).outputs,
        Err(_) => Vec::new(),
    }
}
