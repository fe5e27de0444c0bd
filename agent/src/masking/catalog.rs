//! Resolution of configured `schema.table.column` names to (table OID, attribute number) through
//! the server's catalog (`pg_class`, `pg_namespace`, `pg_attribute`), on the session's own
//! upstream connection, so the pairs match what RowDescription reports.

use std::collections::{HashMap, HashSet};

use super::MaskStrategy;
use super::flow::MaskRule;
use crate::config::MaskConfig;
use crate::policy::access::QualifiedName;
use crate::policy::lineage::{Part, Source};

/// A relation as `(schema, relname)`.
pub type RelationName = (String, String);

/// A column as `(schema, table, column)`.
pub type ColumnName = (String, String, String);

/// Protected columns of one database: `(table OID, attnum)` → strategy.
#[derive(Debug, Clone, Default)]
pub struct MaskCatalog {
    columns: HashMap<(u32, i16), MaskStrategy>,
    /// Row types (`pg_class.reltype`) of tables with protected columns: a whole-row value of
    /// such a table (`SELECT c FROM customers c`) carries the protected values inside it.
    rowtypes: HashSet<u32>,
    /// Protected column names by table name (`relname`, any schema), for the parameter rule of
    /// the audit trail ([`MaskCatalog::protected_columns_of`]).
    names: HashMap<String, HashSet<String>>,
    /// The target's content detectors, for textual columns no rule names.
    detectors: Option<std::sync::Arc<super::detect::Detectors>>,
    /// Rules by relation (`schema`, `relname`) and column name, for statement lineage
    /// ([`super::flow`]).
    rules: HashMap<(String, String), HashMap<String, MaskRule>>,
    /// Columns a policy unmasked for this session, by (table OID, attnum): content detectors
    /// leave them alone too.
    unmasked: HashSet<(u32, i16)>,
    /// Where each configured column was resolved: `(schema, table, column)` → (table OID,
    /// attnum, row type).
    resolved: HashMap<ColumnName, (u32, i16, Option<u32>)>,
    /// Functions whose bodies read protected relations: name → (schema, relations read).
    functions: HashMap<String, Vec<(String, Vec<RelationName>)>>,
}

impl MaskCatalog {
    /// Whether nothing is protected: no column rule and no detectors.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty() && self.detectors.is_none()
    }

    /// The content detectors for columns no rule names, if the target enables any.
    pub fn detectors(&self) -> Option<&std::sync::Arc<super::detect::Detectors>> {
        self.detectors.as_ref()
    }

    /// Turns content detection on for columns no rule names.
    pub fn set_detectors(&mut self, detectors: std::sync::Arc<super::detect::Detectors>) {
        self.detectors = Some(detectors);
    }

    /// The strategy for a RowDescription field's table OID and column number, if protected.
    pub fn get(&self, table_oid: u32, column: i16) -> Option<&MaskStrategy> {
        if table_oid == 0 {
            return None;
        }
        self.columns.get(&(table_oid, column))
    }

    /// Whether a policy unmasked this column for the session.
    pub fn is_unmasked(&self, table_oid: u32, column: i16) -> bool {
        self.unmasked.contains(&(table_oid, column))
    }

    /// Whether `type_oid` is the row type of a table with protected columns.
    pub fn is_protected_rowtype(&self, type_oid: u32) -> bool {
        self.rowtypes.contains(&type_oid)
    }

    /// The names of the protected columns of the relations in `tables` (as a statement names
    /// them: `schema.table` or `table`). A relation is matched by its name alone, whatever its
    /// schema, so a name that may mean a protected table counts as one (fails closed).
    pub fn protected_columns_of<'a>(
        &self,
        tables: impl IntoIterator<Item = &'a str>,
    ) -> HashSet<&str> {
        let mut columns = HashSet::new();
        if self.names.is_empty() {
            return columns;
        }
        for table in tables {
            let name = table.rsplit('.').next().unwrap_or(table);
            if let Some(found) = self.names.get(name) {
                columns.extend(found.iter().map(String::as_str));
            }
        }
        columns
    }

    /// Whether any column rule is resolved (statement lineage matters).
    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty()
    }

    /// The rules of the relations `name` may mean: the named schema's, or, for an unqualified
    /// name, the relation of that name in every schema (whichever `search_path` finds, so a
    /// name that may be a protected relation counts as one: fails closed).
    fn relations(&self, name: &QualifiedName) -> Vec<&HashMap<String, MaskRule>> {
        self.rules
            .iter()
            .filter(|((schema, relname), _)| {
                *relname == name.name && name.schema.as_ref().is_none_or(|s| s == schema)
            })
            .map(|(_, columns)| columns)
            .collect()
    }

    /// The relations with rules, as `(schema, relname)`.
    pub fn protected_relations(&self) -> Vec<RelationName> {
        self.rules.keys().cloned().collect()
    }

    /// Notes that function `schema.name` reads `relations` ([`super::functions`]).
    pub fn add_function(&mut self, schema: &str, name: &str, relations: Vec<RelationName>) {
        self.functions
            .entry(name.to_owned())
            .or_default()
            .push((schema.to_owned(), relations));
    }

    /// Whether any function of the database is noted as reading protected relations.
    pub fn has_reading_functions(&self) -> bool {
        !self.functions.is_empty()
    }

    /// The names of functions noted as reading protected relations.
    pub fn function_names(&self) -> Vec<String> {
        self.functions.keys().cloned().collect()
    }

    /// The rules a lineage source names (a column, some column, a whole row, or what a
    /// function reads).
    pub fn rules_of(&self, source: &Source) -> Vec<&MaskRule> {
        let mut found = Vec::new();
        if source.part == Part::Call {
            let name = &source.relation;
            for (schema, relations) in self.functions.get(&name.name).into_iter().flatten() {
                if name.schema.as_ref().is_some_and(|s| s != schema) {
                    continue;
                }
                for relation in relations {
                    found.extend(
                        self.rules
                            .get(relation)
                            .into_iter()
                            .flat_map(|c| c.values()),
                    );
                }
            }
            return found;
        }
        for columns in self.relations(&source.relation) {
            match &source.part {
                Part::Column(c) => found.extend(columns.get(c)),
                Part::AnyColumn | Part::WholeRow => found.extend(columns.values()),
                Part::Call => {}
            }
        }
        found
    }

    /// The protected columns of the relations `name` may mean, as (0-based position, strategy),
    /// or `None` when a position is not known.
    pub fn positions_of(&self, name: &QualifiedName) -> Option<Vec<(usize, MaskStrategy)>> {
        let mut found = Vec::new();
        for columns in self.relations(name) {
            for rule in columns.values() {
                found.push((rule.position?.checked_sub(1)?, rule.strategy.clone()));
            }
        }
        Some(found)
    }

    /// Whether `name` may be a relation with protected columns.
    pub fn protects_relation(&self, name: &QualifiedName) -> bool {
        !self.relations(name).is_empty()
    }

    /// Adds a rule for statement lineage.
    pub fn insert_rule(&mut self, schema: &str, relation: &str, column: &str, rule: MaskRule) {
        self.rules
            .entry((schema.to_owned(), relation.to_owned()))
            .or_default()
            .insert(column.to_owned(), rule);
    }

    /// The configured columns resolved in this database, as `(schema, table, column)`.
    pub fn configured_columns(&self) -> Vec<ColumnName> {
        let mut columns: Vec<_> = self.resolved.keys().cloned().collect();
        columns.sort();
        columns
    }

    /// Stops masking a configured column (a policy permits `unmask` on it for this session).
    pub fn unmask(&mut self, schema: &str, table: &str, column: &str) {
        let key = (schema.to_owned(), table.to_owned(), column.to_owned());
        let Some((oid, attnum, reltype)) = self.resolved.remove(&key) else {
            return;
        };
        self.columns.remove(&(oid, attnum));
        self.unmasked.insert((oid, attnum));
        let relation = (key.0, key.1);
        if let Some(rules) = self.rules.get_mut(&relation) {
            rules.remove(column);
            if rules.is_empty() {
                self.rules.remove(&relation);
                if let Some(reltype) = reltype {
                    self.rowtypes.remove(&reltype);
                }
            }
        }
        if let Some(names) = self.names.get_mut(table) {
            names.remove(column);
            if names.is_empty() {
                self.names.remove(table);
            }
        }
    }

    /// The rule of column `column` of the table with OID `oid`, if it has one.
    pub fn rule_of_oid(&self, oid: u32, column: &str) -> Option<MaskRule> {
        let ((schema, table, _), _) = self
            .resolved
            .iter()
            .find(|((_, _, c), (o, _, _))| *o == oid && c == column)?;
        self.rules
            .get(&(schema.clone(), table.clone()))?
            .get(column)
            .cloned()
    }

    /// Adds a protected column found through the catalog (a child table's): `name` is
    /// `(schema, table, column)`, `at` its (table OID, attnum, row type).
    pub fn add_column(&mut self, name: ColumnName, at: (u32, i16, Option<u32>), rule: MaskRule) {
        let (schema, table, column) = &name;
        self.columns.insert((at.0, at.1), rule.strategy.clone());
        if let Some(reltype) = at.2 {
            self.rowtypes.insert(reltype);
        }
        self.names
            .entry(table.clone())
            .or_default()
            .insert(column.clone());
        self.insert_rule(schema, table, column, rule);
        self.resolved.insert(name, at);
    }

    /// Table OIDs with protected columns.
    pub fn protected_oids(&self) -> std::collections::BTreeSet<u32> {
        self.columns.keys().map(|(oid, _)| *oid).collect()
    }

    /// Adds a resolved column.
    pub fn insert(&mut self, table_oid: u32, column: i16, strategy: MaskStrategy) {
        self.columns.insert((table_oid, column), strategy);
    }

    /// Builds the catalog from rows of [`resolve_query`]: `schema, table, column, oid, attnum,
    /// reltype`.
    pub fn from_rows(masks: &[MaskConfig], rows: &[Vec<Option<String>>]) -> Self {
        let mut catalog = Self::default();
        for row in rows {
            let Some(
                [
                    Some(schema),
                    Some(table),
                    Some(column),
                    Some(oid),
                    Some(attnum),
                    Some(reltype),
                ],
            ) = row.get(..6)
            else {
                continue;
            };
            let name = format!("{schema}.{table}.{column}");
            let (Ok(oid), Ok(attnum)) = (oid.parse::<u32>(), attnum.parse::<i16>()) else {
                continue;
            };
            if let Some(mask) = masks.iter().find(|m| m.column == name) {
                let rule = MaskRule {
                    column: name.clone(),
                    strategy: mask.strategy.clone(),
                    expressions: mask.expressions,
                    predicates: mask.predicates,
                    computed: false,
                    position: row.get(6).and_then(|p| p.as_deref()?.parse().ok()),
                };
                catalog.add_column(
                    (schema.clone(), table.clone(), column.clone()),
                    (oid, attnum, reltype.parse().ok()),
                    rule,
                );
            }
        }
        catalog
    }
}

/// For tests: the catalog of `masks` over the test table `public.customers (id, name, email,
/// card_number)`, table OID 16390, row type 16392, positions = column numbers.
#[cfg(test)]
pub fn customers_catalog(masks: &[MaskConfig]) -> MaskCatalog {
    let columns = ["id", "name", "email", "card_number"];
    let rows: Vec<Vec<Option<String>>> = masks
        .iter()
        .filter_map(|m| {
            let column = m.column.strip_prefix("public.customers.")?;
            let attnum = columns.iter().position(|c| *c == column)? + 1;
            let attnum = attnum.to_string();
            Some(
                [
                    "public",
                    "customers",
                    column,
                    "16390",
                    &attnum,
                    "16392",
                    &attnum,
                ]
                .map(|v| Some(v.to_owned()))
                .to_vec(),
            )
        })
        .collect();
    MaskCatalog::from_rows(masks, &rows)
}

/// Quotes a string as an SQL literal (standard_conforming_strings on: double the quotes).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The catalog query for `masks`, or `None` when there is nothing to resolve. Returns columns
/// `nspname, relname, attname, oid, attnum, reltype, position` as text (position: among the
/// table's columns, dropped ones not counted).
pub fn resolve_query(masks: &[MaskConfig]) -> Option<String> {
    let tuples: Vec<String> = masks
        .iter()
        .filter_map(|m| {
            let mut parts = m.column.splitn(3, '.');
            let (s, t, c) = (parts.next()?, parts.next()?, parts.next()?);
            Some(format!("({}, {}, {})", literal(s), literal(t), literal(c)))
        })
        .collect();
    if tuples.is_empty() {
        return None;
    }
    Some(format!(
        "SELECT n.nspname::text, c.relname::text, a.attname::text, c.oid::text, a.attnum::text, \
         c.reltype::text, \
         (SELECT count(*) FROM pg_catalog.pg_attribute b WHERE b.attrelid = c.oid \
         AND b.attnum > 0 AND NOT b.attisdropped AND b.attnum <= a.attnum)::text \
         FROM pg_catalog.pg_attribute a \
         JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE NOT a.attisdropped AND a.attnum > 0 \
         AND (n.nspname::text, c.relname::text, a.attname::text) IN ({})",
        tuples.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(column: &str) -> MaskConfig {
        MaskConfig {
            column: column.into(),
            strategy: MaskStrategy::Null,
            expressions: Default::default(),
            predicates: Default::default(),
        }
    }

    #[test]
    fn query_quotes_names() {
        let q = resolve_query(&[mask("public.o'brien.email")]).expect("query");
        assert!(q.contains("('public', 'o''brien', 'email')"), "{q}");
        assert!(resolve_query(&[]).is_none());
    }

    #[test]
    fn rows_map_to_oids() {
        let masks = [mask("public.customers.email")];
        let rows = vec![vec![
            Some("public".into()),
            Some("customers".into()),
            Some("email".into()),
            Some("16390".into()),
            Some("3".into()),
            Some("16392".into()),
        ]];
        let c = MaskCatalog::from_rows(&masks, &rows);
        assert_eq!(c.get(16390, 3), Some(&MaskStrategy::Null));
        assert_eq!(c.get(16390, 2), None);
        assert_eq!(c.get(0, 3), None);
        assert!(c.is_protected_rowtype(16392));
        let names = |tables: &[&'static str]| {
            let mut v: Vec<String> = c
                .protected_columns_of(tables.iter().copied())
                .into_iter()
                .map(str::to_owned)
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&["public.customers"]), vec!["email"]);
        assert_eq!(names(&["other.customers", "orders"]), vec!["email"]);
        assert!(names(&["orders"]).is_empty());
        let mut c = c;
        assert_eq!(c.configured_columns().len(), 1);
        c.unmask("public", "customers", "email");
        assert_eq!(c.get(16390, 3), None, "unmasked for this session");
        assert!(!c.has_rules() && !c.is_protected_rowtype(16392));
        assert!(c.protected_columns_of(["public.customers"]).is_empty());
    }
}
