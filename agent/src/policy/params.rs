//! Which column each `$n` parameter of a statement is tied to, from its parse tree, so the
//! audit trail can leave out a parameter compared with, or written to, a masked column
//! ([`crate::proxy::params`]).
//!
//! An occurrence of `$n` is tied to column `c` when it appears as (a type cast of) the other
//! operand of an operator whose one operand is the column reference `c` (`c = $n`, `$n < c`,
//! `c LIKE $n`, `c = ANY($n)`, `c IN ($n, $m)`, `c BETWEEN $n AND $m`), as the value of `c` in
//! `INSERT (…, c, …) VALUES (…, $n, …)`, or as `SET c = $n` of an UPDATE or of
//! `ON CONFLICT DO UPDATE`. Columns are named by their last name part (`t.c` and `c` are both
//! `c`). A parameter is tied when every one of its occurrences is; any other use (`lower(c) =
//! $n`, `f($n)`, `INSERT … VALUES` without a column list, `SELECT $n`) leaves it untied.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// For each parameter number the statement uses, the columns it is tied to, or `None` when at
/// least one occurrence is not tied to a column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamTies(BTreeMap<u32, Option<BTreeSet<String>>>);

impl ParamTies {
    /// The columns `$n` is tied to; `None` when it is untied or not in the statement.
    pub fn columns(&self, n: u32) -> Option<&BTreeSet<String>> {
        self.0.get(&n).and_then(Option::as_ref)
    }

    /// The ties of the statements in `trees` (parse tree JSON, as [`super::access`] walks it).
    ///
    /// A statement that can give a column another name (a sub-select or `LATERAL` in `FROM`, a
    /// `WITH` query, an alias with a column list such as `customers AS c(i, n, e)`) leaves every
    /// parameter untied: a tie to `e` could then be a protected column under another name.
    pub fn of<'a>(trees: impl IntoIterator<Item = &'a Value>) -> Self {
        let mut count = Count::default();
        let mut renames = false;
        for tree in trees {
            count.visit(tree);
            renames |= renames_columns(tree);
        }
        Self(
            count
                .seen
                .into_iter()
                .map(|(n, (occurrences, tied, columns))| {
                    (n, (occurrences == tied && !renames).then_some(columns))
                })
                .collect(),
        )
    }
}

/// Whether `v` holds a node through which a column can reach the statement under another name:
/// `RangeSubselect` (sub-select or `LATERAL` in `FROM`), `CommonTableExpr` (`WITH`), or an
/// alias with column names (`Alias.colnames`).
fn renames_columns(v: &Value) -> bool {
    match v {
        Value::Object(map) => map.iter().any(|(key, value)| {
            matches!(key.as_str(), "RangeSubselect" | "CommonTableExpr")
                || (key == "colnames" && value.as_array().is_some_and(|a| !a.is_empty()))
                || renames_columns(value)
        }),
        Value::Array(items) => items.iter().any(renames_columns),
        _ => false,
    }
}

/// Occurrences and tied occurrences of each parameter, and the columns of the ties.
#[derive(Default)]
struct Count {
    seen: BTreeMap<u32, (u32, u32, BTreeSet<String>)>,
}

/// The tagged body of a node (`{"node": {"Tag": body}}` or `{"Tag": body}`).
pub(crate) fn tagged<'a>(v: &'a Value, tag: &str) -> Option<&'a Value> {
    v.get("node").unwrap_or(v).get(tag)
}

/// `$n` of a ParamRef node, also under a type cast (`$1::text`).
fn param_number(v: &Value) -> Option<u32> {
    if let Some(cast) = tagged(v, "TypeCast") {
        return param_number(cast.get("arg")?);
    }
    let n = tagged(v, "ParamRef")?.get("number")?.as_u64()?;
    u32::try_from(n).ok()
}

/// The last name part of a ColumnRef node.
fn column_name(v: &Value) -> Option<&str> {
    let fields = tagged(v, "ColumnRef")?.get("fields")?.as_array()?;
    let last = fields.last()?;
    last.get("node")
        .unwrap_or(last)
        .get("String")?
        .get("sval")?
        .as_str()
}

impl Count {
    fn tie(&mut self, n: u32, column: &str) {
        let entry = self.seen.entry(n).or_default();
        entry.1 += 1;
        entry.2.insert(column.to_owned());
    }

    /// Ties the parameters directly in `operand` (one, or a list of them) to `column`.
    fn tie_operand(&mut self, operand: &Value, column: &str) {
        if let Some(n) = param_number(operand) {
            self.tie(n, column);
        } else if let Some(items) = tagged(operand, "List")
            .and_then(|l| l.get("items"))
            .and_then(Value::as_array)
        {
            for n in items.iter().filter_map(param_number) {
                self.tie(n, column);
            }
        }
    }

    fn a_expr(&mut self, body: &Value) {
        let (Some(l), Some(r)) = (body.get("lexpr"), body.get("rexpr")) else {
            return;
        };
        if let Some(column) = column_name(l) {
            self.tie_operand(r, column);
        }
        if let Some(column) = column_name(r) {
            self.tie_operand(l, column);
        }
    }

    /// `SET c = $n` targets.
    fn targets(&mut self, list: Option<&Value>) {
        for target in list.and_then(Value::as_array).into_iter().flatten() {
            let Some(t) = tagged(target, "ResTarget") else {
                continue;
            };
            if let (Some(name), Some(n)) = (
                t.get("name").and_then(Value::as_str),
                t.get("val").and_then(param_number),
            ) {
                self.tie(n, name);
            }
        }
    }

    fn insert(&mut self, body: &Value) {
        let columns: Vec<Option<&str>> = body
            .get("cols")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| tagged(c, "ResTarget").and_then(|t| t.get("name")?.as_str()))
            .collect();
        let rows = body
            .get("select_stmt")
            .and_then(|s| tagged(s, "SelectStmt"))
            .and_then(|s| s.get("values_lists"))
            .and_then(Value::as_array);
        for row in rows.into_iter().flatten() {
            let items = tagged(row, "List")
                .and_then(|l| l.get("items"))
                .and_then(Value::as_array);
            for (i, item) in items.into_iter().flatten().enumerate() {
                if let (Some(n), Some(Some(column))) = (param_number(item), columns.get(i)) {
                    self.tie(n, column);
                }
            }
        }
        if let Some(clause) = body.get("on_conflict_clause") {
            self.targets(clause.get("target_list"));
        }
    }

    fn visit(&mut self, v: &Value) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| self.visit(i)),
            Value::Object(map) => {
                for (key, body) in map {
                    match key.as_str() {
                        "ParamRef" => {
                            if let Some(n) = body
                                .get("number")
                                .and_then(Value::as_u64)
                                .and_then(|n| u32::try_from(n).ok())
                            {
                                self.seen.entry(n).or_default().0 += 1;
                            }
                        }
                        "AExpr" => self.a_expr(body),
                        "InsertStmt" => self.insert(body),
                        "UpdateStmt" => self.targets(body.get("target_list")),
                        _ => {}
                    }
                    self.visit(body);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ties(sql: &str) -> ParamTies {
        let analysis = super::super::analysis::analyze(sql).expect("parses");
        analysis.params
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn columns_renamed_on_the_way_leave_parameters_untied() {
        // The review's bypasses: the masked `email` reached the predicate as `em` / `e`.
        for sql in [
            "SELECT c.name FROM customers AS c(i, name, em) WHERE em = $1",
            "WITH x AS (SELECT email AS e FROM customers) SELECT 1 FROM x WHERE e = $1",
            "SELECT 1 FROM (SELECT email AS e FROM customers) s WHERE s.e = $1",
            "SELECT 1 FROM customers c, LATERAL (SELECT c.email AS e) l WHERE l.e = $1",
        ] {
            assert_eq!(ties(sql).columns(1), None, "{sql}");
        }
        assert_eq!(
            ties("SELECT 1 FROM customers c WHERE c.name = $1").columns(1),
            Some(&set(&["name"]))
        );
    }

    #[test]
    fn where_insert_and_update_ties() {
        let t = ties(
            "SELECT * FROM customers c WHERE c.email = $1 AND $2::int < id AND name IN ($3, $4)",
        );
        assert_eq!(t.columns(1), Some(&set(&["email"])));
        assert_eq!(t.columns(2), Some(&set(&["id"])));
        assert_eq!(t.columns(3), Some(&set(&["name"])));
        assert_eq!(t.columns(4), Some(&set(&["name"])));
        let t = ties(
            "INSERT INTO customers (name, email) VALUES ($1, $2), ($3, $4) ON CONFLICT (name) DO UPDATE SET email = $5",
        );
        assert_eq!(t.columns(1), Some(&set(&["name"])));
        assert_eq!(t.columns(2), Some(&set(&["email"])));
        assert_eq!(t.columns(4), Some(&set(&["email"])));
        assert_eq!(t.columns(5), Some(&set(&["email"])));
        let t = ties("UPDATE customers SET email = $1, name = $2 WHERE id = $3");
        assert_eq!(t.columns(1), Some(&set(&["email"])));
        assert_eq!(t.columns(2), Some(&set(&["name"])));
        assert_eq!(t.columns(3), Some(&set(&["id"])));
    }

    #[test]
    fn other_uses_are_untied() {
        let t = ties("SELECT * FROM customers WHERE lower(email) = $1 OR id = $2 OR name = $2");
        assert_eq!(t.columns(1), None);
        assert_eq!(t.columns(2), Some(&set(&["id", "name"])));
        let t = ties("SELECT $1, id FROM customers WHERE id = $1");
        assert_eq!(t.columns(1), None, "one occurrence is untied");
        let t = ties("INSERT INTO customers VALUES ($1, $2)");
        assert_eq!(t.columns(1), None);
        assert_eq!(t.columns(9), None);
    }
}
