//! pgbench 15 in the simple, extended and prepared query modes: custom scripts (no pgbench
//! tables, so no DDL) that update, insert, read with `\gset` and, outside the simple mode, run
//! a `\startpipeline` block. pgbench's own timing lines differ run to run, so what is compared
//! is its transaction and failure counts, its exit code, and the tables afterwards.

use std::process::Output;

use super::support::*;

/// Clients and transactions per client.
const CLIENTS: u32 = 4;
const TRANSACTIONS: u32 = 100;

const SCRIPT: &str = r"\set c :client_id + 1
BEGIN;
UPDATE conf_counters SET n = n + 1 WHERE id = :c;
SELECT n AS counted FROM conf_counters WHERE id = :c \gset
INSERT INTO conf_log (note) VALUES ('client ' || :c || ' saw ' || :counted);
SELECT name, price, tags FROM conf_items WHERE id = :counted;
END;
";

const PIPELINE: &str = r"\set c :client_id + 1
\startpipeline
UPDATE conf_counters SET n = n + 1 WHERE id = :c;
INSERT INTO conf_log (note) VALUES ('pipelined ' || :c);
SELECT count(*) FROM conf_items WHERE id <= :c;
\endpipeline
";

/// What the tables hold after a run, read as the superuser past the agent.
const STATE: &str = "SELECT id, n FROM conf_counters ORDER BY id;
SELECT count(*), count(DISTINCT note), md5(string_agg(note, '|' ORDER BY note)) FROM conf_log;";

fn pgbench(mode: &str, script: &str) {
    let Some(conformance) = conformance() else {
        return;
    };
    let script_path = conformance
        .stack
        .dir
        .path()
        .join(format!("pgbench-{mode}.sql"));
    std::fs::write(&script_path, script).expect("script written");
    let run = |side: Side, db: &str| -> Output {
        let mut command = conformance.command(side, "pgbench");
        command
            .args(["-n", "-h", "127.0.0.1", "-p"])
            .arg(conformance.port().to_string())
            .args(["-M", mode, "-c", &CLIENTS.to_string(), "-j", "2"])
            .args(["-t", &TRANSACTIONS.to_string(), "-f"])
            .arg(&script_path)
            .arg(db);
        let mut out = run_with_input(command, b"");
        let state = conformance
            .stack
            .pg
            .psql_superuser_in(db, STATE)
            .expect("state query");
        out.stdout.extend_from_slice(b"\n--- tables ---\n");
        out.stdout.extend_from_slice(state.as_bytes());
        out
    };
    conformance.compare(
        &format!("pgbench -M {mode}"),
        &BOTH,
        run,
        counts,
        |outcome| {
            succeeded(outcome)
                && outcome.stdout.contains(&format!(
                    "number of transactions actually processed: {0}/{0}",
                    CLIENTS * TRANSACTIONS
                ))
        },
    );
}

/// pgbench's counting lines (not its timings) and the table state.
fn counts(out: &Output) -> Outcome {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (report, tables) = stdout.split_once("--- tables ---").unwrap_or((&stdout, ""));
    let kept: Vec<&str> = report
        .lines()
        .filter(|line| {
            line.starts_with("query mode")
                || line.starts_with("number of clients")
                || line.starts_with("number of transactions")
                || line.starts_with("number of failed")
        })
        .collect();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // pgbench prints progress and "pgbench (15.x)" on stderr; errors are what matter.
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("error") || line.contains("ERROR"))
        .collect();
    Outcome {
        code: out.status.code(),
        stdout: format!("{}\n--- tables ---{tables}", kept.join("\n")),
        stderr: errors.join("\n"),
    }
}

#[test]
fn pgbench_simple_protocol() {
    pgbench("simple", SCRIPT);
}

#[test]
fn pgbench_extended_protocol() {
    pgbench("extended", SCRIPT);
}

#[test]
fn pgbench_prepared_statements() {
    pgbench("prepared", SCRIPT);
}

#[test]
fn pgbench_extended_pipeline() {
    pgbench("extended", PIPELINE);
}

#[test]
fn pgbench_prepared_pipeline() {
    pgbench("prepared", PIPELINE);
}
