//! The kernel redirect as a client sees it: other ports and other processes go direct, a dead
//! agent fails closed, upstream md5 authentication, and the agent's own cancel keys.

use super::support::*;

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
fn upstream_md5_authentication_works() {
    let Some(stack) = stack_with(StackOptions {
        auth: jitgate_tests::postgres::PasswordAuth::Md5,
        credentials: Credentials::Static,
        ..Default::default()
    }) else {
        return;
    };
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
fn replication_connections_are_refused_clearly() {
    let Some(stack) = stack() else { return };
    let dsn = format!(
        "host=127.0.0.1 port={} dbname=shop replication=database",
        stack.pg.port()
    );
    let out = stack
        .job("psql", true)
        .args(["-X", "-w", &dsn, "-c", "IDENTIFY_SYSTEM"])
        .output()
        .expect("psql runs");
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("replication connections"),
        "{}",
        describe(&out)
    );
}

#[test]
fn clients_get_agent_cancel_keys_and_only_a_real_key_cancels() {
    let Some(stack) = stack() else { return };
    let script = jitgate_tests::python::scripts_dir().join("cancel_keys.py");
    let out = stack
        .job("python3", true)
        .arg(&script)
        .args(["127.0.0.1", &stack.pg.port().to_string(), "shop"])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}\nagent log:\n{}",
        describe(&out),
        stack.agent.log()
    );
    let result: Value = serde_json::from_str(text(&out.stdout).trim()).expect("one JSON object");
    assert_ne!(
        result["agent_pid"], result["server_pid"],
        "BackendKeyData must not carry the server's pid: {result}"
    );
    assert_eq!(
        result["ended_before_real_cancel"], false,
        "a made-up key cancelled the query: {result}"
    );
    assert_eq!(
        result["sqlstate"], "57014",
        "the real key cancels: {result}"
    );
    assert!(
        result["seconds"].as_f64().is_some_and(|s| s < 10.0),
        "cancelled well before pg_sleep(20) ended: {result}"
    );
    // The made-up keys were dropped by the agent; none reached the server (which logs a
    // CancelRequest it cannot match).
    let server_log = stack.pg.server_log();
    assert!(
        !server_log.contains("in cancel request"),
        "a made-up key reached the server:\n{server_log}"
    );
    assert!(server_log.contains("canceling statement due to user request"));
}

/// Beyond `max_connections` redirected sessions, a client gets FATAL 53300 with a readable
/// message (psql's default `sslmode=prefer` included), and the permits come back when sessions
/// end.
#[test]
fn sessions_beyond_max_connections_are_refused_with_53300_until_one_ends() {
    let Some(stack) = stack_with(StackOptions {
        max_connections: Some(2),
        ..Default::default()
    }) else {
        return;
    };
    let mut holders: Vec<jitgate_tests::process::ChildGuard> = (0..2)
        .map(|i| {
            let mut command = stack.psql_command(true);
            command
                .args(["-c", "SELECT pg_sleep(6)"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            jitgate_tests::process::ChildGuard::spawn(&mut command, &format!("psql holder {i}"))
                .expect("psql spawns")
        })
        .collect();
    eventually("both holders connected upstream", || {
        let n = stack
            .pg
            .psql_superuser(
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(6)';",
            )
            .ok()?;
        (n.trim() == "2").then_some(())
    });

    let out = stack.psql("SELECT 1", true).expect("psql runs");
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("too many connections (max_connections = 2)"),
        "{}",
        describe(&out)
    );

    for holder in &mut holders {
        let deadline = Instant::now() + Duration::from_secs(30);
        while holder.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "holder did not finish");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let out = eventually("a session once the holders ended", || {
        let out = stack.psql("SELECT 41 + 1", true).ok()?;
        out.status.success().then_some(out)
    });
    assert_eq!(text(&out.stdout).trim(), "42");
}
