//! Masking by value lineage, through the agent with psql: values computed from protected
//! columns are refused (naming the column) or masked whole, plain columns are masked through set
//! operations and cursors, protected values cannot be stored where they would be read unmasked
//! or copied out, views and inheritance children are protected like their sources, and
//! predicates follow their rule's setting. Unprotected data still flows.

use super::support::*;

/// Whether `text` holds any customer's real e-mail address, its local part, or card number.
fn leaks(text: &str) -> Option<String> {
    customers().into_iter().find_map(|c| {
        let local = c.email.split('@').next().unwrap_or_default().to_owned();
        [c.email.clone(), local, c.card_number.clone()]
            .into_iter()
            .find(|v| text.contains(v.as_str()))
    })
}

fn masks(extra: &str) -> Vec<String> {
    vec![
        format!(
            r#"{{ column = "public.customers.email", strategy = "partial", keep_first = 1{extra} }}"#
        ),
        format!(
            r#"{{ column = "public.customers.card_number", strategy = "partial", keep_last = 4{extra} }}"#
        ),
    ]
}

#[test]
fn computed_values_are_refused_naming_the_column_while_plain_ones_are_masked() {
    let Some(stack) = stack() else { return };
    let out = run_script(
        stack.psql_command(true),
        "SELECT lower(email) FROM customers LIMIT 1;\n\
         SELECT c FROM customers c LIMIT 1;\n\
         SELECT string_agg(card_number, ',') FROM customers;\n\
         SELECT length(x) FROM (SELECT email || '' AS x FROM customers) s;\n\
         INSERT INTO orders (customer_id, total_cents, created_at) \
         SELECT id, length(email), now() FROM customers;\n\
         COPY customers TO STDOUT;\n\
         COPY (SELECT 'csv', email, card_number FROM customers) TO STDOUT (FORMAT csv, HEADER);\n\
         COPY (SELECT *, 1 FROM customers) TO STDOUT;\n\
         SELECT name FROM customers UNION ALL SELECT email FROM customers;\n\
         SELECT name FROM customers ORDER BY id;\n\
         BEGIN;\n\
         DECLARE k CURSOR FOR SELECT id, email FROM customers ORDER BY id;\n\
         FETCH 3 FROM k;\n\
         COMMIT;\n\
         COPY (SELECT 'copied:' || total_cents FROM orders ORDER BY id LIMIT 2) TO STDOUT;\n\
         SELECT 'control:' || count(*) FROM orders;\n",
    );
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(leaks(&stdout), None, "{stdout}");
    assert_eq!(leaks(&stderr), None, "{stderr}");
    for expected in [
        "output column 1 is computed from protected column public.customers.email",
        "computed from protected column public.customers.card_number",
        "stores values of protected column public.customers.email in orders",
        "COPY ... TO of customers, which has protected columns, with other columns after it",
    ] {
        assert!(stderr.contains(expected), "{expected:?} in {stderr}");
    }
    assert_eq!(stderr.matches("ERROR:  jitgate:").count(), 6, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let customers = customers();
    for c in &customers {
        // Once from the plain SELECT; in the UNION column, which also carries e-mails, names
        // are masked with the e-mail rule.
        let real = lines.iter().filter(|l| **l == c.name).count();
        assert_eq!(real, 1, "names are real: {stdout}");
    }
    let masked = lines
        .iter()
        .filter(|l| l.contains("*@") && !l.contains('\t') && !l.starts_with("csv,"))
        .count();
    assert_eq!(
        masked,
        customers.len() + 3,
        "the UNION's e-mails and the cursor's are masked: {stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("1|") && l.contains("*@")),
        "{stdout}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("copied:")).count(),
        2,
        "{stdout}"
    );
    assert!(lines.iter().any(|l| l.starts_with("control:")), "{stdout}");
    // COPY data is masked by position: text format (the table) and CSV (a query).
    let copied: Vec<&str> = lines.iter().copied().filter(|l| l.contains('\t')).collect();
    assert_eq!(copied.len(), customers.len(), "{stdout}");
    for (line, c) in copied.iter().zip(&customers) {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields[1], c.name, "{line}");
        assert!(
            fields[2].contains("*@") && fields[3].starts_with('*'),
            "{line}"
        );
    }
    let csv: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("csv,"))
        .collect();
    assert_eq!(csv.len(), customers.len(), "{stdout}");
    assert!(csv.iter().all(|l| l.contains("*@")), "{stdout}");
    let control: i64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("control:"))
        .and_then(|n| n.parse().ok())
        .expect("count");
    assert_eq!(control, orders_count(&stack), "the INSERT was not run");
}

#[test]
fn computed_values_are_masked_whole_when_the_rule_says_mask() {
    let Some(stack) = stack_with(StackOptions {
        masks: masks(r#", expressions = "mask""#),
        ..StackOptions::default()
    }) else {
        return;
    };
    let out = run_script(
        stack.psql_command(true),
        "SELECT 'lower:' || lower(email) FROM customers ORDER BY id;\n\
         SELECT 'row:' || coalesce(c::text, 'null') FROM customers c LIMIT 1;\n\
         BEGIN;\n\
         DECLARE k CURSOR FOR SELECT upper(email) AS u FROM customers ORDER BY id;\n\
         FETCH 2 FROM k;\n\
         COMMIT;\n\
         LISTEN ch;\n\
         SELECT pg_notify('ch', 'n:' || email) FROM customers ORDER BY id LIMIT 1;\n\
         NOTIFY ch, 'after reading customers';\n\
         SELECT email::int FROM customers ORDER BY id LIMIT 1;\n",
    );
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    // Side channels: a notification cannot carry a protected value; once the session has read
    // protected data its own payloads and the cast error's value are withheld.
    assert_eq!(leaks(&stderr), None, "{stderr}");
    assert!(
        stderr.contains("keeps values of protected column public.customers.email"),
        "{stderr}"
    );
    assert!(
        stderr.contains("invalid input syntax for type integer: (withheld by jitgate"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("ERROR").count(), 2, "{stderr}");
    let notified = format!("{stdout}{stderr}");
    assert!(
        notified.contains("Asynchronous notification \"ch\" with payload \"(withheld by jitgate"),
        "{notified}"
    );
    assert_eq!(leaks(&stdout), None, "{stdout}");
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.is_empty()).collect();
    // The whole computed value is masked: `'lower:' || …` included, with the e-mail rule.
    let computed = lines.iter().filter(|l| l.contains("*@")).count();
    assert_eq!(computed, customers().len() + 2, "{stdout}");
    // A whole row carries both protected columns (two rules): NULL, shown as empty.
    assert!(!stdout.contains("row:"), "{stdout}");
}

#[test]
fn predicates_over_a_protected_column_follow_the_rule() {
    let Some(stack) = stack_with(StackOptions {
        masks: masks(r#", predicates = "deny""#),
        ..StackOptions::default()
    }) else {
        return;
    };
    let out = run_script(
        stack.psql_command(true),
        "SELECT id FROM customers WHERE email LIKE 'a%';\n\
         SELECT id FROM customers ORDER BY card_number LIMIT 1;\n\
         SELECT 'named:' || count(*) FROM customers WHERE name LIKE '%a%';\n",
    );
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr
            .matches("filters, orders or groups by protected column")
            .count(),
        2,
        "{stderr}"
    );
    assert!(
        stdout.contains("named:"),
        "unprotected predicates run: {stdout}"
    );
}

#[test]
fn views_and_child_tables_of_protected_columns_are_masked_and_computed_columns_refused() {
    let Some(stack) = stack() else { return };
    stack
        .pg
        .psql_superuser_in(
            jitgate_tests::stack::SHOP_DB,
            "CREATE VIEW customer_contacts AS \
             SELECT id, name, email, lower(email) AS email_lower FROM customers; \
             CREATE VIEW contacts_again AS SELECT id, email FROM customer_contacts; \
             CREATE TABLE customers_old () INHERITS (customers); \
             INSERT INTO customers_old (name, email, card_number) \
             SELECT name, email, card_number FROM customers WHERE id <= 3; \
             GRANT SELECT ON customer_contacts, contacts_again, customers_old TO PUBLIC;",
        )
        .expect("views created");
    let out = run_script(
        stack.psql_command(true),
        "SELECT id, name, email FROM customer_contacts ORDER BY id LIMIT 3;\n\
         SELECT * FROM customer_contacts ORDER BY id LIMIT 3;\n\
         SELECT email FROM contacts_again ORDER BY id LIMIT 3;\n\
         SELECT email_lower FROM customer_contacts;\n\
         SELECT 'v:' || name FROM customer_contacts ORDER BY id LIMIT 1;\n\
         SELECT name, email FROM customers_old ORDER BY id;\n",
    );
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(leaks(&stdout), None, "{stdout}");
    assert_eq!(leaks(&stderr), None, "{stderr}");
    assert!(
        stderr.contains("computed from protected column public.customer_contacts.email_lower"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("ERROR").count(), 1, "{stderr}");
    let masked = stdout.lines().filter(|l| l.contains("*@")).count();
    assert_eq!(masked, 12, "views and the child table's rows: {stdout}");
    let first = &customers()[0];
    assert!(stdout.contains(&format!("v:{}", first.name)), "{stdout}");
}

#[test]
fn a_predicate_over_a_column_whose_rule_asks_for_approval_runs_once_approved() {
    let Some(stack) = stack_with(StackOptions {
        masks: masks(r#", predicates = "approval""#),
        ..StackOptions::default()
    }) else {
        return;
    };
    let child = stack
        .psql_command(true)
        .args([
            "-c",
            "SELECT 'found:' || count(*) FROM customers WHERE email LIKE 'a%'",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql starts");
    let request = eventually("a pending approval request", || {
        json_lines(&stack.cli(&["--json", "approvals", "list"]).ok()?)
            .into_iter()
            .find(|r| {
                r["request"]["statement"]
                    .as_str()
                    .is_some_and(|s| s.contains("email LIKE"))
            })
    });
    let reason = request["request"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("protected column public.customers.email needs approval"),
        "{request}"
    );
    let id = request["approval_id"].as_str().expect("request id");
    let out = stack
        .cli(&["approvals", "approve", id, "--as", "alice@example.com"])
        .expect("jitgate approvals approve");
    assert!(out.status.success(), "{}", describe(&out));
    let out = child.wait_with_output().expect("psql ends");
    assert!(out.status.success(), "{}", describe(&out));
    assert!(text(&out.stdout).contains("found:1"), "{}", describe(&out));
}
