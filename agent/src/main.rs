//! `jitgate-agent`: the runner-host daemon. `run` serves; `unload` detaches the kernel programs.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// jitgate runner-host agent.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the kernel programs and serve redirected connections.
    Run {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Create the runner's local CA (`ca.crt`, root-only `ca.key`) for client-side TLS.
    CaInit {
        /// Directory to create it in.
        #[arg(long, default_value = "/etc/jitgate/ca")]
        dir: PathBuf,
    },
    /// Detach the kernel programs and remove their pins (protected connects then go direct).
    Unload {
        /// Pin directory on bpffs.
        #[arg(long, default_value = "/sys/fs/bpf/jitgate")]
        pin_dir: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Args::parse().command {
        Command::Run { config } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(jitgate_agent::run::run(&config)),
        Command::Unload { pin_dir } => Ok(jitgate_agent::bpf::unload(&pin_dir)?),
        Command::CaInit { dir } => {
            let cert = jitgate_agent::tls::ca::LocalCa::create(&dir, "jitgate runner CA")?;
            println!("created {}", cert.display());
            Ok(())
        }
    }
}
