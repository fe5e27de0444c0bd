//! `jitgate-collector`: the audit collector daemon. See [`jitgate_collector::daemon`].

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use jitgate_collector::daemon::{CollectorArgs, CollectorCommand, run};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let args = CollectorArgs::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    if let Some(CollectorCommand::Ca { action }) = args.command {
        return match jitgate_collector::pki::cli::run(action, &mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("jitgate-collector: {}", jitgate_collector::report(&err));
                ExitCode::FAILURE
            }
        };
    }
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %jitgate_collector::report(&err), "collector failed");
            ExitCode::FAILURE
        }
    }
}
