//! Upstream credentials: each session runs as its own short-lived role (created with a SCRAM
//! verifier, `VALID UNTIL`, membership in the granted role only, jitgate's comment) that is
//! gone when the session ends, however it ends; the reaper removes the roles of a killed agent
//! and nothing else; the broker's password file must be root's alone; static credentials still
//! work.

use jitgate_tests::process::ChildGuard;
use jitgate_tests::stack::{BROKER_ROLE, CI_ROLE};

use super::support::*;

/// The session roles on the server, as `name|valid_until_in_future|within_max_session|comment`.
fn session_roles(stack: &Stack) -> Vec<String> {
    stack
        .pg
        .psql_superuser(
            "SELECT rolname || '|' || (rolvaliduntil > now())::text || '|' || \
             (rolvaliduntil <= now() + interval '1 hour 5 seconds')::text || '|' || \
             coalesce(shobj_description(oid, 'pg_authid'), '') \
             FROM pg_roles WHERE rolname LIKE 'jitgate\\_%' AND rolname NOT IN ('jitgate_ci', 'jitgate_broker') \
             ORDER BY rolname;",
        )
        .expect("superuser query")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `role` exists (asked as the superuser).
fn role_exists(stack: &Stack, role: &str) -> bool {
    stack
        .pg
        .psql_superuser(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{role}';"
        ))
        .expect("superuser query")
        .trim()
        == "1"
}

/// A psql job holding a session open with `sql` (output discarded).
fn holder(stack: &Stack, sql: &str) -> ChildGuard {
    let mut command = stack.psql_command(true);
    command
        .args(["-c", sql])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    ChildGuard::spawn(&mut command, "psql holder").expect("psql spawns")
}

/// The one session role on the server, once there is one.
fn wait_for_one_role(stack: &Stack) -> Vec<String> {
    let line = eventually("the session's role", || {
        let roles = session_roles(stack);
        (roles.len() == 1).then(|| roles[0].clone())
    });
    line.split('|').map(str::to_owned).collect()
}

#[test]
fn each_session_runs_as_its_own_role_which_is_dropped_when_it_ends() {
    let Some(stack) = stack() else { return };
    let mut job = holder(&stack, "SELECT pg_sleep(5)");
    let fields = wait_for_one_role(&stack);
    let role = fields[0].clone();
    assert!(role.starts_with("jitgate_"), "{fields:?}");
    assert_eq!(
        fields[1], "true",
        "VALID UNTIL is in the future: {fields:?}"
    );
    assert_eq!(
        fields[2], "true",
        "VALID UNTIL within max_session: {fields:?}"
    );
    let comment = &fields[3];
    assert!(comment.starts_with("jitgate:v1 {"), "{comment}");
    let marker: Value = serde_json::from_str(&comment["jitgate:v1 ".len()..]).expect("JSON");
    assert_eq!(marker["host"], "runner-1", "{marker}");
    assert_eq!(marker["database"], "shop", "{marker}");
    assert_eq!(
        marker["session"].as_str().map(|s| s.replace('-', "")),
        Some(role["jitgate_".len()..].to_owned()),
        "the name carries the session id: {marker}"
    );
    // Member of the granted role and nothing else; the broker is a member of it (to drop it).
    let memberships = stack
        .pg
        .psql_superuser(&format!(
            "SELECT string_agg(g.rolname, ',' ORDER BY g.rolname) FROM pg_auth_members m \
             JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member \
             WHERE r.rolname = '{role}';\n\
             SELECT string_agg(r.rolname, ',') FROM pg_auth_members m \
             JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member \
             WHERE g.rolname = '{role}';"
        ))
        .expect("superuser query");
    assert_eq!(
        memberships.lines().collect::<Vec<_>>(),
        [CI_ROLE, BROKER_ROLE],
        "{memberships}"
    );
    // Its backend is logged in as it (the role exists a moment before the login).
    eventually("the session's backend logged in as its role", || {
        let n = stack
            .pg
            .psql_superuser(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}';"
            ))
            .ok()?;
        (n.trim() == "1").then_some(())
    });

    let deadline = Instant::now() + Duration::from_secs(30);
    while job.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "psql did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    eventually("the role dropped after the session", || {
        (!role_exists(&stack, &role)).then_some(())
    });

    // The server never saw a password, only a SCRAM verifier.
    let log = stack.pg.server_log();
    let create = log
        .lines()
        .find(|l| l.contains(&format!("CREATE ROLE \"{role}\"")))
        .expect("the CREATE ROLE is in the server log");
    assert!(create.contains("PASSWORD 'SCRAM-SHA-256$4096:"), "{create}");
    assert!(create.contains("CONNECTION LIMIT 1"), "{create}");
    assert!(log.contains(&format!("DROP ROLE \"{role}\"")));

    // The audit trail names the session's role as the upstream user.
    let sessions = eventually("the session in the collector", || {
        let sessions = json_lines(&stack.cli(&["sessions", "--json"]).ok()?);
        sessions
            .iter()
            .any(|s| s["upstream_user"] == role.as_str())
            .then_some(sessions)
    });
    assert!(!sessions.is_empty());
}

#[test]
fn a_session_role_has_only_what_its_granted_role_has() {
    let Some(stack) = stack() else { return };
    let out = stack
        .psql(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, \
             pg_has_role(current_user, 'jitgate_ci', 'USAGE'), \
             pg_has_role(current_user, 'jitgate_broker', 'MEMBER'), \
             (SELECT count(*) FROM customers) \
             FROM pg_roles WHERE rolname = current_user",
            true,
        )
        .expect("psql runs");
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        text(&out.stdout).trim(),
        "f|f|f|f|f|t|f|20",
        "{}",
        describe(&out)
    );

    // What the granted role cannot do, the session cannot either.
    let out = stack
        .psql("SELECT count(*) FROM pg_authid", true)
        .expect("psql runs");
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("permission denied"),
        "{}",
        describe(&out)
    );
    let out = stack
        .psql("SELECT current_user = 'jitgate_ci'", true)
        .expect("psql runs");
    assert_eq!(text(&out.stdout).trim(), "f", "{}", describe(&out));
}

#[test]
fn what_a_session_creates_is_reassigned_or_dropped_as_configured() {
    // Default stack: reassigned to the CI role.
    let Some(stack) = stack() else { return };
    let out = stack
        .psql("SELECT lo_create(424242)", true)
        .expect("psql runs");
    assert!(out.status.success(), "{}", describe(&out));
    let owner = eventually("the large object reassigned", || {
        let owner = stack
            .pg
            .psql_superuser_in(
                "shop",
                "SELECT pg_get_userbyid(lomowner) FROM pg_largeobject_metadata WHERE oid = 424242;",
            )
            .ok()?;
        (owner.trim() == CI_ROLE).then_some(owner)
    });
    assert_eq!(owner.trim(), CI_ROLE);
    drop(stack);

    // drop_owned: gone with the role.
    let Some(stack) = stack_with(StackOptions {
        credentials: Credentials::DynamicDropOwned,
        ..Default::default()
    }) else {
        return;
    };
    let out = stack
        .psql("SELECT lo_create(424242)", true)
        .expect("psql runs");
    assert!(out.status.success(), "{}", describe(&out));
    eventually("the large object dropped with the role", || {
        let n = stack
            .pg
            .psql_superuser_in(
                "shop",
                "SELECT count(*) FROM pg_largeobject_metadata WHERE oid = 424242;",
            )
            .ok()?;
        (n.trim() == "0" && session_roles(&stack).is_empty()).then_some(())
    });
}

#[test]
fn a_killed_client_s_role_is_dropped() {
    let Some(stack) = stack() else { return };
    let job = holder(&stack, "SELECT pg_sleep(30)");
    let role = wait_for_one_role(&stack)[0].clone();
    drop(job); // SIGKILL to psql: the agent sees its client vanish mid-query.
    eventually("the role dropped after the client was killed", || {
        (!role_exists(&stack, &role)).then_some(())
    });
}

#[test]
fn the_reaper_removes_the_roles_of_a_killed_agent_and_nothing_else() {
    let Some(mut stack) = stack() else { return };
    // Roles the reaper must leave alone: the prefix without jitgate's comment, and jitgate's
    // comment without the prefix.
    let marker = r#"jitgate:v1 {"host":"runner-1","agent_pid":1,"boot_id":"x","instance":"x","session":"x","database":"shop","expires":"2000-01-01 00:00:00+00"}"#;
    stack
        .pg
        .psql_superuser(&format!(
            "CREATE ROLE jitgate_by_hand;\nCOMMENT ON ROLE jitgate_by_hand IS 'made by a person';\n\
             CREATE ROLE other_role VALID UNTIL '2000-01-01';\nCOMMENT ON ROLE other_role IS '{marker}';\n"
        ))
        .expect("decoy roles");

    let job = holder(&stack, "SELECT pg_sleep(30)");
    let role = eventually("the session's role", || {
        session_roles(&stack)
            .iter()
            .map(|l| l.split('|').next().unwrap_or_default().to_owned())
            .find(|name| name != "jitgate_by_hand")
    });
    stack
        .restart_agent_after_kill()
        .expect("a new agent starts");
    eventually("the reaper removed the killed agent's role", || {
        (!role_exists(&stack, &role)).then_some(())
    });
    drop(job);
    for kept in [CI_ROLE, BROKER_ROLE, "jitgate_by_hand", "other_role"] {
        assert!(role_exists(&stack, kept), "the reaper removed {kept}");
    }
    // The role is gone a moment before the reaper logs it.
    let log_path = stack.dir.path().join("agent-restarted.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("reaper removed a session role") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no reaper line in the new agent's log:\n{log}\nserver log:\n{}",
            stack
                .pg
                .server_log()
                .lines()
                .filter(|l| l.contains(&role) || l.contains("jitgate_broker"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The new agent serves.
    let out = stack.psql("SELECT 1", true).expect("psql runs");
    assert!(out.status.success(), "{}", describe(&out));
}

#[test]
fn a_broker_password_file_others_can_read_stops_the_agent() {
    if !is_root() {
        return;
    }
    let started = Stack::start_with_options(
        jitgate_tests::process::bins(),
        StackOptions {
            broker_password_mode: 0o644,
            ..Default::default()
        },
    );
    let Err(error) = started else {
        panic!("the agent started with a 0644 broker password file");
    };
    let error = format!("{error:#}");
    assert!(
        error.contains("must be owned by root and not readable by group or others"),
        "{error}"
    );
    assert!(error.contains("mode 0644"), "{error}");
}

#[test]
fn static_credentials_still_work() {
    let Some(stack) = stack_with(StackOptions {
        credentials: Credentials::Static,
        ..Default::default()
    }) else {
        return;
    };
    let out = stack.psql("SELECT current_user", true).expect("psql runs");
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(text(&out.stdout).trim(), CI_ROLE);
    assert!(session_roles(&stack).is_empty());
}

#[test]
fn a_role_the_broker_cannot_create_refuses_the_session_clearly() {
    let Some(stack) = stack() else { return };
    stack
        .pg
        .psql_superuser(&format!("ALTER ROLE {BROKER_ROLE} NOCREATEROLE;"))
        .expect("superuser query");
    let out = stack.psql("SELECT 1", true).expect("psql runs");
    assert!(!out.status.success(), "{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("create the session's role") && stderr.contains("SQLSTATE 42501"),
        "{}",
        describe(&out)
    );
    assert!(session_roles(&stack).is_empty(), "nothing left behind");
    assert!(
        !stack.pg.server_log().contains("SELECT 1"),
        "the job's statement never reached the server"
    );
}

#[test]
fn a_session_ends_with_a_clear_error_when_its_role_expires() {
    let Some(stack) = stack_with(StackOptions {
        credentials: jitgate_tests::stack::Credentials::DynamicMaxSession(10),
        ..StackOptions::default()
    }) else {
        return;
    };
    let script = "SELECT 'before';\n\\! sleep 13\nSELECT 'after';\n";
    let started = std::time::Instant::now();
    let out = run_script(stack.psql_command(true), script);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(stdout.contains("before"), "{}", describe(&out));
    assert!(started.elapsed() >= Duration::from_secs(13));
    assert!(!stdout.contains("after"), "{}", describe(&out));
    assert!(
        stderr.contains("grant") && stderr.contains("expired"),
        "{}",
        describe(&out)
    );
    eventually("the expired role dropped", || {
        session_roles(&stack).is_empty().then_some(())
    });
}
