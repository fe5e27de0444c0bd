//! Turning the interleaved samples into figures: the median per workload and target, the
//! markdown table (printed and recorded), and one line per target of issue 3 saying whether the
//! agent meets it and by how much it misses.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::pgbench::{Sample, Target};
use super::workload::{Script, WORKLOADS, Workload};

/// Medians over the rounds of one workload against one target.
#[derive(Debug, Clone, Copy)]
pub struct Median {
    /// Transactions per second.
    pub tps: f64,
    /// Mean latency, ms.
    pub latency_ms: f64,
    /// Proxy CPU µs per transaction.
    pub proxy_cpu_us: f64,
    /// Collector CPU µs per transaction.
    pub collector_cpu_us: f64,
}

/// All samples of a run, keyed by workload index and target.
#[derive(Debug, Default)]
pub struct Results {
    samples: BTreeMap<(usize, Target), Vec<Sample>>,
}

impl Results {
    /// Records one sample.
    pub fn push(&mut self, workload: usize, target: Target, sample: Sample) {
        self.samples
            .entry((workload, target))
            .or_default()
            .push(sample);
    }

    /// The medians for one workload and target, if it ran.
    pub fn median(&self, workload: usize, target: Target) -> Option<Median> {
        let samples = self.samples.get(&(workload, target))?;
        let of = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
        Some(Median {
            tps: of(|s| s.tps),
            latency_ms: of(|s| s.latency_ms),
            proxy_cpu_us: of(|s| s.proxy_cpu_us),
            collector_cpu_us: of(|s| s.collector_cpu_us),
        })
    }
}

/// The median of `values` (mean of the middle two for an even count; 0 when empty).
pub(super) fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// The PgBouncer a workload compares the agent with: single-use server connections for `-C`.
fn peer(workload: &Workload) -> Target {
    if workload.connect_per_transaction {
        Target::PgBouncerNoReuse
    } else {
        Target::PgBouncer
    }
}

/// The results table in markdown. `wide_bytes` is the DataRow bytes of one wide query.
pub fn table(results: &Results, wide_bytes: u64) -> String {
    let mut out = String::new();
    out.push_str(
        "| workload | direct tps | agent tps | pgbouncer tps | agent/direct | agent/pgbouncer \
         | latency ms direct / agent / pgbouncer | agent CPU µs/q | pgbouncer CPU µs/q \
         | agent/pgbouncer CPU | collector CPU µs/q |\n\
         |---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n",
    );
    for (index, workload) in WORKLOADS.iter().enumerate() {
        let peer = peer(workload);
        let (Some(direct), Some(agent), Some(bouncer)) = (
            results.median(index, Target::Direct),
            results.median(index, Target::Agent),
            results.median(index, peer),
        ) else {
            continue;
        };
        let name = if peer == Target::PgBouncerNoReuse {
            format!("{} (pgbouncer: no server reuse)", workload.name)
        } else {
            workload.name.to_owned()
        };
        let _ = writeln!(
            out,
            "| {name} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.3} / {:.3} / {:.3} | {:.1} | {:.1} \
             | {:.2} | {:.1} |",
            direct.tps,
            agent.tps,
            bouncer.tps,
            agent.tps / direct.tps,
            agent.tps / bouncer.tps,
            direct.latency_ms,
            agent.latency_ms,
            bouncer.latency_ms,
            agent.proxy_cpu_us,
            bouncer.proxy_cpu_us,
            agent.proxy_cpu_us / bouncer.proxy_cpu_us,
            agent.collector_cpu_us,
        );
        if let (true, Some(pooled)) = (
            workload.connect_per_transaction,
            results.median(index, Target::PgBouncer),
        ) {
            let _ = writeln!(
                out,
                "| {} (pooled pgbouncer, reuses server connections) | | {:.0} | {:.0} | | {:.2} \
                 | {:.3} (pooled) | | {:.1} | {:.2} | |",
                workload.name,
                agent.tps,
                pooled.tps,
                agent.tps / pooled.tps,
                pooled.latency_ms,
                pooled.proxy_cpu_us,
                agent.proxy_cpu_us / pooled.proxy_cpu_us,
            );
        }
    }
    if let Some(index) = WORKLOADS.iter().position(|w| w.script == Script::Wide) {
        let _ = writeln!(
            out,
            "\nWide result: {wide_bytes} DataRow bytes per query ({:.2} MB). {}",
            wide_bytes as f64 / 1e6,
            wide_throughput(results, index, wide_bytes)
        );
    }
    let position = |script| WORKLOADS.iter().position(|w| w.script == script);
    if let (Some(masked), Some(plain)) = (position(Script::Wide), position(Script::WidePlain))
        && let (Some(m), Some(p)) = (
            results.median(masked, Target::Agent),
            results.median(plain, Target::Agent),
        )
    {
        let _ = writeln!(
            out,
            "\nMasking cost on the wide result (agent, masked vs unmasked table): {:.2}× the \
             proxy CPU per query ({:.1} vs {:.1} µs), {:.2}× the tps.",
            m.proxy_cpu_us / p.proxy_cpu_us,
            m.proxy_cpu_us,
            p.proxy_cpu_us,
            m.tps / p.tps
        );
    }
    out
}

/// Result bytes per second of wall time and per proxy CPU-second for the wide workload.
fn wide_throughput(results: &Results, index: usize, wide_bytes: u64) -> String {
    let mut parts = Vec::new();
    for target in [Target::Direct, Target::Agent, Target::PgBouncer] {
        let Some(m) = results.median(index, target) else {
            continue;
        };
        let mut part = format!(
            "{}: {:.0} MB/s",
            target.label(),
            m.tps * wide_bytes as f64 / 1e6
        );
        if target != Target::Direct && m.proxy_cpu_us > 0.0 {
            let _ = write!(
                part,
                ", {:.2} GB per {} CPU-second",
                gb_per_cpu_second(wide_bytes, m.proxy_cpu_us),
                target.label()
            );
        }
        parts.push(part);
    }
    parts.join("; ") + "."
}

/// Result GB per proxy CPU-second given bytes per query and CPU µs per query.
fn gb_per_cpu_second(bytes: u64, cpu_us: f64) -> f64 {
    bytes as f64 / (cpu_us / 1e6) / 1e9
}

/// One line per target of issue 3: met, or missed by how much.
pub fn verdicts(results: &Results, wide_bytes: u64) -> Vec<String> {
    let mut lines = Vec::new();
    let verdict = |met: bool| if met { "met" } else { "**missed**" };
    for (index, workload) in WORKLOADS.iter().enumerate() {
        let peer = peer(workload);
        let (Some(direct), Some(agent), Some(bouncer)) = (
            results.median(index, Target::Direct),
            results.median(index, Target::Agent),
            results.median(index, peer),
        ) else {
            continue;
        };
        let ratio = agent.tps / bouncer.tps;
        lines.push(format!(
            "agent tps ≥ {} tps, {}: {} (agent/pgbouncer {ratio:.2}{})",
            peer.label(),
            workload.name,
            verdict(ratio >= 1.0),
            shortfall(ratio, 1.0)
        ));
        if workload.cached_statement() {
            let ratio = agent.proxy_cpu_us / bouncer.proxy_cpu_us;
            lines.push(format!(
                "agent CPU/query ≤ 1.2 × pgbouncer's, {}: {} ({:.1} vs {:.1} µs, {ratio:.2}×{})",
                workload.name,
                verdict(ratio <= 1.2),
                agent.proxy_cpu_us,
                bouncer.proxy_cpu_us,
                if ratio > 1.2 {
                    format!(", {:.0}% over the 1.2× budget", (ratio / 1.2 - 1.0) * 100.0)
                } else {
                    String::new()
                }
            ));
        }
        if workload.script == Script::Wide {
            let ratio = agent.tps / direct.tps;
            lines.push(format!(
                "wide results ≥ 0.9 × direct tps: {} ({ratio:.2}{})",
                verdict(ratio >= 0.9),
                shortfall(ratio, 0.9)
            ));
            let gb = gb_per_cpu_second(wide_bytes, agent.proxy_cpu_us);
            lines.push(format!(
                "wide results ≥ 1 GB per agent CPU-second with masking: {} ({gb:.2} GB/s{})",
                verdict(gb >= 1.0),
                shortfall(gb, 1.0)
            ));
        }
    }
    let select = WORKLOADS
        .iter()
        .position(|w| w.cached_statement() && w.clients == 1);
    let connect = WORKLOADS.iter().position(|w| w.connect_per_transaction);
    if let (Some(select), Some(connect)) = (select, connect)
        && let (Some(query), Some(per_connection)) = (
            results.median(select, Target::Agent),
            results.median(connect, Target::Agent),
        )
    {
        let setup_ms = (per_connection.proxy_cpu_us - query.proxy_cpu_us) / 1000.0;
        lines.push(format!(
            "connection setup ≤ 0.5 ms of agent CPU (the -C CPU per transaction minus one \
             query's; includes token validation and upstream SCRAM): {} ({setup_ms:.2} ms{})",
            verdict(setup_ms <= 0.5),
            if setup_ms > 0.5 {
                format!(", {:.1}× the budget", setup_ms / 0.5)
            } else {
                String::new()
            }
        ));
    }
    lines
}

/// `", x% short of <goal>"` when `value` is below `goal`.
fn shortfall(value: f64, goal: f64) -> String {
    if value >= goal {
        String::new()
    } else {
        format!(", {:.0}% short", (1.0 - value / goal) * 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(tps: f64, cpu: f64) -> Sample {
        Sample {
            tps,
            latency_ms: 1000.0 / tps,
            transactions: 1000,
            proxy_cpu_us: cpu,
            collector_cpu_us: 0.0,
        }
    }

    #[test]
    fn medians_ratios_and_verdicts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let mut results = Results::default();
        for (index, _) in WORKLOADS.iter().enumerate() {
            for target in [Target::Direct, Target::PgBouncer, Target::PgBouncerNoReuse] {
                results.push(index, target, sample(1000.0, 20.0));
            }
            results.push(index, Target::Agent, sample(800.0, 30.0));
        }
        let table = table(&results, 2_000_000);
        assert!(table.contains("| select simple c1 | 1000 | 800 | 1000 | 0.80 | 0.80 |"));
        let verdicts = verdicts(&results, 2_000_000);
        assert!(
            verdicts
                .iter()
                .any(|v| v.contains("missed") && v.contains("20% short"))
        );
        assert!(verdicts.iter().any(|v| v.contains("1.50×")));
    }
}
