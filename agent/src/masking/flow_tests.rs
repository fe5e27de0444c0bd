//! Decisions on real statements' lineage against a catalog protecting `public.customers.email`
//! (redact) and `public.customers.card_number` (null), with the settings each test gives.

use super::*;
use crate::config::MaskConfig;
use crate::policy::lineage::of_statement;

fn catalog(expressions: OnExpression, predicates: OnPredicate) -> MaskCatalog {
    let masks = [
        MaskConfig {
            column: "public.customers.email".into(),
            strategy: MaskStrategy::Redact { text: "***".into() },
            expressions,
            predicates,
        },
        MaskConfig {
            column: "public.customers.card_number".into(),
            strategy: MaskStrategy::Null,
            expressions,
            predicates,
        },
    ];
    crate::masking::catalog::customers_catalog(&masks)
}

fn check_sql(catalog: &MaskCatalog, sql: &str) -> Result<Overlay, Refusal> {
    let parsed = pg_query::parse(sql).expect("parses");
    let stmt = parsed.protobuf.stmts[0].stmt.as_ref().expect("statement");
    check(
        catalog,
        &of_statement(&serde_json::to_value(stmt).expect("json")),
    )
}

fn denied(result: &Result<Overlay, Refusal>) -> bool {
    matches!(result, Err(Refusal::Deny(_)))
}

#[test]
fn computed_values_are_denied_by_default_and_masked_whole_when_the_rule_says_mask() {
    let deny = catalog(OnExpression::Deny, OnPredicate::Allow);
    let mask = catalog(OnExpression::Mask, OnPredicate::Allow);
    for sql in [
        "SELECT lower(email) FROM customers",
        "SELECT c::text FROM customers c",
        "SELECT to_jsonb(c) FROM public.customers c",
        "SELECT string_agg(card_number, ',') FROM customers",
        "SELECT x FROM (SELECT email || '' AS x FROM customers) s",
    ] {
        let result = check_sql(&deny, sql);
        assert!(denied(&result), "{sql}: {result:?}");
        let Err(Refusal::Deny(message)) = result else {
            unreachable!()
        };
        assert!(message.contains("public.customers."), "{message}");
        let overlay = check_sql(&mask, sql).expect("masked");
        assert!(overlay.placed[0].is_some(), "{sql}: {overlay:?}");
    }
    // Two rules in one value: NULL.
    let overlay = check_sql(&mask, "SELECT email || card_number FROM customers").expect("masked");
    assert_eq!(overlay.placed[0], Some(MaskStrategy::Null));
}

#[test]
fn a_plain_column_through_a_set_operation_gets_its_own_strategy() {
    let c = catalog(OnExpression::Deny, OnPredicate::Allow);
    let overlay = check_sql(
        &c,
        "SELECT name FROM orders UNION SELECT email FROM customers",
    )
    .expect("runs");
    assert_eq!(
        overlay.placed,
        vec![Some(MaskStrategy::Redact { text: "***".into() })]
    );
    let overlay = check_sql(&c, "SELECT id, name FROM customers").expect("runs");
    assert!(overlay.is_empty());
    // A star makes later positions unknown: the mask applies to columns without a table OID.
    let mask = catalog(OnExpression::Mask, OnPredicate::Allow);
    let overlay = check_sql(&mask, "SELECT *, lower(email) FROM customers").expect("runs");
    assert!(overlay.placed.is_empty());
    assert!(overlay.get(7, 0).is_some() && overlay.get(1, 16390).is_none());
}

#[test]
fn predicates_follow_the_rule_setting() {
    let sql = "SELECT id FROM customers WHERE email LIKE 'a%'";
    assert!(check_sql(&catalog(OnExpression::Deny, OnPredicate::Allow), sql).is_ok());
    assert!(denied(&check_sql(
        &catalog(OnExpression::Deny, OnPredicate::Deny),
        sql
    )));
    match check_sql(&catalog(OnExpression::Deny, OnPredicate::Approval), sql) {
        Err(Refusal::Approval { columns, .. }) => {
            assert_eq!(columns, vec!["public.customers.email".to_owned()]);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        check_sql(
            &catalog(OnExpression::Deny, OnPredicate::Deny),
            "SELECT id FROM customers WHERE name = 'x' ORDER BY id"
        )
        .is_ok(),
        "predicates over unprotected columns are not concerned"
    );
}

#[test]
fn storing_protected_values_outside_protected_columns_and_unplaceable_copy_are_refused() {
    let c = catalog(OnExpression::Deny, OnPredicate::Allow);
    for sql in [
        "INSERT INTO scratch SELECT email FROM customers",
        "UPDATE customers SET name = email",
        "CREATE TABLE t AS SELECT card_number FROM customers",
        "SELECT email INTO t FROM customers",
        "COPY (SELECT *, 1 FROM customers) TO STDOUT",
        "COPY (SELECT lower(email) FROM customers) TO STDOUT",
        "UPDATE customers SET email = lower(email) WHERE id = 1",
        "UPDATE customers u SET card_number = substr(v.e, 1, 4) \
         FROM (SELECT email AS e FROM customers) v",
        "SELECT 1 FROM customers WHERE set_config('x.y', email, false) IS NULL",
        "SELECT 1 FROM customers WHERE pg_advisory_xact_lock(card_number::bigint) IS NULL",
        "EXPLAIN ANALYZE SELECT lo_from_bytea(0, convert_to(email, 'UTF8')) FROM customers",
    ] {
        assert!(denied(&check_sql(&c, sql)), "{sql}");
    }
    for sql in [
        "UPDATE customers SET email = email WHERE id = 1",
        "SELECT set_config('application_name', 'ci', false)",
        "COPY orders TO STDOUT",
        "COPY (SELECT email FROM customers) TO STDOUT",
        "INSERT INTO orders (customer_id, total_cents, created_at) SELECT id, 1, now() FROM customers",
    ] {
        assert!(check_sql(&c, sql).is_ok(), "{sql}");
    }
}

#[test]
fn copy_of_a_table_places_its_protected_columns_by_position() {
    let c = catalog(OnExpression::Deny, OnPredicate::Allow);
    let overlay = check_sql(&c, "COPY public.customers TO STDOUT (FORMAT csv)").expect("masked");
    assert_eq!(overlay.placed.len(), 4);
    assert_eq!(
        overlay.placed[2],
        Some(MaskStrategy::Redact { text: "***".into() })
    );
    assert_eq!(overlay.placed[3], Some(MaskStrategy::Null));
    assert!(overlay.placed[0].is_none() && overlay.placed[1].is_none());
}
