//! Agent ↔ collector over mutual TLS with certificates from the collector's CA: an agent with
//! its certificate delivers; an agent without one is refused and nothing of it is stored.

use jitgate_tests::stack::CollectorLink;

use super::support::*;

#[test]
fn an_agent_with_its_certificate_delivers_over_mutual_tls() {
    let Some(stack) = stack() else { return };
    assert!(stack.collector.url().starts_with("https://"));
    let out = stack
        .psql("SELECT 'delivered over mtls'", true)
        .expect("psql");
    assert!(out.status.success(), "{}", describe(&out));
    let events = events_with(&stack, "'delivered over mtls'");
    assert!(events.iter().any(|e| e["kind"] == "session_started"));
    assert!(
        stack.agent.log().contains("audit stream to collector open"),
        "{}",
        stack.agent.log()
    );
}

#[test]
fn an_agent_without_a_client_certificate_is_refused_and_nothing_is_stored() {
    let Some(stack) = stack_with(StackOptions {
        collector: CollectorLink::NoClientCert,
        ..StackOptions::default()
    }) else {
        return;
    };
    let out = stack.psql("SELECT 'refused agent'", true).expect("psql");
    assert!(
        out.status.success(),
        "the proxy still serves: {}",
        describe(&out)
    );
    // The agent logs the collector's refusal and keeps the events.
    eventually("the agent to log the collector's refusal", || {
        stack
            .agent
            .log()
            .contains("present an agent client certificate")
            .then_some(())
    });
    let collector_log = std::fs::read_to_string(stack.collector.log_path()).expect("collector log");
    assert!(
        collector_log.contains("call refused") && collector_log.contains("AuditIngest/Stream"),
        "{collector_log}"
    );
    // Give a would-be delivery time, then nothing is stored.
    std::thread::sleep(Duration::from_secs(2));
    let sessions = stack
        .cli(&["sessions", "--json"])
        .expect("jitgate sessions");
    assert!(sessions.status.success(), "{}", describe(&sessions));
    assert!(
        json_lines(&sessions).is_empty(),
        "the refused agent's sessions were stored: {}",
        text(&sessions.stdout)
    );
}
