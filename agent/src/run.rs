//! `jitgate-agent run`: load the configuration, resolve targets and load their credentials,
//! bind the loopback listeners, load and attach the kernel programs, start the session-role
//! reaper, then serve until SIGINT/SIGTERM (and drop the live session roles); SIGHUP reads the
//! policy file again ([`crate::lifecycle`]). The kernel programs stay
//! attached (pinned) after the agent exits, so protected destinations fail closed while it is
//! down; `jitgate-agent unload` removes them.

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::net::TcpListener;

use crate::audit::AuditSink;
use crate::bpf::{RedirectConfig, Redirector};
use crate::config::{Config, TargetCredential};
use crate::credentials::broker::BrokerSetup;
use crate::credentials::{self, AgentInstance, Broker, LiveRoles, reaper};
use crate::identity::{Identifier, Validator, http::HttpClient};
use crate::lifecycle::Lifecycle;
use crate::policy::{Analyzer, PolicyEngine, PolicySlot};
use crate::proxy::cancel::CancelRegistry;
use crate::proxy::upstream::UpstreamTls;
use crate::proxy::{Context, Target, UpstreamCredential};
use crate::tls::{self, ca, ca::LocalCa, upstream::UpstreamTlsMode};
use rustls::pki_types::ServerName;

/// How long a stopping agent tries to deliver what is still in its audit spool.
const SHUTDOWN_FLUSH_LIMIT: Duration = Duration::from_secs(10);

/// How long a stopping agent waits for its live session roles to be dropped.
const SHUTDOWN_DROP_LIMIT: Duration = Duration::from_secs(10);

/// Resolves every target's address (hostnames through the system resolver), prepares its TLS
/// on both sides and loads its upstream credential (a dynamic target's broker password file must
/// be root's alone: [`credentials::secret::read_root_only`]).
fn resolve_targets(config: &Config, agent: &Arc<AgentInstance>) -> anyhow::Result<Vec<Target>> {
    let live = Arc::new(LiveRoles::default());
    let ca = match &config.agent.tls_ca_dir {
        Some(dir) => Some(
            LocalCa::load(&dir.join(ca::CA_CERT_FILE), &dir.join(ca::CA_KEY_FILE))
                .with_context(|| format!("loading the local CA from {}", dir.display()))?,
        ),
        None => None,
    };
    config
        .targets
        .iter()
        .map(|t| {
            let addrs: Vec<SocketAddr> = t
                .address
                .to_socket_addrs()
                .with_context(|| format!("resolving target {} address {}", t.name, t.address))?
                .collect();
            if addrs.is_empty() {
                bail!(
                    "target {} address {} resolves to nothing",
                    t.name,
                    t.address
                );
            }
            let mut names = vec![t.host().to_owned()];
            names.extend(addrs.iter().map(|a| a.ip().to_string()));
            let client_tls = match &ca {
                Some(ca) => Some(tls::server::config_for(ca, &names)?),
                None => None,
            };
            let upstream_tls =
                tls::upstream::client_config(t.upstream_tls, t.upstream_ca_file.as_deref())?
                    .map(|config| -> anyhow::Result<UpstreamTls> {
                        Ok(UpstreamTls {
                            config,
                            server_name: ServerName::try_from(t.host().to_owned())
                                .with_context(|| format!("target {} host {}", t.name, t.host()))?,
                            optional: t.upstream_tls == UpstreamTlsMode::Prefer,
                        })
                    })
                    .transpose()?;
            let credential = match t.credential()? {
                TargetCredential::Static { user } => UpstreamCredential::Static {
                    user,
                    password: t.password()?,
                },
                TargetCredential::Dynamic(settings) => {
                    let password =
                        credentials::secret::read_root_only(&settings.broker_password_file)
                            .with_context(|| format!("target {}", t.name))?;
                    UpstreamCredential::Dynamic(Arc::new(Broker::new(BrokerSetup {
                        target: t.name.clone(),
                        addr: addrs[0],
                        settings,
                        password,
                        tls: upstream_tls.clone(),
                        max_message: config.agent.max_message_bytes,
                        agent: agent.clone(),
                        live: live.clone(),
                    })))
                }
            };
            Ok(Target {
                config: t.clone(),
                addrs: with_local_aliases(addrs),
                credential,
                client_tls,
                upstream_tls,
            })
        })
        .collect()
}

/// A server on this host is also reached through the unspecified address (`connect` to
/// `0.0.0.0:port` or `[::]:port` goes to the local host), so those are protected too.
fn with_local_aliases(mut addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let local: Vec<SocketAddr> = addrs
        .iter()
        .filter(|a| a.ip().is_loopback())
        .flat_map(|a| {
            [
                SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), a.port()),
                SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), a.port()),
            ]
        })
        .collect();
    for alias in local {
        if !addrs.contains(&alias) {
            addrs.push(alias);
        }
    }
    addrs
}

/// Runs the agent with the configuration file at `path`.
pub async fn run(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let host = config.agent.host_name.clone().unwrap_or_else(hostname);
    let agent = Arc::new(AgentInstance::current(&host));
    let targets = resolve_targets(&config, &agent)?;
    let brokers: Vec<Arc<Broker>> = targets
        .iter()
        .filter_map(|t| match &t.credential {
            UpstreamCredential::Dynamic(broker) => Some(broker.clone()),
            UpstreamCredential::Static { .. } => None,
        })
        .collect();
    let http = HttpClient::new()
        .map_err(|e| anyhow::anyhow!("building the HTTP client for identity: {e}"))?;
    let validator = Validator::from_config(&config.issuers, &http)?;
    let policy = Arc::new(PolicyEngine::from_file(&config.policy.file)?);
    tracing::info!(file = %config.policy.file.display(), policies = policy.len(), "policies loaded");

    let v4 = TcpListener::bind(config.agent.listen)
        .await
        .with_context(|| format!("binding {}", config.agent.listen))?;
    let listen_v4 = match v4.local_addr()? {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(a) => bail!("IPv4 listener bound to {a}"),
    };
    warn_if_unprivileged(listen_v4.port());
    let mut listeners = vec![v4];
    let mut listen_v6 = None;
    if let Some(addr) = config.agent.listen_v6 {
        // Same port as IPv4 when asked for port 0, so one number describes the agent.
        let addr = if addr.port() == 0 {
            std::net::SocketAddrV6::new(*addr.ip(), listen_v4.port(), 0, 0)
        } else {
            addr
        };
        let v6 = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        if let SocketAddr::V6(a) = v6.local_addr()? {
            listen_v6 = Some(a);
        }
        listeners.push(v6);
    }

    let protected: Vec<SocketAddr> = targets.iter().flat_map(|t| t.addrs.clone()).collect();
    let redirect = RedirectConfig {
        cgroup: config.agent.runner_cgroup.clone(),
        pin_dir: config.agent.bpf_pin_dir.clone(),
        listen_v4,
        listen_v6,
        protected,
    };
    let redirector = Redirector::load(&redirect)?;
    let mount = crate::bpf::cgroup2_mount()?;
    let runner_cgroup = format!(
        "/{}",
        redirector
            .cgroup_path()
            .strip_prefix(&mount)
            .unwrap_or(redirector.cgroup_path())
            .display()
    );

    let identity = Identifier::new(
        &config.identity,
        validator,
        http,
        runner_cgroup.clone(),
        mount.clone(),
    )?;
    // Discovery issuers' first key fetch, in the background: the agent starts either way.
    identity.validator().prefetch();

    let collector_tls =
        crate::collector_tls::from_config(config.agent.collector.as_deref(), &config.audit)?;
    let audit = AuditSink::open(
        &config.audit.spool(),
        config.agent.collector.clone(),
        collector_tls.as_ref(),
        host.clone(),
    )
    .with_context(|| "opening the audit spool")?;
    let lifecycle = Lifecycle::start(&audit, path, &config.policy.file);
    tracing::info!(spool = %config.audit.spool_dir.display(), spooled = audit.found_at_start(),
        run = %lifecycle.session_id(), "audit spool open");
    tokio::spawn(lifecycle.clone().watch_overflow(audit.clone()));
    // Session roles a crashed agent left behind go first, then expired ones every minute.
    let reaper = (!brokers.is_empty()).then(|| tokio::spawn(reaper::run(brokers.clone())));
    let approvals = config
        .agent
        .collector
        .as_deref()
        .map(|url| crate::approval::ApprovalClient::with_tls(url, collector_tls.as_ref()))
        .transpose()?;
    let ctx = Arc::new(Context {
        approvals,
        approval_hold: Duration::from_secs(config.agent.approval_hold_secs),
        host_name: host,
        sample_rows: config.audit.sample_rows,
        redirector: Arc::new(redirector),
        identity,
        policy: PolicySlot::new(policy),
        analyzer: Analyzer::default(),
        targets,
        audit: audit.clone(),
        runner_cgroup,
        max_message: config.agent.max_message_bytes,
        max_connections: config.agent.max_connections,
        connections: Arc::new(tokio::sync::Semaphore::new(config.agent.max_connections)),
        cancels: CancelRegistry::new(),
    });
    tracing::info!(%listen_v4, ?listen_v6, cgroup = %ctx.runner_cgroup, "agent ready");
    // One line on stdout for supervisors and test harnesses.
    println!("jitgate-agent ready on {listen_v4}");

    // Registered before "ready", so a SIGHUP from then on reloads rather than kills.
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let reloads = tokio::spawn(reload_on_hangup(hangup, lifecycle.clone(), ctx.clone()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let signals = async move {
        let _ = stop_tx.send(shutdown_signal().await);
    };
    crate::proxy::listener::accept_loop(ctx.clone(), listeners, signals).await;
    reloads.abort();
    let reason = stop_rx.await.unwrap_or("shutdown");
    let open = ctx
        .max_connections
        .saturating_sub(ctx.connections.available_permits());
    lifecycle.stopped(reason, open as u64).await;
    if let Some(reaper) = reaper {
        reaper.abort();
    }
    for broker in &brokers {
        broker.shutdown(SHUTDOWN_DROP_LIMIT).await;
    }
    let left = audit.flush(SHUTDOWN_FLUSH_LIMIT).await;
    if left > 0 {
        tracing::warn!(
            spooled = left,
            "audit events not acknowledged at shutdown; they stay in the spool for the next run"
        );
    }
    tracing::info!("agent stopped; kernel programs stay attached (fail closed)");
    Ok(())
}

/// While the agent is down its kernel programs keep sending protected connects to its port, so
/// any local user able to bind that port could pose as the database. Ports below
/// `net.ipv4.ip_unprivileged_port_start` can only be bound with CAP_NET_BIND_SERVICE.
fn warn_if_unprivileged(port: u16) {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .unwrap_or(1024);
    if port >= start {
        tracing::warn!(
            port,
            unprivileged_from = start,
            "agent listener port can be bound by any user while the agent is down; \
             use a port below ip_unprivileged_port_start in production"
        );
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".into())
}

/// Reads the policy file again on every SIGHUP.
async fn reload_on_hangup(
    mut hangup: tokio::signal::unix::Signal,
    lifecycle: Arc<Lifecycle>,
    ctx: Arc<Context>,
) {
    while hangup.recv().await.is_some() {
        lifecycle.reload_policy(&ctx.policy);
    }
}

/// Waits for SIGTERM or SIGINT; returns which.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, run until killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
