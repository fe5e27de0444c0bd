//! `cargo xtask bench`: direct vs agent vs PgBouncer with pgbench, in one interleaved run, for
//! issue 3's targets. It builds the release binaries, starts the harness's stack (PostgreSQL 15,
//! collector, runner cgroup, agent with policy, one masked column and audit) plus two PgBouncers
//! (pooled and single-use), runs every workload against every target round after round, and
//! prints (and, unless `--quick`, appends to docs/benchmarks.md) the medians, ratios and CPU cost.

mod doc;
mod host;
mod ingest;
mod pgbench;
mod report;
mod workload;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use anyhow::{Context, ensure};
use jitgate_tests::pgbouncer::{PgBouncer, PgBouncerConfig};
use jitgate_tests::process::is_root;
use jitgate_tests::stack::{CI_ROLE, Credentials, SHOP_DB, Stack, StackOptions};

use crate::build::{self, Binaries};
use crate::{setup, step};
use pgbench::{Env, Pids, Target};
use report::Results;
use workload::{Script, WORKLOADS, Workload};

/// CPU of PostgreSQL, the collector and pgbench under `--pin`.
const SERVER_CPU: usize = 0;
/// CPU of the proxy under test (agent or PgBouncer) under `--pin`.
const PROXY_CPU: usize = 1;

/// `cargo xtask bench` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Seconds per pgbench run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Interleaved rounds; each figure is the median over them.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Pin PostgreSQL, the collector and pgbench to CPU 0 and the proxy to CPU 1 (taskset).
    #[arg(long)]
    pub pin: bool,
    /// 3-second runs, one round, no warm-up; prints only (nothing recorded).
    #[arg(long)]
    pub quick: bool,
    /// Only workloads whose name contains this text (e.g. `simple c1`, `wide`); with `--target`,
    /// for profiling one path. A filtered run prints only (nothing recorded).
    #[arg(long)]
    pub workload: Option<String>,
    /// Only this target: `direct`, `agent` or `pgbouncer`. Prints only (nothing recorded).
    #[arg(long)]
    pub target: Option<String>,
    /// The agent logs in as the static CI role instead of a role made for each session.
    #[arg(long)]
    pub static_credentials: bool,
    /// Only the collector ingest load test (events per second stored and acknowledged);
    /// prints and records it. Needs no root.
    #[arg(long)]
    pub ingest: bool,
}

impl Options {
    /// The command line that reproduces this run.
    fn command_line(&self) -> String {
        let mut line = format!(
            "cargo xtask bench --duration {} --rounds {}",
            self.duration, self.rounds
        );
        if self.pin {
            line.push_str(" --pin");
        }
        if self.static_credentials {
            line.push_str(" --static-credentials");
        }
        if self.ingest {
            line.push_str(" --ingest");
        }
        line
    }
}

/// `cargo xtask bench`: setup if something is missing, release build, then [`run`].
pub fn command(mut options: Options) -> anyhow::Result<()> {
    if options.quick {
        options.duration = options.duration.min(3);
        options.rounds = 1;
    }
    if options.ingest {
        ensure!(options.rounds >= 1, "--rounds must be at least 1");
        return run_ingest(&options);
    }
    ensure!(
        is_root(),
        "the benchmark needs root (eBPF, cgroups, PostgreSQL and PgBouncer as postgres)"
    );
    ensure!(options.rounds >= 1, "--rounds must be at least 1");
    ensure!(
        !options.pin || host::cpus() > PROXY_CPU,
        "--pin needs at least {} CPUs",
        PROXY_CPU + 1
    );
    setup::ensure()?;
    let bins = build::binaries(true)?;
    run(&bins, &options)
}

/// Runs the benchmark against already built (release) binaries.
pub fn run(bins: &Binaries, options: &Options) -> anyhow::Result<()> {
    let facts = host::facts(&step::workspace_root());
    let date = host::now_utc();
    println!("starting PostgreSQL 15, the collector, the agent and two PgBouncers");
    let stack = Stack::start_with_options(
        bins.clone(),
        StackOptions {
            masks: vec![workload::MASK.to_owned()],
            setup_sql: Some(workload::setup_sql()),
            credentials: if options.static_credentials {
                Credentials::Static
            } else {
                Credentials::Dynamic
            },
            ..StackOptions::default()
        },
    )
    .context("starting the stack")?;
    let password_file = stack.dir.path().join("upstream.password");
    let password = std::fs::read_to_string(&password_file)
        .with_context(|| format!("reading {}", password_file.display()))?
        .trim()
        .to_owned();
    // The harness logs every statement for the tests' assertions; a benchmark should not pay
    // for that on every path.
    stack
        .pg
        .psql_superuser("ALTER SYSTEM SET log_statement = 'none';")?;
    stack.pg.reload()?;
    let verifier = stack.pg.psql_superuser(&format!(
        "SELECT rolpassword FROM pg_authid WHERE rolname = '{CI_ROLE}';"
    ))?;
    let proxy_cpu = options.pin.then_some(PROXY_CPU);
    let bouncer = |reuse: bool| {
        PgBouncer::start(&PgBouncerConfig {
            database: SHOP_DB.to_owned(),
            upstream: SocketAddrV4::new(Ipv4Addr::LOCALHOST, stack.pg.port()),
            user: CI_ROLE.to_owned(),
            secret: verifier.trim().to_owned(),
            reuse_server_connections: reuse,
            cpu: proxy_cpu,
        })
    };
    let pooled = bouncer(true).context("starting the pooled PgBouncer")?;
    let single_use = bouncer(false).context("starting the single-use PgBouncer")?;
    let pids = Pids {
        agent: stack.agent.pid().context("the agent is not running")?,
        collector: stack.collector.pid(),
        pgbouncer: pooled.pid().context("PgBouncer is not running")?,
        pgbouncer_no_reuse: single_use.pid().context("PgBouncer is not running")?,
    };
    if options.pin {
        host::pin_postgres(&stack.pg.data_dir(), SERVER_CPU)?;
        host::pin(pids.collector, SERVER_CPU)?;
        host::pin(pids.agent, PROXY_CPU)?;
    }

    // The stack's own temp dir holds the pgbench scripts (pgbench runs as root).
    let script_dir = stack.dir.path();
    for script in [Script::SelectOne, Script::Wide, Script::WidePlain] {
        std::fs::write(script_dir.join(script.file_name()), script.text())?;
    }
    let wide_bytes: u64 = stack
        .pg
        .psql_superuser_in(SHOP_DB, workload::wide_bytes_sql())?
        .trim()
        .parse()
        .context("wide result size")?;
    check_masking(&stack)?;

    let env = Env {
        stack: &stack,
        password,
        pgbouncer_port: pooled.port(),
        pgbouncer_no_reuse_port: single_use.port(),
        pids,
        script_dir,
        client_cpu: options.pin.then_some(SERVER_CPU),
        ticks_per_second: pgbench::ticks_per_second()?,
    };
    let results = measure(&env, options)?;
    let full = options.workload.is_none() && options.target.is_none();
    let ingest_table = if full {
        println!("collector ingest load");
        let load = bins.collector.with_file_name("jitgate-ingest-load");
        ingest::table(&ingest::measure(&bins.collector, &load, options.rounds)?)
    } else {
        String::new()
    };

    let mut table = report::table(&results, wide_bytes);
    if full {
        table.push('\n');
        table.push_str(&ingest_table);
    }
    let verdicts = report::verdicts(&results, wide_bytes);
    println!("\n{table}");
    for verdict in &verdicts {
        println!("- {verdict}");
    }
    if !options.quick && options.workload.is_none() && options.target.is_none() {
        let path = step::workspace_root().join("docs/benchmarks.md");
        let section = doc::section(&date, &options.command_line(), &facts, &table, &verdicts);
        doc::record(&path, &section)?;
        println!("\nrecorded in {}", path.display());
    }
    drop((single_use, pooled));
    Ok(())
}

/// `cargo xtask bench --ingest`: only the collector ingest load test, printed and (unless
/// `--quick`) recorded.
fn run_ingest(options: &Options) -> anyhow::Result<()> {
    let facts = host::facts(&step::workspace_root());
    let date = host::now_utc();
    let built = build::collector_binaries(true, &["jitgate-collector", "jitgate-ingest-load"])?;
    let [collector, load] = built.as_slice() else {
        anyhow::bail!("expected two collector binaries");
    };
    let table = ingest::table(&ingest::measure(collector, load, options.rounds)?);
    println!("\n{table}");
    if !options.quick {
        let path = step::workspace_root().join("docs/benchmarks.md");
        let verdicts = ["collector ingest only (no pgbench workloads in this run)".to_owned()];
        let section = doc::section(&date, &options.command_line(), &facts, &table, &verdicts);
        doc::record(&path, &section)?;
        println!("\nrecorded in {}", path.display());
    }
    Ok(())
}

/// Warm-up, then `rounds` rounds of every workload against every target, interleaved.
fn measure(env: &Env<'_>, options: &Options) -> anyhow::Result<Results> {
    let duration = Duration::from_secs(options.duration);
    let selected = |workload: &Workload| {
        options
            .workload
            .as_deref()
            .is_none_or(|w| workload.name.contains(w))
    };
    let targets = |workload: &Workload| {
        Target::for_workload(workload).into_iter().filter(|t| {
            options
                .target
                .as_deref()
                .is_none_or(|name| t.label().starts_with(name))
        })
    };
    if !options.quick {
        println!("warming up (1 s per workload and target)");
        for workload in WORKLOADS.iter().filter(|w| selected(w)) {
            for target in targets(workload) {
                pgbench::run(env, workload, target, Duration::from_secs(1))?;
            }
        }
    }
    let mut results = Results::default();
    for round in 1..=options.rounds {
        for (index, workload) in WORKLOADS.iter().enumerate() {
            if !selected(workload) {
                continue;
            }
            for target in targets(workload) {
                let sample = pgbench::run(env, workload, target, duration)?;
                println!(
                    "round {round}/{}  {:<20} {:<21} {:>9.0} tps  {:>7.3} ms  {:>8} tx  \
                     {:>6.1} µs proxy CPU/q",
                    options.rounds,
                    workload.name,
                    target.label(),
                    sample.tps,
                    sample.latency_ms,
                    sample.transactions,
                    sample.proxy_cpu_us
                );
                results.push(index, target, sample);
            }
        }
    }
    Ok(results)
}

/// Makes sure the agent path really masks `bench_wide.email` (otherwise the figures would
/// measure a relay, not the agent's work).
fn check_masking(stack: &Stack) -> anyhow::Result<()> {
    let output = stack.psql("SELECT email FROM bench_wide WHERE id = 1", true)?;
    let email = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    ensure!(
        output.status.success(),
        "psql through the agent failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(
        !email.is_empty() && email != "user1@example.com",
        "bench_wide.email came back unmasked through the agent: {email:?}"
    );
    Ok(())
}
