//! Tampering tests of `jitgate verify` across real processes: sealed sessions go into the
//! `jitgate-collector` binary over gRPC, then the SQLite file is altered directly (an event
//! deleted, a byte of a statement's text changed, two events' seq swapped, an event
//! duplicated, the last two events of a session cut off) and the `jitgate` binary must name the fault, its kind and seq, and exit 1,
//! while the untouched session verifies with exit 0. Needs no root, only the built binaries
//! (`JITGATE_COLLECTOR_BIN` / `JITGATE_CLI_BIN`, else target/debug).

use std::process::Output;
use std::time::Duration;

use jitgate_collector::fixtures;
use jitgate_proto::audit::v1::{EventBatch, audit_ingest_client::AuditIngestClient};
use jitgate_tests::collector::CollectorGuard;
use jitgate_tests::process::bins;
use rusqlite::Connection;

const SESSIONS: [&str; 6] = [
    "intact",
    "deleted",
    "altered",
    "swapped",
    "duplicated",
    "cut",
];

/// Sends the sample session under each name in [`SESSIONS`] and waits until all are acked.
async fn ingest(url: String) {
    let mut client = AuditIngestClient::connect(url)
        .await
        .expect("connect ingest");
    let events: Vec<_> = SESSIONS
        .iter()
        .flat_map(|id| fixtures::session_events(id))
        .collect();
    let total = events.len();
    let batches = tokio_stream::iter(vec![EventBatch { events }]);
    let mut acks = client.stream(batches).await.expect("stream").into_inner();
    let mut acked = 0;
    while acked < total {
        let ack = tokio::time::timeout(Duration::from_secs(10), acks.message())
            .await
            .expect("ack in time")
            .expect("ack stream ok")
            .expect("ack stream open");
        acked += ack.event_ids.len();
    }
}

/// Alters the database behind the running collector's back.
fn tamper(db: &std::path::Path) {
    let conn = Connection::open(db).expect("open the collector's database");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    conn.execute("DELETE FROM events WHERE event_id = 'deleted-1'", [])
        .expect("delete");

    let payload: Vec<u8> = conn
        .query_row(
            "SELECT payload FROM events WHERE event_id = 'altered-2'",
            [],
            |row| row.get(0),
        )
        .expect("payload");
    let at = payload
        .windows(4)
        .position(|w| w == b"DROP")
        .expect("the statement text is in the payload");
    let mut changed = payload.clone();
    changed[at] = b'd';
    conn.execute(
        "UPDATE events SET payload = ?1 WHERE event_id = 'altered-2'",
        [changed],
    )
    .expect("alter");

    conn.execute_batch(
        "UPDATE events SET seq = 100 WHERE event_id = 'swapped-1';
         UPDATE events SET seq = 1 WHERE event_id = 'swapped-2';
         UPDATE events SET seq = 2 WHERE event_id = 'swapped-1';",
    )
    .expect("swap");

    conn.execute(
        "INSERT INTO events (event_id, session_id, seq, time_unix_us, agent_host, kind, decision,
             statement_text, tables, sqlstate, received_unix_us, payload)
         SELECT 'duplicated-2-copy', session_id, seq, time_unix_us, agent_host, kind, decision,
             statement_text, tables, sqlstate, received_unix_us, payload
         FROM events WHERE event_id = 'duplicated-2'",
        [],
    )
    .expect("duplicate");

    conn.execute(
        "DELETE FROM events WHERE session_id = 'cut'
             AND seq >= (SELECT MAX(seq) - 1 FROM events WHERE session_id = 'cut')",
        [],
    )
    .expect("cut the tail");
}

fn verify(collector: &CollectorGuard, args: &[&str]) -> (Option<i32>, String) {
    let output: Output = collector
        .cli(&bins().jitgate_cli)
        .arg("verify")
        .args(args)
        .output()
        .expect("run jitgate verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("$ jitgate verify {}\n{text}", args.join(" "));
    (output.status.code(), text)
}

#[tokio::test]
async fn verify_names_each_kind_of_tampering() {
    let bins = bins();
    for bin in [&bins.collector, &bins.jitgate_cli] {
        assert!(
            bin.exists(),
            "{} missing: build it (`cargo build -p jitgate-collector`)",
            bin.display()
        );
    }
    // Plaintext on loopback: this test is about the stored chain, not the transport (mutual
    // TLS has its own tests in collector_tls_harness.rs).
    let collector = CollectorGuard::start_plaintext(&bins.collector, &[]).expect("start collector");
    ingest(collector.url()).await;
    let (code, report) = verify(&collector, &["altered"]);
    assert_eq!(code, Some(0), "intact before tampering: {report}");

    tamper(&collector.db_path());

    let (code, report) = verify(&collector, &["intact"]);
    assert_eq!(code, Some(0), "{report}");
    assert!(report.contains("session intact: INTACT"), "{report}");
    assert!(report.contains("ended:   yes"), "{report}");
    assert!(report.contains("head:    "), "{report}");

    let (code, report) = verify(&collector, &["deleted"]);
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("BROKEN"), "{report}");
    assert!(report.contains("deleted: seq 1:"), "{report}");
    assert!(!report.contains("altered:"), "{report}");

    let (code, report) = verify(&collector, &["altered"]);
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("altered: seq 2:"), "{report}");
    assert!(report.contains("altered-2"), "{report}");

    let (code, report) = verify(&collector, &["swapped"]);
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("reordered: seq 1:"), "{report}");
    assert!(
        report.contains("mislabelled: seq 1: stored row seq 1 (swapped-2) holds event seq 2"),
        "{report}"
    );

    let (code, report) = verify(&collector, &["duplicated"]);
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("duplicate: seq 2:"), "{report}");

    let (code, report) = verify(&collector, &["cut"]);
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("ended:   no"), "{report}");
    assert!(
        report.contains("no longer stored: the end of the session was cut"),
        "{report}"
    );

    let (code, report) = verify(&collector, &["--json", "altered"]);
    assert_eq!(code, Some(1), "{report}");
    let verdict: serde_json::Value =
        serde_json::from_str(report.lines().next().unwrap_or_default()).expect("json verdict");
    assert_eq!(verdict["intact"], false);
    assert_eq!(verdict["findings"][0]["kind"], "altered");
    assert_eq!(verdict["findings"][0]["seq"], 2);

    let (code, report) = verify(&collector, &["--since", "2026-11-01T00:00:00Z"]);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report.contains("6 sessions verified: 1 intact, 5 broken"),
        "{report}"
    );

    let (code, report) = verify(&collector, &["no-such-session"]);
    assert_eq!(code, Some(2), "{report}");
    assert!(report.contains("no events stored"), "{report}");
}

#[tokio::test]
async fn verify_without_the_query_token_is_an_error() {
    let bins = bins();
    let collector = CollectorGuard::start(&bins.collector).expect("start collector");
    let output = collector
        .cli(&bins.jitgate_cli)
        .env_remove("JITGATE_QUERY_TOKEN_FILE")
        .args(["verify", "anything"])
        .output()
        .expect("run jitgate");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("needs the query token"), "{stderr}");
    assert!(stderr.contains("(unauthenticated)"), "{stderr}");
    assert!(
        stderr.contains("JITGATE_QUERY_TOKEN"),
        "what to do: {stderr}"
    );
    assert!(
        !stderr.contains("MetadataMap"),
        "no raw gRPC status: {stderr}"
    );
}
