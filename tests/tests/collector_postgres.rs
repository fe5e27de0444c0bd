//! The collector on a real PostgreSQL 15 (started by the harness, role and database made for
//! it): the storage suite every backend must pass (`jitgate_collector::storage::suite`), the
//! `jitgate-collector` binary's startup errors, and two collector processes sharing one
//! database deciding one approval. Needs root (the server runs as `postgres` via `runuser`)
//! and the built binaries (`JITGATE_COLLECTOR_BIN` / `JITGATE_CLI_BIN`, set by
//! `cargo xtask test`).

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Output};
use std::time::Duration;

use jitgate_agent::approval::{
    ApprovalClient, ApprovalRequest, Mode, Outcome, ScopeKind, new_approval_id,
};
use jitgate_collector::storage::suite;
use jitgate_tests::collector::CollectorGuard;
use jitgate_tests::collector_db::CollectorDb;
use jitgate_tests::postgres::PgServer;
use jitgate_tests::process::{bins, is_root};

/// A server and the collector's database on it, or `None` (with a note) when not root.
fn server() -> Option<(PgServer, CollectorDb)> {
    if !is_root() {
        eprintln!("skipped: needs root (PostgreSQL runs as postgres via runuser)");
        return None;
    }
    let pg = PgServer::start().expect("PostgreSQL starts");
    let db = CollectorDb::create(&pg, "jitgate_audit").expect("collector database");
    Some((pg, db))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_suite_passes_on_postgres() {
    let Some((pg, db)) = server() else { return };
    for (name, case) in suite::CASES {
        eprintln!("case {name}");
        let test = suite::postgres(db.url(), Some(db.password_file().to_owned())).await;
        case(test.store.clone()).await;
        test.finish().await;
    }
    // Every case ran in its own schema, and each was dropped afterwards.
    let schemas = pg
        .psql_superuser_in(
            "jitgate_audit",
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'jitgate_test_%';",
        )
        .expect("count schemas");
    assert_eq!(schemas.trim(), "0");
    let log = pg.server_log();
    assert!(
        log.contains("FOR UPDATE") && log.contains("ON CONFLICT (event_id) DO NOTHING"),
        "the suite ran on this server"
    );
}

/// Runs the collector binary with `args` until it exits (it must fail before listening).
fn collector_fails(args: &[OsString]) -> Output {
    let mut command = Command::new(bins().collector);
    command.args(["--listen", "127.0.0.1:0"]).args(args);
    let output = command.output().expect("run jitgate-collector");
    assert!(
        !output.status.success(),
        "the collector should refuse to start: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    output
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn collector_startup_errors_on_postgres_are_clear() {
    let Some((pg, db)) = server() else { return };
    let dir = tempfile::tempdir().expect("tempdir");

    let wrong = dir.path().join("wrong.password");
    std::fs::write(&wrong, "not-the-password\n").expect("write");
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = collector_fails(&[
        "--db".into(),
        db.url().into(),
        "--db-password-file".into(),
        wrong.clone().into(),
    ]);
    assert!(
        stderr(&out).contains("refused the login of role \"jitgate_audit\""),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("password authentication failed"));

    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = collector_fails(&[
        "--db".into(),
        db.url().into(),
        "--db-password-file".into(),
        wrong.into(),
    ]);
    assert!(stderr(&out).contains("mode 0644"), "{}", stderr(&out));

    let with_password = db.url().replace("jitgate_audit@", "jitgate_audit:secret@");
    let out = collector_fails(&["--db".into(), with_password.into()]);
    assert!(
        stderr(&out).contains("carries a password"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("secret"), "{}", stderr(&out));

    let closed = format!(
        "postgres://jitgate_audit@127.0.0.1:{}/jitgate_audit?sslmode=disable",
        jitgate_tests::process::free_port().expect("port")
    );
    let out = collector_fails(&["--db".into(), closed.into()]);
    assert!(
        stderr(&out).contains("cannot connect to PostgreSQL at 127.0.0.1:"),
        "{}",
        stderr(&out)
    );

    // A collector creates the schema; a newer one recorded there is refused.
    drop(CollectorGuard::start_on(&bins().collector, &db.args(), &[]).expect("starts"));
    pg.psql_superuser_in("jitgate_audit", "UPDATE jitgate_schema SET version = 99;")
        .expect("bump the version");
    let out = collector_fails(&db.args());
    assert!(
        stderr(&out).contains("schema version 99 is newer"),
        "{}",
        stderr(&out)
    );
}

fn jitgate(url: &str, args: &[&str]) -> Output {
    Command::new(bins().jitgate_cli)
        .args(args)
        .env("JITGATE_COLLECTOR", url)
        .env("JITGATE_QUERY_TOKEN", jitgate_tests::collector::QUERY_TOKEN)
        .env_remove("JITGATE_QUERY_TOKEN_FILE")
        .env_remove("JITGATE_AS")
        .env_remove("JITGATE_DECIDER_TOKEN")
        .output()
        .expect("run jitgate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_share_one_database_and_decide_once() {
    let Some((_pg, db)) = server() else { return };
    let bin = bins().collector;
    let first = CollectorGuard::start_on(&bin, &db.args(), &[]).expect("first collector");
    let second = CollectorGuard::start_on(&bin, &db.args(), &[]).expect("second collector");

    let mut request = ApprovalRequest {
        id: new_approval_id(),
        session_id: new_approval_id(),
        seq: 1,
        agent_host: "runner-7".into(),
        identity: Default::default(),
        target: "db.prod.internal:5432".into(),
        database: "shop".into(),
        statement: "TRUNCATE public.orders".into(),
        fingerprint: "fp-truncate".into(),
        tables: vec!["public.orders".into()],
        actions: vec!["truncate".into()],
        policy_ids: vec!["truncate-needs-approval".into()],
        reason: "TRUNCATE needs approval".into(),
        mode: Mode::Hold,
        scope: ScopeKind::Fingerprint,
        grant_ttl: Duration::ZERO,
        hold_timeout: Duration::from_secs(60),
        auto_approved_by: None,
    };
    request.identity.issuer = "https://token.actions.githubusercontent.com".into();
    request.identity.subject = "repo:acme/shop:ref:refs/heads/main".into();
    let (id, session) = (request.id.clone(), request.session_id.clone());
    let agent = ApprovalClient::new(&first.url()).expect("client");
    assert!(agent.open(request).await.expect("open").created);
    // The agent waits on the first collector; people decide through either.
    let waiter = agent.clone();
    let waiting_id = id.clone();
    let waiting =
        tokio::spawn(async move { waiter.wait(&waiting_id, Duration::from_secs(30)).await });

    let (u1, u2) = (first.url(), second.url());
    let (i1, i2) = (id.clone(), id.clone());
    let approve =
        std::thread::spawn(move || jitgate(&u2, &["approvals", "approve", &i2, "--as", "alice"]));
    let deny = std::thread::spawn(move || jitgate(&u1, &["approvals", "deny", &i1, "--as", "bob"]));
    let approve = approve.join().expect("approve thread");
    let deny = deny.join().expect("deny thread");
    assert!(
        approve.status.success() != deny.status.success(),
        "exactly one decision wins:\napprove: {}\ndeny: {}",
        stderr(&approve),
        stderr(&deny)
    );

    let outcome = tokio::time::timeout(Duration::from_secs(15), waiting)
        .await
        .expect("the waiting agent learns the decision made through either collector")
        .expect("task")
        .expect("wait");
    if approve.status.success() {
        assert!(
            matches!(&outcome, Outcome::Approved { by, .. } if by == "alice"),
            "{outcome:?}"
        );
    } else {
        assert!(
            matches!(&outcome, Outcome::Denied { by, .. } if by == "bob"),
            "{outcome:?}"
        );
    }

    // Both collectors read the same trail: requested, then the one decision.
    for url in [first.url(), second.url()] {
        let events = jitgate(&url, &["--json", "events", "--session", &session]);
        assert!(events.status.success(), "{}", stderr(&events));
        let kinds: Vec<serde_json::Value> = String::from_utf8_lossy(&events.stdout)
            .lines()
            .map(|line| serde_json::from_str(line).expect("json line"))
            .collect();
        assert_eq!(kinds.len(), 2, "{kinds:?}");
        assert_eq!(kinds[0]["kind"], "approval_requested");
        let decision = if approve.status.success() {
            "approval_granted"
        } else {
            "approval_denied"
        };
        assert_eq!(kinds[1]["kind"], decision);
    }
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
}

#[test]
fn collector_reaches_postgres_over_verified_tls() {
    let Some((pg, db)) = server() else { return };
    // A CA and a server certificate for 127.0.0.1 it signed (not a CA itself).
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n",
    )
    .expect("ext");
    for args in [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=jitgate test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ][..],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ][..],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.crt",
        ][..],
    ] {
        openssl(d, args);
    }
    pg.install_tls(&d.join("server.crt"), &d.join("server.key"))
        .expect("server TLS");
    let url = db.url().replace("sslmode=disable", "sslmode=require");
    let mut args = db.args();
    args[1] = url.clone().into();

    // The Mozilla roots do not know the test CA: the connection fails, naming PostgreSQL.
    let out = collector_fails(&args);
    assert!(
        stderr(&out).contains("cannot connect to PostgreSQL at 127.0.0.1:"),
        "{}",
        stderr(&out)
    );

    args.extend(["--db-ca-file".into(), d.join("ca.pem").into()]);
    let collector = CollectorGuard::start_on(&bins().collector, &args, &[])
        .expect("the collector connects over TLS with the CA file");
    let ssl = pg
        .psql_superuser(
            "SELECT DISTINCT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'jitgate-collector';",
        )
        .expect("pg_stat_ssl");
    assert_eq!(ssl.trim(), "t", "every collector connection is TLS");
    drop(collector);
}
