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
    /// Check and explain Cedar policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Detach the kernel programs and remove their pins (protected connects then go direct).
    Unload {
        /// Pin directory on bpffs.
        #[arg(long, default_value = "/sys/fs/bpf/jitgate")]
        pin_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy file against the shipped schema; exit status 1 when it does not.
    Check {
        /// Cedar policy file.
        file: PathBuf,
    },
    /// Show the analysis of SQL, every authorization request with its verdict and deciding
    /// policies, and the decision, for the claims of a token (its signature is not checked).
    Explain {
        /// Cedar policy file.
        #[arg(long)]
        policy: PathBuf,
        /// File holding the workload's JWT.
        #[arg(long)]
        token: PathBuf,
        /// The query string.
        #[arg(long)]
        sql: String,
        /// Target name (as in the agent's configuration).
        #[arg(long, default_value = "target")]
        target: String,
        /// Database name.
        #[arg(long, default_value = "postgres")]
        database: String,
        /// The server's search_path.
        #[arg(long, default_value = "\"$user\", public")]
        search_path: String,
        /// The upstream role (`$user`).
        #[arg(long, default_value = "jitgate")]
        user: String,
    },
    /// Print the Cedar schema policies are validated against.
    Schema,
}

fn policy_command(command: PolicyCommand) -> anyhow::Result<()> {
    use jitgate_agent::policy::{PolicyEngine, SessionFacts, engine, explain};
    match command {
        PolicyCommand::Check { file } => {
            let engine = PolicyEngine::from_file(&file)?;
            println!(
                "{}: {} policies, valid against the jitgate schema",
                file.display(),
                engine.len()
            );
        }
        PolicyCommand::Explain {
            policy,
            token,
            sql,
            target,
            database,
            search_path,
            user,
        } => {
            let engine = std::sync::Arc::new(PolicyEngine::from_file(&policy)?);
            let text = std::fs::read_to_string(&token)?;
            let claims = explain::unverified_claims(&text)?;
            let facts = SessionFacts {
                target: target.clone(),
                database,
                upstream_user: user,
                process: serde_json::json!({
                    "pid": std::process::id(), "uid": 0, "gid": 0, "comm": "explain",
                    "exe": "", "cgroup_id": "0",
                }),
            };
            let path = jitgate_agent::policy::access::split_search_path(&search_path);
            let (report, code) = explain::explain(engine, claims, facts, &path, &sql)?;
            print!("{report}");
            if code != 0 {
                std::process::exit(code);
            }
        }
        PolicyCommand::Schema => print!("{}", engine::SCHEMA_TEXT),
    }
    Ok(())
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
        Command::Policy { command } => policy_command(command),
        Command::Unload { pin_dir } => Ok(jitgate_agent::bpf::unload(&pin_dir)?),
        Command::CaInit { dir } => {
            let cert = jitgate_agent::tls::ca::LocalCa::create(&dir, "jitgate runner CA")?;
            println!("created {}", cert.display());
            Ok(())
        }
    }
}
