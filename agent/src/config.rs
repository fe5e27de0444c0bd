//! The agent's configuration file (TOML): listeners, the runner cgroup, OIDC issuers, protected
//! targets with their upstream credentials and masking rules, and the Cedar policy file.
//!
//! ```toml
//! [agent]
//! listen = "127.0.0.1:15432"        # IPv4 listener protected connects are redirected to
//! listen_v6 = "[::1]:15432"         # optional IPv6 listener
//! runner_cgroup = "ci-runner"       # absolute, or relative to the cgroup2 mount
//! bpf_pin_dir = "/sys/fs/bpf/jitgate"
//! collector = "http://127.0.0.1:50051"
//!
//! [[issuers]]
//! issuer = "https://login.microsoftonline.com/<tenant>/v2.0"
//! audiences = ["api://jitgate"]
//! jwks_file = "/etc/jitgate/entra-jwks.json"
//!
//! [[targets]]
//! name = "shop"
//! address = "db.internal:5432"      # hostnames are resolved by the agent at start
//! upstream_user = "jitgate_ci"
//! upstream_password_file = "/etc/jitgate/shop.password"
//! masks = [{ column = "public.customers.email", strategy = "partial", keep_last = 12 }]
//!
//! [policy]
//! file = "/etc/jitgate/policy.cedar"  # Cedar policies (docs/policy.md)
//! ```

use std::net::{SocketAddrV4, SocketAddrV6};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::masking::MaskStrategy;
use crate::tls::upstream::UpstreamTlsMode;

/// Errors reading the configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: toml::de::Error,
    },
    /// A value is syntactically fine but unusable.
    #[error("invalid config: {what}")]
    Invalid {
        /// What is wrong, naming the key.
        what: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Host-level settings.
    pub agent: AgentSection,
    /// Trusted OIDC issuers.
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    /// Protected databases.
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    /// Cedar policies, evaluated for every statement.
    pub policy: PolicySection,
}

/// `[agent]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// IPv4 loopback listener (port 0 = pick a free one at start).
    pub listen: SocketAddrV4,
    /// Optional IPv6 loopback listener.
    #[serde(default)]
    pub listen_v6: Option<SocketAddrV6>,
    /// The CI runner's cgroup v2 directory: absolute, or relative to the cgroup2 mount.
    pub runner_cgroup: PathBuf,
    /// Where the kernel programs' links and maps are pinned (on bpffs).
    #[serde(default = "default_pin_dir")]
    pub bpf_pin_dir: PathBuf,
    /// Collector gRPC endpoint, e.g. `http://127.0.0.1:50051`; absent = audit only to the log.
    #[serde(default)]
    pub collector: Option<String>,
    /// Name of this host in audit events (defaults to the kernel hostname).
    #[serde(default)]
    pub host_name: Option<String>,
    /// Largest accepted protocol message, bytes.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: u32,
    /// Most client sessions (connections the kernel redirected) served at once; more are refused
    /// with SQLSTATE 53300. With each
    /// session's buffers bounded (read buffers, [`crate::proxy::session::BACKPRESSURE`] each way
    /// and one message of at most `max_message_bytes`), this bounds the agent's memory.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Directory of the local CA (`ca.crt`, `ca.key`; `jitgate-agent ca-init`). When set, clients
    /// asking for TLS get it, with a certificate for the protected destination's names; when
    /// absent, SSLRequest is answered 'N'.
    #[serde(default)]
    pub tls_ca_dir: Option<PathBuf>,
}

fn default_pin_dir() -> PathBuf {
    PathBuf::from("/sys/fs/bpf/jitgate")
}

fn default_max_connections() -> usize {
    1024
}

fn default_max_message() -> u32 {
    crate::pgwire::DEFAULT_MAX_MESSAGE
}

/// `[[issuers]]`: an OIDC issuer whose tokens are accepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Exact `iss` claim value.
    pub issuer: String,
    /// Accepted `aud` values; a token must carry at least one.
    pub audiences: Vec<String>,
    /// JWK Set file (RFC 7517).
    pub jwks_file: PathBuf,
}

/// `[[targets]]`: a protected PostgreSQL server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Short name used in logs and audit.
    pub name: String,
    /// `host:port`; every address the host resolves to is protected.
    pub address: String,
    /// Role the agent authenticates upstream as.
    pub upstream_user: String,
    /// Its password, inline (prefer `upstream_password_file`).
    #[serde(default)]
    pub upstream_password: Option<String>,
    /// File holding the password (first line).
    #[serde(default)]
    pub upstream_password_file: Option<PathBuf>,
    /// Columns masked in results.
    #[serde(default)]
    pub masks: Vec<MaskConfig>,
    /// TLS to the server: `disable`, `prefer` (default), `require`, `verify-full`.
    #[serde(default)]
    pub upstream_tls: UpstreamTlsMode,
    /// CA certificates (PEM) that sign the server's certificate, for `verify-full`; default the
    /// public web roots.
    #[serde(default)]
    pub upstream_ca_file: Option<PathBuf>,
}

impl TargetConfig {
    /// The host part of `address` (brackets of an IPv6 literal removed).
    pub fn host(&self) -> &str {
        let host = match self.address.rfind(':') {
            Some(i) if !self.address.ends_with(']') => &self.address[..i],
            _ => &self.address,
        };
        host.trim_start_matches('[').trim_end_matches(']')
    }
}

impl TargetConfig {
    /// The upstream password from `upstream_password` or `upstream_password_file`.
    pub fn password(&self) -> Result<String, ConfigError> {
        match (&self.upstream_password, &self.upstream_password_file) {
            (Some(p), None) => Ok(p.clone()),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|s| s.lines().next().unwrap_or_default().to_owned())
                .map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                }),
            _ => Err(ConfigError::Invalid {
                what: format!(
                    "target {:?}: set exactly one of upstream_password, upstream_password_file",
                    self.name
                ),
            }),
        }
    }
}

/// One masked column. (Unknown keys are rejected by the strategy, which receives every key but
/// `column`.)
#[derive(Debug, Clone, Deserialize)]
pub struct MaskConfig {
    /// `schema.table.column`.
    pub column: String,
    /// How values are replaced.
    #[serde(flatten)]
    pub strategy: MaskStrategy,
}

/// `[policy]`: the Cedar policies every statement is authorized against.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// The policy file (Cedar policy language), validated at start against the schema the
    /// agent ships (`jitgate-agent policy schema` prints it).
    pub file: PathBuf,
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if !self.agent.listen.ip().is_loopback() {
            return Err(ConfigError::Invalid {
                what: format!(
                    "agent.listen {} must be a loopback address",
                    self.agent.listen
                ),
            });
        }
        if self.agent.max_connections == 0 {
            return Err(ConfigError::Invalid {
                what: "agent.max_connections must be at least 1".into(),
            });
        }
        for target in &self.targets {
            target.password()?;
            for mask in &target.masks {
                if mask.column.split('.').count() != 3 {
                    return Err(ConfigError::Invalid {
                        what: format!(
                            "target {:?}: mask column {:?} must be schema.table.column",
                            target.name, mask.column
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[agent]
listen = "127.0.0.1:15432"
runner_cgroup = "ci-runner"

[[issuers]]
issuer = "https://login.microsoftonline.com/t/v2.0"
audiences = ["api://jitgate"]
jwks_file = "/etc/jitgate/jwks.json"

[[targets]]
name = "shop"
address = "127.0.0.1:5432"
upstream_user = "jitgate_ci"
upstream_password = "secret"
masks = [
  { column = "public.customers.email", strategy = "partial", keep_first = 1 },
  { column = "public.customers.card_number", strategy = "redact" },
]

[policy]
file = "/etc/jitgate/policy.cedar"
"#;

    #[test]
    fn example_config_parses() {
        let config: Config = toml::from_str(EXAMPLE).expect("valid config");
        config.check().expect("consistent");
        let masks = &config.targets[0].masks;
        assert_eq!(
            masks[0].strategy,
            MaskStrategy::Partial {
                keep_first: 1,
                keep_last: 0
            }
        );
        assert_eq!(
            config.policy.file,
            PathBuf::from("/etc/jitgate/policy.cedar")
        );
        assert_eq!(
            config.agent.bpf_pin_dir,
            PathBuf::from("/sys/fs/bpf/jitgate")
        );
    }

    #[test]
    fn unknown_mask_option_is_rejected() {
        let bad = EXAMPLE.replace("keep_first = 1", "keep_frist = 1");
        assert!(toml::from_str::<Config>(&bad).is_err());
    }

    #[test]
    fn non_loopback_listener_is_rejected() {
        let bad = EXAMPLE.replace("127.0.0.1:15432", "10.0.0.1:15432");
        let config: Config = toml::from_str(&bad).expect("parses");
        assert!(config.check().is_err());
    }

    #[test]
    fn max_connections_defaults_to_1024_and_zero_is_rejected() {
        let config: Config = toml::from_str(EXAMPLE).expect("valid config");
        assert_eq!(config.agent.max_connections, 1024);
        let zero = EXAMPLE.replace(
            "runner_cgroup = \"ci-runner\"",
            "runner_cgroup = \"ci-runner\"\nmax_connections = 0",
        );
        let config: Config = toml::from_str(&zero).expect("parses");
        assert!(config.check().is_err());
    }
}
