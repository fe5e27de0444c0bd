//! tokio-postgres through the harness's `jitgate-pg-client --scenario`: the simple protocol
//! (multi-statement strings, errors, an empty query), the extended protocol with binary
//! results, pipelined requests, portals read with row limits, LISTEN/NOTIFY with notices, and a
//! CancelRequest. The printed transcript and the exit code must match.

use std::process::Output;

use super::support::*;

fn rust_client(scenario: &str, expect: &str) {
    let Some(conformance) = conformance() else {
        return;
    };
    let run = |side: Side, db: &str| -> Output {
        let mut command = conformance.command(side, env!("CARGO_BIN_EXE_jitgate-pg-client"));
        command
            .args(["--scenario", scenario])
            .arg(conformance.keywords(side, db));
        run_with_input(command, b"")
    };
    conformance.compare(
        &format!("tokio-postgres {scenario}"),
        &BOTH,
        run,
        verbatim,
        |outcome| succeeded(outcome) && outcome.stdout.contains(expect),
    );
}

#[test]
fn tokio_postgres_simple_protocol() {
    rust_client("simple", "row batch");
}

#[test]
fn tokio_postgres_extended_protocol_binary_results() {
    rust_client("extended", "reused 1");
}

#[test]
fn tokio_postgres_pipelined_requests() {
    rust_client("pipeline", "many 0,3,6");
}

#[test]
fn tokio_postgres_portals_with_row_limits() {
    rust_client("portal", "after 200");
}

#[test]
fn tokio_postgres_listen_notify() {
    rust_client("notify", "notification conf_chan \"hello\"");
}

#[test]
fn tokio_postgres_cancel() {
    rust_client("cancel", "quick true");
}
