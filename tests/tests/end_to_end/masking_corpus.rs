//! The masking corpus: every statement of `tests/python/masking_corpus.json` run through the
//! agent against the stack's real PostgreSQL by each real client — psql, psycopg 3 in text and
//! in binary format, asyncpg (binary) and tokio-postgres (`jitgate-pg-client --corpus`, binary).
//!
//! Probes attack the masked columns `customers.email` and `customers.card_number`: aliases,
//! `*`, subqueries, CTEs, set operations, LATERAL, views, expressions, aggregates, whole rows,
//! writes with RETURNING, scratch tables, cursors, driver portals with row limits, prepared
//! statements, COPY out, and side channels (error messages and details, notices, notifications,
//! ParameterStatus). Everything a client received is searched for protected values: a
//! customer's e-mail address, its local part, a card number (also with its separators removed)
//! and their trivially reversible forms (reversed, hex, base64), case-insensitively. A probe
//! passes when the agent denies it (SQLSTATE 42501, `jitgate:`) or what comes back holds no
//! protected value. Controls read unprotected data and must succeed with the values they expect,
//! so a policy that blocks everything fails too.
//!
//! Views, functions, a unique index on `email` and scratch tables are made by the superuser
//! (`setup_sql` of the corpus) before the clients run; writes are rolled back.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use super::support::*;
use jitgate_tests::shop::Customer;
use jitgate_tests::stack::CI_ROLE;

fn corpus_path() -> PathBuf {
    jitgate_tests::python::scripts_dir().join("masking_corpus.json")
}

fn corpus() -> Value {
    let path = corpus_path();
    let text = std::fs::read_to_string(&path).expect("corpus readable");
    serde_json::from_str(&text).expect("corpus is JSON")
}

fn entries(corpus: &Value) -> &Vec<Value> {
    corpus["entries"].as_array().expect("entries")
}

/// A stack with the corpus's views, functions and tables made by the superuser.
fn corpus_stack(corpus: &Value) -> Option<Stack> {
    let stack = stack()?;
    let setup: String = corpus["setup_sql"]
        .as_array()
        .expect("setup_sql")
        .iter()
        .map(|s| format!("{};\n", s.as_str().expect("SQL text")))
        .collect();
    stack
        .pg
        .psql_superuser_in("shop", &setup)
        .expect("corpus setup as the superuser");
    Some(stack)
}

/// One JSON object per entry printed by a client, checked against the corpus's ids.
fn results(corpus: &Value, client: &str, out: &Output) -> Vec<Value> {
    assert!(out.status.success(), "{client}: {}", describe(out));
    let results = json_lines(out);
    let ids: Vec<&Value> = entries(corpus).iter().map(|e| &e["id"]).collect();
    let got: Vec<&Value> = results.iter().map(|r| &r["id"]).collect();
    assert_eq!(
        got,
        ids,
        "{client} printed one result per entry: {}",
        describe(out)
    );
    results
}

fn python_client(stack: &Stack, corpus: &Value, client: &str) -> Vec<Value> {
    let python = match jitgate_tests::python::ensure_venv().expect("python venv") {
        jitgate_tests::python::VenvState::Ready(path)
        | jitgate_tests::python::VenvState::Installed(path) => path,
    };
    let script = jitgate_tests::python::scripts_dir().join("masking_corpus.py");
    let out = stack
        .job(python.to_str().expect("utf-8 venv path"), true)
        .arg(&script)
        .arg(client)
        .arg(corpus_path())
        .args(["127.0.0.1", &stack.pg.port().to_string(), "shop", CI_ROLE])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("python runs");
    results(corpus, client, &out)
}

/// A protected value in one of the forms looked for.
struct Needle {
    /// Whose value it is (index into the customers).
    person: usize,
    /// What it is, for the report (`email`, `card number reversed`, ...).
    what: &'static str,
    /// The value as it is written.
    shown: String,
    /// The value lowercased, as searched.
    lower: String,
}

/// Every customer's protected values, strongest form first (the report names the first found).
fn needles(people: &[Customer]) -> Vec<Needle> {
    use base64::Engine as _;
    let mut needles = Vec::new();
    for (person, customer) in people.iter().enumerate() {
        let local = customer.email.split('@').next().expect("local part");
        let hex: String = customer.email.bytes().map(|b| format!("{b:02x}")).collect();
        let forms = [
            ("email", customer.email.clone()),
            ("card number", customer.card_number.clone()),
            ("email reversed", customer.email.chars().rev().collect()),
            (
                "card number reversed",
                customer.card_number.chars().rev().collect(),
            ),
            ("email in hex", hex),
            (
                "email in base64",
                base64::engine::general_purpose::STANDARD.encode(&customer.email),
            ),
            ("email local part", local.to_owned()),
        ];
        for (what, value) in forms {
            needles.push(Needle {
                person,
                what,
                lower: value.to_lowercase(),
                shown: value,
            });
        }
    }
    needles
}

/// Every text leaf of `value` with its place (`rows`, `error.detail`, `notices.message`, ...);
/// the statements themselves (`sql`) and the entry's `id` are not what the client received.
fn leaves(value: &Value, place: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::String(s) => out.push((place.to_owned(), s.clone())),
        Value::Number(n) => out.push((place.to_owned(), n.to_string())),
        Value::Array(items) => items.iter().for_each(|v| leaves(v, place, out)),
        Value::Object(map) => {
            for (key, v) in map {
                if key == "sql" || (place.is_empty() && key == "id") {
                    continue;
                }
                let inner = match place {
                    "" | "steps" => key.clone(),
                    _ => format!("{place}.{key}"),
                };
                leaves(v, &inner, out);
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// Where protected values were found in `result`: `place contains VALUE (what)`, one per
/// place and customer (the strongest form), values of the same place summarised.
fn leaks(result: &Value, needles: &[Needle]) -> Vec<String> {
    let mut texts = Vec::new();
    leaves(result, "", &mut texts);
    // place -> (person -> first form found)
    let mut found: BTreeMap<&str, BTreeMap<usize, &Needle>> = Default::default();
    for (place, text) in &texts {
        let lower = text.to_lowercase();
        // Card numbers also with their separators removed ("4111 1111 ...", "4111-1111-...").
        let squeezed: String = lower
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '\u{a0}'))
            .collect();
        for needle in needles {
            let hit = lower.contains(&needle.lower)
                || (needle.what.starts_with("card") && squeezed.contains(&needle.lower));
            if hit {
                let people = found.entry(place.as_str()).or_default();
                let best = people.entry(needle.person).or_insert(needle);
                let rank = |n: &Needle| needles.iter().position(|m| std::ptr::eq(m, n));
                if rank(needle) < rank(best) {
                    *best = needle;
                }
            }
        }
    }
    found
        .into_iter()
        .map(|(place, people)| {
            let mut values: Vec<String> = people
                .values()
                .map(|n| format!("{} ({})", n.shown, n.what))
                .collect();
            values.sort();
            values.dedup();
            let more = values.len().saturating_sub(2);
            values.truncate(2);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!("{place} contain {}{more}", values.join(", "))
        })
        .collect()
}

fn errors(result: &Value) -> Vec<&Value> {
    let mut errors = Vec::new();
    for step in result["steps"].as_array().into_iter().flatten() {
        if let Some(list) = step["errors"].as_array() {
            errors.extend(list.iter());
        } else if !step["error"].is_null() {
            errors.push(&step["error"]);
        }
    }
    errors
}

fn is_denial(error: &Value) -> bool {
    error["sqlstate"] == "42501"
        && error["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("jitgate:"))
}

fn row_count(result: &Value) -> usize {
    result["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["rows"].as_array())
        .map(Vec::len)
        .sum()
}

/// Runs the corpus's checks on one client's results: prints its table and fails listing every
/// LEAK and every failed control.
fn check(client: &str, corpus: &Value, results: &[Value]) {
    let people = customers();
    let needles = needles(&people);
    for entry in entries(corpus) {
        let mut texts = Vec::new();
        leaves(entry, "", &mut texts);
        for (_, text) in texts {
            let lower = text.to_lowercase();
            assert!(
                !needles.iter().any(|n| lower.contains(&n.lower)),
                "the corpus itself may not hold a protected value: {entry}"
            );
        }
    }
    let mut table = format!("masking corpus, {client}:\n");
    let mut failures = Vec::new();
    let (mut denied, mut passed) = (0, 0);
    for (entry, result) in entries(corpus).iter().zip(results) {
        let id = entry["id"].as_str().expect("id");
        let control = entry["kind"] == "control";
        let leaked = leaks(result, &needles);
        let errors = errors(result);
        let client_error = result["client_error"].as_str();
        let outcome = if !leaked.is_empty() {
            failures.push(format!("LEAK {client} {id}: {}", leaked.join("; ")));
            format!("LEAK: {}", leaked.join("; "))
        } else if errors.iter().any(|e| is_denial(e)) {
            denied += 1;
            "denied".to_owned()
        } else if let Some(e) = errors.first() {
            format!(
                "error {} ({} rows): {}",
                e["sqlstate"].as_str().unwrap_or("-"),
                row_count(result),
                e["message"].as_str().unwrap_or_default()
            )
        } else if let Some(e) = client_error {
            format!("client error: {e}")
        } else {
            passed += 1;
            let copied: usize = result["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["copy"].as_str())
                .map(str::len)
                .sum();
            let what = if control { "ok" } else { "masked" };
            if entry["via"] == "copy" {
                format!("{what}, {copied} bytes copied")
            } else {
                format!("{what}, {} rows", row_count(result))
            }
        };
        if control {
            let mut texts = Vec::new();
            leaves(result, "", &mut texts);
            // The one client whose API hides a control's rows is named by it (asyncpg's
            // `execute` returns no rows of a simple Query); errors still count for it.
            let rows_hidden = entry["rows_hidden_by"] == client;
            let missing: Vec<&str> = entry["expect"]
                .as_array()
                .expect("a control's expect")
                .iter()
                .filter_map(Value::as_str)
                .filter(|want| !rows_hidden && !texts.iter().any(|(_, t)| t.contains(want)))
                .collect();
            if !errors.is_empty() || client_error.is_some() || !missing.is_empty() {
                failures.push(format!(
                    "CONTROL {client} {id}: {outcome}; missing {missing:?}; errors {errors:?}; \
                     client error {client_error:?}"
                ));
            }
        }
        let kind = if control { "control" } else { "probe" };
        writeln!(table, "  {id:<32} {kind:<8} {outcome}").expect("write to a String");
    }
    writeln!(
        table,
        "  {} entries: {denied} denied, {passed} without error, {} failures",
        results.len(),
        failures.len()
    )
    .expect("write to a String");
    println!("{table}");
    assert!(
        failures.is_empty(),
        "{table}\n{} failures of {client}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn python_corpus(client: &str) {
    let corpus = corpus();
    let Some(stack) = corpus_stack(&corpus) else {
        return;
    };
    let results = python_client(&stack, &corpus, client);
    check(client, &corpus, &results);
}

#[test]
fn psql() {
    python_corpus("psql");
}

#[test]
fn psycopg_text() {
    python_corpus("psycopg_text");
}

#[test]
fn psycopg_binary() {
    python_corpus("psycopg_binary");
}

#[test]
fn asyncpg() {
    python_corpus("asyncpg");
}

#[test]
fn tokio_postgres() {
    let corpus = corpus();
    let Some(stack) = corpus_stack(&corpus) else {
        return;
    };
    let path = corpus_path();
    let out = rust_client(&stack, &["--corpus", path.to_str().expect("utf-8 path")]);
    let results = results(&corpus, "tokio-postgres", &out);
    check("tokio-postgres", &corpus, &results);
}
