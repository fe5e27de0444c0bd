//! `cargo xtask bench --ingest`: how many audit events per second the collector stores and
//! acknowledges. A fresh release `jitgate-collector` (the harness's `CollectorGuard`: SQLite on
//! a temp dir, loopback, mutual TLS with an agent certificate from its CA) per run, loaded by `jitgate-ingest-load` (collector/src/load.rs) with 1,
//! 4 and 16 simulated agents streaming sealed sessions in the agent's batch and window sizes.
//! The run is bounded by events (`TOTAL_EVENTS` per run), not time; each figure is the median
//! over the rounds, and the ratio column compares with one agent in the same run.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, ensure};
use jitgate_tests::collector::CollectorGuard;

use super::report::median;

/// Events per run, split over the agents.
pub const TOTAL_EVENTS: usize = 96_000;
/// Simulated agents per configuration.
pub const AGENTS: [usize; 3] = [1, 4, 16];

/// One configuration's medians.
#[derive(Debug, Clone)]
pub struct IngestFigure {
    /// Simulated agents.
    pub agents: usize,
    /// Median events per second.
    pub events_per_second: f64,
    /// Median MB (10^6 bytes) of encoded events per second.
    pub megabytes_per_second: f64,
}

/// Runs every configuration `rounds` times (interleaved) with the `collector` and
/// `jitgate-ingest-load` (`load`) executables and returns the medians.
pub fn measure(collector: &Path, load: &Path, rounds: usize) -> anyhow::Result<Vec<IngestFigure>> {
    let mut samples: Vec<Vec<(f64, f64)>> = vec![Vec::new(); AGENTS.len()];
    for round in 1..=rounds {
        for (index, agents) in AGENTS.iter().enumerate() {
            let collector = CollectorGuard::start(collector).context("starting the collector")?;
            let mut command = Command::new(load);
            command.arg("--collector").arg(collector.url());
            if let Some(certs) = collector.certs() {
                command
                    .arg("--ca")
                    .arg(&certs.ca)
                    .arg("--cert")
                    .arg(&certs.agent_cert)
                    .arg("--key")
                    .arg(&certs.agent_key);
            }
            let output = command
                .args(["--agents", &agents.to_string()])
                .args(["--events", &(TOTAL_EVENTS / agents).to_string()])
                .output()
                .with_context(|| format!("running {}", load.display()))?;
            ensure!(
                output.status.success(),
                "jitgate-ingest-load failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let line: serde_json::Value =
                serde_json::from_slice(&output.stdout).context("jitgate-ingest-load output")?;
            let rate = line["events_per_second"].as_f64().unwrap_or(0.0);
            let seconds = line["seconds"].as_f64().unwrap_or(f64::MAX);
            let bytes = line["bytes"].as_f64().unwrap_or(0.0);
            let mbps = bytes / 1e6 / seconds;
            println!(
                "round {round}/{rounds}  ingest {agents:>2} agents  {rate:>9.0} events/s  {mbps:>6.1} MB/s  ({} events in {seconds:.2} s)",
                line["events"]
            );
            samples[index].push((rate, mbps));
        }
    }
    Ok(AGENTS
        .iter()
        .zip(samples)
        .map(|(agents, runs)| IngestFigure {
            agents: *agents,
            events_per_second: median(runs.iter().map(|r| r.0).collect()),
            megabytes_per_second: median(runs.iter().map(|r| r.1).collect()),
        })
        .collect())
}

/// The figures as a Markdown table with the ratio to one agent.
pub fn table(figures: &[IngestFigure]) -> String {
    let base = figures
        .first()
        .map_or(1.0, |f| f.events_per_second.max(f64::EPSILON));
    let mut out =
        String::from("| collector ingest | events/s | MB/s | vs 1 agent |\n|---|---:|---:|---:|\n");
    for f in figures {
        out.push_str(&format!(
            "| {} agent{} | {:.0} | {:.1} | {:.2}× |\n",
            f.agents,
            if f.agents == 1 { "" } else { "s" },
            f.events_per_second,
            f.megabytes_per_second,
            f.events_per_second / base
        ));
    }
    out
}
