//! End-to-end tests of the walking skeleton, as root: real kernel programs, a real PostgreSQL 15,
//! real `psql` and `pgbench` run inside the runner cgroup, real JWTs, the real collector. Each test
//! asserts what the client received, what PostgreSQL executed, and what the collector stored.
//!
//! Run with `cargo xtask test` (or `cargo test -p jitgate-tests --test end_to_end --
//! --test-threads=1` as root after `cargo xtask build`).

use std::net::TcpListener;
use std::process::Output;
use std::time::{Duration, Instant};

use jitgate_tests::process::is_root;
use jitgate_tests::shop::customers;
use jitgate_tests::stack::{APP_ID, DENY_RULE, OBJECT_ID, Stack};
use serde_json::Value;

fn stack() -> Option<Stack> {
    if !is_root() {
        eprintln!("skipped: needs root (eBPF, cgroups, runuser)");
        return None;
    }
    Some(Stack::start().expect("stack starts"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Polls the collector until `probe` finds what it needs (audit delivery is asynchronous).
fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn json_lines(out: &Output) -> Vec<Value> {
    text(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Events of the newest session whose statements include `needle`.
fn events_with(stack: &Stack, needle: &str) -> Vec<Value> {
    eventually(&format!("a session with {needle:?}"), || {
        let sessions = json_lines(&stack.cli(&["sessions", "--json"]).ok()?);
        sessions.iter().find_map(|s| {
            let id = s["session_id"].as_str()?;
            let events = json_lines(&stack.cli(&["events", "--session", id, "--json"]).ok()?);
            let found = events.iter().any(|e| {
                e["statement"]["text"]
                    .as_str()
                    .is_some_and(|t| t.contains(needle))
            });
            let ended = events.iter().any(|e| e["kind"] == "session_ended");
            (found && ended).then_some(events)
        })
    })
}

#[test]
fn allowed_select_returns_rows_with_email_and_card_masked() {
    let Some(stack) = stack() else { return };
    let out = stack
        .psql(
            "SELECT name, email AS e, card_number FROM customers ORDER BY id",
            true,
        )
        .expect("psql runs");
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    let rows: Vec<&str> = stdout.lines().filter(|l| !l.is_empty()).collect();
    let expected = customers();
    assert_eq!(rows.len(), expected.len(), "{stdout}");
    for (row, customer) in rows.iter().zip(&expected) {
        let cols: Vec<&str> = row.split('|').collect();
        assert_eq!(
            cols[0], customer.name,
            "names are not protected and come back as stored"
        );
        assert_ne!(
            cols[1], customer.email,
            "email must be masked even under an alias"
        );
        assert!(
            cols[1].starts_with(&customer.email[..1]) && cols[1].contains("*@"),
            "{row}"
        );
        assert_ne!(cols[2], customer.card_number);
        assert!(
            cols[2].ends_with(&customer.card_number[12..]),
            "last four kept: {row}"
        );
        assert!(cols[2].starts_with("************"), "{row}");
    }
    assert!(
        !stdout.contains("@example.com"),
        "no real address may leave: {stdout}"
    );

    let events = events_with(&stack, "SELECT name, email AS e");
    let stmt = events
        .iter()
        .find(|e| e["kind"] == "statement")
        .expect("statement event");
    assert_eq!(stmt["statement"]["decision"], "allowed");
    assert_eq!(stmt["statement"]["rows"], expected.len());
    assert_eq!(stmt["statement"]["masked_cells"], 2 * expected.len());
    let started = events
        .iter()
        .find(|e| e["kind"] == "session_started")
        .expect("session_started");
    let identity = &started["session_started"]["identity"];
    assert_eq!(identity["object_id"], OBJECT_ID);
    assert_eq!(identity["app_id"], APP_ID);
    assert_eq!(started["session_started"]["process"]["comm"], "psql");
    assert_eq!(started["session_started"]["database"], "shop");
}

#[test]
fn drop_table_is_denied_with_42501_and_the_session_goes_on() {
    let Some(stack) = stack() else { return };
    let script =
        "\\set VERBOSITY verbose\nDROP TABLE customers;\nSELECT count(*) FROM customers;\n";
    let mut command = stack.job("psql", true);
    command
        .args(["-X", "-w", "-A", "-t", "-h", "127.0.0.1", "-d", "shop"])
        .args(["-p", &stack.pg.port().to_string(), "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("psql spawns");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(script.as_bytes()).expect("script written");
    }
    let out = child.wait_with_output().expect("psql finishes");
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

    let tables = stack
        .pg
        .psql_superuser_in(
            "shop",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'customers';",
        )
        .expect("superuser query");
    assert_eq!(tables.trim(), "1", "customers still exists");
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
fn a_process_without_a_token_is_refused_with_28000() {
    let Some(stack) = stack() else { return };
    let out = stack.psql("SELECT 1", false).expect("psql runs");
    assert!(!out.status.success(), "{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no OIDC token"), "{stderr}");
    assert!(
        stderr.contains("AZURE_FEDERATED_TOKEN_FILE"),
        "says what to set: {stderr}"
    );
    let refused = eventually("a refused session", || {
        let sessions = json_lines(&stack.cli(&["sessions", "--json"]).ok()?);
        sessions.into_iter().find(|s| s["refused"] == true)
    });
    assert!(
        refused["refused_reason"]
            .as_str()
            .is_some_and(|r| r.contains("no OIDC token"))
    );
}

#[test]
fn an_expired_token_is_refused() {
    let Some(stack) = stack() else { return };
    let mut claims = jitgate_tests::claims::entra_sp_claims(
        jitgate_tests::stack::TENANT,
        APP_ID,
        OBJECT_ID,
        jitgate_tests::stack::AUDIENCE,
        Duration::from_secs(60),
    );
    claims["exp"] = Value::from(jitgate_tests::claims::now_secs() - 3600);
    std::fs::write(
        &stack.token_file,
        stack.issuer.token(&claims).expect("token"),
    )
    .expect("write");
    let out = stack.psql("SELECT 1", true).expect("psql runs");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("expired"), "{}", describe(&out));
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

#[test]
fn connections_to_other_ports_and_from_outside_the_cgroup_are_not_redirected() {
    let Some(stack) = stack() else { return };
    // Another port on the same address, from inside the runner cgroup.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut command = stack.job("python3", true);
    command.args([
        "-c",
        &format!("import socket; s=socket.create_connection(('127.0.0.1',{port})); print(s.getpeername()[1])"),
    ]);
    let out = command.output().expect("python runs");
    assert!(out.status.success(), "{}", describe(&out));
    let (_conn, peer) = listener
        .accept()
        .expect("the connection reached its real destination");
    assert!(peer.ip().is_loopback());

    // The protected database from a process outside the runner cgroup goes direct: the server
    // asks it for a password itself (the agent would never ask).
    let out = std::process::Command::new("psql")
        .args([
            "-X",
            "-w",
            "-h",
            "127.0.0.1",
            "-p",
            &stack.pg.port().to_string(),
        ])
        .args(["-d", "shop", "-c", "SELECT 1"])
        .env_remove("PGPASSWORD")
        .output()
        .expect("psql runs");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("password"), "{}", describe(&out));
}

#[test]
fn a_killed_agent_fails_closed() {
    let Some(mut stack) = stack() else { return };
    stack.agent.kill();
    let out = stack.psql("SELECT 1", true).expect("psql runs");
    assert!(!out.status.success(), "must not bypass: {}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("refused") || stderr.contains("could not connect"),
        "{stderr}"
    );
    assert!(
        !stack.pg.server_log().contains("SELECT 1"),
        "nothing reached the server"
    );
}

#[test]
fn a_rust_driver_gets_masked_rows_in_binary_format_and_denials_over_extended_protocol() {
    let Some(stack) = stack() else { return };
    let mut command = stack.job(env!("CARGO_BIN_EXE_jitgate-pg-client"), true);
    command.args([
        "127.0.0.1",
        &stack.pg.port().to_string(),
        "shop",
        "SELECT id, email, card_number FROM customers WHERE id <= 2 ORDER BY id",
        "DROP TABLE orders",
        "SELECT count(*)::int4 FROM orders",
    ]);
    let out = command.output().expect("client runs");
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let expected = customers();
    assert_eq!(lines.len(), 4, "{stdout}");
    for (line, customer) in lines[..2].iter().zip(&expected) {
        let cols: Vec<&str> = line.split('|').collect();
        assert_ne!(cols[1], customer.email, "{line}");
        assert!(cols[1].contains("*@"), "{line}");
        assert!(
            cols[2].ends_with(&customer.card_number[12..]) && cols[2].starts_with('*'),
            "{line}"
        );
    }
    assert!(lines[2].starts_with("ERROR 42501 "), "{stdout}");
    assert!(lines[2].contains(DENY_RULE), "{stdout}");
    assert!(
        lines[3].parse::<i32>().is_ok_and(|n| n > 0),
        "the session went on: {stdout}"
    );
    assert!(!stack.pg.server_log().to_lowercase().contains("drop table"));
}

#[test]
fn upstream_md5_authentication_works() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let stack = Stack::start_with_auth(
        jitgate_tests::process::bins(),
        jitgate_tests::postgres::PasswordAuth::Md5,
    )
    .expect("stack starts");
    let stored = stack
        .pg
        .psql_superuser(
            "SELECT rolpassword LIKE 'md5%' FROM pg_authid WHERE rolname = 'jitgate_ci';",
        )
        .expect("superuser query");
    assert_eq!(
        stored.trim(),
        "t",
        "the role's password is really an md5 hash"
    );
    let out = stack.psql("SELECT current_user", true).expect("psql runs");
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(text(&out.stdout).trim(), "jitgate_ci");
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
    let tables = stack
        .pg
        .psql_superuser_in(
            "shop",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'customers';",
        )
        .expect("superuser query");
    assert_eq!(tables.trim(), "1", "customers still exists");
}

fn orders_count(stack: &Stack) -> i64 {
    stack
        .pg
        .psql_superuser_in("shop", "SELECT count(*) FROM orders;")
        .expect("superuser query")
        .trim()
        .parse()
        .expect("a count")
}

#[test]
fn lexer_settings_cannot_hide_a_statement_from_the_agent() {
    let Some(stack) = stack() else { return };
    let before = orders_count(&stack);
    let hidden = "SELECT 'x\\'' ; TRUNCATE orders; -- '";
    // standard_conforming_strings = off from the startup options: the agent pins it on.
    let mut command = stack.job("psql", true);
    command
        .args(["-X", "-w", "-A", "-t", "-h", "127.0.0.1", "-d", "shop"])
        .args(["-p", &stack.pg.port().to_string(), "-c", hidden])
        .env(
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
    let mut command = stack.job("psql", true);
    command
        .args(["-X", "-w", "-A", "-t", "-h", "127.0.0.1", "-d", "shop"])
        .args(["-p", &stack.pg.port().to_string()])
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
fn a_statement_redefined_behind_a_cached_row_shape_is_still_masked() {
    let Some(stack) = stack() else { return };
    let mut command = stack.job(env!("CARGO_BIN_EXE_jitgate-pg-client"), true);
    command.args([
        "127.0.0.1",
        &stack.pg.port().to_string(),
        "shop",
        "--redefine",
        "SELECT 'a'::text AS email, 'b'::text AS card_number",
        "SELECT email, card_number FROM customers ORDER BY id",
    ]);
    let out = command.output().expect("client runs");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(stdout.lines().count(), customers().len(), "{stdout}");
    assert!(!stdout.contains("@example.com"), "{stdout}");
    for customer in customers() {
        assert!(!stdout.contains(&customer.card_number), "{stdout}");
    }
}

#[test]
fn a_whole_row_of_a_protected_table_is_nulled() {
    let Some(stack) = stack() else { return };
    let out = stack
        .psql(
            "SELECT c IS NULL FROM customers c LIMIT 1; SELECT c FROM customers c LIMIT 1",
            true,
        )
        .expect("psql runs");
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("@example.com"), "{stdout}");
}

#[test]
fn a_token_the_jobs_user_cannot_read_is_refused_and_a_fifo_cannot_stall_the_agent() {
    let Some(stack) = stack() else { return };
    // A root-only directory: the file itself is world-readable, the directory is not.
    let secret = stack.dir.path().join("secret");
    std::fs::create_dir(&secret).expect("dir");
    let token = secret.join("token.jwt");
    std::fs::copy(&stack.token_file, &token).expect("copy");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let mut command = stack.job("setpriv", false);
    command
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "psql",
        ])
        .args([
            "-X",
            "-w",
            "-h",
            "127.0.0.1",
            "-d",
            "shop",
            "-c",
            "SELECT 1",
        ])
        .args(["-p", &stack.pg.port().to_string()])
        .env("AZURE_FEDERATED_TOKEN_FILE", &token);
    let out = command.output().expect("psql runs");
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("not readable by the connecting process"),
        "{}",
        describe(&out)
    );

    // A FIFO as the token file: refused at once, and the agent keeps serving.
    let fifo = stack.dir.path().join("token.fifo");
    let c_path = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).expect("path");
    // SAFETY: mkfifo on a NUL-terminated path in our temp dir.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o666) }, 0);
    let started = Instant::now();
    let mut command = stack.job("psql", false);
    command
        .args([
            "-X",
            "-w",
            "-h",
            "127.0.0.1",
            "-d",
            "shop",
            "-c",
            "SELECT 1",
        ])
        .args(["-p", &stack.pg.port().to_string()])
        .env("AZURE_FEDERATED_TOKEN_FILE", &fifo);
    let out = command.output().expect("psql runs");
    assert!(
        text(&out.stderr).contains("not a regular file"),
        "{}",
        describe(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let out = stack.psql("SELECT 1", true).expect("psql runs");
    assert!(
        out.status.success(),
        "the agent still serves: {}",
        describe(&out)
    );
}
