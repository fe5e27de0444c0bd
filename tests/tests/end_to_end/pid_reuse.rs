//! A reused pid cannot lend its token: a child connects through the redirect and exits, its pid
//! is handed to an impostor with a valid token (forced through `/proc/sys/kernel/ns_last_pid`),
//! and the StartupMessage then sent on the child's connection is refused with 28000 naming the
//! change (tests/python/pid_reuse.py). With a pause before the pid is taken, the start time
//! gives the impostor away; without one, within the same clock tick, that it does not hold the
//! connection's socket does.

use super::support::*;

/// Runs the attack with `delay` seconds between the child's exit and the impostor's fork.
fn attack(stack: &Stack, delay: &str) -> Output {
    let script = jitgate_tests::python::scripts_dir().join("pid_reuse.py");
    let mut command = stack.job("python3", false);
    command
        .arg(&script)
        .arg("127.0.0.1")
        .arg(stack.pg.port().to_string())
        .arg(&stack.token_file)
        .arg(delay);
    let out = command.output().expect("script runs");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stdout.contains("REUSED "),
        "the impostor held the pid: {}",
        describe(&out)
    );
    assert!(stdout.contains("SQLSTATE 28000"), "{}", describe(&out));
    assert!(
        stdout.contains("is gone or changed") && stdout.contains("the pid was reused"),
        "{}",
        describe(&out)
    );
    out
}

#[test]
fn a_pid_reuse_attempt_is_refused() {
    let Some(stack) = stack() else { return };
    // 50 ms later: the impostor started after the connect, whatever the tick.
    let out = attack(&stack, "0.05");
    assert!(
        text(&out.stdout).contains("after the connection was opened"),
        "the start time names the change: {}",
        describe(&out)
    );
    // At once: possibly within the clock tick of the connect; refused all the same.
    attack(&stack, "0");

    // The agent audited the refusal, and a legitimate job with the same token still works.
    let refused = eventually("the refused session", || {
        let sessions = json_lines(&stack.cli(&["sessions", "--json"]).ok()?);
        sessions.into_iter().find(|s| {
            s["refused"] == true
                && s["refused_reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("the pid was reused"))
        })
    });
    assert_eq!(refused["refused"], true);
    let out = stack.psql("SELECT 1", true).expect("psql runs");
    assert!(out.status.success(), "{}", describe(&out));
}
