//! `docs/benchmarks.md`: the header explaining the method and issue 3's targets (written when the
//! file does not exist yet), and one appended, dated section per recorded run with the exact
//! command, the machine facts, the table and the target verdicts.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context;

/// The file's header, kept when runs are appended.
pub const HEADER: &str = "\
# Benchmarks

Figures from `cargo xtask bench` (xtask/src/bench/). Every section below is one recorded run,
appended by the command itself; the text under a section's table was written by whoever ran it.

## What runs

One command starts, on this machine: PostgreSQL 15 (the test harness's server, `fsync = off`;
the bench turns its `log_statement = 'all'` off), the collector, the agent in release build with **policy** (the stack's
deny rule for DDL and TRUNCATE is evaluated on every statement), **masking on one column**
(`bench_wide.email`, partial, first character kept) and **audit** to the real collector (one
event per statement, acknowledged), and two PgBouncer 1.18 instances in session mode
(`auth_type = scram-sha-256`, the userlist holding the role's SCRAM verifier from `pg_authid`, so
PgBouncer forwards the client's SCRAM key instead of running PBKDF2): one pooled, one with
`server_lifetime = 0` (each server connection used once).

pgbench clients, `-n`, `PGSSLMODE=disable`:

- **direct**: to the server's port from outside the runner cgroup, with `PGPASSWORD`;
- **agent**: to the same address from inside the runner cgroup with the job's OIDC token file and
  no password (eBPF sends the connection to the agent, which validates the token, logs in upstream
  with SCRAM-SHA-256 and relays);
- **pgbouncer**: to PgBouncer's port with `PGPASSWORD`.

Workloads: `select` is pgbench's select-only transaction as a custom script
(`SELECT abalance FROM bench_accounts WHERE aid = :aid`, 100k rows) in `-M simple` and
`-M extended` at 1 and 8 clients (`-j` 1 and 2); `wide` reads all of `bench_wide` (10k rows × six
columns in text format, about 1.6 MB of DataRow messages per query, masked column included) at 1
client, and `wide unmasked` reads the same rows from `bench_wide_plain`, a copy with no masked
column, so the agent's pair of figures is the cost of masking; `connect -C` is the select transaction with a new connection per transaction, compared with
the single-use PgBouncer (the pooled one is shown as well).

Rounds are interleaved (direct, agent, pgbouncer, then the next workload, then the next round) and
each figure is the **median over the rounds**. A one-second warm-up per workload and target comes
first. CPU per query is `utime + stime` of the proxy process (all threads, `/proc/<pid>/stat`,
clock ticks converted with `getconf CLK_TCK`) over the run divided by pgbench's transaction count;
the collector's CPU (audit ingest, outside the agent) is shown separately. `--pin` pins
PostgreSQL, the collector and pgbench to CPU 0 and the proxy under test (agent or PgBouncer) to
CPU 1 with `taskset`, for repeatable ratios; unpinned figures on this loaded 2-core VM swing
by 10–30 % between runs.

## Targets (issue 3)

Measured before any agent code existed: one extra userspace hop costs about +20 µs of latency and
about 21 µs of proxy CPU per round trip; PgBouncer and a bare tokio byte relay both sit at that
floor.

- agent tps ≥ PgBouncer tps on every workload, with policy, masking and audit on;
- agent CPU per cached-statement query ≤ 1.2 × PgBouncer's CPU per query in the same run;
- wide results ≥ 0.9 × direct throughput at 1 client, and ≥ 1 GB of result bytes per agent
  CPU-second with masking on (PgBouncer manages about 0.8, a 64 KiB-buffer relay about 1.3);
- connection setup ≤ 0.5 ms of agent CPU per connection before JIT credential work; for `-C` the
  peer is PgBouncer with `server_lifetime = 0`. Pooled PgBouncer wins `-C` by reusing server
  connections; it is shown, not chased.

Each section lists every target with *met* or **missed** and the shortfall.
";

/// Appends `section` to `path`, writing [`HEADER`] first when the file does not exist.
pub fn record(path: &Path, section: &str) -> anyhow::Result<()> {
    let fresh = !path.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    if fresh {
        file.write_all(HEADER.as_bytes())?;
    }
    file.write_all(format!("\n{section}").as_bytes())
        .with_context(|| format!("appending to {}", path.display()))
}

/// One run's section: heading with date and command, machine facts, table, verdicts.
pub fn section(date: &str, command: &str, facts: &str, table: &str, verdicts: &[String]) -> String {
    let verdicts: String = verdicts.iter().map(|v| format!("- {v}\n")).collect();
    format!("## {date}: `{command}`\n\n{facts}\n{table}\nTargets:\n\n{verdicts}",)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_written_once() -> anyhow::Result<()> {
        let dir = tempfile_dir()?;
        let path = dir.join("benchmarks.md");
        let one = section("d", "cargo xtask bench", "- f\n", "| t |\n", &["v".into()]);
        record(&path, &one)?;
        record(&path, &one)?;
        let text = std::fs::read_to_string(&path)?;
        assert_eq!(text.matches("# Benchmarks").count(), 1);
        assert_eq!(text.matches("## d: `cargo xtask bench`").count(), 2);
        assert!(text.contains("- v\n"));
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
        let dir = std::env::temp_dir().join(format!("xtask-bench-doc-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}
