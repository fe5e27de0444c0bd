//! Authorization regressions from the adversarial review, each an attack that once worked:
//! settings changed through the `pg_settings` update rule (standard_conforming_strings off,
//! then a string the agent read as harmless; search_path moved behind the agent), a statement
//! decided at Parse bound after search_path grew, an SQL-level PREPARE bound through the
//! extended protocol, `set_config` through the fast path, and `ts_rewrite` running SQL text.
//! Each asserts no protected value reached the client and the server's data is unchanged.

use super::policy_corpus::{POLICY, SETUP};
use super::support::*;

const LEAKS: [&str; 2] = ["VAULT-KEY-1", "SECRET-1"];

#[test]
fn settings_tricks_rebinding_and_fast_path_set_config_leak_nothing() {
    let Some(stack) = stack_with(StackOptions {
        policy: POLICY.into(),
        setup_sql: Some(SETUP.into()),
        ..StackOptions::default()
    }) else {
        return;
    };
    let count = |sql: &str| {
        stack
            .pg
            .psql_superuser_in("shop", sql)
            .expect("superuser query")
            .trim()
            .to_owned()
    };
    let orders_before = count("SELECT count(*) FROM orders;");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/authz_regressions.py");
    for mode in [
        "scs_simple",
        "scs_extended",
        "ext_sp",
        "ext_sqlprep",
        "fastpath_setconfig",
    ] {
        let out = stack
            .job("python3", true)
            .args([script, &stack.pg.port().to_string(), mode])
            .output()
            .expect("python runs");
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{mode}: {}", describe(&out));
        for leak in LEAKS {
            assert!(!stdout.contains(leak), "{mode} leaked {leak}:\n{stdout}");
        }
        assert!(
            stdout.contains("E[ERROR 42501"),
            "{mode} was refused:\n{stdout}"
        );
    }
    for sql in [
        "UPDATE pg_settings SET setting = 'vault' WHERE name = 'search_path'",
        "SELECT ts_rewrite('a'::tsquery, 'SELECT ''a''::tsquery, quote_literal(s)::tsquery FROM secrets LIMIT 1')",
    ] {
        let out = stack.psql(sql, true).expect("psql runs");
        assert!(
            text(&out.stderr).contains("42501") || text(&out.stderr).contains("jitgate"),
            "{sql}: {}",
            describe(&out)
        );
        for leak in LEAKS {
            assert!(
                !text(&out.stdout).contains(leak),
                "{sql}: {}",
                describe(&out)
            );
        }
    }
    assert_eq!(
        count("SELECT count(*) FROM orders;"),
        orders_before,
        "no DELETE ran"
    );
    assert_eq!(
        count("SELECT count(*) FROM information_schema.columns WHERE column_name = 'pwned_ddl';"),
        "0",
        "no DDL ran"
    );
    assert_eq!(
        count("SELECT count(*) FROM public.keys WHERE k <> 'public-key';"),
        "0",
        "no protected value was copied"
    );
}
