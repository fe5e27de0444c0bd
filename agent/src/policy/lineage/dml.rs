//! Statements that write and COPY: what `INSERT`, `UPDATE`, `DELETE` and `MERGE` store and
//! return, and what `COPY … TO` sends.

use super::*;
pub(super) fn returning(body: &Value, scope: &Scope<'_>, acc: &mut Lineage) -> Vec<Output> {
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
pub(super) fn target(body: &Value, scope: &mut Scope<'_>) -> Option<QualifiedName> {
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

pub(super) fn target_names(body: &Value, field: &str) -> Vec<String> {
    list(body, field)
        .iter()
        .filter_map(|t| text(tagged(t, "ResTarget")?, "name").map(str::to_owned))
        .collect()
}

pub(super) fn insert(body: &Value, parent: &Scope<'_>, acc: &mut Lineage) -> Vec<Output> {
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
pub(super) fn assignments(
    body: &Value,
    relation: &QualifiedName,
    scope: &Scope<'_>,
    acc: &mut Lineage,
) {
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

pub(super) fn update(body: &Value, parent: &Scope<'_>, acc: &mut Lineage) -> Vec<Output> {
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

pub(super) fn delete(body: &Value, parent: &Scope<'_>, acc: &mut Lineage) -> Vec<Output> {
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

pub(super) fn merge(body: &Value, parent: &Scope<'_>, acc: &mut Lineage) -> Vec<Output> {
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

pub(super) fn copy(body: &Value, scope: &Scope<'_>, acc: &mut Lineage) -> Vec<Output> {
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
