//! Approvals across real processes: the `jitgate-collector` binary (with a webhook URL and a
//! decider token file, over mutual TLS), the agent's [`ApprovalClient`] with the agent
//! certificate, a loopback HTTP listener standing in for
//! Slack, and the `jitgate` CLI deciding. Needs no root, only the built binaries
//! (`JITGATE_COLLECTOR_BIN` / `JITGATE_CLI_BIN`, set by `cargo xtask test`, else target/debug).

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use jitgate_agent::approval::{
    ApprovalClient, ApprovalRequest, Mode, Outcome, ScopeKind, new_approval_id,
};
use jitgate_agent::collector_tls;
use jitgate_tests::collector::CollectorGuard;
use jitgate_tests::process::bins;

/// Accepts one HTTP request, answers 200 and returns its body.
fn receive_one(listener: &TcpListener) -> std::io::Result<String> {
    let (stream, _) = listener.accept()?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let mut stream = stream;
    stream.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn jitgate(collector: &CollectorGuard, args: &[&str], token: Option<&str>) -> std::process::Output {
    let mut command = Command::new(bins().jitgate_cli);
    collector
        .cli_env(&mut command)
        .args(args)
        .env("JITGATE_QUERY_TOKEN", jitgate_tests::collector::QUERY_TOKEN)
        .env_remove("JITGATE_AS")
        .env_remove("JITGATE_DECIDER_TOKEN");
    if let Some(token) = token {
        command.env("JITGATE_DECIDER_TOKEN", token);
    }
    command.output().expect("run jitgate")
}

#[tokio::test]
async fn hold_request_is_notified_approved_by_a_person_and_audited() {
    let bins = bins();
    for bin in [&bins.collector, &bins.jitgate_cli] {
        assert!(
            bin.exists(),
            "{} missing: build it (`cargo build -p jitgate-collector`)",
            bin.display()
        );
    }
    let hook = TcpListener::bind("127.0.0.1:0").expect("bind webhook receiver");
    let hook_url = format!("http://{}/slack", hook.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    let receiver = std::thread::spawn(move || {
        let _ = tx.send(receive_one(&hook));
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("decider-token");
    std::fs::write(&token_file, "s3cret-token\n").expect("token file");
    let collector = CollectorGuard::start_with(
        &bins.collector,
        &[
            OsString::from("--webhook-url"),
            OsString::from(&hook_url),
            OsString::from("--decider-token-file"),
            token_file.into_os_string(),
        ],
    )
    .expect("start the collector");
    let url = collector.url();

    // The agent's client, with the agent certificate the guard issued.
    let certs = collector.certs().expect("mutual TLS");
    let read = |path: &std::path::Path| std::fs::read(path).expect("read a certificate file");
    let tls = collector_tls::client_config(
        &read(&certs.ca),
        Some(&(read(&certs.agent_cert), read(&certs.agent_key))),
    );
    let client = ApprovalClient::with_tls(&url, Some(&tls)).expect("client");
    let mut request = ApprovalRequest {
        id: new_approval_id(),
        session_id: new_approval_id(),
        seq: 1,
        agent_host: "runner-harness".into(),
        identity: Default::default(),
        target: "db.prod.internal:5432".into(),
        database: "shop".into(),
        statement: "TRUNCATE public.audit_scratch".into(),
        fingerprint: "fp-truncate".into(),
        tables: vec!["public.audit_scratch".into()],
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
    request.identity.repository = "acme/shop".into();
    let (id, session) = (request.id.clone(), request.session_id.clone());
    let opened = client.open(request).await.expect("open");
    assert!(opened.created);

    let body = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(15)))
        .await
        .expect("join")
        .expect("webhook called")
        .expect("webhook request read");
    receiver.join().expect("receiver thread");
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    let text = json["text"].as_str().expect("text");
    assert!(
        text.contains(&format!("jitgate approvals approve {id}")),
        "{text}"
    );
    assert!(text.contains("acme/shop"), "{text}");

    let waiter = client.clone();
    let waiting_id = id.clone();
    let waiting =
        tokio::spawn(async move { waiter.wait(&waiting_id, Duration::from_secs(30)).await });

    let refused = jitgate(
        &collector,
        &["approvals", "approve", &id, "--as", "alice"],
        None,
    );
    assert!(!refused.status.success(), "no token, no decision");
    let approved = jitgate(
        &collector,
        &[
            "approvals",
            "approve",
            &id,
            "--as",
            "alice",
            "--comment",
            "cleanup ok",
        ],
        Some("s3cret-token"),
    );
    assert!(
        approved.status.success(),
        "{}",
        String::from_utf8_lossy(&approved.stderr)
    );
    let outcome = tokio::time::timeout(Duration::from_secs(15), waiting)
        .await
        .expect("wait ends")
        .expect("task")
        .expect("wait");
    let Outcome::Approved { by, comment, .. } = outcome else {
        panic!("approved expected: {outcome:?}");
    };
    assert_eq!((by.as_str(), comment.as_str()), ("alice", "cleanup ok"));

    let events = jitgate(
        &collector,
        &["--json", "events", "--session", &session],
        None,
    );
    assert!(events.status.success());
    let kinds: Vec<serde_json::Value> = String::from_utf8_lossy(&events.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("json line"))
        .collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert_eq!(kinds[0]["kind"], "approval_requested");
    assert_eq!(kinds[1]["kind"], "approval_granted");
    assert_eq!(kinds[1]["approval_granted"]["decided_by"], "alice");
}
