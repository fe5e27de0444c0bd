//! TLS on both sides of the agent: clients asking for TLS (`sslmode=require`, and `verify-full`
//! against the runner's local CA) get it with a certificate for the database's address; the
//! agent's upstream connection uses TLS with SCRAM-SHA-256-PLUS channel binding when the target
//! requires it.

use super::support::*;

#[test]
fn clients_get_tls_with_a_certificate_for_the_database_address() {
    let Some(stack) = stack() else { return };
    for (mode, root) in [
        ("require", None),
        ("verify-full", Some(stack.dir.path().join("ca/ca.crt"))),
    ] {
        let mut command = stack.psql_command(true);
        command.args(["-c", "\\conninfo"]).env("PGSSLMODE", mode);
        if let Some(root) = &root {
            command.env("PGSSLROOTCERT", root);
        }
        let out = command.output().expect("psql runs");
        assert!(out.status.success(), "{mode}: {}", describe(&out));
        assert!(
            text(&out.stdout).contains("SSL connection"),
            "{mode}: {}",
            describe(&out)
        );
    }
    // A client that trusts another CA refuses the agent's certificate.
    let other = stack.dir.path().join("other-ca");
    let status = std::process::Command::new(&stack.bins.agent)
        .args(["ca-init", "--dir"])
        .arg(&other)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("ca init");
    assert!(status.success());
    let mut command = stack.psql_command(true);
    command
        .args(["-c", "SELECT 1"])
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", other.join("ca.crt"));
    let out = command.output().expect("psql runs");
    assert!(!out.status.success(), "{}", describe(&out));
}

#[test]
fn the_agent_uses_tls_with_channel_binding_upstream_when_required() {
    let Some(stack) = stack_with(StackOptions {
        upstream_tls: "require".into(),
        server_tls: true,
        ..Default::default()
    }) else {
        return;
    };
    let out = stack
        .psql(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            true,
        )
        .expect("psql runs");
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        text(&out.stdout).trim(),
        "t",
        "the upstream connection is encrypted"
    );
}

#[test]
fn a_target_that_requires_tls_refuses_a_server_without_it() {
    let Some(stack) = stack_with(StackOptions {
        upstream_tls: "require".into(),
        ..Default::default()
    }) else {
        return;
    };
    let out = stack.psql("SELECT 1", true).expect("psql runs");
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("does not accept TLS"),
        "{}",
        describe(&out)
    );
}
