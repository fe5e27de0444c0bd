//! The audit trail with the collector storing in PostgreSQL: a CI job's psql session through
//! the agent, the collector (`--db postgres://… --db-password-file …`), and `jitgate sessions` /
//! `jitgate events` reading it back; the rows are really in the collector's PostgreSQL database.

use super::support::*;

#[test]
fn audit_trail_through_a_collector_on_postgres() {
    let Some(stack) = stack_with(StackOptions {
        collector_on_postgres: true,
        ..StackOptions::default()
    }) else {
        return;
    };
    let out = stack
        .psql("SELECT count(*) AS audited_on_pg FROM customers", true)
        .expect("psql runs");
    assert!(out.status.success(), "{}", describe(&out));
    let denied = stack.psql("DROP TABLE customers", true).expect("psql runs");
    assert!(!denied.status.success(), "{}", describe(&denied));

    let events = events_with(&stack, "audited_on_pg");
    let statement = events
        .iter()
        .find(|e| e["kind"] == "statement")
        .expect("the statement is in the trail");
    assert_eq!(statement["statement"]["decision"], "allowed", "{statement}");
    assert!(events.iter().any(|e| e["kind"] == "session_started"));
    let denied_events = events_with(&stack, "DROP TABLE customers");
    assert!(
        denied_events
            .iter()
            .any(|e| e["statement"]["decision"] == "denied")
    );

    let sessions = json_lines(
        &stack
            .cli(&["sessions", "--json"])
            .expect("jitgate sessions"),
    );
    // Client sessions carry an identity; the agent run's own lifecycle chain does not.
    let clients: Vec<_> = sessions
        .iter()
        .filter(|s| !s["identity"].is_null())
        .collect();
    assert!(clients.len() >= 2, "{sessions:?}");
    assert!(
        clients
            .iter()
            .all(|s| s["identity"]["subject"] == OBJECT_ID),
        "{sessions:?}"
    );

    // The trail is in PostgreSQL, not in a SQLite file next to the collector.
    assert!(!stack.collector.db_path().exists());
    let stored = stack
        .pg
        .psql_superuser_in(
            "jitgate_audit",
            "SELECT count(*) FROM events WHERE statement_text LIKE '%audited_on_pg%';\n\
             SELECT version FROM jitgate_schema;\n",
        )
        .expect("query the collector's database");
    let lines: Vec<&str> = stored.lines().collect();
    let version = jitgate_collector::storage::SCHEMA_VERSION.to_string();
    assert_eq!(
        lines,
        ["1", version.as_str()],
        "one stored statement, the current schema version"
    );
}
