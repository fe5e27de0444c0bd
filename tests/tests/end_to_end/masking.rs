//! Masking of protected columns in what the client receives: plain columns under aliases, text
//! and binary format, simple and extended protocol, statements redefined behind a driver's cache,
//! and keyed and detected masks (lineage: `masking_lineage`).

use super::support::*;

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
fn a_rust_driver_gets_masked_rows_in_binary_format_and_denials_over_extended_protocol() {
    let Some(stack) = stack() else { return };
    let out = rust_client(
        &stack,
        &[
            "SELECT id, email, card_number FROM customers WHERE id <= 2 ORDER BY id",
            "DROP TABLE orders",
            "SELECT count(*)::int4 FROM orders",
        ],
    );
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
fn a_statement_redefined_behind_a_cached_row_shape_is_still_masked() {
    let Some(stack) = stack() else { return };
    let out = rust_client(
        &stack,
        &[
            "--redefine",
            "SELECT 'a'::text AS email, 'b'::text AS card_number",
            "SELECT email, card_number FROM customers ORDER BY id",
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(stdout.lines().count(), customers().len(), "{stdout}");
    assert!(!stdout.contains("@example.com"), "{stdout}");
    for customer in customers() {
        assert!(!stdout.contains(&customer.card_number), "{stdout}");
    }
}

#[test]
fn keyed_masks_hash_emails_and_keep_card_numbers_luhn_valid() {
    let Some(stack) = stack_with(StackOptions {
        masks: vec![
            r#"{ column = "public.customers.email", strategy = "hash" }"#.into(),
            r#"{ column = "public.customers.card_number", strategy = "format_preserving" }"#.into(),
        ],
        mask_key: true,
        ..Default::default()
    }) else {
        return;
    };
    let query = "SELECT email, card_number FROM customers ORDER BY id";
    let first = stack.psql(query, true).expect("psql runs");
    assert!(first.status.success(), "{}", describe(&first));
    let again = stack.psql(query, true).expect("psql runs");
    assert_eq!(
        text(&first.stdout),
        text(&again.stdout),
        "deterministic: the same values mask the same way in every session"
    );
    let stdout = text(&first.stdout);
    let people = customers();
    let rows: Vec<&str> = stdout.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), people.len(), "{stdout}");
    let mut hashes = std::collections::HashSet::new();
    for (row, person) in rows.iter().zip(&people) {
        let (email, card) = row.split_once('|').expect("two columns");
        assert_eq!(email.len(), 64, "{row}");
        assert!(email.bytes().all(|b| b.is_ascii_hexdigit()), "{row}");
        hashes.insert(email.to_owned());
        assert_eq!(card.len(), person.card_number.len(), "{row}");
        assert_ne!(card, person.card_number, "{row}");
        assert!(
            jitgate_tests::shop::luhn_valid(card),
            "a valid card number: {row}"
        );
        assert!(!stdout.contains(&person.email) && !stdout.contains(&person.card_number));
    }
    assert_eq!(
        hashes.len(),
        people.len(),
        "distinct addresses, distinct hashes"
    );
}

#[test]
fn content_detectors_mask_values_of_columns_no_rule_names() {
    let Some(stack) = stack_with(StackOptions {
        masks: Vec::new(),
        detectors: vec!["email".into(), "card_number".into()],
        ..Default::default()
    }) else {
        return;
    };
    let out = stack
        .psql(
            "SELECT name, email, card_number FROM customers ORDER BY id",
            true,
        )
        .expect("psql runs");
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    let people = customers();
    let rows: Vec<&str> = stdout.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), people.len(), "{stdout}");
    for (row, person) in rows.iter().zip(&people) {
        assert_eq!(
            *row,
            format!("{}|[redacted: email]|[redacted: card_number]", person.name),
            "names are real data and come back; the rest is flagged"
        );
    }
}

#[test]
fn a_policy_permitting_unmask_shows_that_column_real_and_keeps_the_others_masked() {
    let Some(stack) = stack_with(StackOptions {
        policy: format!(
            "{}\n@id(\"ops-sees-email\")\npermit(principal, action == Jitgate::Action::\"unmask\", \
             resource == Jitgate::Column::\"public.customers.email\");\n",
            jitgate_tests::stack::stack_policy()
        ),
        ..StackOptions::default()
    }) else {
        return;
    };
    let out = stack
        .psql(
            "SELECT email, card_number, lower(email) FROM customers ORDER BY id",
            true,
        )
        .expect("psql runs");
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    for (line, customer) in stdout.lines().zip(customers()) {
        let cols: Vec<&str> = line.split('|').collect();
        assert_eq!(cols[0], customer.email, "unmasked by policy: {line}");
        assert_eq!(cols[2], customer.email.to_lowercase(), "{line}");
        assert_ne!(cols[1], customer.card_number, "still masked: {line}");
    }
    assert_eq!(stdout.lines().count(), customers().len(), "{stdout}");
}
