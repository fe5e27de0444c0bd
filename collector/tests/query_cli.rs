//! The `jitgate` query commands against an in-process collector that requires a query token:
//! session filters, replay, export, follow and the token itself.

use std::process::{Output, Stdio};
use std::time::Duration;

use jitgate_collector::fixtures;
use jitgate_collector::query::auth::QueryAuth;
use jitgate_collector::server::{Running, ServerOptions};
use jitgate_collector::storage::Store;
use jitgate_collector::storage::suite::on_every_backend;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const JITGATE: &str = env!("CARGO_BIN_EXE_jitgate");
const TOKEN: &str = "q-7f3a9c";

/// A collector requiring [`TOKEN`], holding the sample sessions `s1`, `r1` and `g1`.
async fn start(store: Store) -> Running {
    let mut events = fixtures::session_events("s1");
    events.push(fixtures::refused_event("r1"));
    events.extend(fixtures::rich_session_events("g1"));
    store.insert(events).await.expect("insert samples");
    let options = ServerOptions {
        query: QueryAuth::Token(TOKEN.into()),
        ..ServerOptions::default()
    };
    Running::start_with("127.0.0.1:0".parse().expect("addr"), store, options)
        .await
        .expect("start server")
}

fn command(url: &str, token: Option<&str>, args: &[&str]) -> Command {
    let mut command = Command::new(JITGATE);
    command
        .args(args)
        .env("JITGATE_COLLECTOR", url)
        .env_remove("JITGATE_QUERY_TOKEN")
        .env_remove("JITGATE_QUERY_TOKEN_FILE")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(token) = token {
        command.env("JITGATE_QUERY_TOKEN", token);
    }
    command
}

async fn jitgate(url: &str, args: &[&str]) -> Output {
    let run = command(url, Some(TOKEN), args).output();
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

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).expect("json line"))
        .collect()
}

async fn session_ids(url: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec!["--json", "sessions"];
    all.extend_from_slice(args);
    json_lines(&stdout_of(&jitgate(url, &all).await))
        .iter()
        .map(|s| s["session_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn sessions_filters_are_applied_by_the_collector() {
    on_every_backend(|store| {
        Box::pin(async move {
            let server = start(store).await;
            let url = server.url();
            assert_eq!(session_ids(&url, &[]).await, ["g1", "r1", "s1"]);
            assert_eq!(
                session_ids(&url, &["--identity", fixtures::OBJECT_ID]).await,
                ["s1"]
            );
            assert_eq!(
                session_ids(&url, &["--repo", fixtures::OTHER_REPO]).await,
                ["g1"]
            );
            assert_eq!(
                session_ids(&url, &["--target", "db.prod.internal:5432"]).await,
                ["r1", "s1"]
            );
            assert_eq!(
                session_ids(&url, &["--decision", "denied"]).await,
                ["r1", "s1"]
            );
            assert_eq!(
                session_ids(
                    &url,
                    &[
                        "--since",
                        "2026-11-01T09:31:00Z",
                        "--until",
                        "2026-11-01T10:00:00Z"
                    ]
                )
                .await,
                ["r1"]
            );
            assert_eq!(
                session_ids(&url, &["--agent-host", "runner-02", "--limit", "1"]).await,
                ["g1"]
            );
            let table = stdout_of(&jitgate(&url, &["sessions", "--decision", "allowed"]).await);
            assert!(table.contains("g1") && !table.contains("s1"), "{table}");
            let bad = jitgate(&url, &["sessions", "--since", "yesterday"]).await;
            assert!(!bad.status.success());
            assert!(String::from_utf8_lossy(&bad.stderr).contains("RFC 3339"));
            server.stop().await.expect("stop");
        })
    })
    .await;
}

#[tokio::test]
async fn replay_shows_the_transcript_with_samples_and_approvals() {
    on_every_backend(|store| {
        Box::pin(async move {
            let server = start(store).await;
            let url = server.url();
            let out = stdout_of(&jitgate(&url, &["replay", "g1", "--rows", "2"]).await);
            println!("{out}");
            let order = [
                "+0.000s  SESSION START",
                "+1.000s  STATEMENT #1",
                "+1.200s  APPROVAL REQUESTED",
                "+1.800s  APPROVAL GRANTED",
                "+2.000s  STATEMENT #2",
                "(session still open",
            ];
            let mut at = 0;
            for needle in order {
                let found = out[at..]
                    .find(needle)
                    .unwrap_or_else(|| panic!("{needle:?} after byte {at} in:\n{out}"));
                at += found + needle.len();
            }
            for expected in [
                fixtures::OTHER_SUBJECT,
                "repo=acme/billing",
                "parents  pid=4000 ppid=1 comm=bash",
                "actor=octocat",
                "TLS13_AES_256_GCM_SHA384",
                "upstream=jit_4100_beef",
                "policy=read-customers",
                "bytes=96",
                "a***@example.com",
                "b***@example.com",
                "… more rows returned than shown",
                "by=alice",
                "approval=01935f00-0000-7000-8000-00000000a001",
                "$1='42' $2=<redacted>",
                "tag=\"UPDATE 1\"",
            ] {
                assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
            }
            assert!(!out.contains("3     NULL"), "only 2 sample rows: {out}");

            // Real time at 1000x: the 2 s session takes a few milliseconds, and arrives complete.
            let fast = stdout_of(&jitgate(&url, &["replay", "s1", "--speed", "1000"]).await);
            assert!(
                fast.contains("SESSION END") && !fast.contains("still open"),
                "{fast}"
            );

            let events = json_lines(&stdout_of(
                &jitgate(&url, &["--json", "replay", "g1"]).await,
            ));
            assert_eq!(events.len(), 5);
            assert_eq!(events[1]["statement"]["sample"]["rows"][2][1], Value::Null);
            assert_eq!(events[4]["statement"]["parameters"][1]["redacted"], true);
            assert_eq!(
                events[4]["statement"]["parameters"][1]["value"],
                Value::Null
            );
            let missing = jitgate(&url, &["replay", "nope"]).await;
            assert!(!missing.status.success());
            server.stop().await.expect("stop");
        })
    })
    .await;
}

#[tokio::test]
async fn export_streams_every_event_as_jsonl() {
    on_every_backend(|store| {
        Box::pin(async move {
            let server = start(store).await;
            let url = server.url();
            let out = stdout_of(
                &jitgate(
                    &url,
                    &[
                        "export",
                        "--since",
                        "2026-11-01T00:00:00Z",
                        "--format",
                        "jsonl",
                    ],
                )
                .await,
            );
            let lines = json_lines(&out);
            assert_eq!(lines.len(), 4 + 1 + 5, "every stored event");
            for line in &lines {
                for key in [
                    "event_id",
                    "session_id",
                    "seq",
                    "time",
                    "kind",
                    "origin",
                    "hash",
                ] {
                    assert!(line.get(key).is_some(), "{key} in {line}");
                }
            }
            let started = lines
                .iter()
                .find(|l| l["event_id"] == "g1-0")
                .expect("g1 start");
            let s = &started["session_started"];
            assert_eq!(s["ci"][1]["value"], "octocat");
            assert_eq!(s["client_tls"]["version"], "TLSv1_3");
            assert_eq!(s["ancestry"][0]["cmdline"], "bash -e run.sh");
            assert_eq!(s["credential_mode"], "dynamic");
            let granted = lines
                .iter()
                .find(|l| l["kind"] == "approval_granted")
                .expect("granted");
            assert_eq!(granted["origin"], "collector");

            let window = stdout_of(
                &jitgate(
                    &url,
                    &[
                        "export",
                        "--since",
                        "2026-11-01T09:30:01Z",
                        "--until",
                        "2026-11-01T09:30:03Z",
                    ],
                )
                .await,
            );
            assert_eq!(json_lines(&window).len(), 2);
            server.stop().await.expect("stop");
        })
    })
    .await;
}

#[tokio::test]
async fn follow_prints_only_matching_live_events() {
    on_every_backend(|store| {
        Box::pin(async move {
            let options = ServerOptions {
                query: QueryAuth::Token(TOKEN.into()),
                ..ServerOptions::default()
            };
            let server =
                Running::start_with("127.0.0.1:0".parse().expect("addr"), store.clone(), options)
                    .await
                    .expect("start server");
            let mut child = command(
                &server.url(),
                Some(TOKEN),
                &[
                    "--json",
                    "events",
                    "--follow",
                    "--identity",
                    fixtures::APP_ID,
                    "--decision",
                    "denied",
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn follower");
            let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
            let banner = tokio::time::timeout(Duration::from_secs(30), stderr.next_line())
                .await
                .expect("banner in time")
                .expect("read stderr");
            assert!(banner.is_some_and(|l| l.contains("following")));

            let mut events = fixtures::rich_session_events("g1");
            events.extend(fixtures::session_events("s1"));
            events.push(fixtures::refused_event("r1"));
            store.insert(events).await.expect("ingest");

            let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
            let line = tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
                .await
                .expect("event in time")
                .expect("read")
                .expect("a line");
            let event: Value = serde_json::from_str(&line).expect("json");
            assert_eq!(
                event["event_id"], "s1-2",
                "the denied statement of that identity"
            );
            assert_eq!(event["statement"]["decision"], "denied");
            let more = tokio::time::timeout(Duration::from_millis(500), stdout.next_line()).await;
            assert!(more.is_err(), "nothing else matches: {more:?}");
            child.kill().await.expect("kill follower");
            server.stop().await.expect("stop");
        })
    })
    .await;
}

#[tokio::test]
async fn queries_need_the_query_token() {
    on_every_backend(|store| {
        Box::pin(async move {
            let server = start(store).await;
            let url = server.url();
            let run = |token: Option<&'static str>| {
                let mut command = command(&url, token, &["sessions"]);
                async move {
                    tokio::time::timeout(Duration::from_secs(30), command.output())
                        .await
                        .expect("finishes")
                        .expect("run")
                }
            };
            let none = run(None).await;
            assert!(!none.status.success());
            let stderr = String::from_utf8_lossy(&none.stderr);
            assert!(stderr.contains("(unauthenticated)"), "{stderr}");
            assert!(stderr.contains("JITGATE_QUERY_TOKEN_FILE"), "{stderr}");
            let wrong = run(Some("q-wrong")).await;
            assert!(!wrong.status.success());
            assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong query token"));
            // The decider token is not a query credential.
            let decider = command(&url, None, &["sessions"])
                .env("JITGATE_DECIDER_TOKEN", TOKEN)
                .output()
                .await
                .expect("run");
            assert!(!decider.status.success());

            let token_file = tempfile::NamedTempFile::new().expect("token file");
            std::fs::write(token_file.path(), format!("{TOKEN}\n")).expect("write");
            let from_file = command(&url, None, &["sessions"])
                .arg("--query-token-file")
                .arg(token_file.path())
                .output()
                .await
                .expect("run");
            assert!(stdout_of(&from_file).contains("g1"));
            server.stop().await.expect("stop");
        })
    })
    .await;
}

#[tokio::test]
async fn verify_reports_an_intact_session_in_process() {
    on_every_backend(|store| {
        Box::pin(async move {
            let server = start(store).await;
            let url = server.url();
            let out = stdout_of(&jitgate(&url, &["verify", "s1"]).await);
            assert!(out.contains("session s1: INTACT"), "{out}");
            assert!(out.contains("ended:   yes"), "{out}");
            let open = stdout_of(&jitgate(&url, &["verify", "g1"]).await);
            assert!(open.contains("2 collector-written"), "{open}");
            assert!(open.contains("ended:   no"), "{open}");
            let all =
                stdout_of(&jitgate(&url, &["verify", "--since", "2026-11-01T00:00:00Z"]).await);
            assert!(
                all.contains("3 sessions verified: 3 intact, 0 broken"),
                "{all}"
            );
            let unknown = jitgate(&url, &["verify", "nope"]).await;
            assert_eq!(unknown.status.code(), Some(2));
            server.stop().await.expect("stop");
        })
    })
    .await;
}
