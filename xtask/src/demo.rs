//! `cargo xtask demo`: the whole jitgate path on this machine, on real parts. It starts a real
//! PostgreSQL 15 holding a small shop dataset, the collector, a demo OIDC issuer (its key, its
//! JWKS and an Entra-shaped service-principal token) and the agent protecting the database's real
//! address; then runs a "CI job" shell script inside the runner cgroup that uses plain `psql`
//! with no password; then prints the audit trail from the collector and tears everything down.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use jitgate_tests::process::is_root;
use jitgate_tests::stack::{DENY_RULE, SHOP_DB, Stack};
use serde_json::Value;

use crate::build::{self, Binaries};
use crate::setup;

/// `cargo xtask demo`: setup if something is missing, build, then [`run`].
pub fn command() -> anyhow::Result<()> {
    setup::ensure()?;
    let bins = build::binaries(false)?;
    run(&bins)
}

fn banner(text: &str) {
    println!("\n\x1b[1m━━ {text}\x1b[0m");
}

/// The CI job: an allowed, masked SELECT, then a denied DROP TABLE in a session that goes on.
fn job_script(pg_port: u16) -> String {
    let psql = format!("psql -X -w -h 127.0.0.1 -p {pg_port} -d {SHOP_DB}");
    format!(
        r#"#!/bin/sh
# A CI job step. No database password anywhere: jitgate supplies a session credential.
echo "\$ {psql} -c 'SELECT id, name, email, card_number FROM customers ORDER BY id LIMIT 5'"
{psql} -c 'SELECT id, name, email, card_number FROM customers ORDER BY id LIMIT 5'

echo
echo "\$ {psql} -v VERBOSITY=verbose   # DROP TABLE, then keep using the session"
{psql} -v VERBOSITY=verbose <<'SQL'
DROP TABLE customers;
SELECT count(*) AS customers_still_there FROM customers;
SQL
exit 0
"#
    )
}

/// Runs the demo against already built binaries.
pub fn run(bins: &Binaries) -> anyhow::Result<()> {
    ensure!(
        is_root(),
        "the demo needs root (it loads eBPF programs, creates a cgroup and runs PostgreSQL as \
         the postgres user); run it as root"
    );
    banner(
        "Starting PostgreSQL 15 (shop dataset), the collector, a demo OIDC issuer and the agent",
    );
    let stack = Stack::start_with(bins.clone()).context("starting the demo stack")?;
    println!(
        "  PostgreSQL     127.0.0.1:{} (database {SHOP_DB}; each session a role of its own, member of jitgate_ci, dropped at its end)",
        stack.pg.port()
    );
    println!("  collector      {}", stack.collector.url());
    let pid = stack.agent.pid().map(|p| p.to_string()).unwrap_or_default();
    println!("  agent          {} (pid {pid})", stack.agent.listen());
    println!("  runner cgroup  {}", stack.cgroup.path().display());
    println!(
        "  job token      {} (Entra service principal, RS256, issuer {})",
        stack.token_file.display(),
        stack.issuer.issuer_url()
    );
    println!(
        "  policy         Cedar policy \"{DENY_RULE}\": DDL and TRUNCATE forbidden for this issuer (policy.cedar)"
    );
    println!(
        "  masking        customers.email (first letter kept), customers.card_number (last 4 kept)"
    );

    banner("The agent's configuration (agent.toml)");
    let config = std::fs::read_to_string(stack.dir.path().join("agent.toml"))?;
    print!("{config}");

    banner("Running the CI job inside the runner cgroup (psql to the database's real address)");
    let script = stack.dir.path().join("ci-job.sh");
    std::fs::write(&script, job_script(stack.pg.port()))?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    std::io::stdout().flush()?;
    let status = stack
        .job("/bin/sh", true)
        .arg(&script)
        .status()
        .context("running the CI job")?;
    ensure!(status.success(), "the CI job script failed: {status}");

    banner(
        "A process in the runner cgroup that was given no token (nor were its parents): \
         refused with SQLSTATE 28000",
    );
    let psql_args = [
        "-X",
        "-w",
        "-h",
        "127.0.0.1",
        "-d",
        SHOP_DB,
        "-c",
        "SELECT 1",
    ];
    let port = stack.pg.port().to_string();
    // sslmode=require: with psql's default `prefer` a refused TLS attempt is retried in
    // plaintext, which the trail would show as two refused sessions of one psql.
    println!("$ PGSSLMODE=require psql -X -w -h 127.0.0.1 -p {port} -d {SHOP_DB} -c 'SELECT 1'");
    std::io::stdout().flush()?;
    let refused = stack
        .job("psql", false)
        .env("PGSSLMODE", "require")
        .args(psql_args)
        .args(["-p", &port])
        .status()
        .context("running psql without a token")?;
    ensure!(
        !refused.success(),
        "a process without a token must be refused"
    );

    banner("Audit trail in the collector (jitgate sessions)");
    let sessions = wait_for_sessions(&stack, 3)?;
    print_cli(&stack, &["sessions"])?;
    for session in sessions.iter().rev() {
        let Some(id) = session["session_id"].as_str() else {
            continue;
        };
        banner(&format!("jitgate events --session {id}"));
        print_cli(&stack, &["events", "--session", id])?;
    }

    banner("Tearing down (agent stopped and unloaded, cgroup removed, PostgreSQL stopped)");
    drop(stack);
    println!("done.");
    Ok(())
}

/// Waits until the collector holds `n` finished sessions (audit delivery is asynchronous).
fn wait_for_sessions(stack: &Stack, n: usize) -> anyhow::Result<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = stack.cli(&["sessions", "--json"])?;
        let sessions: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|s: &Value| s["refused"] == true || !s["ended"].is_null())
            .collect();
        if sessions.len() >= n {
            return Ok(sessions);
        }
        if Instant::now() > deadline {
            bail!(
                "the collector holds {} finished sessions after 20 s, expected {n}",
                sessions.len()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn print_cli(stack: &Stack, args: &[&str]) -> anyhow::Result<()> {
    let out = stack.cli(args)?;
    std::io::stdout().write_all(&out.stdout)?;
    std::io::stderr().write_all(&out.stderr)?;
    ensure!(out.status.success(), "jitgate {} failed", args.join(" "));
    Ok(())
}
