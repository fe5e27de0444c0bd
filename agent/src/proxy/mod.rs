//! The interception proxy: for each connection the kernel redirected, find who is connecting
//! ([`startup`]), connect upstream with the target's credential ([`upstream`]), then relay
//! messages while deciding every statement and masking results ([`session`], with the queue of
//! expected responses in [`pending`]). [`listener`] accepts connections; [`cancel`] issues the
//! clients' cancel keys and routes their CancelRequests.

pub mod cancel;
pub mod listener;
mod mask_catalog;
pub mod negotiate;
pub mod params;
pub mod pending;
pub mod sample;
pub mod session;
pub mod startup;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;

use crate::audit::AuditSink;
use crate::bpf::Redirector;
use crate::config::TargetConfig;
use crate::identity::Identifier;
use crate::pgwire::WireError;
use crate::pgwire::backend::ErrorFields;
use crate::policy::{Analyzer, PolicySlot};

/// Errors of one proxied session.
#[derive(Debug, Error)]
pub enum ProxyError {
    /// The client's side of the wire failed or sent something invalid.
    #[error("client: {0}")]
    Client(#[source] WireError),
    /// The server's side of the wire failed or sent something invalid.
    #[error("upstream: {0}")]
    Upstream(#[source] WireError),
    /// The upstream server could not be reached.
    #[error("cannot connect to upstream {addr}: {source}")]
    UpstreamConnect {
        /// The server address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Upstream authentication could not be completed.
    #[error("upstream authentication failed: {detail}")]
    UpstreamAuth {
        /// What went wrong.
        detail: String,
    },
    /// The server refused the agent's startup with an ErrorResponse.
    #[error("upstream refused the connection: {}", fields.message().unwrap_or("(no message)"))]
    UpstreamRefused {
        /// The server's error fields.
        fields: ErrorFields,
    },
    /// The server reported a pinned setting changed ([`crate::policy::integrity`]).
    #[error(
        "the server reports {setting}; the session is ended because jitgate could no longer read SQL as the server does"
    )]
    PinnedSetting {
        /// `name = value`.
        setting: String,
    },
    /// The session outlived what it was allowed on: its workload token, or its grant.
    #[error("{what}; the session ends")]
    Expired {
        /// What expired, and when.
        what: String,
    },
    /// The session's own upstream role could not be made ([`crate::credentials`]).
    #[error("{0}")]
    Credentials(#[from] crate::credentials::CredentialError),
    /// The kernel maps could not be read.
    #[error("connection lookup failed: {0}")]
    Lookup(#[source] crate::bpf::BpfError),
}

/// A protected target with its addresses resolved and credential loaded.
#[derive(Clone)]
pub struct Target {
    /// Its configuration.
    pub config: TargetConfig,
    /// Every address `config.address` resolved to.
    pub addrs: Vec<SocketAddr>,
    /// How the agent logs in upstream.
    pub credential: UpstreamCredential,
    /// TLS for clients of this target (certificate for its names), when a local CA is set.
    pub client_tls: Option<Arc<rustls::ServerConfig>>,
    /// TLS to the server, unless the target disables it.
    pub upstream_tls: Option<upstream::UpstreamTls>,
}

/// A target's upstream credential, loaded.
#[derive(Clone)]
pub enum UpstreamCredential {
    /// `credentials = "static"`: a fixed role and its password.
    Static {
        /// `upstream_user`.
        user: String,
        /// Its password.
        password: String,
    },
    /// `credentials = "dynamic"`: a role per session, made by the broker.
    Dynamic(Arc<crate::credentials::Broker>),
}

/// Everything a session needs, shared by all sessions.
pub struct Context {
    /// Kernel redirect and connection records.
    pub redirector: Arc<Redirector>,
    /// Workload identity: token sources and validation.
    pub identity: Identifier,
    /// The Cedar policies in force (replaced on SIGHUP; each session keeps the set it started
    /// with).
    pub policy: PolicySlot,
    /// SQL analysis cache.
    pub analyzer: Analyzer,
    /// Protected targets.
    pub targets: Vec<Target>,
    /// Audit delivery.
    pub audit: AuditSink,
    /// The runner cgroup as a cgroup v2 path relative to the mount, e.g. `/ci-runner`.
    pub runner_cgroup: String,
    /// Largest accepted message, bytes.
    pub max_message: u32,
    /// Most client sessions served at once.
    pub max_connections: usize,
    /// One permit per client session being served.
    pub connections: Arc<tokio::sync::Semaphore>,
    /// The collector's approvals service, when a collector is configured.
    pub approvals: Option<crate::approval::ApprovalClient>,
    /// How long a held statement waits for approval.
    pub approval_hold: std::time::Duration,
    /// Result rows sampled per statement for the audit trail (`[audit] sample_rows`).
    pub sample_rows: usize,
    /// This host's name in audit events and approval requests.
    pub host_name: String,
    /// The cancel keys of the live sessions.
    pub cancels: cancel::CancelRegistry,
}

impl Context {
    /// The target `addr` belongs to (an IPv4-mapped IPv6 address counts as its IPv4 form).
    pub fn target_for(&self, addr: SocketAddr) -> Option<&Target> {
        let addr = match addr {
            SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
                Some(v4) => SocketAddr::new(v4.into(), v6.port()),
                None => addr,
            },
            v4 => v4,
        };
        self.targets.iter().find(|t| t.addrs.contains(&addr))
    }
}
