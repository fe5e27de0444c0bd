//! Running one pgbench measurement against one target and reading what it cost: pgbench's own
//! figures (tps, mean latency, transactions) and the CPU time the proxies used meanwhile, from
//! `utime + stime` in `/proc/<pid>/stat` (proc(5); all threads of the process, in clock ticks).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use jitgate_tests::stack::{CI_ROLE, SHOP_DB, Stack};

use super::workload::Workload;

/// Where pgbench connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// The server itself, from outside the runner cgroup, with the password.
    Direct,
    /// The server's address from inside the runner cgroup with the job's token: the agent.
    Agent,
    /// PgBouncer in session mode, reusing server connections.
    PgBouncer,
    /// PgBouncer with `server_lifetime = 0`: one server connection per client connection.
    PgBouncerNoReuse,
}

impl Target {
    /// Name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Agent => "agent",
            Self::PgBouncer => "pgbouncer",
            Self::PgBouncerNoReuse => "pgbouncer (no reuse)",
        }
    }

    /// The targets a workload runs against: with `-C` the pooled PgBouncer is shown next to its
    /// like-for-like single-use peer.
    pub fn for_workload(workload: &Workload) -> Vec<Self> {
        if workload.connect_per_transaction {
            vec![
                Self::Direct,
                Self::Agent,
                Self::PgBouncerNoReuse,
                Self::PgBouncer,
            ]
        } else {
            vec![Self::Direct, Self::Agent, Self::PgBouncer]
        }
    }
}

/// Process ids whose CPU time is sampled around every run.
#[derive(Debug, Clone, Copy)]
pub struct Pids {
    /// The agent.
    pub agent: u32,
    /// The collector (audit ingest, outside the agent).
    pub collector: u32,
    /// The pooled PgBouncer.
    pub pgbouncer: u32,
    /// The single-use PgBouncer.
    pub pgbouncer_no_reuse: u32,
}

/// Everything one run needs besides the workload.
pub struct Env<'a> {
    /// The stack (server, agent, cgroup, token).
    pub stack: &'a Stack,
    /// The upstream role's password, for the direct and PgBouncer paths.
    pub password: String,
    /// Port of the pooled PgBouncer.
    pub pgbouncer_port: u16,
    /// Port of the single-use PgBouncer.
    pub pgbouncer_no_reuse_port: u16,
    /// Sampled processes.
    pub pids: Pids,
    /// Directory holding the pgbench scripts.
    pub script_dir: &'a Path,
    /// Pin pgbench to this CPU.
    pub client_cpu: Option<usize>,
    /// Clock ticks per second (`getconf CLK_TCK`).
    pub ticks_per_second: u64,
}

/// One measurement.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Transactions per second as pgbench reports them.
    pub tps: f64,
    /// Mean latency in ms.
    pub latency_ms: f64,
    /// Transactions processed.
    pub transactions: u64,
    /// CPU µs per transaction of the proxy on the path (0 for direct).
    pub proxy_cpu_us: f64,
    /// CPU µs per transaction of the collector.
    pub collector_cpu_us: f64,
}

/// Runs pgbench for `duration` on `workload` against `target`.
pub fn run(
    env: &Env<'_>,
    workload: &Workload,
    target: Target,
    duration: Duration,
) -> anyhow::Result<Sample> {
    let pg_port = env.stack.pg.port();
    let (port, proxy_pid) = match target {
        Target::Direct => (pg_port, None),
        Target::Agent => (pg_port, Some(env.pids.agent)),
        Target::PgBouncer => (env.pgbouncer_port, Some(env.pids.pgbouncer)),
        Target::PgBouncerNoReuse => (
            env.pgbouncer_no_reuse_port,
            Some(env.pids.pgbouncer_no_reuse),
        ),
    };
    let program = if env.client_cpu.is_some() {
        "taskset"
    } else {
        "pgbench"
    };
    let mut command = match target {
        Target::Agent => env.stack.job(program, true),
        _ => {
            let mut command = Command::new(program);
            command.env("PGPASSWORD", &env.password);
            command
        }
    };
    if let Some(cpu) = env.client_cpu {
        command.args(["-c", &cpu.to_string(), "pgbench"]);
    }
    command
        .args([
            "-n",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            CI_ROLE,
        ])
        .arg("-f")
        .arg(env.script_dir.join(workload.script.file_name()))
        .args(["-M", workload.protocol.flag()])
        .args(["-c", &workload.clients.to_string()])
        .args(["-j", &workload.threads().to_string()])
        .args(["-T", &duration.as_secs().max(1).to_string()]);
    if workload.connect_per_transaction {
        command.arg("-C");
    }
    command
        .arg(SHOP_DB)
        .env("PGSSLMODE", "disable")
        .env("PGGSSENCMODE", "disable")
        .stdin(Stdio::null());

    let proxy_before = proxy_pid.map(cpu_ticks).transpose()?;
    let collector_before = cpu_ticks(env.pids.collector)?;
    let output = command.output().context("running pgbench")?;
    let proxy_after = proxy_pid.map(cpu_ticks).transpose()?;
    let collector_after = cpu_ticks(env.pids.collector)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "pgbench {} against {} failed ({}):\n{}{}",
        workload.name,
        target.label(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim(),
        stdout.trim()
    );
    let (tps, latency_ms, transactions) = parse(&stdout)?;
    let per_tx =
        |ticks: u64| ticks as f64 * 1e6 / env.ticks_per_second as f64 / transactions.max(1) as f64;
    let proxy_ticks = match (proxy_before, proxy_after) {
        (Some(before), Some(after)) => after.saturating_sub(before),
        _ => 0,
    };
    Ok(Sample {
        tps,
        latency_ms,
        transactions,
        proxy_cpu_us: per_tx(proxy_ticks),
        collector_cpu_us: per_tx(collector_after.saturating_sub(collector_before)),
    })
}

/// Reads `tps = …`, `latency average = … ms` and `number of transactions actually processed: …`
/// from pgbench's report.
fn parse(report: &str) -> anyhow::Result<(f64, f64, u64)> {
    let field = |prefix: &str| {
        report
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .with_context(|| format!("no {prefix:?} in pgbench's report:\n{report}"))
    };
    let tps: f64 = field("tps = ")?.parse().context("pgbench tps")?;
    let latency: f64 = field("latency average = ")?
        .parse()
        .context("pgbench latency")?;
    let transactions: u64 = field("number of transactions actually processed: ")?
        .parse()
        .context("pgbench transactions")?;
    Ok((tps, latency, transactions))
}

/// `utime + stime` of process `pid` (all its threads) in clock ticks.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat_cpu(&stat).with_context(|| format!("parsing {path}: {stat:?}"))
}

/// Fields 14 (utime) and 15 (stime) of a stat line; the comm field (2) may hold spaces and
/// parentheses, so counting starts after its last `)`.
fn parse_stat_cpu(stat: &str) -> anyhow::Result<u64> {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        bail!("no comm field");
    };
    // `rest` starts at field 3 (state): field n is at index n - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        fields
            .get(n - 3)
            .with_context(|| format!("no field {n}"))?
            .parse()
            .with_context(|| format!("field {n}"))
    };
    Ok(field(14)? + field(15)?)
}

/// Clock ticks per second, as `getconf CLK_TCK` reports (`sysconf(_SC_CLK_TCK)`).
pub fn ticks_per_second() -> anyhow::Result<u64> {
    let output = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("running getconf CLK_TCK")?;
    ensure!(output.status.success(), "getconf CLK_TCK failed");
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("getconf CLK_TCK printed {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pgbench_and_stat() -> anyhow::Result<()> {
        let report = "transaction type: select-one.sql\n\
            number of transactions actually processed: 48213\n\
            number of failed transactions: 0 (0.000%)\n\
            latency average = 0.207 ms\n\
            initial connection time = 3.120 ms\n\
            tps = 4821.388221 (without initial connection time)\n";
        let (tps, latency, transactions) = parse(report)?;
        assert!((tps - 4821.388221).abs() < 1e-9);
        assert!((latency - 0.207).abs() < 1e-9);
        assert_eq!(transactions, 48213);
        assert!(parse("nothing").is_err());

        let stat = "4242 (tokio (w) 1) S 1 4242 4242 0 -1 4194560 900 0 0 0 150 25 0 0 20 0 4";
        assert_eq!(parse_stat_cpu(stat)?, 175);
        Ok(())
    }
}
