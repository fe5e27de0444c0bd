//! Shared helpers of the end-to-end tests: a stack per test, output formatting, and polling
//! the collector (audit delivery is asynchronous).

pub use std::net::TcpListener;
pub use std::process::Output;
pub use std::time::{Duration, Instant};

pub use jitgate_tests::process::is_root;
pub use jitgate_tests::shop::customers;
pub use jitgate_tests::stack::{APP_ID, Credentials, DENY_RULE, OBJECT_ID, Stack, StackOptions};
pub use serde_json::Value;

pub fn stack() -> Option<Stack> {
    stack_with(StackOptions::default())
}

/// A stack started with `options`, or `None` (with a note) when not root.
pub fn stack_with(options: StackOptions) -> Option<Stack> {
    if !is_root() {
        eprintln!("skipped: needs root (eBPF, cgroups, runuser)");
        return None;
    }
    Some(Stack::start_with_options(jitgate_tests::process::bins(), options).expect("stack starts"))
}

/// Runs `command` with `script` on its stdin and collects its output (psql `-f -`).
pub fn run_script(mut command: std::process::Command, script: &str) -> Output {
    use std::io::Write as _;
    use std::process::Stdio;
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("client spawns");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("script written");
    child.wait_with_output().expect("client finishes")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn describe(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Polls the collector until `probe` finds what it needs (audit delivery is asynchronous).
pub fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn json_lines(out: &Output) -> Vec<Value> {
    text(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Events of the newest session whose statements include `needle`.
pub fn events_with(stack: &Stack, needle: &str) -> Vec<Value> {
    eventually(&format!("a session with {needle:?}"), || {
        let sessions = json_lines(&stack.cli(&["sessions", "--json"]).ok()?);
        sessions.iter().find_map(|s| {
            let id = s["session_id"].as_str()?;
            let events = json_lines(&stack.cli(&["events", "--session", id, "--json"]).ok()?);
            let found = events.iter().any(|e| {
                e["statement"]["text"]
                    .as_str()
                    .is_some_and(|t| t.contains(needle))
            });
            let ended = events.iter().any(|e| e["kind"] == "session_ended");
            (found && ended).then_some(events)
        })
    })
}

pub fn orders_count(stack: &Stack) -> i64 {
    stack
        .pg
        .psql_superuser_in("shop", "SELECT count(*) FROM orders;")
        .expect("superuser query")
        .trim()
        .parse()
        .expect("a count")
}

/// Whether the `customers` table still exists (asked as the superuser, past the agent).
pub fn customers_table_exists(stack: &Stack) -> bool {
    stack
        .pg
        .psql_superuser_in(
            "shop",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'customers';",
        )
        .expect("superuser query")
        .trim()
        == "1"
}

/// Runs the Rust driver client (`jitgate-pg-client`) as a job with the token against the shop
/// database's real address, with `args` after `HOST PORT DB`.
pub fn rust_client(stack: &Stack, args: &[&str]) -> Output {
    stack
        .job(env!("CARGO_BIN_EXE_jitgate-pg-client"), true)
        .args(["127.0.0.1", &stack.pg.port().to_string(), "shop"])
        .args(args)
        .output()
        .expect("client runs")
}
