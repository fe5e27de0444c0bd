//! The policy corpus: query strings run with real psql through the agent against a real
//! PostgreSQL, under a Cedar policy set with a protected schema, a protected table, the
//! dangerous-feature catalogue, DDL and one table's DELETE forbidden. Each case asserts the
//! decision (allowed with its real result, or 42501/42601 naming the deciding policy), that a
//! denied string never reached the server (its marker is absent from the server's statement
//! log), and that the session went on (a statement after it in the same session answers).
//! Evasion shapes: comments, case, quoting and dollar quoting, unicode escapes, DML in CTEs,
//! multi-statement strings, SQL-level PREPARE/EXECUTE, functions with side effects,
//! search_path tricks.

use super::support::*;

/// The corpus policy: a protected schema and table, the dangerous catalogue, DDL and one
/// DELETE forbidden.
pub const POLICY: &str = r#"
@id("baseline")
permit(principal, action in Jitgate::Action::"statement", resource);

@id("no-secrets")
@reason("secrets are not for CI")
forbid(principal, action, resource is Jitgate::Table)
when { resource.schema == "vault" || resource.name == "secrets" };

@id("no-dangerous")
@reason("this reaches past the tables the statement names")
forbid(principal, action, resource)
when { context.dangerous.containsAny(["read_server_file", "write_server_file", "copy_program",
  "server_file", "remote_connection", "set_role", "alter_system", "dynamic_sql",
  "large_object", "signal_backend", "load_library", "create_extension", "replication"]) };

@id("no-ddl")
@reason("schema changes go through the migration pipeline")
forbid(principal, action in Jitgate::Action::"schema_change", resource);

@id("no-do")
forbid(principal, action == Jitgate::Action::"do", resource);

@id("no-delete-orders")
forbid(principal, action == Jitgate::Action::"delete", resource == Jitgate::Table::"public.orders");
"#;

/// The corpus tables: `vault.keys`, `public.secrets`, `public.keys`.
pub const SETUP: &str = "CREATE SCHEMA vault AUTHORIZATION jitgate_ci;\n\
    CREATE TABLE vault.keys (k text); INSERT INTO vault.keys VALUES ('VAULT-KEY-1');\n\
    ALTER TABLE vault.keys OWNER TO jitgate_ci;\n\
    CREATE TABLE public.secrets (s text); INSERT INTO public.secrets VALUES ('SECRET-1');\n\
    ALTER TABLE public.secrets OWNER TO jitgate_ci;\n\
    CREATE TABLE public.keys (k text); INSERT INTO public.keys VALUES ('public-key');\n\
    ALTER TABLE public.keys OWNER TO jitgate_ci;\n";

/// What a case must do.
enum Expect {
    /// Runs; stdout contains this text.
    Allow(&'static str),
    /// Refused with this SQLSTATE, naming one of these policies.
    Deny(&'static str, &'static [&'static str]),
}

use Expect::{Allow, Deny};

const SECRETS: &[&str] = &["no-secrets"];
const DANGER: &[&str] = &["no-dangerous"];
const DDL: &[&str] = &["no-ddl"];
const DELETE: &[&str] = &["no-delete-orders"];
const PARSE: &[&str] = &["cannot parse"];

/// (statements sent in one session, each its own Query; the last one is decided; expectation)
const CASES: &[(&[&str], Expect)] = &[
    // Controls: real, unprotected data comes back.
    (&["SELECT count(*) FROM customers"], Allow("20")),
    (&["SELECT count(*) FROM public.orders"], Allow("")),
    (&["select COUNT(*) from CUSTOMERS"], Allow("20")),
    (&["SELECT k FROM keys"], Allow("public-key")),
    (
        &["SELECT $q$ DROP TABLE customers $q$ AS text"],
        Allow("DROP TABLE customers"),
    ),
    (
        &["SELECT 'DROP TABLE customers; --' AS t"],
        Allow("DROP TABLE customers; --"),
    ),
    (&["SELECT 1 AS one -- ; DROP TABLE customers"], Allow("1")),
    // A value computed from a masked column (here a yes/no about it) is refused by default.
    (
        &["SELECT lower(email) LIKE '%@%' FROM customers LIMIT 1"],
        Deny("42501", &["masking-lineage"]),
    ),
    (
        &["SELECT name LIKE '%a%' FROM customers ORDER BY id LIMIT 1"],
        Allow("t"),
    ),
    (&["DELETE FROM customers WHERE id = -1"], Allow("")),
    (
        &["BEGIN; SELECT count(*) FROM customers; COMMIT"],
        Allow("20"),
    ),
    (&["SELECT nextval('orders_id_seq') > 0"], Allow("t")),
    (
        &["PREPARE ok AS SELECT count(*) FROM customers", "EXECUTE ok"],
        Allow("20"),
    ),
    (
        &["SET search_path = public", "SELECT k FROM keys"],
        Allow("public-key"),
    ),
    (&["LISTEN channel_x"], Allow("")),
    // Protected table and schema, however written.
    (&["SELECT * FROM secrets"], Deny("42501", SECRETS)),
    (&["select * from SECRETS"], Deny("42501", SECRETS)),
    (&["SELECT * FROM \"secrets\""], Deny("42501", SECRETS)),
    (
        &["SELECT * FROM public.\"secrets\""],
        Deny("42501", SECRETS),
    ),
    (&["SELECT * FROM vault.keys"], Deny("42501", SECRETS)),
    (
        &["SELECT * FROM \"vault\".\"keys\""],
        Deny("42501", SECRETS),
    ),
    (&["SELECT * FROM VaUlT.KeYs"], Deny("42501", SECRETS)),
    (&["SELECT/**/*/**/FROM/**/secrets"], Deny("42501", SECRETS)),
    (
        &["SELECT * FROM U&\"secr\\0065ts\""],
        Deny("42501", SECRETS),
    ),
    (
        &["SELECT * FROM U&\"!0073ecrets\" UESCAPE '!'"],
        Deny("42501", SECRETS),
    ),
    (&["TABLE secrets"], Deny("42501", SECRETS)),
    (&["SELECT 1; SELECT * FROM secrets"], Deny("42501", SECRETS)),
    (
        &["SELECT * FROM customers; SELECT * FROM vault.keys"],
        Deny("42501", SECRETS),
    ),
    (
        &["WITH s AS (SELECT * FROM secrets) SELECT * FROM s"],
        Deny("42501", SECRETS),
    ),
    (
        &["WITH secrets AS (SELECT * FROM secrets) SELECT * FROM secrets"],
        Deny("42501", SECRETS),
    ),
    (
        &["SELECT * FROM customers WHERE EXISTS (SELECT 1 FROM secrets)"],
        Deny("42501", SECRETS),
    ),
    (
        &["SELECT 1 LIMIT (SELECT count(*) FROM secrets)"],
        Deny("42501", SECRETS),
    ),
    (
        &["SELECT * FROM customers ORDER BY (SELECT max(s) FROM secrets)"],
        Deny("42501", SECRETS),
    ),
    (
        &["SELECT * FROM customers c, LATERAL (SELECT * FROM vault.keys) k"],
        Deny("42501", SECRETS),
    ),
    (
        &["SELECT name FROM customers UNION SELECT s FROM secrets"],
        Deny("42501", SECRETS),
    ),
    (
        &["SELECT CASE WHEN true THEN (SELECT s FROM secrets) END"],
        Deny("42501", SECRETS),
    ),
    (
        &["SELECT row_to_json(x) FROM secrets x"],
        Deny("42501", SECRETS),
    ),
    (
        &["SELECT count(*) FROM customers HAVING count(*) > (SELECT count(*) FROM secrets)"],
        Deny("42501", SECRETS),
    ),
    (
        &["INSERT INTO keys SELECT s FROM secrets"],
        Deny("42501", SECRETS),
    ),
    (
        &["UPDATE keys SET k = s FROM secrets"],
        Deny("42501", SECRETS),
    ),
    (&["COPY secrets TO STDOUT"], Deny("42501", SECRETS)),
    (
        &["COPY (SELECT * FROM secrets) TO STDOUT"],
        Deny("42501", SECRETS),
    ),
    (
        &["EXPLAIN ANALYZE SELECT * FROM secrets"],
        Deny("42501", SECRETS),
    ),
    (
        &["PREPARE leak AS SELECT * FROM secrets"],
        Deny("42501", SECRETS),
    ),
    (
        &["PREPARE leak AS SELECT * FROM secrets", "EXECUTE leak"],
        Deny("42501", &["not prepared through jitgate"]),
    ),
    (
        &["DECLARE c CURSOR FOR SELECT * FROM secrets"],
        Deny("42501", SECRETS),
    ),
    (&["LOCK TABLE secrets"], Deny("42501", SECRETS)),
    (&["VACUUM secrets"], Deny("42501", SECRETS)),
    // search_path tricks.
    (
        &["SET search_path = vault, public", "SELECT * FROM keys"],
        Deny("42501", SECRETS),
    ),
    (
        &["SET search_path = vault; SELECT * FROM keys"],
        Deny("42501", SECRETS),
    ),
    (
        &[
            "SELECT set_config('search_path', 'vault', false)",
            "SELECT * FROM keys",
        ],
        Deny("42501", SECRETS),
    ),
    (
        &["SELECT set_config('search_path', 'va' || 'ult', false)"],
        Deny("42501", &["constant schema names"]),
    ),
    // Dangerous functions and statements.
    (
        &["SELECT pg_read_file('/etc/hostname')"],
        Deny("42501", DANGER),
    ),
    (
        &["SELECT pg_catalog.pg_read_file('/etc/hostname')::text"],
        Deny("42501", DANGER),
    ),
    (&["SELECT * FROM pg_ls_dir('.')"], Deny("42501", DANGER)),
    (
        &["SELECT 1 WHERE length(PG_READ_FILE('/etc/hostname')) > 0"],
        Deny("42501", DANGER),
    ),
    (
        &["SELECT lo_import('/etc/hostname')"],
        Deny("42501", DANGER),
    ),
    (
        &["SELECT lo_export(1, '/tmp/jitgate-corpus-export')"],
        Deny("42501", DANGER),
    ),
    (
        &["COPY customers TO PROGRAM 'cat > /dev/null'"],
        Deny("42501", DANGER),
    ),
    (&["COPY keys FROM '/etc/hostname'"], Deny("42501", DANGER)),
    (&["SET ROLE postgres"], Deny("42501", DANGER)),
    (
        &["SET SESSION AUTHORIZATION postgres"],
        Deny("42501", DANGER),
    ),
    (
        &["SELECT set_config('role', 'postgres', false)"],
        Deny("42501", DANGER),
    ),
    (
        &["SELECT query_to_xml('SELECT * FROM secrets', true, false, '')"],
        Deny("42501", DANGER),
    ),
    (
        &["SELECT query_to_xml('SELECT 1', true, false, '')"],
        Deny("42501", DANGER),
    ),
    (
        &["SELECT pg_terminate_backend(pg_backend_pid())"],
        Deny("42501", DANGER),
    ),
    (
        &["SELECT dblink('host=127.0.0.1', 'SELECT 1')"],
        Deny("42501", DANGER),
    ),
    (
        &["ALTER SYSTEM SET log_statement = 'none'"],
        Deny("42501", &["no-dangerous", "no-ddl"]),
    ),
    (
        &["DO $$ BEGIN EXECUTE 'DROP TABLE customers'; END $$"],
        Deny("42501", &["no-do"]),
    ),
    // DDL and the protected DELETE.
    (&["DROP TABLE customers"], Deny("42501", DDL)),
    (&["DrOp TaBlE customers"], Deny("42501", DDL)),
    (&["/* harmless */ DROP TABLE customers"], Deny("42501", DDL)),
    (
        &["SELECT E'\\''; DROP TABLE customers; --'"],
        Deny("42501", DDL),
    ),
    (&["TRUNCATE orders"], Deny("42501", DDL)),
    (
        &["SELECT * INTO TEMP copy_of_customers FROM customers"],
        Deny("42501", DDL),
    ),
    (&["CREATE TEMP TABLE t AS SELECT 1"], Deny("42501", DDL)),
    (
        &["CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'"],
        Deny("42501", DDL),
    ),
    (&["GRANT SELECT ON customers TO PUBLIC"], Deny("42501", DDL)),
    (&["DELETE FROM orders"], Deny("42501", DELETE)),
    (
        &["delete from \"orders\" where true"],
        Deny("42501", DELETE),
    ),
    (&["DELETE FROM ONLY public.orders"], Deny("42501", DELETE)),
    (
        &["WITH d AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM d"],
        Deny("42501", DELETE),
    ),
    (&["SELECT 1; DELETE FROM orders"], Deny("42501", DELETE)),
    (
        &["EXPLAIN ANALYZE DELETE FROM orders"],
        Deny("42501", DELETE),
    ),
    (
        &["PREPARE del AS DELETE FROM orders"],
        Deny("42501", DELETE),
    ),
    // Unparseable text is never forwarded.
    (&["SELEC * FROM customers"], Deny("42601", PARSE)),
    (&["SELECT * FROM customers WHERE"], Deny("42601", PARSE)),
];

#[test]
fn the_policy_corpus_decides_every_case_and_denied_text_never_reaches_the_server() {
    assert!(CASES.len() >= 60, "the corpus has at least 60 cases");
    let Some(stack) = stack_with(StackOptions {
        policy: POLICY.into(),
        setup_sql: Some(SETUP.into()),
        ..StackOptions::default()
    }) else {
        return;
    };
    let mut failures = Vec::new();
    for (n, (statements, expect)) in CASES.iter().enumerate() {
        let marker = format!("corpus-case-{n}");
        let mut command = stack.psql_command(true);
        command.args(["-v", "VERBOSITY=verbose"]);
        let last = statements.len() - 1;
        for (i, sql) in statements.iter().enumerate() {
            let text = if i == last {
                format!("/* {marker} */ {sql}")
            } else {
                (*sql).to_owned()
            };
            command.args(["-c", &text]);
        }
        // The session goes on after the decided statement.
        command.args(["-c", &format!("SELECT 'alive-{n}'")]);
        let out = command.output().expect("psql runs");
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        let alive = stdout.contains(&format!("alive-{n}"));
        let logged = stack.pg.server_log().contains(&marker);
        let ok = match expect {
            Allow(needle) => {
                alive && logged && stdout.contains(needle) && !stderr.contains("ERROR")
            }
            Deny(sqlstate, rules) => {
                alive
                    && !logged
                    && stderr.contains(&format!("ERROR:  {sqlstate}"))
                    && rules.iter().any(|r| stderr.contains(r))
            }
        };
        if !ok {
            failures.push(format!(
                "case {n} {statements:?}: alive={alive} reached_server={logged}\n  stdout: {}\n  stderr: {}",
                stdout.trim(),
                stderr.trim()
            ));
        }
    }
    assert!(
        customers_table_exists(&stack),
        "customers survived the corpus"
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}
