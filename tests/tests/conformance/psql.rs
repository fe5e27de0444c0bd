//! psql 15 scripts (`-f -`, no `ON_ERROR_STOP`, so every error and what follows it shows):
//! multi-statement strings, transactions with errors and savepoints, `\gset`/`\gexec`/`\if`,
//! `COPY FROM STDIN` inline and `\copy` from a file, `COPY TO STDOUT`, LISTEN/NOTIFY and a
//! cancel by SIGINT. stdout, stderr and the exit code must match (backend pids replaced).

use std::process::Output;
use std::time::{Duration, Instant};

use super::support::*;

const MULTI_STATEMENT: &str = r#"\set VERBOSITY verbose
SELECT id, name, price, tags, data, flag, blob FROM conf_items WHERE id < 4 OR id = 50 ORDER BY id;
SELECT 1 AS one \; SELECT 'two' AS two \; SELECT NULL AS three;
SELECT count(*) FROM conf_items \; SELECT 1 / 0 \; SELECT 'never';
BEGIN;
INSERT INTO conf_log (note) VALUES ('first') RETURNING id, note;
SAVEPOINT s1;
INSERT INTO conf_items (id, name) VALUES (1, 'duplicate');
SELECT 'aborted';
ROLLBACK TO s1;
UPDATE conf_counters SET n = n + 10 WHERE id <= 3 RETURNING *;
COMMIT;
BEGIN;
SELECT * FROM no_such_table;
COMMIT;
SELECT note FROM conf_log ORDER BY id;
SELECT sum(n) FROM conf_counters;
;
SELECT i, repeat('r', 50) FROM generate_series(1, 20000) i;
SELECT conf_notice('psql');
\x on
SELECT * FROM conf_items WHERE id = 7;
\x off
PREPARE q(int) AS SELECT name FROM conf_items WHERE id = $1;
EXECUTE q(9);
DEALLOCATE q;
EXECUTE q(9);
"#;

const VARIABLES: &str = r#"SELECT count(*) AS n, max(price) AS top FROM conf_items \gset
\echo n=:n top=:top
SELECT :n + 1 AS next, :'top'::numeric * 2 AS doubled;
SELECT min(id) AS lo, max(id) AS hi FROM conf_items WHERE flag \gset conf_
\echo :conf_lo :conf_hi
\if :{?conf_lo}
SELECT 'conf_lo is set';
\else
SELECT 'conf_lo is unset';
\endif
SELECT format('SELECT %s * 10 AS times_ten', id) FROM conf_items WHERE id < 4 ORDER BY id \gexec
SELECT 1 / 0 AS broken \gset
\echo :broken
SELECT name FROM conf_items WHERE id = 11 \g
SELECT $1::int + $2::int AS sum
\gdesc
"#;

const COPY_IN: &str = r#"COPY conf_log (note) FROM STDIN;
inline one
inline two
\N
\.
COPY conf_log (note) FROM STDIN (FORMAT csv);
"csv, with comma"
"multi
line"
\.
COPY conf_items (id, name) FROM STDIN;
1	duplicate key
\.
COPY conf_counters (id, n) FROM STDIN;
not-a-number	1
\.
\copy conf_log (note) FROM 'COPY_FILE'
SELECT count(*), md5(string_agg(coalesce(note, 'NULL'), '|' ORDER BY id)) FROM conf_log;
"#;

const COPY_OUT: &str = r#"COPY (SELECT * FROM conf_items ORDER BY id) TO STDOUT;
COPY conf_items (id, name, data) TO STDOUT (FORMAT csv, HEADER);
\copy (SELECT id, blob, tags FROM conf_items WHERE id < 30 ORDER BY id) TO STDOUT
\copy conf_counters TO STDOUT WITH (FORMAT csv)
COPY (SELECT i, repeat('w', 200) FROM generate_series(1, 20000) i) TO STDOUT;
"#;

const LISTEN: &str = r#"LISTEN conf_chan;
NOTIFY conf_chan, 'hello';
SELECT pg_notify('conf_chan', 'second');
BEGIN;
NOTIFY conf_chan, 'in tx';
NOTIFY conf_chan, 'in tx';
SELECT 'before commit';
COMMIT;
UNLISTEN conf_chan;
NOTIFY conf_chan, 'unheard';
SELECT 'done';
"#;

/// psql on `side` in `db`: quiet, unaligned, never prompting, reading the script from stdin.
fn psql(conformance: &Conformance, side: Side, db: &str, script: &str) -> Output {
    let mut command = conformance.command(side, "psql");
    command.args(["-X", "-w", "-A", "-h", "127.0.0.1", "-p"]);
    command.arg(conformance.port().to_string());
    command.args(["-d", db, "-f", "-"]);
    run_with_input(command, script.as_bytes())
}

/// psql's output with backend pids (in notifications) replaced by `PID`.
fn without_pids(out: &Output) -> Outcome {
    let scrub = |text: String| -> String {
        text.lines()
            .map(|line| match line.find("server process with PID ") {
                Some(at) => format!("{}server process with PID <pid>.", &line[..at]),
                None => line.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let Outcome {
        code,
        stdout,
        stderr,
    } = verbatim(out);
    Outcome {
        code,
        stdout: scrub(stdout),
        stderr: scrub(stderr),
    }
}

fn script_test(script: &str, dbs: &[&str], expect_in_stdout: &str) {
    let Some(conformance) = conformance() else {
        return;
    };
    let copy_file = conformance.stack.dir.path().join("conf_copy.txt");
    let lines: String = (0..5000).map(|i| format!("file row {i}\n")).collect();
    std::fs::write(&copy_file, lines).expect("copy file written");
    let script = script.replace("COPY_FILE", &copy_file.display().to_string());
    conformance.compare(
        "psql script",
        dbs,
        |side, db| psql(&conformance, side, db, &script),
        without_pids,
        |outcome| outcome.stdout.contains(expect_in_stdout),
    );
}

#[test]
fn psql_multi_statement_script_with_errors_and_transactions() {
    script_test(MULTI_STATEMENT, &BOTH, "20000|rrrr");
}

#[test]
fn psql_gset_gexec_and_conditionals() {
    script_test(VARIABLES, &BOTH, "n=200 top=");
}

#[test]
fn psql_copy_from_stdin_and_file() {
    script_test(COPY_IN, &BOTH, "5005|");
}

#[test]
fn psql_copy_to_stdout() {
    script_test(COPY_OUT, &BOTH, "20000\twwww");
}

#[test]
fn psql_listen_notify() {
    script_test(LISTEN, &BOTH, "Asynchronous notification");
}

#[test]
fn psql_cancel_on_sigint() {
    let Some(conformance) = conformance() else {
        return;
    };
    let run = |side: Side, db: &str| -> Output {
        let mut command = conformance.command(side, "psql");
        command
            .args(["-X", "-w", "-A", "-h", "127.0.0.1", "-p"])
            .arg(conformance.port().to_string())
            .args([
                "-d",
                db,
                "-c",
                "SELECT pg_sleep(30)",
                "-c",
                "SELECT 'after'",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let child = command.spawn().expect("psql spawns");
        std::thread::sleep(Duration::from_millis(1500));
        let started = Instant::now();
        let pid = i32::try_from(child.id()).expect("pid");
        // SAFETY: kill(2) on the pid of our own un-reaped child; psql answers SIGINT with a
        // CancelRequest on a new connection to the same address.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let mut out = child.wait_with_output().expect("psql finishes");
        let quick = started.elapsed() < Duration::from_secs(10);
        out.stdout
            .extend_from_slice(format!("cancelled quickly: {quick}\n").as_bytes());
        out
    };
    conformance.compare("psql cancel", &BOTH, run, verbatim, |outcome| {
        outcome
            .stderr
            .contains("canceling statement due to user request")
            && outcome.stdout.contains("cancelled quickly: true")
    });
}

/// Peak resident memory of `pid` (`VmHWM` in /proc/PID/status), KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("agent status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// 200 MB out with COPY TO STDOUT and 200 MB in with `\copy FROM PROGRAM` through the agent: the
/// data streams, so the agent's peak memory barely moves, and the same rows arrive as directly.
#[test]
fn large_copies_stream_through_the_agent_in_bounded_memory() {
    let Some(conformance) = conformance() else {
        return;
    };
    const ROWS: u32 = 200_000;
    let script = format!(
        "\\o /dev/null\n\
         COPY (SELECT i, repeat('w', 1000) FROM generate_series(1, {ROWS}) i) TO STDOUT;\n\
         \\o\n\
         \\copy conf_log (note) FROM PROGRAM 'yes {line} | head -n {ROWS}'\n\
         SELECT count(*) FROM conf_log WHERE length(note) = 1000;\n",
        line = "x".repeat(1000),
    );
    let agent = conformance.stack.agent.pid().expect("agent running");
    let before = peak_rss_kib(agent);
    conformance.compare(
        "large copies",
        &[PLAIN_DB],
        |side, db| psql(&conformance, side, db, &script),
        verbatim,
        |outcome| outcome.stdout.contains(&ROWS.to_string()),
    );
    let grown_mib = peak_rss_kib(agent).saturating_sub(before) / 1024;
    assert!(
        grown_mib < 64,
        "the agent's peak memory grew by {grown_mib} MiB relaying 400 MB of COPY data"
    );
}
