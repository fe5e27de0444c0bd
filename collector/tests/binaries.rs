//! Tests of the built binaries: `jitgate` against an in-process collector, and the
//! `jitgate-collector` daemon's ready line and SIGTERM shutdown.

use std::process::{Output, Stdio};
use std::time::Duration;

use jitgate_collector::fixtures;
use jitgate_collector::query::auth::QueryAuth;
use jitgate_collector::server::{Running, ServerOptions};
use jitgate_collector::storage::Store;
use jitgate_collector::storage::suite::on_every_backend;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const JITGATE: &str = env!("CARGO_BIN_EXE_jitgate");
const COLLECTOR: &str = env!("CARGO_BIN_EXE_jitgate-collector");
/// The query token the in-process collectors require and `jitgate` sends.
const QUERY_TOKEN: &str = "query-s3cret";

/// A collector holding the sample session `s1` and the refused session `r1`.
async fn start_with_samples(store: Store) -> Running {
    let mut events = fixtures::session_events("s1");
    events.push(fixtures::refused_event("r1"));
    store.insert(events).await.expect("insert samples");
    let options = ServerOptions {
        query: QueryAuth::Token(QUERY_TOKEN.into()),
        ..ServerOptions::default()
    };
    Running::start_with("127.0.0.1:0".parse().expect("addr"), store, options)
        .await
        .expect("start server")
}

async fn jitgate(args: &[&str], collector: &str) -> Output {
    let run = Command::new(JITGATE)
        .args(args)
        .env("JITGATE_COLLECTOR", collector)
        .env("JITGATE_QUERY_TOKEN", QUERY_TOKEN)
        .env_remove("JITGATE_QUERY_TOKEN_FILE")
        .stdin(Stdio::null())
        .output();
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("jitgate finishes")
        .expect("run jitgate")
}

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "status {:?}, stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn sessions_lists_identity_process_and_counts() {
    on_every_backend(|store| {
        Box::pin(async move {
            let server = start_with_samples(store).await;
            let out = stdout_of(&jitgate(&["sessions", "--limit", "10"], &server.url()).await);
            println!("{out}");
            for expected in [
                "SESSION",
                "s1",
                "2026-11-01T09:30:00Z",
                fixtures::ISSUER,
                fixtures::SUBJECT,
                fixtures::OBJECT_ID,
                fixtures::APP_ID,
                "pid=4242",
                "comm=psql",
                fixtures::EXE,
                "db.prod.internal:5432",
                "shop",
                "jit_4242_a1b2",
                "refused: no identity token for pid 4242",
            ] {
                assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
            }
            let lines: Vec<&str> = out.lines().collect();
            assert_eq!(lines.len(), 3, "header and two sessions");
            assert!(lines[1].starts_with("r1 "), "newest first: {out}");
            server.stop().await.expect("stop");
        })
    })
    .await;
}

#[tokio::test]
async fn events_show_statements_and_session_facts() {
    on_every_backend(|store| {
        Box::pin(async move {
            let server = start_with_samples(store).await;
            let out = stdout_of(&jitgate(&["events", "--session", "s1"], &server.url()).await);
            println!("{out}");
            for expected in [
                "session_started",
                fixtures::SUBJECT,
                fixtures::APP_ID,
                fixtures::EXE,
                "ALLOWED",
                fixtures::ALLOWED_SQL,
                "tables=public.customers",
                "rows=3",
                "masked=3",
                "tag=\"SELECT 3\"",
                "DENIED",
                "rule=forbid-ddl",
                "sqlstate=42501",
                fixtures::DENIED_SQL,
                "session_ended",
                "reason=\"client terminated\"",
            ] {
                assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
            }
            server.stop().await.expect("stop");
        })
    })
    .await;
}

#[tokio::test]
async fn json_output_is_one_object_per_line() {
    on_every_backend(|store| {
        Box::pin(async move {
            let server = start_with_samples(store).await;
            let url = server.url();
            let out = stdout_of(&jitgate(&["--json", "sessions"], &url).await);
            let sessions: Vec<serde_json::Value> = out
                .lines()
                .map(|line| serde_json::from_str(line).expect("json line"))
                .collect();
            assert_eq!(sessions.len(), 2);
            assert_eq!(sessions[1]["identity"]["object_id"], fixtures::OBJECT_ID);
            assert_eq!(sessions[1]["statements"], 2);

            let out = stdout_of(&jitgate(&["events", "--session", "s1", "--json"], &url).await);
            let events: Vec<serde_json::Value> = out
                .lines()
                .map(|line| serde_json::from_str(line).expect("json line"))
                .collect();
            assert_eq!(events.len(), 4);
            assert_eq!(events[2]["statement"]["decision"], "denied");
            assert_eq!(events[2]["statement"]["text"], fixtures::DENIED_SQL);
            server.stop().await.expect("stop");
        })
    })
    .await;
}

#[tokio::test]
async fn unreachable_collector_fails_naming_the_url() {
    // Bind and release a port so nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let output = jitgate(&["sessions"], &url).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&url), "stderr names the URL: {stderr}");
    assert!(stderr.contains("cannot reach"), "{stderr}");
}

#[tokio::test]
async fn collector_binary_announces_port_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("audit.db");
    let token = dir.path().join("query-token");
    std::fs::write(&token, format!("{QUERY_TOKEN}\n")).expect("write token file");
    let mut child = Command::new(COLLECTOR)
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .arg("--query-token-file")
        .arg(&token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn collector");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .expect("ready line in time")
    .expect("read ready line");
    let addr = line
        .trim_end()
        .strip_prefix("jitgate-collector listening on ")
        .expect("ready line format");
    assert!(!addr.ends_with(":0"), "real port announced: {addr}");

    let out = stdout_of(&jitgate(&["sessions"], &format!("http://{addr}")).await);
    assert_eq!(out.trim(), "no sessions");

    let pid = child.id().expect("pid").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "clean exit: {status:?}");
    assert!(db.exists());
}

#[tokio::test]
async fn collector_binary_refuses_an_empty_decider_token_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "\n").expect("write token file");
    let run = Command::new(COLLECTOR)
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("audit.db"))
        .arg("--decider-token-file")
        .arg(&token)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("exits")
        .expect("run collector");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("decider token file"), "{stderr}");
    assert!(output.stdout.is_empty(), "never announced a listener");
}

#[tokio::test]
async fn collector_binary_refuses_a_malformed_webhook_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = Command::new(COLLECTOR)
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("audit.db"))
        .args(["--webhook-url", "hooks.slack.invalid/T000/B000"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("exits")
        .expect("run collector");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("webhook URL"), "{stderr}");
    assert!(
        !stderr.contains("T000"),
        "the secret URL is not logged: {stderr}"
    );
}

#[tokio::test]
async fn collector_binary_sweeps_by_retention_days() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("audit.db");
    {
        // The sample session is from 2026-11-01; a fresh one is from now.
        let store = Store::open(&db).expect("open store");
        let mut events = fixtures::session_events("old");
        let now = jitgate_collector::storage::now_unix_us();
        events.extend(fixtures::seal_session(
            "fresh",
            "runner-01",
            now,
            fixtures::session_kinds(),
        ));
        store.insert(events).await.expect("insert");
    }
    let mut child = Command::new(COLLECTOR)
        .args(["--listen", "127.0.0.1:0", "--retention-days", "1"])
        .arg("--allow-unauthenticated-query")
        .arg("--db")
        .arg(&db)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn collector");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .expect("ready line in time")
    .expect("read ready line");
    let addr = line.trim_end().rsplit(' ').next().expect("address");
    let url = format!("http://{addr}");
    let mut listed = String::new();
    for _ in 0..100 {
        let out = Command::new(JITGATE)
            .args(["sessions"])
            .env("JITGATE_COLLECTOR", &url)
            .env_remove("JITGATE_QUERY_TOKEN")
            .env_remove("JITGATE_QUERY_TOKEN_FILE")
            .output()
            .await
            .expect("run jitgate");
        listed = stdout_of(&out);
        if !listed.contains("old") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!listed.contains("old"), "swept at start: {listed}");
    assert!(listed.contains("fresh"), "kept: {listed}");
    child.kill().await.expect("kill collector");
}
