//! What each statement touches, for authorization: every relation read or written (with the
//! statement class that touches it), every function called, the dangerous features used
//! ([`super::catalogue`]), `search_path` changes and SQL-level PREPARE / EXECUTE names.
//!
//! The walk covers the whole parse tree: pg_query's protobuf tree is serialised to JSON
//! (its types derive `Serialize`) and every object is visited, so no node type can hide a
//! relation or a function call (pg_query's own `nodes()` iterator descends into a fixed
//! subset of node types and skips, for example, sub-selects in `LIMIT`). Relations are
//! recognised by their shape (`RangeVar`: `relname` + `relpersistence`), wherever they sit.
//!
//! CTE names are not filtered out: `WITH customers AS (SELECT * FROM customers) …` names the
//! real table inside its own definition, and telling the two apart needs scoping rules the
//! agent would have to get exactly right. A CTE name is therefore authorized as if it were a
//! table of that name, which can only deny more, never less.

use std::collections::BTreeSet;

use serde_json::Value;

use super::StatementKind;
use super::catalogue;

/// A relation or function name as written: schema-qualified or not.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QualifiedName {
    /// The schema, when the SQL names one (or the server did, for fast-path calls).
    pub schema: Option<String>,
    /// The object's own name.
    pub name: String,
}

impl std::fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// What one authorization request is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Object {
    /// The database itself: statements that name no relation (`SELECT 1`, `BEGIN`, `SET`).
    Database,
    /// A table, view, sequence or other relation.
    Relation(QualifiedName),
    /// A function.
    Function(QualifiedName),
}

/// One (statement class, object) pair a query string needs permission for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Touch {
    /// The Cedar action: the class of the statement that touches `object`.
    pub class: StatementKind,
    /// The Cedar resource.
    pub object: Object,
}

/// Everything [`walk_statement`] found in one statement.
#[derive(Debug, Default)]
pub struct Found {
    /// Relations touched, with the class touching each.
    pub relations: BTreeSet<(StatementKind, QualifiedName)>,
    /// Functions called.
    pub functions: BTreeSet<QualifiedName>,
    /// Dangerous features ([`super::catalogue`]).
    pub dangerous: BTreeSet<&'static str>,
    /// Schemas a `SET search_path` or `set_config('search_path', …)` names.
    pub search_path: Vec<String>,
    /// Names run with SQL-level `EXECUTE`.
    pub executes: BTreeSet<String>,
    /// Data-modifying statements and `SELECT … INTO` found anywhere in the tree.
    pub nested_kinds: BTreeSet<StatementKind>,
    /// A setting change the agent must refuse ([`super::integrity`]).
    pub integrity: Option<String>,
    /// A `search_path` change the agent cannot read (not a constant).
    pub opaque_search_path: bool,
}

/// Walks one top-level statement (its JSON form).
pub fn walk_statement(stmt: &Value) -> Found {
    let mut found = Found::default();
    visit(stmt, None, &mut found);
    found
}

/// Text of a `String` node (`{"String": {"sval": …}}`, or inside `{"node": …}`).
pub(crate) fn string_node(v: &Value) -> Option<&str> {
    let v = v.get("node").unwrap_or(v);
    v.get("String")?.get("sval")?.as_str()
}

/// A dotted name from a list of `String` nodes (`funcname`, DROP object lists).
fn dotted(items: &[Value]) -> Option<QualifiedName> {
    let parts: Vec<&str> = items.iter().filter_map(string_node).collect();
    match parts.as_slice() {
        [] => None,
        [name] => Some(QualifiedName {
            schema: None,
            name: (*name).to_owned(),
        }),
        [.., schema, name] => Some(QualifiedName {
            schema: Some((*schema).to_owned()),
            name: (*name).to_owned(),
        }),
    }
}

/// A constant string argument (`'x'`, `'x'::text`), as the server will read it.
pub fn constant_text(v: &Value) -> Option<&str> {
    let v = v.get("node").unwrap_or(v);
    if let Some(c) = v.get("AConst") {
        return c.get("val")?.get("Sval")?.get("sval")?.as_str();
    }
    if let Some(cast) = v.get("TypeCast") {
        return constant_text(cast.get("arg")?);
    }
    None
}

fn range_var_name(v: &Value) -> Option<QualifiedName> {
    let relname = v.get("relname")?.as_str()?;
    v.get("relpersistence")?;
    let schema = v
        .get("schemaname")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    Some(QualifiedName {
        schema: schema.map(str::to_owned),
        name: relname.to_owned(),
    })
}

/// The statement field holding the relation a statement writes or changes, and the class.
fn target_fields(tag: &str, body: &Value) -> &'static [(&'static str, StatementKind)] {
    use StatementKind as K;
    match tag {
        "InsertStmt" => &[("relation", K::Insert)],
        "UpdateStmt" => &[("relation", K::Update)],
        "DeleteStmt" => &[("relation", K::Delete)],
        "MergeStmt" => &[("relation", K::Merge)],
        "CopyStmt" if body.get("is_from").and_then(Value::as_bool) == Some(true) => {
            &[("relation", K::CopyFrom)]
        }
        "CopyStmt" => &[("relation", K::CopyTo)],
        "TruncateStmt" => &[("relations", K::Truncate)],
        "LockStmt" => &[("relations", K::Utility)],
        "VacuumRelation" => &[("relation", K::Utility)],
        "GrantStmt" => &[("objects", K::Dcl)],
        "CreateStmt"
        | "IndexStmt"
        | "AlterTableStmt"
        | "RuleStmt"
        | "CreateTrigStmt"
        | "RenameStmt"
        | "AlterObjectSchemaStmt"
        | "RefreshMatViewStmt"
        | "ClusterStmt"
        | "ReindexStmt"
        | "CreateStatsStmt" => &[("relation", K::Ddl)],
        "ViewStmt" => &[("view", K::Ddl)],
        "CreatePolicyStmt" | "AlterPolicyStmt" => &[("table", K::Ddl)],
        _ => &[],
    }
}

/// Relation kinds a DROP names as dotted string lists (`DropStmt.remove_type`, pg_query's
/// `ObjectType`): foreign table, index, materialized view, sequence, table, view.
const DROPPED_RELATIONS: [i64; 6] = [19, 21, 24, 38, 42, 52];

fn visit(v: &Value, target: Option<StatementKind>, found: &mut Found) {
    match v {
        Value::Array(items) => {
            for item in items {
                visit(item, target, found);
            }
        }
        Value::Object(map) => {
            if let Some(name) = range_var_name(v) {
                found
                    .relations
                    .insert((target.unwrap_or(StatementKind::Select), name));
                // Its alias and column lists hold no relations.
                return;
            }
            if map.len() == 1
                && let Some((key, inner)) = map.iter().next()
            {
                // `{"node": …}` wraps every node in a list or an optional field.
                if key == "node" {
                    visit(inner, target, found);
                    return;
                }
                // A tagged node (`{"SelectStmt": {…}}`): node names are PascalCase, fields
                // snake_case.
                if let Value::Object(fields) = inner
                    && key.starts_with(|c: char| c.is_ascii_uppercase())
                {
                    if key == "RangeVar" {
                        visit(inner, target, found);
                        return;
                    }
                    tagged(key, inner, found);
                    let targets = target_fields(key, inner);
                    for (field, value) in fields {
                        let as_target = targets.iter().find(|(f, _)| f == field).map(|(_, k)| *k);
                        visit_field(field, value, as_target, found);
                    }
                    return;
                }
            }
            if map.contains_key("funcname") && map.contains_key("funcformat") {
                // A FuncCall held directly (CallStmt.funccall), not as a tagged node.
                func_call(v, found);
            }
            for (field, value) in map {
                visit_field(field, value, None, found);
            }
        }
        _ => {}
    }
}

/// Visits one field. `into_clause` (SELECT … INTO) and `into` (CREATE TABLE AS) hold an
/// untagged IntoClause whose `rel` is the table the statement creates.
fn visit_field(field: &str, value: &Value, target: Option<StatementKind>, found: &mut Found) {
    if (field == "into_clause" || field == "into")
        && let Value::Object(clause) = value
    {
        found.nested_kinds.insert(StatementKind::Ddl);
        for (key, inner) in clause {
            let as_target = (key == "rel").then_some(StatementKind::Ddl);
            visit(inner, as_target, found);
        }
        return;
    }
    visit(value, target, found);
}

/// Facts a tagged node carries beyond the relations inside it.
fn tagged(tag: &str, body: &Value, found: &mut Found) {
    use StatementKind as K;
    match tag {
        "InsertStmt" => {
            found.nested_kinds.insert(K::Insert);
        }
        "UpdateStmt" => {
            found.nested_kinds.insert(K::Update);
        }
        "DeleteStmt" => {
            found.nested_kinds.insert(K::Delete);
        }
        "MergeStmt" => {
            found.nested_kinds.insert(K::Merge);
        }
        "FuncCall" => func_call(body, found),
        "DropStmt" => {
            let kind = body.get("remove_type").and_then(Value::as_i64);
            if kind.is_some_and(|k| DROPPED_RELATIONS.contains(&k))
                && let Some(objects) = body.get("objects").and_then(Value::as_array)
            {
                for object in objects {
                    let object = object.get("node").unwrap_or(object);
                    if let Some(items) = object
                        .get("List")
                        .and_then(|l| l.get("items"))
                        .and_then(Value::as_array)
                        && let Some(name) = dotted(items)
                    {
                        found.relations.insert((K::Ddl, name));
                    }
                }
            }
        }
        "CopyStmt" => {
            if body.get("is_program").and_then(Value::as_bool) == Some(true) {
                found.dangerous.insert(catalogue::COPY_PROGRAM);
            } else if body
                .get("filename")
                .and_then(Value::as_str)
                .is_some_and(|f| !f.is_empty())
            {
                found.dangerous.insert(catalogue::SERVER_FILE);
            }
        }
        "VariableSetStmt" => variable_set(body, found),
        "ExecuteStmt" => {
            found.dangerous.insert(catalogue::PREPARED_SQL);
            if let Some(name) = body.get("name").and_then(Value::as_str) {
                found.executes.insert(name.to_owned());
            }
        }
        other => {
            if let Some(feature) = catalogue::statement_feature(other) {
                found.dangerous.insert(feature);
            }
        }
    }
}

fn variable_set(body: &Value, found: &mut Found) {
    let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.eq_ignore_ascii_case("role") || name.eq_ignore_ascii_case("session_authorization") {
        found.dangerous.insert(catalogue::SET_ROLE);
    }
    if name.eq_ignore_ascii_case("search_path")
        && let Some(args) = body.get("args").and_then(Value::as_array)
    {
        for arg in args {
            match constant_text(arg) {
                Some(schema) => found.search_path.push(schema.to_owned()),
                None => found.opaque_search_path = true,
            }
        }
    }
}

fn func_call(call: &Value, found: &mut Found) {
    let Some(name) = call
        .get("funcname")
        .and_then(Value::as_array)
        .and_then(|items| dotted(items))
    else {
        return;
    };
    if let Some(category) = catalogue::function_category(&name) {
        found.dangerous.insert(category);
    }
    if name.name.eq_ignore_ascii_case("set_config") {
        let args = call.get("args").and_then(Value::as_array);
        let setting = args.and_then(|a| a.first()).and_then(constant_text);
        match setting {
            Some(s) if super::integrity::is_pinned(s) => {
                found.integrity.get_or_insert(format!(
                    "set_config('{s}', …) would change how the server reads SQL text"
                ));
            }
            Some(s)
                if s.eq_ignore_ascii_case("role")
                    || s.eq_ignore_ascii_case("session_authorization") =>
            {
                found.dangerous.insert(catalogue::SET_ROLE);
            }
            Some(s) if s.eq_ignore_ascii_case("search_path") => {
                match args.and_then(|a| a.get(1)).and_then(constant_text) {
                    Some(path) => found.search_path.extend(split_search_path(path)),
                    None => found.opaque_search_path = true,
                }
            }
            Some(_) => {}
            None => {
                found.integrity.get_or_insert(
                    "set_config with a setting name that is not a constant".to_owned(),
                );
            }
        }
    }
    found.functions.insert(name);
}

/// The schemas of a `search_path` value as the server reports it (`"$user", public`).
pub fn split_search_path(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(
            |s| match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                Some(quoted) => quoted.replace("\"\"", "\""),
                None => s.to_lowercase(),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_path_values_split_like_the_server_reads_them() {
        assert_eq!(
            split_search_path("\"$user\", public, \"My Schema\""),
            vec!["$user", "public", "My Schema"]
        );
        assert_eq!(split_search_path("App"), vec!["app"]);
    }
}
