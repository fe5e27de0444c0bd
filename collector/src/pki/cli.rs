//! `jitgate-collector ca init|issue`: create the local CA and issue server and agent
//! certificates into a directory, printing the files written.

use std::io::Write;
use std::path::PathBuf;

use super::PkiError;
use super::ca::{Ca, DEFAULT_LEAF_DAYS, SERVER_CERT_FILE, SERVER_KEY_FILE, Written, agent_files};

/// `jitgate-collector ca ...`.
#[derive(Debug, clap::Subcommand)]
pub enum CaCommand {
    /// Create a CA in DIR: ca.crt (0644) and ca.key (0600), valid ten years.
    Init {
        /// Directory of the CA (created when missing).
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue a certificate from the CA in DIR: `--server` (server.crt, server.key; EKU
    /// serverAuth, SANs from --san) or `--agent NAME` (agent-NAME.crt, agent-NAME.key; EKU
    /// clientAuth, SAN URI spiffe://jitgate/agent/NAME).
    Issue {
        /// Directory of the CA; the certificate and key are written there too, unless --out.
        #[arg(long)]
        dir: PathBuf,
        /// Where to write the certificate and key (default: the CA directory).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Issue the collector's server certificate.
        #[arg(
            long,
            conflicts_with = "agent",
            required_unless_present = "agent",
            requires = "san"
        )]
        server: bool,
        /// Server certificate names, comma-separated DNS names and IP addresses.
        #[arg(long, value_delimiter = ',')]
        san: Vec<String>,
        /// Issue a client certificate for the agent NAME.
        #[arg(long, value_name = "NAME")]
        agent: Option<String>,
        /// Validity in days.
        #[arg(long, default_value_t = DEFAULT_LEAF_DAYS)]
        days: u32,
    },
}

/// Runs `command`, printing the paths written to `out`.
///
/// # Errors
/// [`PkiError`] when the CA cannot be created or loaded, or a certificate cannot be issued or
/// written; a write to `out` failing is [`PkiError::File`] on `-`.
pub fn run(command: CaCommand, out: &mut dyn Write) -> Result<(), PkiError> {
    let written = match command {
        CaCommand::Init { dir } => Ca::init(&dir)?,
        CaCommand::Issue {
            dir,
            out: out_dir,
            server,
            san,
            agent,
            days,
        } => {
            let ca = Ca::load(&dir)?;
            let out_dir = out_dir.unwrap_or(dir);
            match agent {
                Some(name) if !server => {
                    let (cert, key) = agent_files(&name);
                    ca.issue_agent(&name, days)?.write(&out_dir, &cert, &key)?
                }
                _ => ca.issue_server(&san, days)?.write(
                    &out_dir,
                    SERVER_CERT_FILE,
                    SERVER_KEY_FILE,
                )?,
            }
        }
    };
    let Written { cert, key } = written;
    writeln!(
        out,
        "certificate {}\nkey         {}",
        cert.display(),
        key.display()
    )
    .map_err(|source| PkiError::File {
        path: PathBuf::from("-"),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn init_then_issue_writes_pem_files_with_private_keys_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_dir = dir.path().join("ca");
        let mut out = Vec::new();
        run(
            CaCommand::Init {
                dir: ca_dir.clone(),
            },
            &mut out,
        )
        .expect("init");
        run(
            CaCommand::Issue {
                dir: ca_dir.clone(),
                out: None,
                server: true,
                san: vec!["collector.example".into(), "127.0.0.1".into()],
                agent: None,
                days: 30,
            },
            &mut out,
        )
        .expect("server");
        run(
            CaCommand::Issue {
                dir: ca_dir.clone(),
                out: None,
                server: false,
                san: vec![],
                agent: Some("runner-1".into()),
                days: 30,
            },
            &mut out,
        )
        .expect("agent");
        for (file, mode) in [
            ("ca.key", 0o600),
            ("ca.crt", 0o644),
            ("server.key", 0o600),
            ("server.crt", 0o644),
            ("agent-runner-1.key", 0o600),
            ("agent-runner-1.crt", 0o644),
        ] {
            let meta = std::fs::metadata(ca_dir.join(file)).expect(file);
            assert_eq!(meta.permissions().mode() & 0o777, mode, "{file}");
        }
        // Never overwritten.
        let again = run(
            CaCommand::Init {
                dir: ca_dir.clone(),
            },
            &mut out,
        );
        assert!(matches!(again, Err(PkiError::File { .. })), "{again:?}");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.contains("agent-runner-1.crt"), "{text}");
    }
}
