//! The agent's configuration file (TOML): listeners, the runner cgroup, OIDC issuers, protected
//! targets with their upstream credentials and masking rules, and the Cedar policy file.
//!
//! ```toml
//! [agent]
//! listen = "127.0.0.1:15432"        # IPv4 listener protected connects are redirected to
//! listen_v6 = "[::1]:15432"         # optional IPv6 listener
//! runner_cgroup = "ci-runner"       # absolute, or relative to the cgroup2 mount
//! bpf_pin_dir = "/sys/fs/bpf/jitgate"
//! collector = "https://collector.internal:50051"  # https:// uses the [audit] TLS settings
//!
//! [identity]                        # every key optional; the defaults are shown
//! sources = ["token_file", "env_token", "github_actions", "startup_password"]  # tried in order
//! token_file_vars = ["AZURE_FEDERATED_TOKEN_FILE", "JITGATE_OIDC_TOKEN_FILE"]  # name a file
//! env_token_vars = ["JITGATE_OIDC_TOKEN"]   # hold the JWT itself (GitLab id_tokens: add yours)
//! github_audience = "api://jitgate"         # &audience= of the GitHub request; unset: GitHub's default
//! github_allowed_urls = ["https://*.actions.githubusercontent.com/"]  # ACTIONS_ID_TOKEN_REQUEST_URL prefixes
//! startup_password_requires_tls = true      # a token as password only over client TLS
//!
//! [[issuers]]
//! issuer = "https://login.microsoftonline.com/<tenant>/v2.0"
//! audiences = ["api://jitgate"]
//! jwks_file = "/etc/jitgate/entra-jwks.json"   # a JWK Set file, or:
//!
//! [[issuers]]
//! issuer = "https://token.actions.githubusercontent.com"
//! audiences = ["api://jitgate"]
//! discovery = true                  # {issuer}/.well-known/openid-configuration → jwks_uri
//! # discovery_url = "https://…"     # another document URL (Entra v1: login.microsoftonline.com)
//! jwks_refresh_min_interval_secs = 30   # unknown kid → refresh, at most this often
//!
//! [[targets]]
//! name = "shop"
//! address = "db.internal:5432"      # hostnames are resolved by the agent at start
//! # credentials = "dynamic" (the default): a role made for each session through the broker
//! broker_user = "jitgate_broker"    # a role with CREATEROLE
//! broker_password_file = "/etc/jitgate/shop-broker.password"  # root-owned, mode 0600
//! grant_roles = ["ci_reader"]       # what each session role is a member of, and nothing else
//! masks = [{ column = "public.customers.email", strategy = "partial", keep_first = 1, keep_domain = true },
//!          { column = "public.customers.card_number", strategy = "format_preserving" }]
//! mask_key_file = "/etc/jitgate/shop-mask.key"  # root-owned, mode 0600: hash, format_preserving
//! accept_token_password = false     # true: a client may send its token as the password
//!
//! [[targets]]
//! name = "legacy"
//! address = "10.0.0.7:5432"
//! credentials = "static"            # a fixed role, for servers that cannot do dynamic roles
//! upstream_user = "jitgate_ci"
//! upstream_password_file = "/etc/jitgate/legacy.password"
//!
//! [policy]
//! file = "/etc/jitgate/policy.cedar"  # Cedar policies (docs/policy.md)
//!
//! [audit]                           # every key optional; the defaults are shown
//! spool_dir = "/var/lib/jitgate/spool"  # durable audit spool (created 0700; refused when group/others have access)
//! spool_max_bytes = 1073741824      # full at this many bytes of events: new sessions refused (53400)
//! spool_sync = "normal"             # "normal": survives a killed agent; "full": fsync per commit
//! sample_rows = 5                   # result rows recorded per statement, after masking
//! collector_ca = "/etc/jitgate/collector-ca.crt"    # TLS to an https:// collector (docs/audit.md)
//! client_cert = "/etc/jitgate/agent-runner-1.crt"   # jitgate-collector ca issue --agent runner-1
//! client_key = "/etc/jitgate/agent-runner-1.key"    # root-owned, mode 0600
//! ```
//!
//! Token sources ([`crate::identity::sources`]): `token_file` reads the file a variable names
//! with the job's own credentials; `env_token` takes the JWT from a variable; `github_actions`
//! calls `ACTIONS_ID_TOKEN_REQUEST_URL` with `ACTIONS_ID_TOKEN_REQUEST_TOKEN`, only when the URL
//! is under one of `github_allowed_urls` (scheme, host — `*.` for any host below a domain —,
//! port and path prefix compared on the parsed URL; `https`, or `http` only to a literal
//! loopback address); `startup_password` asks the client for a password
//! (AuthenticationCleartextPassword) and takes it as the token, only on targets with
//! `accept_token_password = true`. Each source searches the connecting process, then its
//! ancestors inside the runner cgroup; the first source that finds something decides.
//!
//! `startup_password_requires_tls` (default true): the client↔agent hop is loopback, but a
//! token sent in clear there can be read by anything able to capture loopback traffic on the
//! runner, so by default the password is asked for only when the client connected with TLS
//! (which needs `agent.tls_ca_dir`); `false` asks on plain connections too.
//!
//! Issuers: exactly one of `jwks_file` and `discovery = true`. Discovery and JWKS URLs must be
//! `https`, or `http` to a literal loopback address (test issuers). A discovery issuer's keys
//! are fetched at start in the background (a failure does not stop the agent; its tokens are
//! refused with 28000 until keys arrive), cached, and refreshed when a token names an unknown
//! `kid`, at most once per `jwks_refresh_min_interval_secs`; when the issuer is unreachable the
//! cached keys stay in use.
//!
//! Upstream credential keys of a target ([`crate::credentials`]):
//!
//! - `credentials`: `"dynamic"` (default) or `"static"`.
//! - dynamic: `broker_user` and `broker_password_file` (both required; the file must be owned
//!   by root with mode 0600 or 0400, else the agent does not start); `grant_roles` (required,
//!   at least one role); `role_prefix` (default `"jitgate_"`, 1–31 of `a-z 0-9 _`); `max_session`
//!   (the longest a session's role may log in, seconds or `"1h"`/`"90m"`/`"1h30m"`, default 1 h,
//!   always capped by the token's `exp`); `on_end` (`"drop_owned"`, default, or
//!   `"reassign_owned"` with `reassign_to`, a role the broker is a member of); `broker_database`
//!   (database the reaper lists roles from, default `"postgres"`).
//! - static: `upstream_user` and exactly one of `upstream_password_file`, `upstream_password`.
//!
//! Keys of the other mode are rejected, as are unknown keys.

use std::net::{SocketAddrV4, SocketAddrV6};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::credentials::{self, CredentialMode, DynamicSettings, MaxSession, OnEnd};
use crate::identity::sources::TokenSource;
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
    /// A target's masking key file cannot be used.
    #[error("target {target:?}: {source}")]
    MaskKey {
        /// The target.
        target: String,
        /// Why.
        #[source]
        source: crate::masking::key::KeyError,
    },
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Host-level settings.
    pub agent: AgentSection,
    /// Where workload tokens are looked for.
    #[serde(default)]
    pub identity: IdentitySection,
    /// Trusted OIDC issuers.
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    /// Protected databases.
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    /// Cedar policies, evaluated for every statement.
    pub policy: PolicySection,
    /// Audit: the durable spool, what events carry and TLS to the collector.
    #[serde(default)]
    pub audit: AuditSection,
}

/// `[audit]`: the durable audit spool ([`crate::audit::spool`]), what audit events carry, and
/// TLS to an `https://` collector (`[agent] collector`), for audit delivery and approvals alike
/// ([`crate::collector_tls`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Directory of the spool database; created with mode 0700, refused when group or others
    /// can write to it.
    #[serde(default = "default_spool_dir")]
    pub spool_dir: PathBuf,
    /// Encoded event bytes at which the spool is full (new sessions refused with 53400).
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
    /// `"normal"` (default) or `"full"` (fsync every commit).
    #[serde(default)]
    pub spool_sync: crate::audit::spool::SpoolSync,
    /// Result rows recorded per statement (`Statement.sample`), as the client received them
    /// (after masking); 0 = none.
    #[serde(default = "default_sample_rows")]
    pub sample_rows: usize,
    /// CA certificate (PEM) the collector's server certificate must chain to; required for
    /// `https://`.
    #[serde(default)]
    pub collector_ca: Option<PathBuf>,
    /// The agent's client certificate (PEM), from `jitgate-collector ca issue --agent NAME`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// Its private key (PEM); root-owned, mode 0600 or 0400.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

impl Default for AuditSection {
    fn default() -> Self {
        Self {
            spool_dir: default_spool_dir(),
            spool_max_bytes: default_spool_max_bytes(),
            spool_sync: crate::audit::spool::SpoolSync::default(),
            sample_rows: default_sample_rows(),
            collector_ca: None,
            client_cert: None,
            client_key: None,
        }
    }
}

impl AuditSection {
    /// The spool settings these keys describe.
    pub fn spool(&self) -> crate::audit::SpoolSettings {
        crate::audit::SpoolSettings {
            dir: self.spool_dir.clone(),
            max_bytes: self.spool_max_bytes,
            sync: self.spool_sync,
        }
    }
}

fn default_spool_dir() -> PathBuf {
    PathBuf::from("/var/lib/jitgate/spool")
}

fn default_spool_max_bytes() -> u64 {
    1 << 30
}

fn default_sample_rows() -> usize {
    5
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
    /// How long a statement held for approval (`@approval("hold")`) waits for a person,
    /// seconds; then it is refused with 42501.
    #[serde(default = "default_approval_hold")]
    pub approval_hold_secs: u64,
    /// Directory of the local CA (`ca.crt`, `ca.key`; `jitgate-agent ca-init`). When set, clients
    /// asking for TLS get it, with a certificate for the protected destination's names; when
    /// absent, SSLRequest is answered 'N'.
    #[serde(default)]
    pub tls_ca_dir: Option<PathBuf>,
}

fn default_pin_dir() -> PathBuf {
    PathBuf::from("/sys/fs/bpf/jitgate")
}

fn default_approval_hold() -> u64 {
    300
}

fn default_max_connections() -> usize {
    1024
}

fn default_max_message() -> u32 {
    crate::pgwire::DEFAULT_MAX_MESSAGE
}

/// `[identity]`: where workload tokens are looked for ([`crate::identity::sources`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    /// Token sources, tried in this order.
    #[serde(default = "default_sources")]
    pub sources: Vec<TokenSource>,
    /// Environment variables naming a token file, tried in this order in each process.
    #[serde(default = "default_token_file_vars")]
    pub token_file_vars: Vec<String>,
    /// Environment variables holding a token, tried in this order in each process.
    #[serde(default = "default_env_token_vars")]
    pub env_token_vars: Vec<String>,
    /// The `audience` asked for in the GitHub Actions token request; unset: none is asked
    /// for and GitHub's default audience (the repository owner's URL) applies.
    #[serde(default)]
    pub github_audience: Option<String>,
    /// URL prefixes `ACTIONS_ID_TOKEN_REQUEST_URL` must be under to be called.
    #[serde(default = "default_github_allowed_urls")]
    pub github_allowed_urls: Vec<String>,
    /// Ask for a token as password only on client connections with TLS.
    #[serde(default = "default_true")]
    pub startup_password_requires_tls: bool,
}

impl Default for IdentitySection {
    fn default() -> Self {
        Self {
            sources: default_sources(),
            token_file_vars: default_token_file_vars(),
            env_token_vars: default_env_token_vars(),
            github_audience: None,
            github_allowed_urls: default_github_allowed_urls(),
            startup_password_requires_tls: true,
        }
    }
}

fn default_sources() -> Vec<TokenSource> {
    TokenSource::DEFAULT_ORDER.to_vec()
}

fn default_token_file_vars() -> Vec<String> {
    crate::identity::token_file::DEFAULT_VARS
        .map(str::to_owned)
        .to_vec()
}

fn default_env_token_vars() -> Vec<String> {
    crate::identity::sources::DEFAULT_ENV_TOKEN_VARS
        .map(str::to_owned)
        .to_vec()
}

fn default_github_allowed_urls() -> Vec<String> {
    crate::identity::github::DEFAULT_ALLOWED_URLS
        .map(str::to_owned)
        .to_vec()
}

fn default_true() -> bool {
    true
}

fn default_refresh_interval() -> u64 {
    30
}

/// `[[issuers]]`: an OIDC issuer whose tokens are accepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Exact `iss` claim value.
    pub issuer: String,
    /// Accepted `aud` values; a token must carry at least one.
    pub audiences: Vec<String>,
    /// JWK Set file (RFC 7517); exclusive with `discovery`.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Find the keys through OpenID Connect Discovery (`{issuer}/.well-known/openid-configuration`
    /// → `jwks_uri`).
    #[serde(default)]
    pub discovery: bool,
    /// The discovery document's URL when it is not under the issuer (Entra v1 issuers
    /// `https://sts.windows.net/{tid}/` publish theirs at
    /// `https://login.microsoftonline.com/{tid}/.well-known/openid-configuration`).
    #[serde(default)]
    pub discovery_url: Option<String>,
    /// Least time between two key fetches of a discovery issuer, seconds.
    #[serde(default = "default_refresh_interval")]
    pub jwks_refresh_min_interval_secs: u64,
}

/// `[[targets]]`: a protected PostgreSQL server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Short name used in logs and audit.
    pub name: String,
    /// `host:port`; every address the host resolves to is protected.
    pub address: String,
    /// `dynamic` (default): a role per session through the broker; `static`: `upstream_user`.
    #[serde(default)]
    pub credentials: CredentialMode,
    /// Static: the role the agent authenticates upstream as.
    #[serde(default)]
    pub upstream_user: Option<String>,
    /// Static: its password, inline (prefer `upstream_password_file`).
    #[serde(default)]
    pub upstream_password: Option<String>,
    /// Static: file holding the password (first line).
    #[serde(default)]
    pub upstream_password_file: Option<PathBuf>,
    /// Dynamic: the role that creates and drops session roles (CREATEROLE).
    #[serde(default)]
    pub broker_user: Option<String>,
    /// Dynamic: file holding its password (first line); owned by root, mode 0600 or 0400.
    #[serde(default)]
    pub broker_password_file: Option<PathBuf>,
    /// Dynamic: database the reaper lists roles from (default `postgres`).
    #[serde(default)]
    pub broker_database: Option<String>,
    /// Dynamic: roles every session role is made a member of.
    #[serde(default)]
    pub grant_roles: Vec<String>,
    /// Dynamic: start of session role names (default `jitgate_`).
    #[serde(default)]
    pub role_prefix: Option<String>,
    /// Dynamic: longest life of a session role (default 1 h; capped by the token's `exp`).
    #[serde(default)]
    pub max_session: Option<MaxSession>,
    /// Dynamic: `drop_owned` (default) or `reassign_owned` the session role's objects at its end.
    #[serde(default)]
    pub on_end: Option<OnEnd>,
    /// Dynamic, with `on_end = "reassign_owned"`: the objects' new owner.
    #[serde(default)]
    pub reassign_to: Option<String>,
    /// Columns masked in results.
    #[serde(default)]
    pub masks: Vec<MaskConfig>,
    /// The masking key of the keyed strategies (`hash`, `format_preserving`): a file owned by
    /// root, mode 0600 or stricter, of 32 to 4096 random bytes (`head -c 32 /dev/urandom`).
    #[serde(default)]
    pub mask_key_file: Option<PathBuf>,
    /// Content detectors for values of columns no mask rule names (`email`, `card_number`,
    /// `iban`, `national_id`, `jwt`, `cloud_key`, `private_key`); none by default.
    #[serde(default)]
    pub detectors: Vec<crate::masking::detect::Detector>,
    /// [`Self::detectors`] compiled when the configuration loads.
    #[serde(skip)]
    pub compiled_detectors: Option<std::sync::Arc<crate::masking::detect::Detectors>>,
    /// TLS to the server: `disable`, `prefer` (default), `require`, `verify-full`.
    #[serde(default)]
    pub upstream_tls: UpstreamTlsMode,
    /// CA certificates (PEM) that sign the server's certificate, for `verify-full`; default the
    /// public web roots.
    #[serde(default)]
    pub upstream_ca_file: Option<PathBuf>,
    /// Whether a client of this target may send its workload token as the password (source
    /// `startup_password`; over TLS only unless `[identity] startup_password_requires_tls` is
    /// false).
    #[serde(default)]
    pub accept_token_password: bool,
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

/// A target's upstream credential, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetCredential {
    /// A fixed role; its password from [`TargetConfig::password`].
    Static {
        /// `upstream_user`.
        user: String,
    },
    /// A role per session.
    Dynamic(DynamicSettings),
}

impl TargetConfig {
    fn invalid(&self, what: impl std::fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            what: format!("target {:?}: {what}", self.name),
        }
    }

    /// The credential settings, checked: the keys of the target's mode are complete and no key
    /// of the other mode is set.
    pub fn credential(&self) -> Result<TargetCredential, ConfigError> {
        let dynamic_keys = [
            ("broker_user", self.broker_user.is_some()),
            ("broker_password_file", self.broker_password_file.is_some()),
            ("broker_database", self.broker_database.is_some()),
            ("grant_roles", !self.grant_roles.is_empty()),
            ("role_prefix", self.role_prefix.is_some()),
            ("max_session", self.max_session.is_some()),
            ("on_end", self.on_end.is_some()),
            ("reassign_to", self.reassign_to.is_some()),
        ];
        let static_keys = [
            ("upstream_user", self.upstream_user.is_some()),
            ("upstream_password", self.upstream_password.is_some()),
            (
                "upstream_password_file",
                self.upstream_password_file.is_some(),
            ),
        ];
        let set = |keys: &[(&'static str, bool)]| -> Vec<&'static str> {
            keys.iter().filter(|(_, on)| *on).map(|(k, _)| *k).collect()
        };
        match self.credentials {
            CredentialMode::Static => {
                if let Some(key) = set(&dynamic_keys).first() {
                    return Err(self.invalid(format!(
                        "{key} applies to credentials = \"dynamic\" only, but this target is static"
                    )));
                }
                let user = self
                    .upstream_user
                    .clone()
                    .ok_or_else(|| self.invalid("credentials = \"static\" needs upstream_user"))?;
                Ok(TargetCredential::Static { user })
            }
            CredentialMode::Dynamic => {
                let (Some(broker_user), Some(broker_password_file)) =
                    (&self.broker_user, &self.broker_password_file)
                else {
                    return Err(self.invalid(
                        "credentials = \"dynamic\" (the default) needs broker_user and \
                         broker_password_file (a role with CREATEROLE and its root-only password \
                         file); set credentials = \"static\" to log in as upstream_user instead",
                    ));
                };
                if let Some(key) = set(&static_keys).first() {
                    return Err(self.invalid(format!(
                        "{key} applies to credentials = \"static\" only; a dynamic target logs in \
                         as a role made for each session"
                    )));
                }
                if self.grant_roles.is_empty() {
                    return Err(self.invalid(
                        "grant_roles must name at least one role for the session roles to be members of",
                    ));
                }
                let role_prefix = self
                    .role_prefix
                    .clone()
                    .unwrap_or_else(|| "jitgate_".into());
                if !credentials::valid_prefix(&role_prefix) {
                    return Err(self.invalid(format!(
                        "role_prefix {role_prefix:?} must be 1 to {} of a-z, 0-9 and _, not starting with a digit",
                        credentials::MAX_PREFIX
                    )));
                }
                let max_session = self.max_session.unwrap_or_default().0;
                if max_session.as_secs() < 10 {
                    return Err(self.invalid("max_session must be at least 10 seconds"));
                }
                let on_end = self.on_end.unwrap_or_default();
                match (on_end, &self.reassign_to) {
                    (OnEnd::ReassignOwned, None) => {
                        return Err(self.invalid("on_end = \"reassign_owned\" needs reassign_to"));
                    }
                    (OnEnd::DropOwned, Some(_)) => {
                        return Err(
                            self.invalid("reassign_to applies to on_end = \"reassign_owned\" only")
                        );
                    }
                    _ => {}
                }
                Ok(TargetCredential::Dynamic(DynamicSettings {
                    broker_user: broker_user.clone(),
                    broker_password_file: broker_password_file.clone(),
                    broker_database: self
                        .broker_database
                        .clone()
                        .unwrap_or_else(|| "postgres".into()),
                    grant_roles: self.grant_roles.clone(),
                    role_prefix,
                    max_session,
                    on_end,
                    reassign_to: self.reassign_to.clone(),
                }))
            }
        }
    }

    /// The static upstream password from `upstream_password` or `upstream_password_file`.
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

/// One masked column. Every key is checked against the strategy's: a misspelt `predicates`
/// must not quietly leave the default in force.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "toml::Table")]
pub struct MaskConfig {
    /// `schema.table.column`.
    pub column: String,
    /// How values are replaced.
    pub strategy: MaskStrategy,
    /// What happens to a value computed from this column (`lower(email)`, `email || ''`,
    /// aggregates, a whole row): `deny` (default) or `mask` ([`crate::masking::flow`]).
    pub expressions: crate::masking::flow::OnExpression,
    /// What happens to a statement whose predicates read this column (`WHERE`, `ORDER BY`,
    /// `GROUP BY`, joins): `allow` (default), `deny` or `approval`.
    pub predicates: crate::masking::flow::OnPredicate,
}

/// A `masks` entry as written, before its keys are checked ([`MaskConfig`]).
#[derive(Deserialize)]
struct RawMask {
    column: String,
    #[serde(flatten)]
    strategy: MaskStrategy,
    #[serde(default)]
    expressions: crate::masking::flow::OnExpression,
    #[serde(default)]
    predicates: crate::masking::flow::OnPredicate,
}

impl TryFrom<toml::Table> for MaskConfig {
    type Error = String;

    fn try_from(table: toml::Table) -> Result<Self, String> {
        const COMMON: [&str; 4] = ["column", "strategy", "expressions", "predicates"];
        let own: &[&str] = match table.get("strategy").and_then(toml::Value::as_str) {
            Some("redact") => &["text"],
            Some("partial") => &["keep_first", "keep_last", "keep_domain"],
            _ => &[],
        };
        if let Some(key) = table
            .keys()
            .find(|k| !COMMON.contains(&k.as_str()) && !own.contains(&k.as_str()))
        {
            let valid: Vec<&str> = COMMON.iter().chain(own).copied().collect();
            return Err(format!(
                "unknown key `{key}` in a mask{}; valid keys: {}",
                table
                    .get("column")
                    .and_then(toml::Value::as_str)
                    .map(|c| format!(" of {c:?}"))
                    .unwrap_or_default(),
                valid.join(", ")
            ));
        }
        let raw: RawMask = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_owned())?;
        Ok(Self {
            column: raw.column,
            strategy: raw.strategy,
            expressions: raw.expressions,
            predicates: raw.predicates,
        })
    }
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
        let mut config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        config.check()?;
        config.prepare_masking()?;
        Ok(config)
    }

    /// Reads each target's masking key where its masks need one, and gives it to them; compiles
    /// each target's content detectors.
    fn prepare_masking(&mut self) -> Result<(), ConfigError> {
        for target in &mut self.targets {
            target.compiled_detectors =
                crate::masking::detect::Detectors::new(&target.detectors).map(std::sync::Arc::new);
            let Some(path) = &target.mask_key_file else {
                continue;
            };
            if !target.masks.iter().any(|m| m.strategy.needs_key()) {
                continue;
            }
            let key = crate::masking::key::MaskKey::load(path).map_err(|source| {
                ConfigError::MaskKey {
                    target: target.name.clone(),
                    source,
                }
            })?;
            let key = std::sync::Arc::new(key);
            for mask in &mut target.masks {
                mask.strategy.set_key(&key);
            }
        }
        Ok(())
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
        self.check_identity()?;
        for target in &self.targets {
            if let TargetCredential::Static { .. } = target.credential()? {
                target.password()?;
            }
            for mask in &target.masks {
                if mask.column.split('.').count() != 3 {
                    return Err(ConfigError::Invalid {
                        what: format!(
                            "target {:?}: mask column {:?} must be schema.table.column",
                            target.name, mask.column
                        ),
                    });
                }
                if mask.strategy.needs_key() && target.mask_key_file.is_none() {
                    return Err(ConfigError::Invalid {
                        what: format!(
                            "target {:?}: mask column {:?} uses a keyed strategy; set \
                             mask_key_file",
                            target.name, mask.column
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

impl Config {
    /// The `[identity]` section and the issuers.
    fn check_identity(&self) -> Result<(), ConfigError> {
        let invalid = |what: String| Err(ConfigError::Invalid { what });
        if self.identity.sources.is_empty() {
            return invalid("identity.sources must name at least one source".into());
        }
        if let Err(e) = crate::identity::github::parse_allowed(&self.identity.github_allowed_urls) {
            return invalid(format!("identity.github_allowed_urls: {e}"));
        }
        for issuer in &self.issuers {
            match (&issuer.jwks_file, issuer.discovery) {
                (Some(_), false) => {}
                (None, true) => {
                    let url = issuer.discovery_url.clone().unwrap_or_else(|| {
                        crate::identity::discovery::discovery_url_of(&issuer.issuer)
                    });
                    if let Err(e) = crate::identity::http::checked_url(&url) {
                        return invalid(format!("issuer {:?}: {e}", issuer.issuer));
                    }
                }
                _ => {
                    return invalid(format!(
                        "issuer {:?}: set exactly one of jwks_file and discovery = true",
                        issuer.issuer
                    ));
                }
            }
            if issuer.discovery_url.is_some() && !issuer.discovery {
                return invalid(format!(
                    "issuer {:?}: discovery_url needs discovery = true",
                    issuer.issuer
                ));
            }
        }
        let password_source = self
            .identity
            .sources
            .contains(&TokenSource::StartupPassword);
        for target in self.targets.iter().filter(|t| t.accept_token_password) {
            if !password_source {
                return invalid(format!(
                    "target {:?} accepts a token as password, but identity.sources has no \
                     \"startup_password\"",
                    target.name
                ));
            }
            if self.identity.startup_password_requires_tls && self.agent.tls_ca_dir.is_none() {
                return invalid(format!(
                    "target {:?} accepts a token as password over TLS only \
                     (identity.startup_password_requires_tls), but agent.tls_ca_dir is not set",
                    target.name
                ));
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
broker_user = "jitgate_broker"
broker_password_file = "/etc/jitgate/broker.password"
grant_roles = ["ci_reader"]
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
                keep_last: 0,
                keep_domain: false,
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
    fn identity_defaults_and_order() {
        let config: Config = toml::from_str(EXAMPLE).expect("valid config");
        assert_eq!(config.identity.sources, TokenSource::DEFAULT_ORDER.to_vec());
        assert!(config.identity.startup_password_requires_tls);
        assert_eq!(config.identity.env_token_vars, vec!["JITGATE_OIDC_TOKEN"]);
        assert_eq!(config.issuers[0].jwks_refresh_min_interval_secs, 30);
        let custom = EXAMPLE.replace(
            "[[issuers]]",
            "[identity]\nsources = [\"env_token\", \"token_file\"]\nenv_token_vars = [\"CI_DB_TOKEN\"]\n\n[[issuers]]",
        );
        let config: Config = toml::from_str(&custom).expect("valid config");
        config.check().expect("consistent");
        assert_eq!(
            config.identity.sources,
            vec![TokenSource::EnvToken, TokenSource::TokenFile]
        );
        let unknown = EXAMPLE.replace("[[issuers]]", "[identity]\nsourcse = []\n\n[[issuers]]");
        assert!(toml::from_str::<Config>(&unknown).is_err());
    }

    #[test]
    fn issuer_key_source_is_exactly_one() {
        let discovery =
            EXAMPLE.replace("jwks_file = \"/etc/jitgate/jwks.json\"", "discovery = true");
        let config: Config = toml::from_str(&discovery).expect("parses");
        config.check().expect("discovery alone is fine");
        let both = EXAMPLE.replace(
            "jwks_file = \"/etc/jitgate/jwks.json\"",
            "jwks_file = \"/j\"\ndiscovery = true",
        );
        let config: Config = toml::from_str(&both).expect("parses");
        assert!(config.check().is_err());
        let plain_http = discovery.replace(
            "discovery = true",
            "discovery = true\ndiscovery_url = \"http://idp.example/.well-known/openid-configuration\"",
        );
        let config: Config = toml::from_str(&plain_http).expect("parses");
        assert!(config.check().is_err(), "plain http only to loopback");
    }

    #[test]
    fn token_password_needs_the_source_and_tls() {
        let accepting = EXAMPLE.replace(
            "grant_roles = [\"ci_reader\"]",
            "grant_roles = [\"ci_reader\"]\naccept_token_password = true",
        );
        assert_ne!(accepting, EXAMPLE, "the example has the line replaced");
        let config: Config = toml::from_str(&accepting).expect("parses");
        assert!(config.check().is_err(), "no tls_ca_dir");
        let with_ca = accepting.replace(
            "runner_cgroup = \"ci-runner\"",
            "runner_cgroup = \"ci-runner\"\ntls_ca_dir = \"/etc/jitgate/ca\"",
        );
        let config: Config = toml::from_str(&with_ca).expect("parses");
        config.check().expect("consistent");
        let no_source = with_ca.replace(
            "[[issuers]]",
            "[identity]\nsources = [\"token_file\"]\n\n[[issuers]]",
        );
        let config: Config = toml::from_str(&no_source).expect("parses");
        assert!(
            config.check().is_err(),
            "startup_password not among the sources"
        );
    }

    #[test]
    fn unknown_mask_option_is_rejected() {
        let bad = EXAMPLE.replace("keep_first = 1", "keep_frist = 1");
        assert!(toml::from_str::<Config>(&bad).is_err());
    }

    #[test]
    fn every_mask_key_is_checked_whatever_the_strategy() {
        let with = |mask: &str| {
            EXAMPLE.replace(
                "strategy = \"partial\", keep_first = 1",
                &format!("strategy = {mask}"),
            )
        };
        let good = with("\"null\", expressions = \"mask\", predicates = \"deny\"");
        assert_ne!(good, EXAMPLE, "the example has a partial mask to replace");
        let config: Config = toml::from_str(&good).expect("parses");
        let mask = &config.targets[0].masks[0];
        assert_eq!(mask.strategy, MaskStrategy::Null);
        assert_eq!(mask.predicates, crate::masking::flow::OnPredicate::Deny);
        for typo in [
            "\"null\", predicate = \"deny\"",
            "\"null\", text = \"x\"",
            "\"hash\", keep_first = 1",
            "\"redact\", expresions = \"mask\"",
        ] {
            let err = toml::from_str::<Config>(&with(typo)).expect_err(typo);
            assert!(err.to_string().contains("unknown key"), "{typo}: {err}");
        }
    }

    #[test]
    fn a_keyed_mask_needs_a_key_file() {
        let keyed = EXAMPLE.replace(
            "strategy = \"partial\", keep_first = 1",
            "strategy = \"hash\"",
        );
        assert_ne!(keyed, EXAMPLE, "the example has a partial mask to replace");
        let config: Config = toml::from_str(&keyed).expect("parses");
        let err = config.check().expect_err("no mask_key_file");
        assert!(err.to_string().contains("mask_key_file"), "{err}");
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

    fn target_with(keys: &str) -> Result<TargetCredential, ConfigError> {
        let text = EXAMPLE.replace(
            "broker_user = \"jitgate_broker\"\nbroker_password_file = \"/etc/jitgate/broker.password\"\ngrant_roles = [\"ci_reader\"]\n",
            keys,
        );
        let config: Config = toml::from_str(&text).expect("parses");
        config.targets[0].credential()
    }

    #[test]
    fn dynamic_is_the_default_with_documented_defaults() {
        let config: Config = toml::from_str(EXAMPLE).expect("valid config");
        let TargetCredential::Dynamic(settings) = config.targets[0].credential().expect("ok")
        else {
            panic!("dynamic expected");
        };
        assert_eq!(settings.role_prefix, "jitgate_");
        assert_eq!(settings.max_session, std::time::Duration::from_secs(3600));
        assert_eq!(settings.on_end, OnEnd::DropOwned);
        assert_eq!(settings.broker_database, "postgres");
        assert_eq!(settings.grant_roles, vec!["ci_reader".to_owned()]);
    }

    #[test]
    fn a_target_without_broker_settings_needs_static() {
        let err = target_with("upstream_user = \"ci\"\nupstream_password = \"x\"\n")
            .expect_err("no broker");
        assert!(
            err.to_string().contains("credentials = \"static\""),
            "{err}"
        );
        let ok = target_with(
            "credentials = \"static\"\nupstream_user = \"ci\"\nupstream_password = \"x\"\n",
        )
        .expect("static");
        assert_eq!(ok, TargetCredential::Static { user: "ci".into() });
        let err = target_with(
            "credentials = \"static\"\nupstream_user = \"ci\"\ngrant_roles = [\"r\"]\n",
        )
        .expect_err("mixed");
        assert!(err.to_string().contains("grant_roles"), "{err}");
    }

    #[test]
    fn dynamic_settings_are_checked() {
        let base = "broker_user = \"b\"\nbroker_password_file = \"/f\"\n";
        assert!(target_with(base).is_err(), "grant_roles required");
        let with = |extra: &str| target_with(&format!("{base}grant_roles = [\"r\"]\n{extra}"));
        assert!(with("").is_ok());
        assert!(with("on_end = \"reassign_owned\"\n").is_err());
        assert!(with("on_end = \"reassign_owned\"\nreassign_to = \"app\"\n").is_ok());
        assert!(with("reassign_to = \"app\"\n").is_err());
        assert!(with("role_prefix = \"Bad-\"\n").is_err());
        assert!(with("max_session = \"5s\"\n").is_err());
        let Ok(TargetCredential::Dynamic(s)) = with("max_session = \"1h30m\"\n") else {
            panic!("dynamic expected");
        };
        assert_eq!(s.max_session.as_secs(), 5400);
        assert!(with("upstream_user = \"ci\"\n").is_err());
    }
}
