//! Mutual TLS between agents and the real `jitgate-collector` binary, with certificates from its
//! own `ca` commands: who gets through the handshake, which calls an agent certificate opens and
//! which it does not, and what the `jitgate` CLI says about a collector its CA did not issue.
//! Needs no root, only the built binaries (`JITGATE_COLLECTOR_BIN` / `JITGATE_CLI_BIN`, set by
//! `cargo xtask test`, else target/debug).

use std::path::Path;
use std::process::Command;

use jitgate_agent::collector_tls;
use jitgate_proto::audit::v1::{
    FindGrantRequest, ListApprovalsRequest, ListSessionsRequest, approvals_client::ApprovalsClient,
    audit_query_client::AuditQueryClient,
};
use jitgate_tests::collector::{CollectorCerts, CollectorGuard, run_ca};
use jitgate_tests::process::bins;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

fn started() -> CollectorGuard {
    let bins = bins();
    for bin in [&bins.collector, &bins.jitgate_cli] {
        assert!(
            bin.exists(),
            "{} missing: build it (`cargo build -p jitgate-collector`)",
            bin.display()
        );
    }
    CollectorGuard::start(&bins.collector).expect("start the collector with mutual TLS")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read a certificate file")
}

/// A channel to `collector` trusting `ca` and presenting `identity` (certificate, key files).
async fn channel(
    collector: &CollectorGuard,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Channel, tonic::transport::Error> {
    let identity = identity.map(|(cert, key)| (read(cert), read(key)));
    let tls = collector_tls::client_config(&read(ca), identity.as_ref());
    Endpoint::from_shared(collector.url())?
        .tls_config(tls)?
        .connect()
        .await
}

fn find_grant() -> FindGrantRequest {
    FindGrantRequest {
        issuer: "https://issuer.example".into(),
        subject: "repo:acme/shop".into(),
        target: "db.internal:5432".into(),
        database: "shop".into(),
        fingerprint: "fp-1".into(),
        ..FindGrantRequest::default()
    }
}

fn log_of(collector: &CollectorGuard) -> String {
    std::fs::read_to_string(collector.log_path()).unwrap_or_default()
}

#[tokio::test]
async fn agent_calls_need_an_agent_certificate() {
    let collector = started();
    let certs = collector.certs().expect("mutual TLS").clone();

    let with_cert = channel(
        &collector,
        &certs.ca,
        Some((&certs.agent_cert, &certs.agent_key)),
    )
    .await
    .expect("the agent certificate passes the handshake");
    ApprovalsClient::new(with_cert)
        .find_grant(find_grant())
        .await
        .expect("an agent call with the agent certificate is served");

    let without = channel(&collector, &certs.ca, None)
        .await
        .expect("no client certificate still passes the handshake");
    let status = ApprovalsClient::new(without)
        .find_grant(find_grant())
        .await
        .expect_err("an agent call without a certificate is refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("agent client certificate"),
        "{status:?}"
    );
    assert!(
        log_of(&collector).contains("call refused"),
        "the refusal is logged:\n{}",
        log_of(&collector)
    );
}

#[tokio::test]
async fn an_agent_certificate_is_no_query_or_decider_credential() {
    let collector = started();
    let certs = collector.certs().expect("mutual TLS").clone();
    let agent = channel(
        &collector,
        &certs.ca,
        Some((&certs.agent_cert, &certs.agent_key)),
    )
    .await
    .expect("handshake");
    let status = AuditQueryClient::new(agent.clone())
        .list_sessions(ListSessionsRequest::default())
        .await
        .expect_err("an agent certificate cannot query");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("runner-1"), "{status:?}");
    let status = ApprovalsClient::new(agent)
        .list(ListApprovalsRequest::default())
        .await
        .expect_err("an agent certificate cannot list approvals");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // A person (the CLI: the CA and the query token, no client certificate) reaches the query
    // API.
    let out = collector
        .cli(&bins().jitgate_cli)
        .args(["sessions", "--json"])
        .output()
        .expect("run jitgate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_fails_the_handshake() {
    let collector = started();
    let certs = collector.certs().expect("mutual TLS").clone();
    let other = tempfile::tempdir().expect("tempdir");
    let other_certs = CollectorCerts::create(&bins().collector, other.path()).expect("other CA");

    // Trusts the right server, presents a certificate the collector's CA did not issue.
    let refused = async {
        let channel = channel(
            &collector,
            &certs.ca,
            Some((&other_certs.agent_cert, &other_certs.agent_key)),
        )
        .await?;
        ApprovalsClient::new(channel)
            .find_grant(find_grant())
            .await
            .map_err(|status| status.to_string())
            .map(|_| ())
            .map_err(Into::into)
    };
    let result: Result<(), Box<dyn std::error::Error>> = refused.await;
    assert!(result.is_err(), "a foreign client certificate got through");
    assert!(
        log_of(&collector).contains("TLS handshake refused"),
        "the handshake failure is logged:\n{}",
        log_of(&collector)
    );

    // The collector keeps serving agents with the right certificate.
    let good = channel(
        &collector,
        &certs.ca,
        Some((&certs.agent_cert, &certs.agent_key)),
    )
    .await
    .expect("handshake");
    ApprovalsClient::new(good)
        .find_grant(find_grant())
        .await
        .expect("still serving");
}

#[test]
fn the_cli_refuses_a_collector_its_ca_did_not_issue() {
    let collector = started();
    let other = tempfile::tempdir().expect("tempdir");
    run_ca(&bins().collector, &["init", "--dir"], other.path(), &[]).expect("other CA");

    let mut cli = Command::new(bins().jitgate_cli);
    let out = cli
        .args(["sessions"])
        .env("JITGATE_COLLECTOR", collector.url())
        .env("JITGATE_CA", other.path().join("ca.crt"))
        .output()
        .expect("run jitgate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach the jitgate collector") && stderr.contains("certificate"),
        "a clear error: {stderr}"
    );

    let mut cli = Command::new(bins().jitgate_cli);
    let out = cli
        .args(["sessions"])
        .env("JITGATE_COLLECTOR", collector.url())
        .env_remove("JITGATE_CA")
        .output()
        .expect("run jitgate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("needs --ca"), "{stderr}");
}

#[test]
fn plaintext_is_refused_on_a_non_loopback_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(bins().collector)
        .args(["--listen", "0.0.0.0:0", "--db"])
        .arg(dir.path().join("audit.db"))
        .output()
        .expect("run jitgate-collector");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refusing to serve without TLS on 0.0.0.0:0"),
        "{stderr}"
    );
}
