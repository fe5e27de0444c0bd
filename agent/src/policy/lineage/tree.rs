//! Reading pg_query's JSON parse tree: tagged nodes, lists, names, aliases, and the names
//! PostgreSQL gives output columns.

use super::*;

pub(super) use crate::policy::access::string_node;
pub(super) use crate::policy::params::tagged;

/// The tag and body of a node.
pub(super) fn node(v: &Value) -> Option<(&str, &Value)> {
    let v = v.get("node").unwrap_or(v);
    let map = v.as_object()?;
    if map.len() != 1 {
        return None;
    }
    let (tag, body) = map.iter().next()?;
    tag.starts_with(|c: char| c.is_ascii_uppercase())
        .then_some((tag.as_str(), body))
}

pub(super) fn list<'a>(v: &'a Value, field: &str) -> &'a [Value] {
    v.get(field)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

pub(super) fn text<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

pub(super) fn range_var(v: &Value) -> Option<QualifiedName> {
    Some(QualifiedName {
        schema: text(v, "schemaname").map(str::to_owned),
        name: text(v, "relname")?.to_owned(),
    })
}

/// An alias's name and column names (`AS a(x, y)`).
pub(super) fn alias(v: &Value) -> (Option<String>, Vec<String>) {
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
pub(super) fn rename(
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
pub(super) fn as_columns(
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

/// The names of a query's output columns where the target list gives them (`AS x`, or a column
/// reference's last name).
pub(super) fn output_names(q: Option<&Value>) -> Vec<Option<String>> {
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
pub(super) fn names_of(targets: &[Value]) -> Vec<Option<String>> {
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
pub(super) fn figure_name(v: &Value) -> Option<String> {
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
pub(super) fn leftmost(mut body: &Value) -> &Value {
    while let Some(l) = body.get("larg").filter(|l| !l.is_null()) {
        body = l;
    }
    body
}

pub(super) fn qualified(names: &[&str]) -> QualifiedName {
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
