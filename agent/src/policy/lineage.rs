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

/// Named (or unnamed) columns of a derived table, with their origins.
type Columns = Vec<(Option<String>, Origin)>;

/// A relation or derived table visible in a `FROM` list.
#[derive(Debug, Clone)]
enum Item {
    /// A stored relation (table, view, foreign table…). `renamed` when its alias lists column
    /// names, so a column name no longer tells which stored column it is.
    Base {
        name: QualifiedName,
        alias: String,
        renamed: bool,
    },
    /// A sub-select, CTE, function or VALUES list: named columns with known origins, or, when
    /// `any` is set, columns whose names are unknown and which may all carry `any`.
    Derived {
        alias: Option<String>,
        columns: Vec<(Option<String>, Origin)>,
        any: Option<Origin>,
    },
    /// A join with an alias (`(a JOIN b) AS j`): `j.x` is column `x` of either side.
    Join { alias: String, items: Vec<Item> },
}

impl Item {
    fn alias(&self) -> Option<&str> {
        match self {
            Item::Base { alias, .. } => Some(alias),
            Item::Derived { alias, .. } => alias.as_deref(),
            Item::Join { alias, .. } => Some(alias),
        }
    }

    /// The value of the whole row.
    fn whole_row(&self) -> Origin {
        match self {
            Item::Base { name, .. } => Origin::derived(
                [Source {
                    relation: name.clone(),
                    part: Part::WholeRow,
                }]
                .into(),
            ),
            Item::Derived { columns, any, .. } => {
                let mut sources: BTreeSet<Source> = columns
                    .iter()
                    .flat_map(|(_, o)| o.sources.iter().cloned())
                    .collect();
                if let Some(any) = any {
                    sources.extend(any.sources.iter().cloned());
                }
                Origin::derived(sources)
            }
            Item::Join { items, .. } => {
                Origin::derived(items.iter().flat_map(|i| i.whole_row().sources).collect())
            }
        }
    }

    /// Its columns as `*` expands them.
    fn star(&self) -> Vec<Output> {
        match self {
            Item::Base { name, renamed, .. } => {
                if *renamed {
                    vec![Output::Column(Origin {
                        sources: [Source {
                            relation: name.clone(),
                            part: Part::AnyColumn,
                        }]
                        .into(),
                        direct: true,
                    })]
                } else {
                    vec![Output::Star(name.clone())]
                }
            }
            Item::Derived { columns, any, .. } => {
                let mut out: Vec<Output> = columns
                    .iter()
                    .map(|(_, o)| Output::Column(o.clone()))
                    .collect();
                if let Some(any) = any {
                    out.push(Output::Column(any.clone()));
                }
                out
            }
            Item::Join { items, .. } => items.iter().flat_map(Item::star).collect(),
        }
    }

    /// The origin of column `name` of this item, if it may have one.
    fn column(&self, name: &str) -> Option<Origin> {
        match self {
            Item::Base {
                name: relation,
                renamed,
                ..
            } => Some(Origin {
                sources: [Source {
                    relation: relation.clone(),
                    part: if *renamed {
                        Part::AnyColumn
                    } else {
                        Part::Column(name.to_owned())
                    },
                }]
                .into(),
                direct: true,
            }),
            Item::Derived { columns, any, .. } => {
                let named = |wanted: Option<&str>| {
                    let mut found: Option<Origin> = None;
                    for (_, origin) in columns.iter().filter(|(n, _)| n.as_deref() == wanted) {
                        match &mut found {
                            Some(f) => f.merge(origin.clone()),
                            None => found = Some(origin.clone()),
                        }
                    }
                    found
                };
                // A name no column has may be a column whose name the walk could not tell.
                named(Some(name)).or_else(|| {
                    let mut unnamed = named(None);
                    if let Some(any) = any {
                        match &mut unnamed {
                            Some(u) => u.merge(any.clone()),
                            None => unnamed = Some(any.clone()),
                        }
                    }
                    unnamed
                })
            }
            Item::Join { items, .. } => {
                let mut found: Option<Origin> = None;
                for origin in items.iter().filter_map(|i| i.column(name)) {
                    match &mut found {
                        Some(f) => f.merge(origin),
                        None => found = Some(origin),
                    }
                }
                found
            }
        }
    }
}

/// Names visible at one level of a statement: its `FROM` items and `WITH` queries, and the
/// enclosing level's (correlated sub-selects, `LATERAL`).
#[derive(Debug, Default)]
struct Scope<'p> {
    items: Vec<Item>,
    ctes: Vec<(String, Columns)>,
    parent: Option<&'p Scope<'p>>,
}

impl<'p> Scope<'p> {
    fn child(parent: &'p Scope<'p>) -> Self {
        Self {
            items: Vec::new(),
            ctes: Vec::new(),
            parent: Some(parent),
        }
    }

    fn cte(&self, name: &str) -> Option<&Vec<(Option<String>, Origin)>> {
        self.ctes
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c)
            .or_else(|| self.parent?.cte(name))
    }

    fn item(&self, alias: &str) -> Option<&Item> {
        self.items
            .iter()
            .find(|i| i.alias() == Some(alias))
            .or_else(|| self.parent?.item(alias))
    }

    /// An unqualified column reference: every item that may hold it, level by level; a level
    /// whose derived items name it decides (its stored relations may not have it, but cannot
    /// be told apart), otherwise the search goes on outwards. A name that is also an item's
    /// alias may be that item's whole row.
    fn unqualified(&self, name: &str) -> Origin {
        let mut origin = Origin {
            sources: BTreeSet::new(),
            direct: true,
        };
        let mut level = Some(self);
        while let Some(scope) = level {
            let mut named = false;
            for item in &scope.items {
                if let Some(found) = item.column(name) {
                    named |= matches!(item, Item::Derived { columns, .. }
                        if columns.iter().any(|(n, _)| n.as_deref() == Some(name)));
                    origin.merge(found);
                }
                if item.alias() == Some(name) {
                    origin.merge(item.whole_row());
                }
            }
            if named {
                break;
            }
            level = scope.parent;
        }
        origin
    }
}

/// The tagged body of a node (`{"node": {"Tag": body}}` or `{"Tag": body}`).
fn tagged<'a>(v: &'a Value, tag: &str) -> Option<&'a Value> {
    v.get("node").unwrap_or(v).get(tag)
}

/// The tag and body of a node.
fn node(v: &Value) -> Option<(&str, &Value)> {
    let v = v.get("node").unwrap_or(v);
    let map = v.as_object()?;
    if map.len() != 1 {
        return None;
    }
    let (tag, body) = map.iter().next()?;
    tag.starts_with(|c: char| c.is_ascii_uppercase())
        .then_some((tag.as_str(), body))
}

fn list<'a>(v: &'a Value, field: &str) -> &'a [Value] {
    v.get(field)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn text<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn string_node(v: &Value) -> Option<&str> {
    tagged(v, "String")?.get("sval")?.as_str()
}

fn range_var(v: &Value) -> Option<QualifiedName> {
    Some(QualifiedName {
        schema: text(v, "schemaname").map(str::to_owned),
        name: text(v, "relname")?.to_owned(),
    })
}

/// An alias's name and column names (`AS a(x, y)`).
fn alias(v: &Value) -> (Option<String>, Vec<String>) {
    match v.get("alias").filter(|a| !a.is_null()) {
        Some(a) => (
            text(a, "aliasname").map(str::to_owned),
            list(a, "colnames")
                .iter()
                .filter_map(string_node)
                .map(str::to_owned)
                .collect(),
        ),
        None => (None, Vec::new()),
    }
}

/// Renames the first columns to `names`.
fn rename(
    mut columns: Vec<(Option<String>, Origin)>,
    names: &[String],
) -> Vec<(Option<String>, Origin)> {
    for ((name, _), new) in columns.iter_mut().zip(names) {
        *name = Some(new.clone());
    }
    columns
}

/// Outputs as named columns of a derived table; a `*` over a stored relation becomes one
/// column of unknown name that may carry any of its columns.
fn as_columns(
    outputs: Vec<Output>,
    names: Vec<Option<String>>,
) -> (Vec<(Option<String>, Origin)>, Option<Origin>) {
    let mut any: Option<Origin> = None;
    let mut columns = Vec::new();
    let mut names = names.into_iter();
    for output in outputs {
        match output {
            Output::Column(origin) => columns.push((names.next().flatten(), origin)),
            Output::Star(relation) => {
                let origin = Origin {
                    sources: [Source {
                        relation,
                        part: Part::AnyColumn,
                    }]
                    .into(),
                    direct: true,
                };
                match &mut any {
                    Some(a) => a.merge(origin),
                    None => any = Some(origin),
                }
                // Positions after a `*` cannot be told: its width is the server's.
                names = Vec::new().into_iter();
            }
        }
    }
    (columns, any)
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

/// The names of a query's output columns where the target list gives them (`AS x`, or a column
/// reference's last name).
fn output_names(q: Option<&Value>) -> Vec<Option<String>> {
    let Some((tag, body)) = q.and_then(node) else {
        return Vec::new();
    };
    let body = match tag {
        "SelectStmt" if !list(leftmost(body), "values_lists").is_empty() => {
            let first = list(leftmost(body), "values_lists").first();
            let width = first
                .and_then(|r| tagged(r, "List"))
                .map_or(0, |l| list(l, "items").len());
            return (1..=width).map(|i| Some(format!("column{i}"))).collect();
        }
        "SelectStmt" => leftmost(body),
        "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => body,
        _ => return Vec::new(),
    };
    names_of(if tag == "SelectStmt" {
        list(body, "target_list")
    } else {
        list(body, "returning_list")
    })
}

/// The names a target list gives its columns: `AS x`, else the name PostgreSQL makes up
/// ([`figure_name`]).
fn names_of(targets: &[Value]) -> Vec<Option<String>> {
    targets
        .iter()
        .map(|t| {
            let t = tagged(t, "ResTarget")?;
            if let Some(n) = text(t, "name") {
                return Some(n.to_owned());
            }
            figure_name(t.get("val")?)
        })
        .collect()
}

/// The column name PostgreSQL gives an unnamed expression (`FigureColname` in parse_target.c):
/// a column reference's or function's name, a cast's argument's (or its type's), `case`,
/// `array`, `row`, `coalesce`, `exists`, and `?column?` for operators and constants. `None` for
/// forms this walk does not name: such a column is matched by any name not otherwise found.
fn figure_name(v: &Value) -> Option<String> {
    let (tag, body) = node(v)?;
    let last = |field: &str| {
        list(body, field)
            .last()
            .and_then(string_node)
            .map(str::to_owned)
    };
    match tag {
        "ColumnRef" => last("fields"),
        "AIndirection" => last("indirection").or_else(|| figure_name(body.get("arg")?)),
        "FuncCall" => last("funcname"),
        "TypeCast" => body.get("arg").and_then(figure_name).or_else(|| {
            let names = list(body.get("type_name")?, "names");
            names.last().and_then(string_node).map(str::to_owned)
        }),
        "CollateClause" => figure_name(body.get("arg")?),
        "SubLink" => match body.get("sub_link_type").and_then(Value::as_i64) {
            Some(EXPR_SUBLINK) => output_names(body.get("subselect")).into_iter().next()?,
            Some(1) => Some("exists".to_owned()),
            Some(7) => Some("array".to_owned()),
            _ => Some("?column?".to_owned()),
        },
        "CaseExpr" => Some("case".to_owned()),
        "AArrayExpr" => Some("array".to_owned()),
        "RowExpr" => Some("row".to_owned()),
        "CoalesceExpr" => Some("coalesce".to_owned()),
        "AConst" | "AExpr" | "BoolExpr" | "NullTest" | "BooleanTest" | "ParamRef" => {
            Some("?column?".to_owned())
        }
        _ => None,
    }
}

/// The leftmost arm of a set operation (it names the columns).
fn leftmost(mut body: &Value) -> &Value {
    while let Some(l) = body.get("larg").filter(|l| !l.is_null()) {
        body = l;
    }
    body
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

fn qualified(names: &[&str]) -> QualifiedName {
    match names {
        [.., schema, name] => QualifiedName {
            schema: Some((*schema).to_owned()),
            name: (*name).to_owned(),
        },
        [name] => QualifiedName {
            schema: None,
            name: (*name).to_owned(),
        },
        [] => QualifiedName {
            schema: None,
            name: String::new(),
        },
    }
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

fn returning(body: &Value, scope: &Scope<'_>, acc: &mut Lineage) -> Vec<Output> {
    let mut outputs = Vec::new();
    for target in list(body, "returning_list") {
        let Some(val) = tagged(target, "ResTarget").and_then(|t| t.get("val")) else {
            continue;
        };
        match star(val, scope) {
            Some(expanded) => outputs.extend(expanded),
            None => outputs.push(Output::Column(expr(val, scope, acc))),
        }
    }
    outputs
}

/// The written relation as a `FROM` item, and its name.
fn target(body: &Value, scope: &mut Scope<'_>) -> Option<QualifiedName> {
    let relation = body.get("relation")?;
    let name = range_var(relation)?;
    let (alias_name, _) = alias(relation);
    scope.items.push(Item::Base {
        alias: alias_name.unwrap_or_else(|| name.name.clone()),
        renamed: false,
        name: name.clone(),
    });
    Some(name)
}

fn target_names(body: &Value, field: &str) -> Vec<String> {
    list(body, field)
        .iter()
        .filter_map(|t| text(tagged(t, "ResTarget")?, "name").map(str::to_owned))
        .collect()
}

fn insert(body: &Value, parent: &Scope<'_>, acc: &mut Lineage) -> Vec<Output> {
    let mut scope = Scope::child(parent);
    with_clause(body, &mut scope, acc);
    let outputs = body
        .get("select_stmt")
        .map(|q| statement(q, &scope, acc))
        .unwrap_or_default();
    let Some(name) = target(body, &mut scope) else {
        return Vec::new();
    };
    let columns = target_names(body, "cols");
    store(outputs, Some((&name, &columns)), acc);
    if let Some(conflict) = body.get("on_conflict_clause").filter(|c| !c.is_null()) {
        assignments(conflict, &name, &scope, acc);
        if let Some(w) = conflict.get("where_clause") {
            predicate(w, &scope, acc);
        }
    }
    returning(body, &scope, acc)
}

/// `SET column = value` lists (UPDATE, ON CONFLICT DO UPDATE, MERGE … UPDATE SET).
fn assignments(body: &Value, relation: &QualifiedName, scope: &Scope<'_>, acc: &mut Lineage) {
    for target in list(body, "target_list") {
        let Some(t) = tagged(target, "ResTarget") else {
            continue;
        };
        let Some(val) = t.get("val") else { continue };
        let Origin { sources, direct } = expr(val, scope, acc);
        if sources.is_empty() {
            continue;
        }
        // A multiple-column assignment (`SET (a, b) = (SELECT …)`) names its column per item.
        let part = match text(t, "name") {
            Some(c) if tagged(val, "MultiAssignRef").is_none() => Part::Column(c.to_owned()),
            _ => Part::AnyColumn,
        };
        acc.writes.push(Write {
            sources,
            into: Some(Source {
                relation: relation.clone(),
                part,
            }),
            direct,
        });
    }
}

fn update(body: &Value, parent: &Scope<'_>, acc: &mut Lineage) -> Vec<Output> {
    let mut scope = Scope::child(parent);
    with_clause(body, &mut scope, acc);
    let Some(name) = target(body, &mut scope) else {
        return Vec::new();
    };
    for item in list(body, "from_clause") {
        from_item(item, &mut scope, acc);
    }
    assignments(body, &name, &scope, acc);
    if let Some(w) = body.get("where_clause") {
        predicate(w, &scope, acc);
    }
    returning(body, &scope, acc)
}

fn delete(body: &Value, parent: &Scope<'_>, acc: &mut Lineage) -> Vec<Output> {
    let mut scope = Scope::child(parent);
    with_clause(body, &mut scope, acc);
    if target(body, &mut scope).is_none() {
        return Vec::new();
    }
    for item in list(body, "using_clause") {
        from_item(item, &mut scope, acc);
    }
    if let Some(w) = body.get("where_clause") {
        predicate(w, &scope, acc);
    }
    returning(body, &scope, acc)
}

fn merge(body: &Value, parent: &Scope<'_>, acc: &mut Lineage) -> Vec<Output> {
    let mut scope = Scope::child(parent);
    with_clause(body, &mut scope, acc);
    let Some(name) = target(body, &mut scope) else {
        return Vec::new();
    };
    if let Some(source) = body.get("source_relation") {
        from_item(source, &mut scope, acc);
    }
    if let Some(on) = body.get("join_condition") {
        predicate(on, &scope, acc);
    }
    for clause in list(body, "merge_when_clauses") {
        let Some(clause) = tagged(clause, "MergeWhenClause") else {
            continue;
        };
        if let Some(c) = clause.get("condition") {
            predicate(c, &scope, acc);
        }
        assignments(clause, &name, &scope, acc);
        // INSERT VALUES (…): positions map to `target_list` names when given.
        let columns = target_names(clause, "target_list");
        let values: Vec<Output> = list(clause, "values")
            .iter()
            .map(|v| Output::Column(expr(v, &scope, acc)))
            .collect();
        if !values.is_empty() {
            store(values, Some((&name, &columns)), acc);
        }
    }
    returning(body, &scope, acc)
}

fn copy(body: &Value, scope: &Scope<'_>, acc: &mut Lineage) -> Vec<Output> {
    if body.get("is_from").and_then(Value::as_bool) == Some(true) {
        return Vec::new();
    }
    acc.copy = Some(crate::masking::copy::CopyFormat::from_options(list(
        body, "options",
    )));
    acc.copy_encoding = crate::masking::copy::encoding_option(list(body, "options"));
    if let Some(q) = body.get("query").filter(|q| !q.is_null()) {
        return statement(q, scope, acc);
    }
    let Some(name) = body.get("relation").and_then(range_var) else {
        return Vec::new();
    };
    let columns: Vec<String> = list(body, "attlist")
        .iter()
        .filter_map(string_node)
        .map(str::to_owned)
        .collect();
    if columns.is_empty() {
        return vec![Output::Star(name)];
    }
    columns
        .into_iter()
        .map(|c| {
            Output::Column(Origin {
                sources: [Source {
                    relation: name.clone(),
                    part: Part::Column(c),
                }]
                .into(),
                direct: true,
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "lineage_tests.rs"]
mod tests;
