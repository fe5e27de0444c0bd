//! Statement policy on real clients: denials with 42501 naming the rule while the session goes
//! on, multi-statement strings, unparseable SQL, DO blocks, lexer-setting tricks, SELECT INTO, and
//! the extended protocol under pgbench.

use super::support::*;

#[test]
fn drop_table_is_denied_with_42501_and_the_session_goes_on() {
    let Some(stack) = stack() else { return };
    let script =
        "\\set VERBOSITY verbose\nDROP TABLE customers;\nSELECT count(*) FROM customers;\n";
    let mut command = stack.psql_command(true);
    command.args(["-f", "-"]);
    let out = run_script(command, script);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("ERROR:  42501:"), "{}", describe(&out));
    assert!(stderr.contains(DENY_RULE), "the rule is named: {stderr}");
    assert!(
        stderr.contains("DDL"),
        "the statement class is named: {stderr}"
    );
    assert_eq!(
        text(&out.stdout).trim(),
        "20",
        "the session went on: {}",
        describe(&out)
    );

    assert!(customers_table_exists(&stack), "customers still exists");
    let log = stack.pg.server_log();
    assert!(
        !log.to_lowercase().contains("drop table"),
        "DROP never reached the server"
    );

    let events = events_with(&stack, "DROP TABLE customers");
    let denied = events
        .iter()
        .find(|e| {
            e["statement"]["text"]
                .as_str()
                .is_some_and(|t| t.contains("DROP TABLE"))
        })
        .expect("denied statement event");
    assert_eq!(denied["statement"]["decision"], "denied");
    assert_eq!(denied["statement"]["rule"], DENY_RULE);
    assert_eq!(denied["statement"]["sqlstate"], "42501");
    assert!(
        denied["statement"]["kinds"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "ddl"))
    );
}

#[test]
fn a_denied_statement_denies_the_whole_query_string() {
    let Some(stack) = stack() else { return };
    let out = stack
        .psql("SELECT 1; TRUNCATE orders", true)
        .expect("psql runs");
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(text(&out.stderr).contains("TRUNCATE"), "{}", describe(&out));
    let orders = stack
        .pg
        .psql_superuser_in("shop", "SELECT count(*) > 0 FROM orders;")
        .expect("superuser query");
    assert_eq!(orders.trim(), "t", "orders untouched");
}

#[test]
fn unparseable_sql_is_refused_and_not_forwarded() {
    let Some(stack) = stack() else { return };
    let out = stack
        .psql("SELEC * FROM customers", true)
        .expect("psql runs");
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("syntax error"), "{stderr}");
    assert!(stderr.contains("not forwarded"), "{stderr}");
    assert!(
        !stack.pg.server_log().contains("SELEC *"),
        "never sent upstream"
    );
}

#[test]
fn a_do_block_cannot_smuggle_denied_ddl() {
    let Some(stack) = stack() else { return };
    let out = stack
        .psql("DO $$ BEGIN EXECUTE 'DROP TABLE customers'; END $$", true)
        .expect("psql runs");
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("DO blocks"),
        "{}",
        describe(&out)
    );
    assert!(customers_table_exists(&stack), "customers still exists");
}

#[test]
fn lexer_settings_cannot_hide_a_statement_from_the_agent() {
    let Some(stack) = stack() else { return };
    let before = orders_count(&stack);
    let hidden = "SELECT 'x\\'' ; TRUNCATE orders; -- '";
    // standard_conforming_strings = off from the startup options: the agent pins it on.
    let mut command = stack.psql_command(true);
    command.args(["-c", hidden]).env(
        "PGOPTIONS",
        "-c standard_conforming_strings=off -c escape_string_warning=off",
    );
    let out = command.output().expect("psql runs");
    assert!(
        out.status.success(),
        "read as one string literal: {}",
        describe(&out)
    );
    assert_eq!(orders_count(&stack), before, "TRUNCATE must not run");
    // Changing it in the session is refused.
    let out = stack
        .psql("SET standard_conforming_strings = off", true)
        .expect("psql runs");
    assert!(
        text(&out.stderr).contains("standard_conforming_strings"),
        "{}",
        describe(&out)
    );
    let out = stack
        .psql(
            "SELECT set_config('standard_conforming_strings', 'off', false)",
            true,
        )
        .expect("psql runs");
    assert!(!out.status.success(), "{}", describe(&out));
    // A client encoding whose multibyte characters can swallow a backslash.
    let mut command = stack.psql_command(true);
    command
        .args(["-c", "SELECT E'\u{4e01}\\'; TRUNCATE orders; --'"])
        .env("PGCLIENTENCODING", "GBK");
    let out = command.output().expect("psql runs");
    assert_eq!(
        orders_count(&stack),
        before,
        "TRUNCATE must not run: {}",
        describe(&out)
    );
}

#[test]
fn select_into_hidden_in_a_union_is_ddl() {
    let Some(stack) = stack() else { return };
    let out = stack
        .psql("SELECT 1 AS a INTO TEMP sneaky UNION SELECT 2", true)
        .expect("psql runs");
    assert!(
        text(&out.stderr).contains("42501") || text(&out.stderr).contains("DDL"),
        "{}",
        describe(&out)
    );
    assert!(
        !stack.pg.server_log().contains("sneaky"),
        "never reached the server"
    );
}

#[test]
fn extended_protocol_through_the_agent_with_pgbench() {
    let Some(stack) = stack() else { return };
    let script = stack.dir.path().join("bench.sql");
    std::fs::write(
        &script,
        "SELECT email, card_number FROM customers WHERE id = 3;\n",
    )
    .expect("script");
    for mode in ["extended", "prepared"] {
        let mut command = stack.job("pgbench", true);
        command
            .args([
                "-n",
                "-M",
                mode,
                "-t",
                "20",
                "-h",
                "127.0.0.1",
                "-d",
                "shop",
            ])
            .args(["-p", &stack.pg.port().to_string(), "-f"])
            .arg(&script);
        let out = command.output().expect("pgbench runs");
        assert!(out.status.success(), "{mode}: {}", describe(&out));
        assert!(
            text(&out.stdout).contains("number of failed transactions: 0"),
            "{}",
            describe(&out)
        );
    }
}

/// psql's `\lo_import` and `\lo_export` call libpq's large-object functions through the
/// fast-path FunctionCall message: decided under policy by function name like any statement.
#[test]
fn fastpath_function_calls_are_decided_by_policy_with_the_function_named() {
    let Some(stack) = stack() else { return };
    let data = stack.dir.path().join("blob.txt");
    std::fs::write(&data, "large object body\n".repeat(1000)).expect("data file");
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let export = stack.dir.path().join("export");
    std::fs::create_dir(&export).expect("export dir");
    std::fs::set_permissions(&export, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod");
    let exported = export.join("blob.out");
    let script = format!(
        "\\lo_import {data}\n\
         SELECT md5(lo_get(:LASTOID)) = md5(repeat(E'large object body\\n', 1000)) AS same;\n\
         \\lo_export :LASTOID {out}\n\
         \\lo_unlink :LASTOID\n\
         SELECT count(*) FROM customers;\n",
        data = data.display(),
        out = exported.display(),
    );
    let run = |token: &std::path::Path| {
        let mut command = stack.job("psql", false);
        command
            .env("AZURE_FEDERATED_TOKEN_FILE", token)
            .args(stack.psql_args())
            .args(["-f", "-"]);
        run_script(command, &script)
    };

    // Allowed for the stack's identity: the large object goes in and out intact.
    let out = run(&stack.token_file);
    assert!(
        text(&out.stdout).lines().any(|l| l == "t"),
        "{}",
        describe(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&exported).expect("exported file"),
        "large object body\n".repeat(1000)
    );
    assert!(
        text(&out.stdout).trim_end().ends_with("20"),
        "{}",
        describe(&out)
    );

    // Denied for another service principal by rule: 42501 naming the rule, session goes on.
    let other = no_fastpath_token(&stack);
    let out = run(&other);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(jitgate_tests::stack::FASTPATH_RULE) && stderr.contains("FUNCTION_CALL"),
        "{}",
        describe(&out)
    );
    assert!(
        text(&out.stdout).trim_end().ends_with("20"),
        "the session went on: {}",
        describe(&out)
    );
    let events = events_with(&stack, "FunctionCall pg_catalog.lo_");
    let denied = events
        .iter()
        .find(|e| e["statement"]["decision"] == "denied")
        .expect("a denied FunctionCall event");
    assert_eq!(
        denied["statement"]["rule"],
        jitgate_tests::stack::FASTPATH_RULE
    );
    assert_eq!(denied["statement"]["protocol"], "fastpath");
    assert!(
        denied["statement"]["kinds"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "function_call")),
        "{denied}"
    );
}

/// A Sync sent during COPY-in is ignored by the server; an agent that waited for its answer
/// would match later responses to the wrong requests and could let a FunctionCall through
/// undecided. After an extended COPY, a denied FunctionCall is still denied and nothing runs.
#[test]
fn a_denied_fastpath_call_after_an_extended_copy_is_still_denied() {
    let Some(stack) = stack() else { return };
    let token = no_fastpath_token(&stack);
    let script = jitgate_tests::python::scripts_dir().join("fastpath_after_copy.py");
    let out = stack
        .job("python3", false)
        .env("AZURE_FEDERATED_TOKEN_FILE", &token)
        .arg(&script)
        .args([
            "127.0.0.1",
            &stack.pg.port().to_string(),
            "shop",
            jitgate_tests::stack::CI_ROLE,
        ])
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", describe(&out));
    let result: Value = serde_json::from_str(text(&out.stdout).trim()).expect("one JSON object");
    assert_eq!(result["copy_start"]["messages"], "12G", "{result}");
    assert_eq!(result["copy_end"]["messages"], "CZ", "{result}");
    assert_eq!(result["division"]["messages"], "EZ", "{result}");
    assert_eq!(
        result["division"]["errors"][0]["sqlstate"], "22012",
        "{result}"
    );
    assert_eq!(
        result["function_call"]["messages"], "EZ",
        "the call is answered by the agent's denial only: {result}"
    );
    assert_eq!(
        result["function_call"]["errors"][0]["sqlstate"], "42501",
        "{result}"
    );
    assert!(
        result["function_call"]["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains(jitgate_tests::stack::FASTPATH_RULE)),
        "{result}"
    );
    assert_eq!(
        result["after"]["messages"], "TDCZ",
        "the session is in step: {result}"
    );
    let created = stack
        .pg
        .psql_superuser_in(
            jitgate_tests::stack::SHOP_DB,
            "SELECT count(*) FROM pg_largeobject_metadata WHERE oid = 525252;",
        )
        .expect("superuser query");
    assert_eq!(created.trim(), "0", "the denied lo_create did not run");
}

/// A token file, readable by the job, for the service principal the stack's `ci-no-fastpath`
/// rule covers.
fn no_fastpath_token(stack: &Stack) -> std::path::PathBuf {
    let claims = jitgate_tests::claims::entra_sp_claims(
        jitgate_tests::stack::TENANT,
        APP_ID,
        jitgate_tests::stack::NO_FASTPATH_OBJECT_ID,
        jitgate_tests::stack::AUDIENCE,
        Duration::from_secs(600),
    );
    let token = stack.dir.path().join("no-fastpath.jwt");
    std::fs::write(&token, stack.issuer.token(&claims).expect("token")).expect("token file");
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    token
}
