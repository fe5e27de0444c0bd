//! Root integration test of the PostgreSQL harness itself: a throwaway server starts, the shop
//! dataset loads, and real `psql` clients authenticate over TCP with both MD5 and SCRAM-SHA-256
//! roles. Needs root (initdb/pg_ctl run as `postgres` through `runuser`); skips otherwise.

use std::process::Command;

use jitgate_tests::postgres::{PasswordAuth, PgServer};
use jitgate_tests::process::is_root;
use jitgate_tests::shop::SHOP_DB;

/// Runs `sql` through psql over TCP as `user` with `password`; returns (success, stdout, stderr).
fn psql_tcp(pg: &PgServer, user: &str, password: &str, sql: &str) -> (bool, String, String) {
    let output = Command::new(pg.bin("psql"))
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-w"])
        .args(["-h", pg.host(), "-p", &pg.port().to_string()])
        .args(["-U", user, "-d", SHOP_DB, "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGSSLMODE", "disable")
        .output()
        .expect("spawning psql");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    )
}

#[test]
fn postgres_harness_md5_and_scram_over_tcp() {
    if !is_root() {
        eprintln!(
            "SKIPPED postgres_harness: needs root (initdb/pg_ctl run as postgres via runuser)"
        );
        return;
    }
    let pg = PgServer::start().expect("starting PostgreSQL");
    pg.load_shop_dataset(SHOP_DB)
        .expect("loading the shop dataset");
    let count = pg
        .psql_superuser_in(SHOP_DB, "SELECT count(*) FROM customers;")
        .expect("counting customers");
    assert_eq!(count.trim(), "20");

    pg.create_role("legacy_md5", "md5 secret", PasswordAuth::Md5)
        .expect("md5 role");
    pg.create_role("modern_scram", "scram 'secret'", PasswordAuth::Scram)
        .expect("scram role");
    pg.psql_superuser_in(
        SHOP_DB,
        "GRANT SELECT ON customers, orders TO legacy_md5, modern_scram;",
    )
    .expect("granting");

    let stored = pg
        .psql_superuser(
            "SELECT rolname || ':' || CASE WHEN rolpassword LIKE 'md5%' THEN 'md5' \
             WHEN rolpassword LIKE 'SCRAM-SHA-256$%' THEN 'scram' END FROM pg_authid \
             WHERE rolname IN ('legacy_md5', 'modern_scram') ORDER BY rolname;",
        )
        .expect("reading pg_authid");
    assert_eq!(stored.trim(), "legacy_md5:md5\nmodern_scram:scram");

    let (ok, out, err) = psql_tcp(
        &pg,
        "legacy_md5",
        "md5 secret",
        "SELECT email FROM customers WHERE id = 1",
    );
    assert!(ok, "md5 login failed: {err}");
    assert_eq!(out, "ana.lima@example.com");

    let (ok, out, err) = psql_tcp(
        &pg,
        "modern_scram",
        "scram 'secret'",
        "SELECT count(*) > 0 FROM orders",
    );
    assert!(ok, "scram login failed: {err}");
    assert_eq!(out, "t");

    let (ok, _, err) = psql_tcp(&pg, "modern_scram", "wrong", "SELECT 1");
    assert!(!ok, "a wrong password must fail");
    assert!(err.contains("password authentication failed"), "{err}");

    let log = pg.server_log();
    assert!(
        log.contains("statement: SELECT email FROM customers WHERE id = 1"),
        "log_statement=all should record client statements:\n{log}"
    );
    assert!(
        log.contains("legacy_md5@shop"),
        "log_line_prefix names user@db:\n{log}"
    );

    let data_dir = pg.data_dir();
    drop(pg);
    assert!(!data_dir.exists(), "the data dir is removed on drop");
}
