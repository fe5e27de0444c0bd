//! The broker: one dynamic target's role-making credential and its connections. Connections go
//! through [`crate::proxy::upstream::connect`] (the target's TLS, SCRAM-SHA-256), with
//! `lock_timeout` and `statement_timeout` set so no statement of the broker waits without end;
//! a few idle ones are kept per (server, database) and reused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::task::TaskTracker;

use super::{AgentInstance, CredentialError, DynamicSettings, LiveRoles};
use crate::pgwire::backend::TransactionStatus;
use crate::proxy::ProxyError;
use crate::proxy::upstream::{self, Login, Upstream, UpstreamTls};

/// Idle broker connections kept per (server, database).
const IDLE_PER_DATABASE: usize = 4;
/// (server, database) pairs with idle connections kept; beyond, returned connections close.
const MAX_POOLED_DATABASES: usize = 32;
/// Startup settings of every broker connection: SQL is read as the broker writes it, and no
/// lock wait or statement runs long (PostgreSQL docs 20.11.2).
const BROKER_SETTINGS: [(&str, &str); 5] = [
    ("client_encoding", "UTF8"),
    ("standard_conforming_strings", "on"),
    ("lock_timeout", "5s"),
    ("statement_timeout", "15s"),
    ("application_name", "jitgate-broker"),
];

/// Rows of a simple query, as text.
pub type Rows = Vec<Vec<Option<String>>>;

/// One dynamic target's broker.
pub struct Broker {
    /// The target's name (logs, the live registry).
    pub target: String,
    /// The server the reaper lists roles on (the target's first address).
    pub addr: SocketAddr,
    /// The checked settings.
    pub settings: DynamicSettings,
    /// This agent, as recorded in role comments.
    pub agent: Arc<AgentInstance>,
    /// Roles this agent has live (shared by all brokers).
    pub live: Arc<LiveRoles>,
    password: String,
    tls: Option<UpstreamTls>,
    max_message: u32,
    idle: Mutex<HashMap<(SocketAddr, String), Vec<Upstream>>>,
    /// Background role drops, waited for at shutdown.
    pub(super) drops: TaskTracker,
}

/// What [`Broker::new`] needs.
pub struct BrokerSetup {
    /// The target's name.
    pub target: String,
    /// The target's first resolved address.
    pub addr: SocketAddr,
    /// The checked settings.
    pub settings: DynamicSettings,
    /// The broker's password (from the root-only file).
    pub password: String,
    /// TLS to the server per the target's `upstream_tls`.
    pub tls: Option<UpstreamTls>,
    /// Largest accepted protocol message, bytes.
    pub max_message: u32,
    /// This agent.
    pub agent: Arc<AgentInstance>,
    /// The agent's live roles.
    pub live: Arc<LiveRoles>,
}

impl Broker {
    /// A broker; it connects on first use.
    pub fn new(setup: BrokerSetup) -> Self {
        Self {
            target: setup.target,
            addr: setup.addr,
            settings: setup.settings,
            agent: setup.agent,
            live: setup.live,
            password: setup.password,
            tls: setup.tls,
            max_message: setup.max_message,
            idle: Mutex::new(HashMap::new()),
            drops: TaskTracker::new(),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, HashMap<(SocketAddr, String), Vec<Upstream>>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn connect(&self, addr: SocketAddr, database: &str) -> Result<Upstream, CredentialError> {
        let mut params = vec![("database", database)];
        params.extend(BROKER_SETTINGS);
        let login = Login {
            addr,
            user: &self.settings.broker_user,
            password: &self.password,
            params,
            tls: self.tls.clone(),
        };
        upstream::connect(login, self.max_message)
            .await
            .map_err(|e| CredentialError::BrokerLogin {
                user: self.settings.broker_user.clone(),
                addr,
                source: Box::new(e),
            })
    }

    /// Runs `sql` (one simple Query, possibly several statements in one implicit transaction)
    /// as the broker in `database` on `addr`. An idle connection is reused when there is one; a
    /// reused connection that turns out broken is replaced once. `what` names the work in
    /// errors.
    pub async fn query(
        &self,
        addr: SocketAddr,
        database: &str,
        sql: &str,
        what: &'static str,
    ) -> Result<Rows, CredentialError> {
        let key = (addr, database.to_owned());
        let pooled = self.idle().get_mut(&key).and_then(Vec::pop);
        let (mut conn, reused) = match pooled {
            Some(conn) => (conn, true),
            None => (self.connect(addr, database).await?, false),
        };
        let mut result = upstream::simple_query(&mut conn, sql).await;
        if reused && matches!(result, Err(ref e) if broken(e)) {
            conn = self.connect(addr, database).await?;
            result = upstream::simple_query(&mut conn, sql).await;
        }
        match result {
            Ok(rows) => {
                self.give_back(key, conn);
                Ok(rows)
            }
            Err(ProxyError::UpstreamRefused { fields }) => {
                self.give_back(key, conn);
                Err(CredentialError::Server {
                    what,
                    sqlstate: fields.sqlstate().unwrap_or("XX000").to_owned(),
                    message: fields.message().unwrap_or("(no message)").to_owned(),
                })
            }
            Err(e) => Err(CredentialError::BrokerConnection {
                what,
                source: Box::new(e),
            }),
        }
    }

    /// Keeps `conn` for reuse when it is idle and there is room.
    fn give_back(&self, key: (SocketAddr, String), conn: Upstream) {
        if conn.status != TransactionStatus::Idle {
            return;
        }
        let mut idle = self.idle();
        if !idle.contains_key(&key) && idle.len() >= MAX_POOLED_DATABASES {
            return;
        }
        let list = idle.entry(key).or_default();
        if list.len() < IDLE_PER_DATABASE {
            list.push(conn);
        }
    }

    /// Drops the live roles of this target and waits (up to `limit`) for every role drop in
    /// flight; for agent shutdown. Sessions still running lose their server connection.
    pub async fn shutdown(self: &Arc<Self>, limit: Duration) {
        for (role, database) in self.live.live_of(&self.target) {
            self.drop_role_in_background(role, database, self.addr);
        }
        self.drops.close();
        if tokio::time::timeout(limit, self.drops.wait())
            .await
            .is_err()
        {
            tracing::warn!(target = %self.target, ?limit, "session roles not all dropped at shutdown; the reaper removes them at the next start");
        }
        self.idle().clear();
    }
}

/// Whether `e` means the connection is unusable (rather than the server refusing SQL).
fn broken(e: &ProxyError) -> bool {
    matches!(
        e,
        ProxyError::Upstream(_) | ProxyError::UpstreamConnect { .. }
    )
}
