//! What audit events say about a session and its statements: the connecting process and its
//! ancestors, the token's CI claims, TLS on both legs, the credential mode and deadline; per
//! statement the fingerprint, the bound parameters (redacted when tied to a masked column), the
//! deciding policies, the bytes sent and a masked result sample — and no protected value
//! anywhere in what the collector stored.

use super::support::*;

/// Lowercase hex of `bytes`, as the trail renders binary values.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn statement<'a>(events: &'a [Value], text: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["statement"]["text"].as_str() == Some(text))
        .map(|e| &e["statement"])
        .unwrap_or_else(|| panic!("no statement event for {text:?} in {events:?}"))
}

/// Everything the collector has written to disk: its SQLite file and write-ahead log.
fn stored_bytes(stack: &Stack) -> Vec<u8> {
    let db = stack.collector.db_path();
    let mut raw = Vec::new();
    for suffix in ["", "-wal", "-journal"] {
        let mut path = db.clone().into_os_string();
        path.push(suffix);
        if let Ok(bytes) = std::fs::read(&path) {
            raw.extend(bytes);
        }
    }
    raw
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn events_carry_process_chain_ci_claims_tls_parameters_and_masked_samples() {
    let Some(stack) = stack_with(StackOptions {
        upstream_tls: "require".into(),
        server_tls: true,
        ..Default::default()
    }) else {
        return;
    };
    let people = customers();

    // psql over TLS: two literals of one shape, a masked result, a denied statement.
    let mut command = stack.psql_command(true);
    command.env("PGSSLMODE", "require").args([
        "-c",
        "SELECT name FROM customers WHERE id = 1",
        "-c",
        "SELECT name FROM customers WHERE id = 2",
        "-c",
        "SELECT name, email, card_number FROM customers ORDER BY id",
        "-c",
        "DROP TABLE orders",
    ]);
    let out = command.output().expect("psql runs");
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&people[0].name), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("forbidden"),
        "{}",
        describe(&out)
    );
    let events = events_with(&stack, "SELECT name FROM customers WHERE id = 1");

    let started = &events
        .iter()
        .find(|e| e["kind"] == "session_started")
        .expect("session_started")["session_started"];
    let me = std::process::id();
    let parent = std::os::unix::process::parent_id();
    let process = &started["process"];
    assert_eq!(process["comm"], "psql");
    assert_eq!(process["ppid"], me, "psql's parent is this test: {started}");
    assert!(
        process["cmdline"]
            .as_str()
            .is_some_and(|c| c.contains("psql -X ") && c.ends_with("-c DROP TABLE orders")),
        "{started}"
    );
    let address = format!("127.0.0.1:{}", stack.pg.port());
    assert_eq!(started["target"], address.as_str(), "the address dialled");
    assert_eq!(started["target_name"], "shop");
    let by_target = json_lines(
        &stack
            .cli(&["sessions", "--json", "--target", &address])
            .expect("jitgate sessions"),
    );
    assert!(
        by_target
            .iter()
            .any(|s| s["session_id"] == events[0]["session_id"]),
        "--target with the address finds the session: {by_target:?}"
    );
    let ancestry = started["ancestry"].as_array().expect("ancestry");
    assert_eq!(ancestry[0]["pid"], me, "{started}");
    assert_eq!(ancestry[0]["ppid"], parent, "{started}");
    let own_exe = std::env::current_exe().expect("own exe");
    assert_eq!(ancestry[0]["exe"], own_exe.display().to_string());
    assert_eq!(ancestry[1]["pid"], parent, "{started}");
    assert!(ancestry.len() <= 16);
    for pair in ancestry.windows(2) {
        assert_eq!(pair[0]["ppid"], pair[1]["pid"], "a chain: {started}");
    }

    let ci: Vec<(&str, &str)> = started["ci"]
        .as_array()
        .expect("ci")
        .iter()
        .filter_map(|c| Some((c["name"].as_str()?, c["value"].as_str()?)))
        .collect();
    assert_eq!(
        ci,
        [
            ("tid", jitgate_tests::stack::TENANT),
            ("oid", OBJECT_ID),
            ("azp", APP_ID)
        ],
        "the Entra token's claims in the documented order"
    );

    let client_tls = &started["client_tls"];
    assert_eq!(client_tls["enabled"], true, "{started}");
    assert!(
        client_tls["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("TLSv1_")),
        "{started}"
    );
    assert!(
        client_tls["cipher_suite"]
            .as_str()
            .is_some_and(|c| c.starts_with("TLS"))
    );
    let upstream_tls = &started["upstream_tls"];
    assert_eq!(upstream_tls["enabled"], true, "{started}");
    assert!(
        upstream_tls["version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    assert!(
        ["static", "dynamic"].contains(&started["credential_mode"].as_str().unwrap_or("")),
        "{started}"
    );
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_micros() as i64;
    let until = started["valid_until_unix_us"].as_i64().expect("deadline");
    assert!(
        until > now_us && until <= now_us + 3_700_000_000,
        "bounded by the one-hour token: {started}"
    );

    let one = statement(&events, "SELECT name FROM customers WHERE id = 1");
    let two = statement(&events, "SELECT name FROM customers WHERE id = 2");
    assert!(
        one["fingerprint"].as_str().is_some_and(|f| f.len() == 16),
        "{one}"
    );
    assert_eq!(one["fingerprint"], two["fingerprint"]);
    assert_eq!(one["policies"], serde_json::json!(["ci-baseline"]));

    let masked = statement(
        &events,
        "SELECT name, email, card_number FROM customers ORDER BY id",
    );
    assert!(masked["bytes"].as_u64().is_some_and(|b| b > 0), "{masked}");
    let sample = &masked["sample"];
    assert_eq!(
        sample["columns"],
        serde_json::json!(["name", "email", "card_number"])
    );
    let rows = sample["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 5, "[audit] sample_rows defaults to 5: {sample}");
    assert_eq!(sample["truncated"], true, "20 rows were returned");
    for (row, person) in rows.iter().zip(&people) {
        assert_eq!(row[0], person.name.as_str());
        let email = row[1].as_str().expect("email");
        assert!(email != person.email && email.contains("*@"), "{row}");
        assert!(
            row[2].as_str().is_some_and(|c| c.starts_with("****")),
            "{row}"
        );
    }

    let denied = statement(&events, "DROP TABLE orders");
    assert_eq!(denied["decision"], "denied");
    assert_eq!(
        denied["policies"],
        serde_json::json!([DENY_RULE]),
        "{denied}"
    );

    // An extended-protocol driver binding one plain and one protected value.
    let sql = "SELECT name, email FROM customers WHERE name = $1 OR email = $2 ORDER BY id";
    // The protected value goes through the environment: the command line is recorded.
    let out = stack
        .job(env!("CARGO_BIN_EXE_jitgate-pg-client"), true)
        .args(["127.0.0.1", &stack.pg.port().to_string(), "shop"])
        .args(["--params", sql, &people[1].name, "env:SECRET_EMAIL"])
        .env("SECRET_EMAIL", &people[0].email)
        .output()
        .expect("client runs");
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(text(&out.stdout).lines().count(), 2, "{}", describe(&out));
    let events = events_with(&stack, "WHERE name = $1 OR email = $2");
    let bound = statement(&events, sql);
    assert_eq!(bound["protocol"], "extended");
    let params = bound["parameters"].as_array().expect("parameters");
    assert_eq!(params.len(), 2, "{bound}");
    assert_eq!(params[0]["index"], 1);
    assert_eq!(params[0]["redacted"], false);
    assert_eq!(params[0]["binary"], true, "tokio-postgres binds in binary");
    assert_eq!(params[0]["value"], hex(people[1].name.as_bytes()));
    assert_eq!(params[1]["index"], 2);
    assert_eq!(
        params[1]["redacted"], true,
        "tied to the masked email: {bound}"
    );
    assert_eq!(
        params[1]["value"],
        Value::Null,
        "a redacted value is printed as null"
    );
    let sample = &bound["sample"];
    assert_eq!(sample["columns"], serde_json::json!(["name", "email"]));
    assert_eq!(sample["rows"].as_array().map(Vec::len), Some(2), "{sample}");
    assert!(bound["bytes"].as_u64().is_some_and(|b| b > 0));

    // No protected value, in any rendering, reached the collector's storage.
    let shown: String = events.iter().map(Value::to_string).collect();
    for person in &people {
        assert!(
            !shown.contains(&person.email) && !shown.contains(&hex(person.email.as_bytes())),
            "{} in the events: {shown}\nclient: {}",
            person.email,
            describe(&out)
        );
    }
    let raw = stored_bytes(&stack);
    assert!(
        contains(&raw, &hex(people[1].name.as_bytes())),
        "the search sees the stored events (the recorded parameter is there)"
    );
    for person in &people {
        for secret in [&person.email, &person.card_number] {
            assert!(!contains(&raw, secret), "{secret} is stored");
            assert!(
                !contains(&raw, &hex(secret.as_bytes())),
                "{secret} is stored as hex"
            );
        }
    }
}
