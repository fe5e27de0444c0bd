//! `jitgate`: the security team's command line over the collector's query API. See
//! [`jitgate_collector::cli`].

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use jitgate_collector::cli::{Cli, Command, Outcome, run};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // `jitgate verify` exits 1 for a broken chain, so its errors exit 2.
    let error_code = if matches!(cli.command, Command::Verify(_)) {
        2
    } else {
        1
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();
    match run(cli).await {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Broken) => ExitCode::from(1),
        Err(err) => {
            eprintln!("jitgate: {}", jitgate_collector::report(&err));
            ExitCode::from(error_code)
        }
    }
}
