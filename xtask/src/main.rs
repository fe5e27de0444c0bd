//! `cargo xtask`: jitgate's multi-step flows (machine setup, builds, the full test run, the
//! demo). `main` only parses arguments and dispatches to one module per command.

mod bench;
mod bpf_linker;
mod build;
mod demo;
mod fuzz;
mod python;
mod setup;
mod step;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jitgate's developer and CI tasks.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

/// One task per subcommand.
#[derive(Debug, Subcommand)]
enum Task {
    /// Install every prerequisite (Debian packages, nightly rust-src, bpf-linker); idempotent.
    Setup,
    /// Build jitgate-agent, jitgate-collector and jitgate; print their paths.
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// fmt, clippy, unit tests, a bounded fuzz run (45 s per target), then the root integration
    /// tests against freshly built binaries.
    Test {
        /// Fail instead of skipping the root integration tests when not running as root.
        #[arg(long)]
        require_root: bool,
    },
    /// Run the end-to-end demo.
    Demo,
    /// Fuzz the agent's wire parsers, masking and SQL analyzer (cargo-fuzz, nightly).
    Fuzz(fuzz::Args),
    /// Benchmark direct vs agent vs PgBouncer with pgbench; record in docs/benchmarks.md.
    Bench(bench::Options),
}

fn main() -> ExitCode {
    let Cli { command } = Cli::parse();
    let result = match command {
        Task::Setup => setup::run(),
        Task::Build { release } => build::run(release),
        Task::Test { require_root } => test::run(require_root),
        Task::Demo => demo::command(),
        Task::Fuzz(args) => fuzz::run(args),
        Task::Bench(options) => bench::command(options),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The chain says what failed; a backtrace of xtask itself would not help.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
