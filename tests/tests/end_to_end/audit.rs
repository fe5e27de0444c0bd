//! Sessions cut short: the orphaned query is cancelled upstream and still audited.

use super::support::*;

#[test]
fn a_statement_cut_off_by_a_killed_client_is_cancelled_upstream_and_audited() {
    let Some(stack) = stack() else { return };
    let mut command = stack.psql_command(true);
    command
        .args(["-c", "SELECT pg_sleep(5), 'cut off'"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = command.spawn().expect("psql spawns");
    // Kill the client once the statement runs upstream (the server logs every statement), not
    // after a fixed pause a loaded machine may not have reached it by.
    eventually("the statement to run upstream", || {
        stack
            .pg
            .server_log()
            .contains("SELECT pg_sleep(5), 'cut off'")
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    child.kill().expect("kill psql");
    child.wait().expect("reaped");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stack
        .pg
        .server_log()
        .contains("canceling statement due to user request")
    {
        assert!(
            Instant::now() < deadline,
            "the orphaned query was not cancelled; agent log:\n{}\nserver log:\n{}",
            stack.agent.log(),
            stack.pg.server_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let events = events_with(&stack, "'cut off'");
    let stmt = events
        .iter()
        .find(|e| e["kind"] == "statement")
        .expect("the statement is in the trail");
    assert!(
        stmt["statement"]["command_tag"]
            .as_str()
            .is_some_and(|t| t.contains("unfinished")),
        "{stmt}"
    );
    // What was known when the session ended is kept.
    assert_eq!(
        stmt["statement"]["policies"],
        serde_json::json!(["ci-baseline"])
    );
    assert!(
        stmt["statement"]["fingerprint"]
            .as_str()
            .is_some_and(|f| !f.is_empty()),
        "{stmt}"
    );
}

#[test]
fn a_multi_statement_query_is_recorded_statement_by_statement() {
    let Some(stack) = stack() else { return };
    // One Query message (psql -c sends the string whole): the server answers each statement
    // with its own CommandComplete, stops at the error, and never runs the last one.
    let out = stack
        .psql(
            "SELECT count(*) AS in_orders FROM orders; SELECT 1/0; SELECT 'never run'",
            true,
        )
        .expect("psql runs");
    assert_eq!(
        text(&out.stdout).trim(),
        orders_count(&stack).to_string(),
        "{}",
        describe(&out)
    );
    assert!(
        text(&out.stderr).contains("division by zero"),
        "{}",
        describe(&out)
    );
    let events = events_with(&stack, "SELECT 'never run'");
    let statements: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "statement")
        .map(|e| &e["statement"])
        .collect();
    let texts: Vec<&str> = statements
        .iter()
        .filter_map(|s| s["text"].as_str())
        .collect();
    assert_eq!(
        texts,
        [
            "SELECT count(*) AS in_orders FROM orders",
            "SELECT 1/0",
            "SELECT 'never run'"
        ],
        "{events:?}"
    );
    assert_eq!(statements[0]["command_tag"], "SELECT 1");
    assert_eq!(statements[0]["rows"], 1);
    assert_eq!(statements[1]["sqlstate"], "22012");
    assert_eq!(statements[1]["rows"], 0);
    assert!(
        statements[2]["command_tag"]
            .as_str()
            .is_some_and(|t| t.starts_with("(not run")),
        "{}",
        statements[2]
    );
    // Each statement has its own shape.
    assert_ne!(statements[0]["fingerprint"], statements[1]["fingerprint"]);
}
