//! Lineage of values through one statement, from its parse tree: where each output column's
//! value comes from (relation columns, unchanged or through an expression), which relation
//! columns its predicates read (`WHERE`, `JOIN … ON/USING`, `GROUP BY`, `HAVING`, `ORDER BY`,
//! `DISTINCT ON`, window clauses, `LIMIT`), and which values it stores (`INSERT`, `UPDATE`,
//! `MERGE`, `SELECT … INTO`, `CREATE TABLE AS`, `CREATE VIEW`).
//!
//! Names are kept as written; [`crate::masking::flow`] resolves them against the protected
//! columns of the session's database. The walk follows PostgreSQL's name resolution (§7.2 "Table
//! Expressions", §7.8 "WITH Queries") closely enough to place values through aliases, sub-selects,
//! CTEs (recursive ones too), set operations, `LATERAL`, `VALUES`, `*` and `t.*`, and fails
//! closed where it cannot tell: an unqualified column name is taken to come from every relation
//! in scope that could hold it, and a name that may be a whole row (`SELECT c FROM customers c`)
//! is taken as one.

use std::collections::BTreeSet;

use serde_json::Value;

use super::access::QualifiedName;

mod dml;
mod scope;
mod tree;

use dml::*;
use scope::{Columns, Item, Scope};
use tree::*;

/// Which part of a relation a value comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// One column, by name.
    Column(String),
    /// Some column of the relation, not known which (a relation aliased with column names).
    AnyColumn,
    /// The whole row (`t`, `t.*` as a value, `to_jsonb(t)`): every column.
    WholeRow,
    /// The result of calling the function named by the source's `relation`: whatever its
    /// body reads.
    Call,
}

/// A relation column (or row) a value comes from, named as the statement names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source {
    /// The relation (schema-qualified when the SQL qualifies it).
    pub relation: QualifiedName,
    /// Which of its columns.
    pub part: Part,
}

/// Where one value comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The relation columns it is made from.
    pub sources: BTreeSet<Source>,
    /// Whether it is one of `sources` unchanged (a column reference, through any alias,
    /// sub-select, CTE or set operation); `false` for any expression over them.
    pub direct: bool,
}

impl Origin {
    fn derived(sources: BTreeSet<Source>) -> Self {
        Self {
            sources,
            direct: false,
        }
    }

    fn merge(&mut self, other: Origin) {
        self.direct &= other.direct;
        self.sources.extend(other.sources);
    }
}

/// One output column of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A value whose origin is known.
    Column(Origin),
    /// The columns of a `*` or `t.*` over a stored relation: the server names them, and its
    /// RowDescription carries each one's table OID and column number, so their number and
    /// origin are left to it.
    Star(QualifiedName),
}

/// A value stored by the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// What the stored value is made from.
    pub sources: BTreeSet<Source>,
    /// The column it is stored in, when known (`None` for a new table or view, a setting, a
    /// lock, a large object or a sequence).
    pub into: Option<Source>,
    /// Whether the stored value is one of `sources` unchanged.
    pub direct: bool,
}

/// The lineage of one top-level statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lineage {
    /// Output columns, in order (rows a SELECT, RETURNING, FETCH or `COPY (query)` sends).
    pub outputs: Vec<Output>,
    /// Relation columns read by predicates: they shape which rows return and in what order.
    pub predicates: BTreeSet<Source>,
    /// Values the statement stores.
    pub writes: Vec<Write>,
    /// `DECLARE name CURSOR FOR …`: the cursor whose rows `outputs` describe.
    pub declares: Option<String>,
    /// `FETCH`/`MOVE … name`: the cursor whose rows this statement returns.
    pub fetches: Option<String>,
    /// `PREPARE name AS …`: the SQL-level prepared statement whose rows `outputs` describe.
    pub prepares: Option<String>,
    /// `EXECUTE name`: the SQL-level prepared statement whose rows this statement returns.
    pub executes: Option<String>,
    /// `CLOSE name` (`Some(None)`: `CLOSE ALL`).
    pub closes: Option<Option<String>>,
    /// `DEALLOCATE name` (`Some(None)`: `DEALLOCATE ALL`).
    pub deallocates: Option<Option<String>>,
    /// `COPY … TO`: the outputs are sent as COPY data in this format, not as DataRows.
    pub copy: Option<crate::masking::copy::CopyFormat>,
    /// `COPY … (ENCODING 'x')`: the encoding named, lowercased.
    pub copy_encoding: Option<String>,
}

impl Lineage {
    /// Every source anywhere in the statement: outputs, predicates and writes.
    pub fn all_sources(&self) -> impl Iterator<Item = &Source> {
        let outputs = self.outputs.iter().filter_map(|o| match o {
            Output::Column(origin) => Some(origin.sources.iter()),
            Output::Star(_) => None,
        });
        outputs
            .flatten()
            .chain(&self.predicates)
            .chain(self.writes.iter().flat_map(|w| &w.sources))
    }
}

/// The lineage of one top-level statement (its JSON parse tree, as `access` walks it).
pub fn of_statement(stmt: &Value) -> Lineage {
    let mut acc = Lineage::default();
    let root = Scope::default();
    let outputs = statement(stmt, &root, &mut acc);
    acc.outputs = outputs;
    acc
}

/// One statement node (tagged): its outputs; predicates and writes go to `acc`.
fn statement(v: &Value, scope: &Scope<'_>, acc: &mut Lineage) -> Vec<Output> {
    let Some((tag, body)) = node(v) else {
        return Vec::new();
    };
    match tag {
        "SelectStmt" => select(body, scope, acc),
        "InsertStmt" => insert(body, scope, acc),
        "UpdateStmt" => update(body, scope, acc),
        "DeleteStmt" => delete(body, scope, acc),
        "MergeStmt" => merge(body, scope, acc),
        "DeclareCursorStmt" => {
            acc.declares = text(body, "portalname").map(str::to_owned);
            body.get("query")
                .map(|q| statement(q, scope, acc))
                .unwrap_or_default()
        }
        "FetchStmt" => {
            acc.fetches = text(body, "portalname").map(str::to_owned);
            Vec::new()
        }
        "CopyStmt" => copy(body, scope, acc),
        "ClosePortalStmt" => {
            acc.closes = Some(text(body, "portalname").map(str::to_owned));
            Vec::new()
        }
        "DeallocateStmt" => {
            acc.deallocates = Some(text(body, "name").map(str::to_owned));
            Vec::new()
        }
        "ExecuteStmt" => {
            acc.executes = text(body, "name").map(str::to_owned);
            Vec::new()
        }
        "ExplainStmt" => {
            // EXPLAIN sends a plan, not values; EXPLAIN ANALYZE runs the statement, so what it
            // stores and reads counts.
            if let Some(q) = body.get("query") {
                statement(q, scope, acc);
            }
            Vec::new()
        }
        "CreateTableAsStmt" | "ViewStmt" | "PrepareStmt" => {
            let Some(q) = body.get("query") else {
                return Vec::new();
            };
            let outputs = statement(q, scope, acc);
            if tag == "PrepareStmt" {
                acc.prepares = text(body, "name").map(str::to_owned);
                return outputs;
            }
            store(outputs, None, acc);
            Vec::new()
        }
        _ => Vec::new(),
    }
}

/// Records outputs stored into `into` (by position when the columns are named).
fn store(outputs: Vec<Output>, into: Option<(&QualifiedName, &[String])>, acc: &mut Lineage) {
    let mut names = into.map(|(_, n)| n.iter());
    for output in outputs {
        let (sources, direct) = match output {
            Output::Column(origin) => (origin.sources, origin.direct),
            Output::Star(relation) => (
                [Source {
                    relation,
                    part: Part::AnyColumn,
                }]
                .into(),
                true,
            ),
        };
        let column = names.as_mut().and_then(Iterator::next);
        let target = into.map(|(relation, _)| Source {
            relation: relation.clone(),
            part: column.map_or(Part::AnyColumn, |c| Part::Column(c.clone())),
        });
        if !sources.is_empty() {
            acc.writes.push(Write {
                sources,
                into: target,
                direct,
            });
        }
    }
}

fn with_clause<'p>(v: &Value, scope: &mut Scope<'p>, acc: &mut Lineage) {
    let Some(with) = v.get("with_clause").filter(|w| !w.is_null()) else {
        return;
    };
    let ctes: Vec<(&str, &Value)> = list(with, "ctes")
        .iter()
        .filter_map(|c| {
            let c = tagged(c, "CommonTableExpr")?;
            Some((text(c, "ctename")?, c))
        })
        .collect();
    if with.get("recursive").and_then(Value::as_bool) != Some(true) {
        for (name, cte) in ctes {
            let columns = cte_columns(cte, scope, acc);
            scope.ctes.push((name.to_owned(), columns));
        }
        return;
    }
    // WITH RECURSIVE: every CTE sees every other and itself. Start with none of their columns
    // known and walk them again until what each carries stops growing.
    let first = scope.ctes.len();
    for (name, _) in &ctes {
        scope.ctes.push(((*name).to_owned(), Vec::new()));
    }
    for _ in 0..RECURSIVE_ROUNDS {
        let mut changed = false;
        for (index, (_, cte)) in ctes.iter().enumerate() {
            let columns = cte_columns(cte, scope, acc);
            let slot = &mut scope.ctes[first + index].1;
            if *slot != columns {
                *slot = columns;
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
    // Not settled: every column of every CTE may carry what any of them carries.
    let mut all = Origin::default();
    for (_, columns) in &scope.ctes[first..] {
        for (_, origin) in columns {
            all.sources.extend(origin.sources.iter().cloned());
        }
    }
    for (_, columns) in &mut scope.ctes[first..] {
        for (_, origin) in columns.iter_mut() {
            *origin = all.clone();
        }
        columns.push((None, all.clone()));
    }
}

/// Walks of a `WITH RECURSIVE` list before its CTEs are taken to carry anything of each other.
const RECURSIVE_ROUNDS: usize = 8;

/// The named columns of one CTE, its query walked in `scope`.
fn cte_columns(cte: &Value, scope: &Scope<'_>, acc: &mut Lineage) -> Columns {
    let names: Vec<String> = list(cte, "aliascolnames")
        .iter()
        .filter_map(string_node)
        .map(str::to_owned)
        .collect();
    let outputs = cte
        .get("ctequery")
        .map(|q| statement(q, scope, acc))
        .unwrap_or_default();
    let (columns, any) = as_columns(outputs, output_names(cte.get("ctequery")));
    let mut columns = rename(columns, &names);
    if let Some(any) = any {
        columns.push((None, any));
    }
    columns
}

fn select(body: &Value, parent: &Scope<'_>, acc: &mut Lineage) -> Vec<Output> {
    let mut scope = Scope::child(parent);
    with_clause(body, &mut scope, acc);
    let outputs = if let (Some(l), Some(r)) = (
        body.get("larg").filter(|l| !l.is_null()),
        body.get("rarg").filter(|r| !r.is_null()),
    ) {
        set_operation(select(l, &scope, acc), select(r, &scope, acc))
    } else if !list(body, "values_lists").is_empty() {
        values(list(body, "values_lists"), &scope, acc)
    } else {
        for item in list(body, "from_clause") {
            from_item(item, &mut scope, acc);
        }
        let mut outputs = Vec::new();
        for target in list(body, "target_list") {
            let Some(t) = tagged(target, "ResTarget") else {
                continue;
            };
            let Some(val) = t.get("val") else { continue };
            match star(val, &scope) {
                Some(expanded) => outputs.extend(expanded),
                None => outputs.push(Output::Column(expr(val, &scope, acc))),
            }
        }
        for field in [
            "where_clause",
            "having_clause",
            "group_clause",
            "distinct_clause",
            "window_clause",
        ] {
            if let Some(v) = body.get(field) {
                predicate(v, &scope, acc);
            }
        }
        outputs
    };
    for field in ["sort_clause", "limit_count", "limit_offset"] {
        if let Some(v) = body.get(field) {
            predicate(v, &scope, acc);
        }
    }
    by_output(body, &outputs, acc);
    if body.get("into_clause").is_some_and(|i| !i.is_null()) {
        store(outputs, None, acc);
        return Vec::new();
    }
    outputs
}

/// `ORDER BY` and `GROUP BY` may name an output column by its name or position
/// (`ORDER BY e`, `ORDER BY 2`): that column's sources are predicate sources too.
fn by_output(body: &Value, outputs: &[Output], acc: &mut Lineage) {
    let names = names_of(list(leftmost(body), "target_list"));
    let items = list(body, "sort_clause")
        .iter()
        .filter_map(|s| tagged(s, "SortBy")?.get("node"))
        .chain(list(body, "group_clause"));
    for item in items {
        let index = if let Some(n) =
            tagged(item, "AConst").and_then(|c| c.get("val")?.get("Ival")?.get("ival")?.as_i64())
        {
            usize::try_from(n - 1).ok()
        } else if let Some(fields) = tagged(item, "ColumnRef").map(|c| list(c, "fields")) {
            match fields {
                [only] => string_node(only)
                    .and_then(|name| names.iter().position(|n| n.as_deref() == Some(name))),
                _ => None,
            }
        } else {
            None
        };
        if let Some(Output::Column(origin)) = index.and_then(|i| outputs.get(i)) {
            acc.predicates.extend(origin.sources.iter().cloned());
        }
    }
}

/// Column `i` of a set operation carries column `i` of either arm.
fn set_operation(left: Vec<Output>, right: Vec<Output>) -> Vec<Output> {
    let placed = |o: &[Output]| o.iter().all(|x| matches!(x, Output::Column(_)));
    if placed(&left) && placed(&right) && left.len() == right.len() {
        return left
            .into_iter()
            .zip(right)
            .map(|pair| match pair {
                (Output::Column(mut l), Output::Column(r)) => {
                    l.merge(r);
                    Output::Column(l)
                }
                (l, _) => l,
            })
            .collect();
    }
    // A `*` in either arm: the positions cannot be told, so every column may carry anything
    // either arm carries.
    let mut all = Origin {
        sources: BTreeSet::new(),
        direct: true,
    };
    for output in left.into_iter().chain(right) {
        match output {
            Output::Column(o) => all.merge(o),
            Output::Star(relation) => {
                all.sources.insert(Source {
                    relation,
                    part: Part::AnyColumn,
                });
            }
        }
    }
    vec![Output::Column(all)]
}

fn values(rows: &[Value], scope: &Scope<'_>, acc: &mut Lineage) -> Vec<Output> {
    let mut columns: Vec<Origin> = Vec::new();
    for row in rows {
        let Some(items) = tagged(row, "List").map(|l| list(l, "items")) else {
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let origin = expr(item, scope, acc);
            match columns.get_mut(i) {
                Some(c) => c.merge(origin),
                None => columns.push(origin),
            }
        }
    }
    columns.into_iter().map(Output::Column).collect()
}

/// The expansion of a target that is `*` or `t.*`.
fn star(val: &Value, scope: &Scope<'_>) -> Option<Vec<Output>> {
    let fields = list(tagged(val, "ColumnRef")?, "fields");
    if fields.last().is_none_or(|f| tagged(f, "AStar").is_none()) {
        return None;
    }
    let names: Vec<&str> = fields.iter().filter_map(string_node).collect();
    Some(match names.as_slice() {
        [] => scope.items.iter().flat_map(Item::star).collect(),
        [.., alias] => match scope.item(alias) {
            Some(item) => item.star(),
            None => vec![Output::Star(qualified(&names))],
        },
    })
}

/// Adds a `FROM` item (and the items of joins inside it) to `scope`.
fn from_item(v: &Value, scope: &mut Scope<'_>, acc: &mut Lineage) {
    let Some((tag, body)) = node(v) else { return };
    match tag {
        "RangeVar" => {
            let Some(name) = range_var(body) else { return };
            let (alias_name, colnames) = alias(body);
            if name.schema.is_none()
                && let Some(columns) = scope.cte(&name.name)
            {
                let columns = rename(columns.clone(), &colnames);
                scope.items.push(Item::Derived {
                    alias: Some(alias_name.unwrap_or_else(|| name.name.clone())),
                    columns,
                    any: None,
                });
                return;
            }
            scope.items.push(Item::Base {
                alias: alias_name.unwrap_or_else(|| name.name.clone()),
                renamed: !colnames.is_empty(),
                name,
            });
        }
        "RangeSubselect" => {
            let outputs = body
                .get("subquery")
                .map(|q| statement(q, scope, acc))
                .unwrap_or_default();
            let names = output_names(body.get("subquery"));
            let (alias_name, colnames) = alias(body);
            let (columns, any) = as_columns(outputs, names);
            scope.items.push(Item::Derived {
                alias: alias_name,
                columns: rename(columns, &colnames),
                any,
            });
        }
        "JoinExpr" => {
            let before = scope.items.len();
            for side in ["larg", "rarg"] {
                if let Some(s) = body.get(side) {
                    from_item(s, scope, acc);
                }
            }
            if let (Some(alias), _) = alias(body) {
                let items = scope.items[before..].to_vec();
                scope.items.push(Item::Join { alias, items });
            }
            if let Some(quals) = body.get("quals") {
                predicate(quals, scope, acc);
            }
            for column in list(body, "using_clause").iter().filter_map(string_node) {
                let origin = scope.unqualified(column);
                acc.predicates.extend(origin.sources);
            }
        }
        "RangeTableSample" => {
            if let Some(relation) = body.get("relation") {
                from_item(relation, scope, acc);
            }
            for field in ["args", "repeatable"] {
                if let Some(v) = body.get(field) {
                    predicate(v, scope, acc);
                }
            }
        }
        _ => {
            // Functions in FROM (`unnest(…)`, `jsonb_to_record(…)`, `ROWS FROM`), XMLTABLE,
            // JSON_TABLE: columns of unknown names made from whatever their arguments read.
            // Without an alias, a function is named by itself (`unnest.unnest`).
            let alias_name = alias(body).0.or_else(|| match tag {
                "RangeTableFunc" => Some("xmltable".to_owned()),
                "JsonTable" => Some("json_table".to_owned()),
                _ => list(body, "functions")
                    .first()
                    .and_then(|f| tagged(f, "List"))
                    .and_then(|l| list(l, "items").first())
                    .and_then(figure_name),
            });
            let origin = expr(v, scope, acc);
            scope.items.push(Item::Derived {
                alias: alias_name,
                columns: Vec::new(),
                any: Some(Origin::derived(origin.sources)),
            });
        }
    }
}

/// Reads `v` as a predicate: every source it reads is a predicate source.
fn predicate(v: &Value, scope: &Scope<'_>, acc: &mut Lineage) {
    let origin = expr(v, scope, acc);
    acc.predicates.extend(origin.sources);
}

/// The origin of an expression's value. Sub-selects inside it are walked as statements (their
/// own predicates count).
fn expr(v: &Value, scope: &Scope<'_>, acc: &mut Lineage) -> Origin {
    if let Some(fields) = tagged(v, "ColumnRef").map(|c| list(c, "fields")) {
        return column_ref(fields, scope);
    }
    if let Some(sublink) = tagged(v, "SubLink") {
        let outputs = sublink
            .get("subselect")
            .map(|q| statement(q, scope, acc))
            .unwrap_or_default();
        let mut origin = Origin::default();
        // EXPR: the first column's value itself; ARRAY/EXISTS/ANY/ALL…: a value made from it.
        let is_expr = sublink.get("sub_link_type").and_then(Value::as_i64) == Some(EXPR_SUBLINK);
        let mut first = true;
        for output in outputs {
            match output {
                Output::Column(o) if first && is_expr => origin = o,
                Output::Column(o) => origin.sources.extend(o.sources),
                Output::Star(relation) => {
                    origin.sources.insert(Source {
                        relation,
                        part: Part::AnyColumn,
                    });
                }
            }
            first = false;
        }
        if !is_expr {
            origin.direct = false;
        }
        if let Some(test) = sublink.get("testexpr").filter(|t| !t.is_null()) {
            let test = expr(test, scope, acc);
            origin.sources.extend(test.sources);
            origin.direct = false;
        }
        return origin;
    }
    let mut origin = Origin::default();
    children(v, scope, acc, &mut origin);
    origin
}

/// Functions that keep what their arguments carry where a later statement or another session
/// reads it unmasked: settings (`set_config`; `current_setting`, ParameterStatus), advisory
/// locks (`pg_locks`), large objects, sequences, notifications, WAL messages.
const SINKS: &[&str] = &[
    "set_config",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_shared",
    "lo_from_bytea",
    "lo_put",
    "lowrite",
    "lo_create",
    "lo_creat",
    "lo_import",
    "lo_export",
    "setval",
    "nextval",
    "pg_notify",
    "pg_logical_emit_message",
    "pg_replication_origin_create",
    "pg_create_restore_point",
];

/// `SubLinkType` of a scalar sub-select (`(SELECT x …)`) in pg_query's protobuf.
const EXPR_SUBLINK: i64 = 5;

fn children(v: &Value, scope: &Scope<'_>, acc: &mut Lineage, origin: &mut Origin) {
    match v {
        Value::Array(items) => {
            for item in items {
                children(item, scope, acc, origin);
            }
        }
        Value::Object(map) => {
            match node(v) {
                Some(("ColumnRef" | "SubLink", _)) => {
                    origin.sources.extend(expr(v, scope, acc).sources);
                    return;
                }
                Some(("FuncCall", call)) => {
                    let names: Vec<&str> = list(call, "funcname")
                        .iter()
                        .filter_map(string_node)
                        .collect();
                    if let Some(name) = names.last()
                        && SINKS.contains(&name.to_ascii_lowercase().as_str())
                    {
                        // What the arguments carry is kept where no mask applies.
                        let mut args = Origin::default();
                        if let Some(a) = call.get("args") {
                            children(a, scope, acc, &mut args);
                        }
                        if !args.sources.is_empty() {
                            acc.writes.push(Write {
                                sources: args.sources,
                                into: None,
                                direct: false,
                            });
                        }
                    }
                    if !names.is_empty() {
                        origin.sources.insert(Source {
                            relation: qualified(&names),
                            part: Part::Call,
                        });
                    }
                }
                _ => {}
            }
            for value in map.values() {
                children(value, scope, acc, origin);
            }
        }
        _ => {}
    }
}

/// A column reference: `c`, `t.c`, `s.t.c`, `t` (maybe a whole row), `t.*` (a whole row when
/// used as a value).
fn column_ref(fields: &[Value], scope: &Scope<'_>) -> Origin {
    let star = fields.last().is_some_and(|f| tagged(f, "AStar").is_some());
    let names: Vec<&str> = fields.iter().filter_map(string_node).collect();
    if star {
        return match names.as_slice() {
            [] => {
                let mut origin = Origin::default();
                for item in &scope.items {
                    origin.sources.extend(item.whole_row().sources);
                }
                origin
            }
            [.., alias] => match scope.item(alias) {
                Some(item) => item.whole_row(),
                None => Origin::derived(
                    [Source {
                        relation: qualified(&names),
                        part: Part::WholeRow,
                    }]
                    .into(),
                ),
            },
        };
    }
    match names.as_slice() {
        [] => Origin::default(),
        [column] => scope.unqualified(column),
        [.., table, column] => match scope.item(table) {
            Some(item) => item.column(column).unwrap_or_default(),
            None => {
                // A qualifier the walk does not know: the relation so named, and whatever the
                // unqualified name could mean here (fails closed).
                let mut origin = scope.unqualified(column);
                origin.sources.insert(Source {
                    relation: qualified(&names[..names.len() - 1]),
                    part: Part::Column((*column).to_owned()),
                });
                origin
            }
        },
    }
}

#[cfg(test)]
mod tests;
