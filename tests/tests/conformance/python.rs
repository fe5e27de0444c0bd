//! psycopg 3 and asyncpg, from PyPI in the suite's venv, through `tests/python/conformance.py`:
//! each test runs one scenario of one driver and compares its canonical JSON.
//!
//! psycopg speaks libpq (text results by default, binary on request, the pipeline mode, COPY,
//! named server-side cursors, `PQcancel` and `PQcancelBlocking`); asyncpg speaks its own
//! protocol code (named prepared statements, binary formats, pipelined executemany, Execute
//! with row limits, COPY in binary, cancel on timeout).

use std::process::Output;

use super::support::*;

/// Runs `scenario` of `client` on both sides in `dbs` and compares the JSON printed.
fn python(client: &str, scenario: &str, dbs: &[&str]) {
    let Some(conformance) = conformance() else {
        return;
    };
    let python = match jitgate_tests::python::ensure_venv().expect("python venv") {
        jitgate_tests::python::VenvState::Ready(path)
        | jitgate_tests::python::VenvState::Installed(path) => path,
    };
    let python = python.to_str().expect("utf-8 venv path").to_owned();
    let script = jitgate_tests::python::scripts_dir().join("conformance.py");
    let run = |side: Side, db: &str| -> Output {
        let mut command = conformance.command(side, &python);
        command
            .arg(&script)
            .args([client, scenario])
            .arg(conformance.uri(side, db))
            .env("PYTHONDONTWRITEBYTECODE", "1");
        run_with_input(command, b"")
    };
    conformance.compare(
        &format!("{client} {scenario}"),
        dbs,
        run,
        |out: &Output| Outcome {
            // Tracebacks name paths and timings; the JSON on stdout is what is compared, and
            // an unexpected exception shows up as a non-zero exit.
            stderr: if out.status.success() {
                String::new()
            } else {
                String::from_utf8_lossy(&out.stderr).into_owned()
            },
            ..verbatim(out)
        },
        succeeded,
    );
}

#[test]
fn psycopg_types_in_text_format() {
    python("psycopg", "types", &BOTH);
}

#[test]
fn psycopg_binary_parameters_and_results() {
    python("psycopg", "binary", &BOTH);
}

#[test]
fn psycopg_pipeline_mode_with_errors() {
    python("psycopg", "pipeline", &BOTH);
}

#[test]
fn psycopg_copy_from_stdin_text_binary_csv_and_copy_fail() {
    python("psycopg", "copy_in", &BOTH);
}

#[test]
fn psycopg_copy_to_stdout() {
    python("psycopg", "copy_out", &BOTH);
}

#[test]
fn psycopg_server_side_cursors() {
    python("psycopg", "server_cursor", &BOTH);
}

#[test]
fn psycopg_listen_notify_and_notices() {
    python("psycopg", "listen_notify", &BOTH);
}

#[test]
fn psycopg_cancel() {
    python("psycopg", "cancel", &BOTH);
}

#[test]
fn psycopg_errors_savepoints_and_prepared_statements() {
    python("psycopg", "errors", &BOTH);
}

#[test]
fn asyncpg_types() {
    python("asyncpg", "types", &BOTH);
}

#[test]
fn asyncpg_prepared_statements_and_executemany() {
    python("asyncpg", "prepared", &BOTH);
}

#[test]
fn asyncpg_cursors_with_row_limits() {
    python("asyncpg", "cursor", &BOTH);
}

#[test]
fn asyncpg_copy_in() {
    python("asyncpg", "copy_in", &BOTH);
}

#[test]
fn asyncpg_copy_out() {
    python("asyncpg", "copy_out", &BOTH);
}

#[test]
fn asyncpg_listen_notify_and_log_messages() {
    python("asyncpg", "listen_notify", &BOTH);
}

#[test]
fn asyncpg_cancel_on_timeout() {
    python("asyncpg", "cancel", &BOTH);
}

#[test]
fn asyncpg_errors_and_transactions() {
    python("asyncpg", "errors", &BOTH);
}
