//! Workload identity: refusals with 28000 for a missing, expired or unreadable token, and a
//! token "file" that is a FIFO.

use super::support::*;

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
    let expired = token_with_exp(&stack, jitgate_tests::claims::now_secs() - 3600);
    std::fs::write(&stack.token_file, expired).expect("write");
    let out = stack.psql("SELECT 1", true).expect("psql runs");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("expired"), "{}", describe(&out));
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
        .args(stack.psql_args())
        .args(["-c", "SELECT 1"])
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
    let mut command = stack.psql_command(false);
    command
        .args(["-c", "SELECT 1"])
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

/// A token for the stack's service principal whose `exp` is `exp` (seconds since the epoch).
fn token_with_exp(stack: &Stack, exp: u64) -> String {
    let mut claims = jitgate_tests::claims::entra_sp_claims(
        jitgate_tests::stack::TENANT,
        APP_ID,
        OBJECT_ID,
        jitgate_tests::stack::AUDIENCE,
        Duration::from_secs(60),
    );
    claims["exp"] = Value::from(exp);
    stack.issuer.token(&claims).expect("token")
}

#[test]
fn a_session_ends_when_its_token_expires_unless_policy_lets_it_outlive_it() {
    // Two policies: the stack's (sessions end at exp) and one that permits outlive_token.
    // The token must leave the agent's shortest grant (5 s) at login.
    let script = "SELECT 'before';\n\\! sleep 12\nSELECT 'after';\n";
    for outlive in [false, true] {
        let mut policy = jitgate_tests::stack::stack_policy();
        if outlive {
            policy.push_str(
                "\n@id(\"long-jobs\")\npermit(principal, action == Jitgate::Action::\"outlive_token\", resource);\n",
            );
        }
        let Some(stack) = stack_with(StackOptions {
            policy,
            ..StackOptions::default()
        }) else {
            return;
        };
        std::fs::write(
            &stack.token_file,
            token_with_exp(&stack, jitgate_tests::claims::now_secs() + 8),
        )
        .expect("write");
        let started = Instant::now();
        let out = run_script(stack.psql_command(true), script);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(stdout.contains("before"), "{}", describe(&out));
        assert!(started.elapsed() >= Duration::from_secs(12));
        if outlive {
            assert!(stdout.contains("after"), "{}", describe(&out));
        } else {
            assert!(!stdout.contains("after"), "{}", describe(&out));
            assert!(
                stderr.contains("token expired") || stderr.contains("terminated"),
                "{}",
                describe(&out)
            );
            let ended = eventually("the session's end in the trail", || {
                let sessions = json_lines(&stack.cli(&["sessions", "--json"]).ok()?);
                let id = sessions.first()?["session_id"].as_str()?.to_owned();
                let events = json_lines(&stack.cli(&["events", "--session", &id, "--json"]).ok()?);
                events
                    .into_iter()
                    .find(|e| e["session_ended"]["reason"].is_string())
            });
            assert!(
                ended["session_ended"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("token expired")),
                "{ended}"
            );
        }
    }
}
