//! Approvals end to end on loopback: the real tonic server with a temporary SQLite database,
//! agents' calls made with the generated client, people's decisions made with the built
//! `jitgate` binary, and the webhook received by a plain HTTP listener in this test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use jitgate_collector::approvals::ApprovalOptions;
use jitgate_collector::fixtures;
use jitgate_collector::query::auth::QueryAuth;
use jitgate_collector::server::{Running, ServerOptions};
use jitgate_collector::storage::Store;
use jitgate_collector::storage::suite::on_every_backend;
use jitgate_proto::audit::v1::{
    Approval, ApprovalMode, ApprovalStatus, FindGrantRequest, GrantScope, ListEventsRequest,
    OpenRequest, WaitRequest, approvals_client::ApprovalsClient,
    audit_query_client::AuditQueryClient,
};
use tokio::process::Command;
use tonic::transport::Channel;

const JITGATE: &str = env!("CARGO_BIN_EXE_jitgate");

async fn start(store: Store, options: ApprovalOptions) -> Running {
    // The query API is open here: these tests are about approvals, not the query credential.
    let options = ServerOptions {
        approvals: options,
        query: QueryAuth::Open,
        ..ServerOptions::default()
    };
    Running::start_with("127.0.0.1:0".parse().expect("addr"), store, options)
        .await
        .expect("start server")
}

async fn client(server: &Running) -> ApprovalsClient<Channel> {
    ApprovalsClient::connect(server.url())
        .await
        .expect("connect")
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A hold-mode request for the sample identity's `UPDATE` in session `session`.
fn open_request(session: &str, mode: ApprovalMode) -> OpenRequest {
    OpenRequest {
        approval_id: new_id(),
        session_id: session.into(),
        seq: 2,
        agent_host: "runner-01".into(),
        identity: Some(fixtures::identity()),
        target: "db.prod.internal:5432".into(),
        database: "shop".into(),
        statement: "UPDATE public.orders SET status = 'refunded' WHERE id = 7".into(),
        fingerprint: "fp-update-orders".into(),
        tables: vec!["public.orders".into()],
        actions: vec!["update".into()],
        policy_ids: vec!["orders-need-approval".into()],
        reason: "writes to orders need a second person".into(),
        mode: mode.into(),
        grant_scope: GrantScope::Fingerprint.into(),
        grant_ttl_s: 600,
        hold_timeout_s: 60,
        auto_approved_by: String::new(),
    }
}

async fn jitgate(args: &[&str], collector: &str, envs: &[(&str, &str)]) -> Output {
    let run = Command::new(JITGATE)
        .args(args)
        .env("JITGATE_COLLECTOR", collector)
        .env_remove("JITGATE_AS")
        .env_remove("JITGATE_DECIDER_TOKEN")
        .envs(envs.iter().copied())
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

async fn wait(client: &mut ApprovalsClient<Channel>, id: &str, timeout_ms: u64) -> Approval {
    client
        .wait(WaitRequest {
            approval_id: id.into(),
            timeout_ms,
        })
        .await
        .expect("wait")
        .into_inner()
        .approval
        .expect("approval")
}

#[tokio::test]
async fn approve_with_the_cli_wakes_the_waiting_agent() {
    on_every_backend(|store| {
        Box::pin(async move {
            let server = start(store, ApprovalOptions::default()).await;
            let url = server.url();
            let mut agent = client(&server).await;
            let open = open_request("s1", ApprovalMode::Hold);
            let id = open.approval_id.clone();
            let opened = agent.open(open).await.expect("open").into_inner();
            assert!(opened.created);
            assert_eq!(
                opened.approval.as_ref().map(Approval::status),
                Some(ApprovalStatus::Pending)
            );

            let out = stdout_of(&jitgate(&["approvals", "list"], &url, &[]).await);
            println!("{out}");
            for expected in [
                id.as_str(),
                "pending",
                "hold",
                fixtures::SUBJECT,
                "UPDATE public.orders",
            ] {
                assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
            }

            let mut waiter = agent.clone();
            let waiting_id = id.clone();
            let waited = tokio::spawn(async move { wait(&mut waiter, &waiting_id, 20_000).await });
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(!waited.is_finished(), "wait blocks while pending");

            let before = jitgate_collector::storage::now_unix_us();
            let out = stdout_of(
                &jitgate(
                    &[
                        "approvals",
                        "approve",
                        &id,
                        "--comment",
                        "refund ticket 4711",
                    ],
                    &url,
                    &[("JITGATE_AS", "alice@example.com")],
                )
                .await,
            );
            assert!(
                out.starts_with(&format!("approved {id} by alice@example.com at ")),
                "{out}"
            );

            let approval = tokio::time::timeout(Duration::from_secs(10), waited)
                .await
                .expect("wait returns after the decision")
                .expect("wait task");
            assert_eq!(approval.status(), ApprovalStatus::Approved);
            assert_eq!(approval.decided_by, "alice@example.com");
            assert_eq!(approval.comment, "refund ticket 4711");
            assert!(approval.decided_unix_us >= before);
            assert_eq!(
                approval.grant_expires_unix_us, 0,
                "hold mode opens no grant"
            );

            // Pending list is empty now; --all shows who decided.
            let out = stdout_of(&jitgate(&["approvals", "list"], &url, &[]).await);
            assert_eq!(out.trim(), "no pending approval requests");
            let out =
                stdout_of(&jitgate(&["approvals", "list", "--all", "--json"], &url, &[]).await);
            let listed: serde_json::Value =
                serde_json::from_str(out.trim()).expect("one json line");
            assert_eq!(listed["status"], "approved");
            assert_eq!(listed["decided_by"], "alice@example.com");
            assert_eq!(listed["request"]["policy_ids"][0], "orders-need-approval");

            // Deciding again is refused and names who decided.
            let again = jitgate(
                &["approvals", "deny", &id],
                &url,
                &[("JITGATE_AS", "mallory")],
            )
            .await;
            assert!(!again.status.success());
            let stderr = String::from_utf8_lossy(&again.stderr);
            assert!(
                stderr.contains("already approved by alice@example.com"),
                "{stderr}"
            );

            // The session's events show the request and who approved it.
            let out = stdout_of(&jitgate(&["events", "--session", "s1"], &url, &[]).await);
            println!("{out}");
            for expected in [
                "approval_requested",
                "policy=orders-need-approval",
                "approval_granted",
                "APPROVED",
                "by=alice@example.com",
                "comment=\"refund ticket 4711\"",
            ] {
                assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
            }
            server.stop().await.expect("stop");
        })
    })
    .await;
}

#[tokio::test]
async fn deny_with_the_cli_is_returned_to_the_agent() {
    on_every_backend(|store| {
        Box::pin(async move {
            let server = start(store, ApprovalOptions::default()).await;
            let mut agent = client(&server).await;
            let open = open_request("s2", ApprovalMode::Hold);
            let id = open.approval_id.clone();
            agent.open(open).await.expect("open");
            let out = stdout_of(
                &jitgate(
                    &[
                        "--json",
                        "approvals",
                        "deny",
                        &id,
                        "--as",
                        "bob",
                        "--comment",
                        "not during the freeze",
                    ],
                    &server.url(),
                    &[],
                )
                .await,
            );
            let denied: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
            assert_eq!(denied["status"], "denied");
            assert_eq!(denied["decided_by"], "bob");
            assert_eq!(denied["approval_id"], id.as_str());
            let approval = wait(&mut agent, &id, 5_000).await;
            assert_eq!(approval.status(), ApprovalStatus::Denied);
            assert_eq!(
                (approval.decided_by.as_str(), approval.comment.as_str()),
                ("bob", "not during the freeze")
            );
            server.stop().await.expect("stop");
        })
    })
    .await;
}

#[tokio::test]
async fn deciding_requires_a_name() {
    on_every_backend(|store| {
        Box::pin(async move {
            let server = start(store, ApprovalOptions::default()).await;
            let output = jitgate(&["approvals", "approve", "some-id"], &server.url(), &[]).await;
            assert!(!output.status.success());
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains("--as"), "{stderr}");
            server.stop().await.expect("stop");
        })
    })
    .await;
}

#[tokio::test]
async fn hold_timeout_expires_the_request() {
    on_every_backend(|store| {
        Box::pin(async move {
            let server = start(store, ApprovalOptions::default()).await;
            let mut agent = client(&server).await;
            let mut open = open_request("s3", ApprovalMode::Hold);
            open.hold_timeout_s = 1;
            let id = open.approval_id.clone();
            agent.open(open).await.expect("open");
            let started = std::time::Instant::now();
            let approval = wait(&mut agent, &id, 10_000).await;
            assert_eq!(approval.status(), ApprovalStatus::Expired);
            let waited = started.elapsed();
            assert!(
                waited >= Duration::from_millis(700) && waited < Duration::from_secs(5),
                "{waited:?}"
            );
            let late = jitgate(
                &["approvals", "approve", &id, "--as", "alice"],
                &server.url(),
                &[],
            )
            .await;
            assert!(!late.status.success());
            assert!(String::from_utf8_lossy(&late.stderr).contains("already expired"));

            let mut query = AuditQueryClient::connect(server.url())
                .await
                .expect("connect");
            let events = query
                .list_events(ListEventsRequest {
                    session_id: "s3".into(),
                })
                .await
                .expect("events")
                .into_inner()
                .events;
            let kinds: Vec<&str> = events
                .iter()
                .map(|e| jitgate_collector::storage::kind_name(e.kind.as_ref()))
                .collect();
            assert_eq!(kinds, ["approval_requested", "approval_expired"]);
            server.stop().await.expect("stop");
        })
    })
    .await;
}

#[tokio::test]
async fn wait_returns_pending_when_its_own_timeout_passes_first() {
    on_every_backend(|store| {
        Box::pin(async move {
            let server = start(store, ApprovalOptions::default()).await;
            let mut agent = client(&server).await;
            let open = open_request("s4", ApprovalMode::Hold);
            let id = open.approval_id.clone();
            agent.open(open).await.expect("open");
            let approval = wait(&mut agent, &id, 200).await;
            assert_eq!(approval.status(), ApprovalStatus::Pending);
            let missing = agent
                .wait(WaitRequest {
                    approval_id: "nope".into(),
                    timeout_ms: 10,
                })
                .await
                .expect_err("unknown id");
            assert_eq!(missing.code(), tonic::Code::NotFound);
            server.stop().await.expect("stop");
        })
    })
    .await;
}

#[tokio::test]
async fn request_mode_grant_lives_for_its_ttl() {
    on_every_backend(|store| {
        Box::pin(async move {
            let server = start(store, ApprovalOptions::default()).await;
            let mut agent = client(&server).await;
            let mut open = open_request("s5", ApprovalMode::Request);
            open.grant_ttl_s = 2;
            let id = open.approval_id.clone();
            agent.open(open).await.expect("open");

            let by_fingerprint = FindGrantRequest {
                issuer: fixtures::ISSUER.into(),
                subject: fixtures::SUBJECT.into(),
                target: "db.prod.internal:5432".into(),
                database: "shop".into(),
                fingerprint: "fp-update-orders".into(),
                ..FindGrantRequest::default()
            };
            let find = |mut agent: ApprovalsClient<Channel>, request: FindGrantRequest| async move {
                agent
                    .find_grant(request)
                    .await
                    .expect("find grant")
                    .into_inner()
                    .grant
            };
            assert!(
                find(agent.clone(), by_fingerprint.clone()).await.is_none(),
                "no grant while pending"
            );
            stdout_of(
                &jitgate(
                    &["approvals", "approve", &id, "--as", "alice"],
                    &server.url(),
                    &[],
                )
                .await,
            );
            let grant = find(agent.clone(), by_fingerprint.clone())
                .await
                .expect("grant after approval");
            assert_eq!(
                grant.request.as_ref().map(|r| r.approval_id.as_str()),
                Some(id.as_str())
            );
            assert!(grant.grant_expires_unix_us > jitgate_collector::storage::now_unix_us());

            // Another fingerprint, another identity or another database: no grant.
            for other in [
                FindGrantRequest {
                    fingerprint: "fp-delete-orders".into(),
                    ..by_fingerprint.clone()
                },
                FindGrantRequest {
                    subject: "someone-else".into(),
                    ..by_fingerprint.clone()
                },
                FindGrantRequest {
                    database: "billing".into(),
                    ..by_fingerprint.clone()
                },
            ] {
                assert!(find(agent.clone(), other).await.is_none());
            }

            tokio::time::sleep(Duration::from_millis(2_200)).await;
            assert!(
                find(agent.clone(), by_fingerprint).await.is_none(),
                "grant gone after its TTL"
            );
            let invalid = agent
                .find_grant(FindGrantRequest {
                    issuer: fixtures::ISSUER.into(),
                    subject: fixtures::SUBJECT.into(),
                    ..FindGrantRequest::default()
                })
                .await
                .expect_err("no scope");
            assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
            server.stop().await.expect("stop");
        })
    })
    .await;
}

#[tokio::test]
async fn tables_scope_grant_covers_subsets_and_auto_approval_is_stored_approved() {
    on_every_backend(|store| {
        Box::pin(async move {
            let server = start(store, ApprovalOptions::default()).await;
            let mut agent = client(&server).await;
            let mut open = open_request("s6", ApprovalMode::Request);
            open.grant_scope = GrantScope::Tables.into();
            open.tables = vec!["public.orders".into(), "public.refunds".into()];
            open.actions = vec!["update".into(), "insert".into()];
            open.auto_approved_by = "policy:refunds-auto".into();
            let opened = agent
                .open(open)
                .await
                .expect("open")
                .into_inner()
                .approval
                .expect("approval");
            assert_eq!(opened.status(), ApprovalStatus::Approved);
            assert_eq!(opened.decided_by, "policy:refunds-auto");

            let query = |tables: &[&str], actions: &[&str]| FindGrantRequest {
                issuer: fixtures::ISSUER.into(),
                subject: fixtures::SUBJECT.into(),
                tables: tables.iter().map(|t| (*t).to_owned()).collect(),
                actions: actions.iter().map(|a| (*a).to_owned()).collect(),
                ..FindGrantRequest::default()
            };
            let covered = agent
                .find_grant(query(&["public.refunds"], &["insert"]))
                .await
                .expect("find")
                .into_inner();
            assert!(covered.grant.is_some());
            for (tables, actions) in [
                (&["public.refunds", "public.customers"][..], &["insert"][..]),
                (&["public.orders"][..], &["delete"][..]),
            ] {
                let found = agent
                    .find_grant(query(tables, actions))
                    .await
                    .expect("find")
                    .into_inner();
                assert!(found.grant.is_none(), "{tables:?} {actions:?}");
            }
            let out = stdout_of(&jitgate(&["approvals", "list"], &server.url(), &[]).await);
            assert_eq!(out.trim(), "no pending approval requests");
            server.stop().await.expect("stop");
        })
    })
    .await;
}

#[tokio::test]
async fn open_is_idempotent_by_id() {
    on_every_backend(|store| {
        Box::pin(async move {
            let server = start(store, ApprovalOptions::default()).await;
            let mut agent = client(&server).await;
            let open = open_request("s7", ApprovalMode::Hold);
            let first = agent.open(open.clone()).await.expect("open").into_inner();
            let second = agent.open(open).await.expect("again").into_inner();
            assert!(first.created);
            assert!(!second.created);
            assert_eq!(first.approval, second.approval);
            let out =
                stdout_of(&jitgate(&["approvals", "list", "--json"], &server.url(), &[]).await);
            assert_eq!(out.lines().count(), 1, "{out}");
            let invalid = agent
                .open(OpenRequest {
                    identity: None,
                    ..open_request("s7", ApprovalMode::Hold)
                })
                .await
                .expect_err("no identity");
            assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
            server.stop().await.expect("stop");
        })
    })
    .await;
}

/// Accepts one HTTP request on `listener`, answers 200 and returns its request line and body.
fn receive_one(listener: &TcpListener) -> (String, String) {
    let (stream, _) = listener.accept().expect("accept");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request_line = String::new();
    reader.read_line(&mut request_line).expect("request line");
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).expect("header");
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().expect("length");
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    let mut stream = stream;
    stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        .expect("respond");
    (
        request_line.trim_end().to_owned(),
        String::from_utf8(body).expect("utf-8 body"),
    )
}

#[tokio::test]
async fn opening_a_request_posts_slack_json_to_the_webhook() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind webhook receiver");
    let webhook = format!(
        "http://{}/hooks/approvals",
        listener.local_addr().expect("addr")
    );
    let (tx, rx) = mpsc::channel();
    let receiver = std::thread::spawn(move || {
        // Receives exactly one notification: the auto-approved request posts none.
        let received = receive_one(&listener);
        tx.send(received).expect("send");
    });
    // About the webhook or the decider token, not storage: SQLite only.
    let sqlite = jitgate_collector::storage::suite::sqlite();
    let server = start(
        sqlite.store.clone(),
        ApprovalOptions {
            webhook_url: Some(webhook),
            ..ApprovalOptions::default()
        },
    )
    .await;
    let mut agent = client(&server).await;
    let mut auto = open_request("s8", ApprovalMode::Hold);
    auto.auto_approved_by = "policy:p".into();
    agent.open(auto).await.expect("auto-approved open");
    let open = open_request("s8", ApprovalMode::Hold);
    let id = open.approval_id.clone();
    agent.open(open).await.expect("open");

    let (request_line, body) = tokio::task::spawn_blocking(move || {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("webhook called")
    })
    .await
    .expect("receiver");
    receiver.join().expect("receiver thread");
    assert_eq!(request_line, "POST /hooks/approvals HTTP/1.1");
    let json: serde_json::Value = serde_json::from_str(&body).expect("json body");
    let text = json["text"].as_str().expect("text field");
    println!("{text}");
    for expected in [
        id.as_str(),
        fixtures::SUBJECT,
        "db.prod.internal:5432/shop",
        "UPDATE public.orders",
        "orders-need-approval",
        "writes to orders need a second person",
        &format!("jitgate approvals approve {id}"),
    ] {
        assert!(text.contains(expected), "missing {expected:?} in {text}");
    }
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn unreachable_webhook_does_not_fail_open() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    // About the webhook or the decider token, not storage: SQLite only.
    let sqlite = jitgate_collector::storage::suite::sqlite();
    let server = start(
        sqlite.store.clone(),
        ApprovalOptions {
            webhook_url: Some(format!("http://127.0.0.1:{port}/")),
            ..ApprovalOptions::default()
        },
    )
    .await;
    let mut agent = client(&server).await;
    let opened = agent
        .open(open_request("s9", ApprovalMode::Hold))
        .await
        .expect("open succeeds without the webhook")
        .into_inner();
    assert!(opened.created);
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn decider_token_is_required_when_configured() {
    // About the webhook or the decider token, not storage: SQLite only.
    let sqlite = jitgate_collector::storage::suite::sqlite();
    let server = start(
        sqlite.store.clone(),
        ApprovalOptions {
            decider_token: Some("t0ken".into()),
            ..ApprovalOptions::default()
        },
    )
    .await;
    let mut agent = client(&server).await;
    let open = open_request("s10", ApprovalMode::Hold);
    let id = open.approval_id.clone();
    agent.open(open).await.expect("open");
    let url = server.url();
    let refused = jitgate(&["approvals", "approve", &id, "--as", "alice"], &url, &[]).await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("decider token"));
    let wrong = jitgate(
        &["approvals", "approve", &id, "--as", "alice"],
        &url,
        &[("JITGATE_DECIDER_TOKEN", "guess")],
    )
    .await;
    assert!(!wrong.status.success());
    let out = stdout_of(
        &jitgate(
            &["approvals", "approve", &id, "--as", "alice"],
            &url,
            &[("JITGATE_DECIDER_TOKEN", "t0ken")],
        )
        .await,
    );
    assert!(out.starts_with("approved"), "{out}");
    let approval = wait(&mut agent, &id, 1_000).await;
    assert_eq!(approval.status(), ApprovalStatus::Approved);
    server.stop().await.expect("stop");
}
