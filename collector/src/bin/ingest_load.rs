//! `jitgate-ingest-load`: streams simulated agents' sealed audit sessions to a collector and
//! prints how many events per second it stored and acknowledged. Used by `cargo xtask bench`;
//! see [`jitgate_collector::load`].
//!
//! Output: one JSON object on stdout, `{"agents":K,"events":N,"bytes":B,"seconds":S,
//! "events_per_second":E}`.

use std::process::ExitCode;

use clap::Parser;
use jitgate_collector::load::{LoadPlan, LoadTls, run};

/// Arguments of `jitgate-ingest-load`.
#[derive(Debug, Parser)]
#[command(
    name = "jitgate-ingest-load",
    version,
    about = "Collector ingest load generator"
)]
struct Args {
    /// Collector URL.
    #[arg(long)]
    collector: String,
    /// Concurrent simulated agents (one connection each).
    #[arg(long, default_value_t = 4)]
    agents: usize,
    /// Events per agent (rounded up to whole sessions).
    #[arg(long, default_value_t = 50_000)]
    events: usize,
    /// Statement events per session.
    #[arg(long, default_value_t = 48)]
    statements_per_session: usize,
    /// Events per batch (the agent sends 256).
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Unacknowledged events per agent (the agent keeps 4096).
    #[arg(long, default_value_t = 4096)]
    window: usize,
    /// CA certificate (PEM) of an `https://` collector.
    #[arg(long, requires_all = ["cert", "key"])]
    ca: Option<std::path::PathBuf>,
    /// Agent certificate (PEM) to present.
    #[arg(long, requires_all = ["ca", "key"])]
    cert: Option<std::path::PathBuf>,
    /// Its private key (PEM).
    #[arg(long, requires_all = ["ca", "cert"])]
    key: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let plan = LoadPlan {
        collector: args.collector,
        agents: args.agents,
        events_per_agent: args.events,
        statements_per_session: args.statements_per_session,
        batch: args.batch,
        window: args.window,
        tls: match (args.ca, args.cert, args.key) {
            (Some(ca), Some(cert), Some(key)) => Some(LoadTls { ca, cert, key }),
            _ => None,
        },
    };
    match run(&plan).await {
        Ok(result) => {
            println!(
                "{}",
                serde_json::json!({
                    "agents": plan.agents,
                    "events": result.events,
                    "bytes": result.bytes,
                    "seconds": result.elapsed.as_secs_f64(),
                    "events_per_second": result.events_per_second(),
                })
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("jitgate-ingest-load: {}", jitgate_collector::report(&err));
            ExitCode::FAILURE
        }
    }
}
