//! Lineage of real statements parsed by pg_query: where protected values go.

use super::*;

fn lineage(sql: &str) -> Lineage {
    let parsed = pg_query::parse(sql).expect("parses");
    let stmt = parsed.protobuf.stmts[0].stmt.as_ref().expect("statement");
    of_statement(&serde_json::to_value(stmt).expect("json"))
}

fn col(table: &str, column: &str) -> Source {
    let (schema, name) = match table.split_once('.') {
        Some((s, n)) => (Some(s.to_owned()), n.to_owned()),
        None => (None, table.to_owned()),
    };
    Source {
        relation: QualifiedName { schema, name },
        part: Part::Column(column.to_owned()),
    }
}

fn whole(table: &str) -> Source {
    Source {
        relation: QualifiedName {
            schema: None,
            name: table.to_owned(),
        },
        part: Part::WholeRow,
    }
}

/// The single output's origin.
fn only(sql: &str) -> Origin {
    let l = lineage(sql);
    assert_eq!(l.outputs.len(), 1, "{sql}: {:?}", l.outputs);
    match &l.outputs[0] {
        Output::Column(o) => o.clone(),
        Output::Star(r) => panic!("{sql}: star over {r}"),
    }
}

#[track_caller]
fn direct_from(sql: &str, source: &Source) {
    let o = only(sql);
    assert!(o.direct, "{sql}: {o:?}");
    assert!(o.sources.contains(source), "{sql}: {o:?}");
}

#[track_caller]
fn derived_from(sql: &str, source: &Source) {
    let o = only(sql);
    assert!(!o.direct, "{sql}: {o:?}");
    assert!(o.sources.contains(source), "{sql}: {o:?}");
}

#[test]
fn a_column_keeps_its_origin_through_aliases_subselects_ctes_and_set_operations() {
    let email = col("customers", "email");
    for sql in [
        "SELECT email AS e FROM customers",
        "SELECT c.email FROM customers c",
        "SELECT e FROM (SELECT email AS e FROM customers) s",
        "SELECT s.x FROM (SELECT email FROM customers) AS s(x)",
        "WITH x AS (SELECT email FROM customers) SELECT email FROM x",
        "WITH x(m) AS (SELECT email FROM customers) SELECT y.m FROM x y",
        "SELECT name FROM orders UNION SELECT email FROM customers",
        "SELECT (SELECT email FROM customers LIMIT 1)",
        "SELECT email FROM orders o JOIN customers c ON c.id = o.customer_id",
        "WITH RECURSIVE r(e, n) AS (SELECT email, 1 FROM customers UNION ALL \
         SELECT e, n + 1 FROM r WHERE n < 2) SELECT e FROM r",
    ] {
        direct_from(sql, &email);
    }
    direct_from(
        "SELECT public.customers.email FROM public.customers",
        &col("public.customers", "email"),
    );
}

#[test]
fn expressions_over_a_column_are_derived_from_it() {
    let email = col("customers", "email");
    for sql in [
        "SELECT lower(email) FROM customers",
        "SELECT substr(email, 1, 3) FROM customers",
        "SELECT 'x' || email FROM customers",
        "SELECT email::varchar(3) FROM customers",
        "SELECT string_agg(email, ',') FROM customers",
        "SELECT json_agg(email) FROM customers",
        "SELECT encode(convert_to(email, 'UTF8'), 'base64') FROM customers",
        "SELECT CASE WHEN id > 0 THEN email END FROM customers",
        "SELECT ARRAY(SELECT email FROM customers)",
        "SELECT l.e FROM customers c, LATERAL (SELECT upper(c.email) AS e) l",
        "WITH x AS (SELECT lower(email) AS l FROM customers) SELECT l FROM x",
        "SELECT s.* FROM (SELECT reverse(email) FROM customers) s",
        "SELECT v FROM (VALUES ((SELECT lower(email) FROM customers LIMIT 1))) t(v)",
        "SELECT u FROM unnest(ARRAY(SELECT email FROM customers)) u",
        // Columns PostgreSQL names itself, and FROM items named implicitly.
        "SELECT lower FROM (SELECT lower(email) FROM customers) s",
        "WITH t AS (SELECT email || '' FROM customers) SELECT \"?column?\" FROM t",
        "SELECT lower(column1) FROM (VALUES ((SELECT email FROM customers LIMIT 1))) v",
        "SELECT lower(j.email) FROM (customers c JOIN orders o ON o.customer_id = c.id) AS j",
        "SELECT lower(unnest.unnest) FROM customers c, unnest(ARRAY[c.email])",
        "SELECT lower(email) FROM customers TABLESAMPLE SYSTEM (100)",
        "SELECT lower(x.email) FROM customers c",
        // WITH RECURSIVE: columns swapped through the self-reference, and a forward reference.
        "WITH RECURSIVE r(n, a, b) AS (SELECT 1, email, name FROM customers UNION ALL \
         SELECT n + 1, b, a FROM r WHERE n < 3) SELECT lower(b) FROM r",
        "WITH RECURSIVE a AS (SELECT lower(x) AS y FROM b), b AS (SELECT email AS x FROM customers) \
         SELECT y FROM a",
    ] {
        derived_from(sql, &email);
    }
    for sql in [
        "SELECT email FROM (SELECT email::varchar FROM customers) s",
        "SELECT email FROM (SELECT email COLLATE \"C\" FROM customers) s",
    ] {
        let o = only(sql);
        assert!(o.sources.contains(&email), "{sql}: {o:?}");
    }
}

#[test]
fn whole_rows_are_derived_from_every_column() {
    for sql in [
        "SELECT c FROM customers c",
        "SELECT c::text FROM customers c",
        "SELECT to_jsonb(c) FROM customers c",
        "SELECT row_to_json(c.*) FROM customers c",
        "SELECT to_jsonb(customers) FROM customers",
    ] {
        derived_from(sql, &whole("customers"));
    }
}

#[test]
fn a_star_over_a_table_is_left_to_the_row_description() {
    let l = lineage("SELECT *, lower(name) FROM customers");
    assert!(matches!(&l.outputs[0], Output::Star(r) if r.name == "customers"));
    assert_eq!(l.outputs.len(), 2);
    // Through a set operation the positions cannot be told: the one column may carry any.
    let o = only("SELECT * FROM customers UNION ALL SELECT * FROM customers");
    assert!(o.sources.iter().any(|s| s.part == Part::AnyColumn));
}

#[test]
fn predicates_name_what_filters_orders_and_groups() {
    let l = lineage(
        "SELECT id FROM customers WHERE email LIKE 'a%' AND id IN \
         (SELECT customer_id FROM orders WHERE total_cents > 0) ORDER BY card_number",
    );
    for s in [
        col("customers", "email"),
        col("customers", "card_number"),
        col("orders", "total_cents"),
    ] {
        assert!(l.predicates.contains(&s), "{s:?} in {:?}", l.predicates);
    }
    let o = match &l.outputs[0] {
        Output::Column(o) => o,
        Output::Star(_) => panic!("column"),
    };
    assert_eq!(o.sources, [col("customers", "id")].into());
    let by_alias = lineage("SELECT email AS e, count(*) FROM customers GROUP BY 1 ORDER BY e");
    assert!(by_alias.predicates.contains(&col("customers", "email")));
}

#[test]
fn functions_that_keep_their_arguments_elsewhere_are_writes() {
    for sql in [
        "SELECT 1 FROM customers WHERE set_config('x.y', email, false) IS NULL",
        "SELECT pg_advisory_xact_lock(card_number::bigint) FROM customers",
        "SELECT lo_from_bytea(0, convert_to(email, 'UTF8')) FROM customers",
    ] {
        let l = lineage(sql);
        assert!(
            l.writes
                .iter()
                .any(|w| w.into.is_none() && !w.sources.is_empty()),
            "{sql}: {l:?}"
        );
    }
}

#[test]
fn writes_record_where_values_are_stored() {
    let l = lineage("INSERT INTO scratch SELECT email FROM customers");
    assert_eq!(l.writes.len(), 1);
    assert!(l.writes[0].sources.contains(&col("customers", "email")));
    assert_eq!(
        l.writes[0]
            .into
            .as_ref()
            .map(|i| (&i.relation.name, &i.part)),
        Some((&"scratch".to_owned(), &Part::AnyColumn))
    );
    let l = lineage("UPDATE customers SET name = lower(email) WHERE id = 1 RETURNING email");
    assert_eq!(l.writes[0].into, Some(col("customers", "name")));
    assert!(matches!(&l.outputs[0], Output::Column(o) if o.direct));
    let l = lineage("CREATE TABLE t AS SELECT email FROM customers");
    assert_eq!(l.writes[0].into, None);
    assert!(l.outputs.is_empty());
    let l = lineage("SELECT email INTO t FROM customers");
    assert_eq!(l.writes.len(), 1);
    assert!(l.outputs.is_empty());
}

#[test]
fn cursors_and_copy_carry_their_query_lineage() {
    let l = lineage("DECLARE k CURSOR FOR SELECT lower(email) FROM customers");
    assert_eq!(l.declares.as_deref(), Some("k"));
    assert!(matches!(&l.outputs[0], Output::Column(o) if !o.direct));
    assert_eq!(lineage("FETCH 2 FROM k").fetches.as_deref(), Some("k"));
    let l = lineage("COPY (SELECT email FROM customers) TO STDOUT");
    assert!(l.copy.is_some());
    assert!(matches!(&l.outputs[0], Output::Column(o) if o.direct));
    let l = lineage("COPY customers (name, email) TO STDOUT");
    assert_eq!(l.outputs.len(), 2);
    assert!(matches!(
        &lineage("COPY customers TO STDOUT").outputs[0],
        Output::Star(_)
    ));
}

#[test]
fn unprotected_controls_name_only_their_own_columns() {
    let l = lineage(
        "SELECT c.name, o.total_cents FROM customers c JOIN orders o ON o.customer_id = c.id",
    );
    let sources: BTreeSet<&Source> = l.all_sources().collect();
    assert!(sources.contains(&col("customers", "name")));
    assert!(
        !sources
            .iter()
            .any(|s| s.part == Part::Column("email".into()))
    );
    assert!(!sources.iter().any(|s| s.part == Part::WholeRow));
}
