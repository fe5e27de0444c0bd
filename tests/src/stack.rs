//! The whole jitgate path on one machine, as the demo and the end-to-end tests use it: a real
//! PostgreSQL 15 with the shop dataset, the collector, a test OIDC issuer (RSA, Entra-shaped
//! service-principal token), a runner cgroup and the agent protecting the database's real
//! address. Jobs run inside the runner cgroup with real `psql`.
//!
//! By default the target uses dynamic credentials ([`Credentials::Dynamic`]): the agent's broker
//! [`BROKER_ROLE`] (CREATEROLE, member of [`CI_ROLE`]) makes a role per session, member of
//! [`CI_ROLE`] (which owns the shop tables), and at the session's end reassigns what it created
//! to [`CI_ROLE`] and drops it. [`Credentials::Static`] logs in as [`CI_ROLE`] itself.
//!
//! Fields drop in declaration order: the agent stops (and its kernel programs are unloaded)
//! before the cgroup, the collector and the server go.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use std::os::unix::fs::PermissionsExt as _;

use anyhow::Context;
use tempfile::TempDir;

use crate::agent::AgentGuard;
use crate::cgroup::CgroupGuard;
use crate::claims::{entra_sp_claims, entra_v2_issuer};
use crate::collector::CollectorGuard;
use crate::collector_db::CollectorDb;
use crate::issuer::Issuer;
use crate::postgres::{PasswordAuth, PgServer};
use crate::process::{Bins, bins};

/// Entra tenant of the demo identity.
pub const TENANT: &str = "7f3c2a91-5d4e-4b8a-9c21-3e6f0a1b2c3d";
/// Application (client) id of the CI service principal.
pub const APP_ID: &str = "5a1e9c44-2b7d-4e1f-8a3c-6d9b0f2e4a71";
/// Object id of the CI service principal (the token's `sub` and `oid`).
pub const OBJECT_ID: &str = "c0ffee00-1234-4abc-9def-0123456789ab";
/// Audience the agent accepts.
pub const AUDIENCE: &str = "api://jitgate";
/// Owner of the shop tables: the role every session role is a member of (dynamic credentials),
/// or the role the agent logs in as (static); it can log in with SCRAM-SHA-256 for direct
/// comparisons.
pub const CI_ROLE: &str = "jitgate_ci";
/// The broker role of dynamic credentials: LOGIN CREATEROLE, member of [`CI_ROLE`].
pub const BROKER_ROLE: &str = "jitgate_broker";
/// The shop database.
pub const SHOP_DB: &str = "shop";
/// Deny rule id in the stack's config.
pub const DENY_RULE: &str = "ci-no-ddl";
/// Object id (`sub`) of a second service principal, denied the fast-path FunctionCall by rule
/// [`FASTPATH_RULE`]; the stack's own token is not.
pub const NO_FASTPATH_OBJECT_ID: &str = "fa57fa57-0000-4abc-9def-0123456789ab";
/// Id of the policy denying large-object `function_call`s to [`NO_FASTPATH_OBJECT_ID`].
pub const FASTPATH_RULE: &str = "ci-no-fastpath";

/// A running stack.
pub struct Stack {
    /// The agent.
    pub agent: AgentGuard,
    /// The CI runner's cgroup.
    pub cgroup: CgroupGuard,
    /// The collector.
    pub collector: CollectorGuard,
    /// The collector's PostgreSQL database, when [`StackOptions::collector_on_postgres`].
    pub collector_db: Option<CollectorDb>,
    /// The protected server.
    pub pg: PgServer,
    /// The test issuer.
    pub issuer: Issuer,
    /// The job's token file (an Entra-shaped service-principal token).
    pub token_file: PathBuf,
    /// Binaries under test.
    pub bins: Bins,
    /// Config, keys, token and logs.
    pub dir: TempDir,
}

/// The masks of the default stack: `customers.email` (first letter kept) and
/// `customers.card_number` (last 4 kept), as TOML inline tables.
pub const DEFAULT_MASKS: [&str; 2] = [
    r#"{ column = "public.customers.email", strategy = "partial", keep_first = 1 }"#,
    r#"{ column = "public.customers.card_number", strategy = "partial", keep_last = 4 }"#,
];

/// The target's upstream credential in the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Credentials {
    /// `credentials = "dynamic"`, `grant_roles = [CI_ROLE]`, `on_end = "reassign_owned"` to
    /// [`CI_ROLE`] (what a session creates outlives it, as with a static role).
    #[default]
    Dynamic,
    /// Dynamic with `on_end = "drop_owned"`: what a session creates goes with its role.
    DynamicDropOwned,
    /// `credentials = "static"`: the agent logs in as [`CI_ROLE`].
    Static,
    /// [`Credentials::Dynamic`] with `max_session` this many seconds (at least 10).
    DynamicMaxSession(u32),
}

impl Credentials {
    /// The target's credential keys (TOML lines) with the stack's files in `stack_dir`.
    pub fn target_keys(self, stack_dir: &Path) -> String {
        let max_session = match self {
            Self::DynamicMaxSession(secs) => secs.to_string(),
            _ => "\"1h\"".to_owned(),
        };
        let broker = format!(
            "broker_user = \"{BROKER_ROLE}\"\nbroker_password_file = \"{}\"\n\
             grant_roles = [\"{CI_ROLE}\"]\nmax_session = {max_session}\n",
            stack_dir.join("broker.password").display()
        );
        match self {
            Self::Dynamic | Self::DynamicMaxSession(_) => {
                format!("{broker}on_end = \"reassign_owned\"\nreassign_to = \"{CI_ROLE}\"\n")
            }
            Self::DynamicDropOwned => format!("{broker}on_end = \"drop_owned\"\n"),
            Self::Static => format!(
                "credentials = \"static\"\nupstream_user = \"{CI_ROLE}\"\nupstream_password_file = \"{}\"\n",
                stack_dir.join("upstream.password").display()
            ),
        }
    }
}

/// What a stack starts with beyond the binaries; [`StackOptions::default`] is the stack of the
/// demo and the end-to-end tests.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// How the upstream role's password is stored and checked.
    pub auth: PasswordAuth,
    /// The target's `masks` entries, TOML inline tables ([`DEFAULT_MASKS`] by default).
    pub masks: Vec<String>,
    /// SQL run as the superuser in the shop database once the upstream role exists and owns the
    /// shop tables, before the agent starts (e.g. extra tables for benchmarks); none by default.
    pub setup_sql: Option<String>,
    /// The target's `upstream_tls` mode (`prefer` by default).
    pub upstream_tls: String,
    /// Whether the server accepts TLS (a self-signed certificate for 127.0.0.1); off by default.
    pub server_tls: bool,
    /// The agent's `max_connections` (its default when `None`).
    pub max_connections: Option<usize>,
    /// The Cedar policies ([`stack_policy`] by default).
    pub policy: String,
    /// Keys of an `[identity]` section (TOML lines), none by default (the agent's defaults).
    pub identity: Option<String>,
    /// More `[[issuers]]` tables (whole TOML tables, header included), after the stack's own.
    pub extra_issuers: Vec<String>,
    /// The target's `accept_token_password` (off by default).
    pub accept_token_password: bool,
    /// The target's upstream credential ([`Credentials::Dynamic`] by default).
    pub credentials: Credentials,
    /// Permission bits of the broker's password file (0600 by default; the agent refuses to
    /// start when group or others may read it).
    pub broker_password_mode: u32,
    /// More keys of the agent's `[audit]` section (TOML lines), e.g. `spool_max_bytes = 4096`;
    /// none by default (the spool is `<stack dir>/spool`).
    pub audit: Option<String>,
    /// How the agent reaches the collector ([`CollectorLink::MutualTls`] by default).
    pub collector: CollectorLink,
    /// Whether the collector stores in PostgreSQL (database and role `jitgate_audit` on the
    /// stack's server, see [`CollectorDb`]) instead of a SQLite file; off by default.
    pub collector_on_postgres: bool,
    /// Whether the target has a masking key (`mask_key_file`: 32 random bytes, mode 0600, in
    /// the stack's directory) for the keyed strategies; off by default.
    pub mask_key: bool,
    /// The target's content `detectors` (names as in the configuration); none by default.
    pub detectors: Vec<String>,
}

/// How the stack's agent reaches its collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CollectorLink {
    /// Mutual TLS: the collector requires agent certificates, the agent has one.
    #[default]
    MutualTls,
    /// The collector requires agent certificates; the agent verifies the collector but has no
    /// certificate of its own (the collector refuses its events).
    NoClientCert,
    /// Plaintext gRPC on loopback, no authentication.
    Plaintext,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            auth: PasswordAuth::Scram,
            masks: DEFAULT_MASKS.map(str::to_owned).to_vec(),
            setup_sql: None,
            upstream_tls: "prefer".into(),
            server_tls: false,
            max_connections: None,
            policy: stack_policy(),
            identity: None,
            extra_issuers: Vec::new(),
            accept_token_password: false,
            credentials: Credentials::default(),
            broker_password_mode: 0o600,
            collector: CollectorLink::default(),
            audit: None,
            collector_on_postgres: false,
            mask_key: false,
            detectors: Vec::new(),
        }
    }
}

/// The agent configuration the stack runs with.
pub fn agent_config(
    stack_dir: &Path,
    pg_port: u16,
    cgroup: &Path,
    pin_dir: &Path,
    collector: &str,
) -> String {
    let masks = DEFAULT_MASKS.map(str::to_owned);
    agent_config_with_masks(
        stack_dir,
        pg_port,
        cgroup,
        pin_dir,
        collector,
        &masks,
        Credentials::default(),
    )
}

/// [`agent_config`] with the target's `masks` entries given as TOML inline tables and the
/// upstream credential `credentials`.
pub fn agent_config_with_masks(
    stack_dir: &Path,
    pg_port: u16,
    cgroup: &Path,
    pin_dir: &Path,
    collector: &str,
    masks: &[String],
    credentials: Credentials,
) -> String {
    let issuer = entra_v2_issuer(TENANT);
    let masks: String = masks.iter().map(|m| format!("  {m},\n")).collect();
    format!(
        r#"[agent]
listen = "127.0.0.1:0"
listen_v6 = "[::1]:0"
runner_cgroup = "{cgroup}"
bpf_pin_dir = "{pins}"
collector = "{collector}"
host_name = "runner-1"
tls_ca_dir = "{ca}"

[[issuers]]
issuer = "{issuer}"
audiences = ["{AUDIENCE}"]
jwks_file = "{jwks}"

[[targets]]
name = "shop"
address = "127.0.0.1:{pg_port}"
{credential_keys}upstream_tls = "prefer"
masks = [
{masks}]

[policy]
file = "{policy}"

[audit]
spool_dir = "{spool}"
"#,
        cgroup = cgroup.display(),
        pins = pin_dir.display(),
        jwks = stack_dir.join("jwks.json").display(),
        credential_keys = credentials.target_keys(stack_dir),
        ca = stack_dir.join("ca").display(),
        policy = stack_dir.join("policy.cedar").display(),
        spool = stack_dir.join("spool").display(),
    )
}

/// Id of the policy forbidding DO blocks to the stack's issuer.
pub const DO_RULE: &str = "ci-no-do";

/// The Cedar policies of the stack (written to `policy.cedar` next to the config): everything
/// is permitted, except DDL and TRUNCATE ([`DENY_RULE`]) and DO blocks ([`DO_RULE`]) for the
/// stack's issuer, and large-object functions for [`NO_FASTPATH_OBJECT_ID`] ([`FASTPATH_RULE`]).
pub fn stack_policy() -> String {
    let issuer = entra_v2_issuer(TENANT);
    format!(
        r#"@id("ci-baseline")
permit(principal, action in Jitgate::Action::"statement", resource);

@id("{DENY_RULE}")
@reason("schema changes go through the migration pipeline")
forbid(principal, action in [Jitgate::Action::"ddl", Jitgate::Action::"truncate"], resource)
when {{ principal.iss == "{issuer}" }};

@id("{DO_RULE}")
@reason("DO blocks run code jitgate cannot see into, which could run the DDL this job is denied")
forbid(principal, action == Jitgate::Action::"do", resource)
when {{ principal.iss == "{issuer}" }};

@id("{FASTPATH_RULE}")
@reason("this job has no business with large objects")
forbid(principal, action == Jitgate::Action::"function_call", resource)
when {{ principal.sub == "{NO_FASTPATH_OBJECT_ID}" && resource.category == "large_object" }};
"#
    )
}

impl Stack {
    /// Starts everything with the binaries [`bins`] finds. Needs root.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(bins())
    }

    /// Starts everything with the given binaries. Needs root.
    pub fn start_with(bins: Bins) -> anyhow::Result<Self> {
        Self::start_with_auth(bins, PasswordAuth::Scram)
    }

    /// Starts everything, with the upstream role's password stored and checked as `auth`.
    pub fn start_with_auth(bins: Bins, auth: PasswordAuth) -> anyhow::Result<Self> {
        Self::start_with_options(
            bins,
            StackOptions {
                auth,
                ..StackOptions::default()
            },
        )
    }

    /// Starts everything as `options` say. Needs root.
    pub fn start_with_options(bins: Bins, options: StackOptions) -> anyhow::Result<Self> {
        let StackOptions {
            auth,
            masks,
            setup_sql,
            upstream_tls,
            server_tls,
            max_connections,
            policy,
            identity,
            extra_issuers,
            accept_token_password,
            credentials,
            broker_password_mode,
            collector: link,
            audit,
            collector_on_postgres,
            mask_key,
            detectors,
        } = options;
        let dir = tempfile::Builder::new()
            .prefix("jitgate-stack-")
            .tempdir()?;
        let pg = PgServer::start()?;
        if server_tls {
            pg.enable_tls()?;
        }
        pg.load_shop_dataset(SHOP_DB)?;
        let password = format!("ci-{}", uuid_like());
        pg.create_role(CI_ROLE, &password, auth)?;
        pg.psql_superuser_in(
            SHOP_DB,
            &format!(
                "ALTER TABLE customers OWNER TO {CI_ROLE};\nALTER TABLE orders OWNER TO {CI_ROLE};\n\
                 ALTER SEQUENCE customers_id_seq OWNER TO {CI_ROLE};\nALTER SEQUENCE orders_id_seq OWNER TO {CI_ROLE};\n"
            ),
        )?;
        let broker_password = format!("broker-{}", uuid_like());
        pg.create_role(BROKER_ROLE, &broker_password, PasswordAuth::Scram)?;
        pg.psql_superuser(&format!(
            "ALTER ROLE {BROKER_ROLE} CREATEROLE;\nGRANT {CI_ROLE} TO {BROKER_ROLE};\n"
        ))?;
        if let Some(sql) = setup_sql {
            pg.psql_superuser_in(SHOP_DB, &sql)
                .context("running the stack's setup SQL")?;
        }
        let password_file = dir.path().join("upstream.password");
        std::fs::write(&password_file, &password)?;
        // Only root (the agent) may read the upstream credential.
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600))?;
        let broker_file = dir.path().join("broker.password");
        std::fs::write(&broker_file, &broker_password)?;
        std::fs::set_permissions(
            &broker_file,
            std::fs::Permissions::from_mode(broker_password_mode),
        )?;

        let issuer = Issuer::new_rsa(&entra_v2_issuer(TENANT), "demo-key-1")?;
        issuer.write_jwks(&dir.path().join("jwks.json"))?;
        let claims = entra_sp_claims(
            TENANT,
            APP_ID,
            OBJECT_ID,
            AUDIENCE,
            Duration::from_secs(3600),
        );
        let token_file = dir.path().join("token.jwt");
        std::fs::write(&token_file, issuer.token(&claims)?)?;

        std::fs::write(dir.path().join("policy.cedar"), policy)?;
        let collector_db = collector_on_postgres
            .then(|| CollectorDb::create(&pg, "jitgate_audit"))
            .transpose()?;
        let db_args = collector_db.as_ref().map(CollectorDb::args);
        let collector = CollectorGuard::launch(
            &bins.collector,
            db_args.as_deref(),
            &[],
            link != CollectorLink::Plaintext,
        )?;
        let cgroup = CgroupGuard::new("jitgate-runner")?;
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/jitgate-test-{}", uuid_like()));
        let config = agent_config_with_masks(
            dir.path(),
            pg.port(),
            cgroup.path(),
            &pin_dir,
            &collector.url(),
            &masks,
            credentials,
        );
        let mut config = config.replace(
            "upstream_tls = \"prefer\"",
            &format!("upstream_tls = \"{upstream_tls}\""),
        );
        if let Some(limit) = max_connections {
            config = config.replace(
                "host_name = \"runner-1\"",
                &format!("host_name = \"runner-1\"\nmax_connections = {limit}"),
            );
        }
        if let Some(identity) = identity {
            config = config.replacen(
                "[[issuers]]",
                &format!("[identity]\n{identity}\n\n[[issuers]]"),
                1,
            );
        }
        if !extra_issuers.is_empty() {
            config = config.replacen(
                "[[targets]]",
                &format!("{}\n\n[[targets]]", extra_issuers.join("\n\n")),
                1,
            );
        }
        if let Some(audit) = audit {
            config = config.replace("[audit]\n", &format!("[audit]\n{audit}\n"));
        }
        if accept_token_password {
            config = config.replace(
                "upstream_tls = \"",
                "accept_token_password = true\nupstream_tls = \"",
            );
        }
        if mask_key {
            let path = dir.path().join("mask.key");
            let mut secret = [0u8; 32];
            std::fs::File::open("/dev/urandom")?.read_exact(&mut secret)?;
            std::fs::write(&path, secret)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            config = config.replace(
                "upstream_tls = \"",
                &format!("mask_key_file = \"{}\"\nupstream_tls = \"", path.display()),
            );
        }
        if !detectors.is_empty() {
            let names: Vec<String> = detectors.iter().map(|d| format!("{d:?}")).collect();
            config = config.replace(
                "upstream_tls = \"",
                &format!("detectors = [{}]\nupstream_tls = \"", names.join(", ")),
            );
        }
        if let Some(certs) = collector.certs() {
            let keys = match link {
                CollectorLink::NoClientCert => {
                    format!("collector_ca = \"{}\"\n", certs.ca.display())
                }
                _ => certs.agent_audit_keys(),
            };
            // agent_config_with_masks always writes an [audit] section (the spool directory).
            config = config.replacen("[audit]\n", &format!("[audit]\n{keys}"), 1);
        }
        let config_path = dir.path().join("agent.toml");
        std::fs::write(&config_path, config)?;
        // The runner's local CA, made by the agent's own command as an operator would.
        let status = std::process::Command::new(&bins.agent)
            .args(["ca-init", "--dir"])
            .arg(dir.path().join("ca"))
            .stdout(Stdio::null())
            .status()
            .context("running jitgate-agent ca init")?;
        anyhow::ensure!(status.success(), "jitgate-agent ca init failed: {status}");
        let agent = AgentGuard::start(
            &bins.agent,
            &config_path,
            &pin_dir,
            &dir.path().join("agent.log"),
        )?;
        Ok(Self {
            agent,
            cgroup,
            collector,
            collector_db,
            pg,
            issuer,
            token_file,
            bins,
            dir,
        })
    }

    /// A command running `program` inside the runner cgroup, with the job's token file named by
    /// `AZURE_FEDERATED_TOKEN_FILE` when `with_token`.
    pub fn job(&self, program: &str, with_token: bool) -> Command {
        let mut command = self.cgroup.command(program);
        // Nothing of the test runner's own environment may identify the job.
        for var in [
            "AZURE_FEDERATED_TOKEN_FILE",
            "JITGATE_OIDC_TOKEN_FILE",
            "JITGATE_OIDC_TOKEN",
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
            "PGPASSWORD",
        ] {
            command.env_remove(var);
        }
        if with_token {
            command.env("AZURE_FEDERATED_TOKEN_FILE", &self.token_file);
        }
        command
    }

    /// `psql` arguments that reach the shop database at its real address, quietly and without
    /// ever prompting for a password: `-X -w -A -t -h 127.0.0.1 -p PORT -d shop`.
    pub fn psql_args(&self) -> Vec<String> {
        let port = self.pg.port().to_string();
        [
            "-X",
            "-w",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-d",
            SHOP_DB,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// `psql` with [`Stack::psql_args`], run as a job in the runner cgroup.
    pub fn psql_command(&self, with_token: bool) -> Command {
        let mut command = self.job("psql", with_token);
        command
            .args(self.psql_args())
            .env("PGCONNECT_TIMEOUT", "10");
        command
    }

    /// Runs `psql -c sql` against the database's real address from inside the runner cgroup,
    /// with no password, stopping at the first error.
    pub fn psql(&self, sql: &str, with_token: bool) -> anyhow::Result<Output> {
        let mut command = self.psql_command(with_token);
        command
            .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
            .stdin(Stdio::null());
        command
            .output()
            .context("running psql in the runner cgroup")
    }

    /// The upstream role's password, for clients that connect directly (outside the runner
    /// cgroup) to compare with what the agent does; the agent's own copy is `upstream.password`.
    pub fn upstream_password(&self) -> anyhow::Result<String> {
        let path = self.dir.path().join("upstream.password");
        let password = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(password.trim().to_owned())
    }

    /// Kills the agent with SIGKILL, as a crash would (its kernel programs stay attached, its
    /// session roles stay on the server), then starts a new agent on the same configuration,
    /// logging to `agent-restarted.log`.
    pub fn restart_agent_after_kill(&mut self) -> anyhow::Result<()> {
        let log = self.dir.path().join("agent-restarted.log");
        self.agent.restart(&log)
    }

    /// The agent's configuration file.
    pub fn agent_config_path(&self) -> PathBuf {
        self.dir.path().join("agent.toml")
    }

    /// The Cedar policy file the agent reads (at start and on SIGHUP).
    pub fn policy_path(&self) -> PathBuf {
        self.dir.path().join("policy.cedar")
    }

    /// Runs the `jitgate` CLI against the stack's collector.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.collector
            .cli(&self.bins.jitgate_cli)
            .args(args)
            .output()
            .context("running jitgate")
    }
}

/// A short unique token for names (pid + time).
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{}-{nanos:x}", std::process::id())
}
