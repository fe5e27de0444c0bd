//! Functions whose bodies read protected relations, found through the server's catalog when a
//! session starts (`pg_proc.prosrc` of every function outside `pg_catalog` and
//! `information_schema` not written in C): a body that names a protected table, a function
//! already found, or runs dynamic SQL (`EXECUTE`, `format(`) is taken to read those relations
//! (all of them for dynamic SQL). A call to such a function is a value computed from their
//! protected columns ([`crate::policy::lineage::Part::Call`]): refused or masked whole as each
//! rule's `expressions` says. Names are matched as text, so a mention in a comment counts
//! (fails closed). Bodies are re-read for [`ROUNDS`] rounds so calls through other functions
//! count.

use super::MaskCatalog;

/// Rounds of functions calling found functions.
pub const ROUNDS: usize = 4;

/// The catalog query: `schema, name, body` of every function that is not built in or C.
pub const QUERY: &str = "SELECT n.nspname::text, p.proname::text, p.prosrc \
     FROM pg_catalog.pg_proc p \
     JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
     JOIN pg_catalog.pg_language l ON l.oid = p.prolang \
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND l.lanname NOT IN ('c', 'internal')";

/// Notes in `catalog` the functions of `rows` (from [`QUERY`]) that read protected relations.
pub fn add(catalog: &mut MaskCatalog, rows: &[Vec<Option<String>>]) {
    let protected = catalog.protected_relations();
    if protected.is_empty() {
        return;
    }
    let bodies: Vec<(&str, &str, String)> = rows
        .iter()
        .filter_map(|row| match &row[..] {
            [Some(schema), Some(name), Some(body)] => {
                Some((schema.as_str(), name.as_str(), body.to_lowercase()))
            }
            _ => None,
        })
        .collect();
    let mut found: std::collections::HashSet<(String, String)> = Default::default();
    for _ in 0..ROUNDS {
        let known = catalog.function_names();
        let mut added = false;
        for (schema, name, body) in &bodies {
            if found.contains(&((*schema).to_owned(), (*name).to_owned())) {
                continue;
            }
            let dynamic = body.contains("execute") || body.contains("format(");
            let calls_found = known.iter().any(|f| body.contains(f.as_str()));
            let relations: Vec<(String, String)> = if dynamic || calls_found {
                protected.clone()
            } else {
                protected
                    .iter()
                    .filter(|(_, relname)| body.contains(relname.as_str()))
                    .cloned()
                    .collect()
            };
            if relations.is_empty() {
                continue;
            }
            catalog.add_function(schema, name, relations);
            found.insert(((*schema).to_owned(), (*name).to_owned()));
            added = true;
        }
        if !added {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MaskConfig;
    use crate::masking::MaskStrategy;
    use crate::policy::access::QualifiedName;
    use crate::policy::lineage::{Part, Source};

    fn call(name: &str) -> Source {
        Source {
            relation: QualifiedName {
                schema: None,
                name: name.to_owned(),
            },
            part: Part::Call,
        }
    }

    #[test]
    fn functions_reading_protected_tables_directly_through_calls_or_dynamic_sql_are_found() {
        let masks = [MaskConfig {
            column: "public.customers.email".into(),
            strategy: MaskStrategy::Null,
            expressions: Default::default(),
            predicates: Default::default(),
        }];
        let mut catalog = crate::masking::catalog::customers_catalog(&masks);
        let rows: Vec<Vec<Option<String>>> = [
            ("public", "leak", "SELECT email FROM Customers LIMIT 1"),
            ("public", "safe", "SELECT 1"),
            ("app", "wrap", "SELECT public.leak()"),
            ("public", "dyn", "BEGIN EXECUTE 'SELECT 1'; END"),
        ]
        .iter()
        .map(|(s, n, b)| vec![Some((*s).into()), Some((*n).into()), Some((*b).into())])
        .collect();
        add(&mut catalog, &rows);
        for name in ["leak", "wrap", "dyn"] {
            assert_eq!(catalog.rules_of(&call(name)).len(), 1, "{name}");
        }
        assert!(catalog.rules_of(&call("safe")).is_empty());
        let other_schema = Source {
            relation: QualifiedName {
                schema: Some("other".into()),
                name: "leak".into(),
            },
            part: Part::Call,
        };
        assert!(catalog.rules_of(&other_schema).is_empty());
    }
}
