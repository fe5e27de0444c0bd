//! Approvals end to end: policy requires approval, the agent asks the collector, a person
//! decides with the `jitgate` CLI. Hold mode (psql waits, then its statement runs once
//! approved), request mode (refused with a request id; after approval the rerun succeeds), a
//! denial, and automatic approval by policy.

use super::support::*;

const POLICY: &str = r#"
@id("baseline")
permit(principal, action in Jitgate::Action::"statement", resource);

@id("deletes-held")
@reason("deleting orders needs a second person")
@approval("hold")
forbid(principal, action == Jitgate::Action::"delete", resource)
unless { context.approved };

@id("ddl-by-request")
@reason("schema changes need a change ticket")
@approval("request")
@grant_ttl("600")
forbid(principal, action in Jitgate::Action::"schema_change", resource)
unless { context.approved };

@id("inserts-auto-approved")
@approval("hold")
forbid(principal, action == Jitgate::Action::"insert", resource)
unless { context.approved };

@id("inserts-approved-by-policy")
permit(principal, action == Jitgate::Action::"approve", resource)
when { context.classes == ["insert"] };
"#;

fn approval_stack() -> Option<Stack> {
    stack_with(StackOptions {
        policy: POLICY.into(),
        ..StackOptions::default()
    })
}

/// Pending approval requests, as the CLI lists them.
fn pending(stack: &Stack) -> Vec<Value> {
    json_lines(
        &stack
            .cli(&["--json", "approvals", "list"])
            .expect("jitgate approvals list"),
    )
}

fn decide(stack: &Stack, verb: &str, id: &str) -> std::process::Output {
    stack
        .cli(&[
            "approvals",
            verb,
            id,
            "--as",
            "alice@example.com",
            "--comment",
            "ticket 4711",
        ])
        .expect("jitgate approvals")
}

#[test]
fn a_held_statement_runs_once_a_person_approves_it_and_is_refused_when_denied() {
    let Some(stack) = approval_stack() else {
        return;
    };
    for verb in ["approve", "deny"] {
        let child = stack
            .psql_command(true)
            .args([
                "-v",
                "VERBOSITY=verbose",
                "-c",
                "DELETE FROM orders WHERE id = -1",
                "-c",
                "SELECT 'after'",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("psql starts");
        let request = eventually("a pending approval request", || {
            pending(&stack).into_iter().find(|r| {
                r["request"]["statement"]
                    .as_str()
                    .is_some_and(|s| s.contains("DELETE FROM orders"))
            })
        });
        let id = request["approval_id"]
            .as_str()
            .expect("request id")
            .to_owned();
        assert_eq!(request["request"]["mode"], "hold", "{request}");
        let out = decide(&stack, verb, &id);
        assert!(out.status.success(), "{}", describe(&out));
        let out = child.wait_with_output().expect("psql ends");
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(
            stderr.contains(&id),
            "the notice names the request: {stderr}"
        );
        assert!(
            stdout.contains("after"),
            "the session goes on: {}",
            describe(&out)
        );
        if verb == "approve" {
            assert!(stdout.contains("DELETE 0"), "{}", describe(&out));
            assert!(!stderr.contains("ERROR"), "{}", describe(&out));
        } else {
            assert!(
                stderr.contains("42501") && stderr.contains("denied by alice@example.com"),
                "{}",
                describe(&out)
            );
        }
    }
    // Who decided, and when, is in the session's audit trail.
    let events = eventually("approval events", || {
        let sessions = json_lines(&stack.cli(&["sessions", "--json"]).ok()?);
        let mut all = Vec::new();
        for s in sessions {
            let id = s["session_id"].as_str()?.to_owned();
            all.extend(json_lines(
                &stack.cli(&["events", "--session", &id, "--json"]).ok()?,
            ));
        }
        let kinds: Vec<String> = all
            .iter()
            .filter_map(|e| e["kind"].as_str().map(str::to_owned))
            .collect();
        (kinds.iter().any(|k| k == "approval_granted")
            && kinds.iter().any(|k| k == "approval_denied"))
        .then_some(all)
    });
    assert!(
        events
            .iter()
            .any(|e| e.to_string().contains("alice@example.com")),
        "the approver is recorded"
    );
}

#[test]
fn request_mode_refuses_with_an_id_and_the_rerun_succeeds_once_approved() {
    let Some(stack) = approval_stack() else {
        return;
    };
    let sql = "COMMENT ON TABLE orders IS 'orders_reviewed_4711'";
    let out = stack.psql(sql, true).expect("psql runs");
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("request"),
        "{}",
        describe(&out)
    );
    let request = pending(&stack)
        .into_iter()
        .find(|r| r["request"]["statement"].as_str() == Some(sql))
        .expect("a pending request for the statement");
    let id = request["approval_id"].as_str().expect("id").to_owned();
    assert!(
        stderr.contains(&id),
        "the refusal names the request: {stderr}"
    );
    assert!(
        !stack.pg.server_log().contains("orders_reviewed_4711"),
        "never reached the server before approval"
    );
    let out = decide(&stack, "approve", &id);
    assert!(out.status.success(), "{}", describe(&out));
    let out = stack.psql(sql, true).expect("psql runs");
    assert!(
        out.status.success(),
        "the rerun runs under the grant: {}",
        describe(&out)
    );
    let exists = stack
        .pg
        .psql_superuser_in(
            "shop",
            "SELECT obj_description('orders'::regclass, 'pg_class');",
        )
        .expect("superuser query");
    assert_eq!(exists.trim(), "orders_reviewed_4711");
    // Both the refused statement and the rerun name the approval in the trail.
    let statements = eventually("both statements under the approval", || {
        let sessions = json_lines(&stack.cli(&["sessions", "--json"]).ok()?);
        let mut found = Vec::new();
        for s in sessions {
            let session = s["session_id"].as_str()?.to_owned();
            let events = json_lines(
                &stack
                    .cli(&["events", "--session", &session, "--json"])
                    .ok()?,
            );
            found.extend(
                events
                    .into_iter()
                    .filter(|e| e["statement"]["text"].as_str() == Some(sql)),
            );
        }
        (found.len() == 2).then_some(found)
    });
    for e in &statements {
        assert_eq!(e["statement"]["approval_id"], id.as_str(), "{e}");
    }
    assert!(
        statements
            .iter()
            .any(|e| e["statement"]["decision"] == "allowed")
    );
}

#[test]
fn an_approve_policy_approves_automatically_and_the_approval_is_recorded() {
    let Some(stack) = approval_stack() else {
        return;
    };
    let out = stack
        .psql(
            "INSERT INTO orders (customer_id, total_cents, created_at) VALUES (1, 5, now())",
            true,
        )
        .expect("psql runs");
    assert!(out.status.success(), "{}", describe(&out));
    let all = json_lines(
        &stack
            .cli(&["--json", "approvals", "list", "--all"])
            .expect("jitgate approvals list --all"),
    );
    assert!(
        all.iter()
            .any(|r| r.to_string().contains("policy:inserts-approved-by-policy")),
        "recorded as approved by the policy: {all:?}"
    );
}
