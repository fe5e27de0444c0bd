//! Agent-issued cancel keys and the routing of CancelRequest (PostgreSQL docs 55.2.7
//! "Canceling Requests in Progress").
//!
//! A client is given a BackendKeyData the agent drew itself, never the server's: the server's
//! key names a backend of the server and, forwarded blindly, would let a job cancel any backend
//! whose key it learned elsewhere. Each live session holds a [`Registration`] in the
//! process-wide [`CancelRegistry`]: agent key → the session's upstream address and the server's
//! own key. A CancelRequest carrying a registered key, arriving at the address of the same
//! target, is translated to the server's key and sent to that upstream ([`route`]); any other
//! key is dropped without an answer, as PostgreSQL drops it. A registration is removed when its
//! guard drops, on every path out of a session, so the key of a finished session cancels
//! nothing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use thiserror::Error;

use super::{Context, ProxyError, Target, upstream};

/// How many keys [`CancelRegistry::register`] draws before giving up. With 2³¹ process ids a
/// second collision is already unlikely; the bound only keeps the loop finite.
const MAX_DRAWS: u32 = 32;

/// A (process id, secret key) pair as BackendKeyData and CancelRequest carry it in protocol
/// 3.0: two Int32 (PostgreSQL docs 55.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendKey {
    /// The process id the client is told, in `1..=i32::MAX` like a real one.
    pub pid: u32,
    /// The secret that must accompany `pid` in a CancelRequest.
    pub secret: u32,
}

impl BackendKey {
    /// Parses a CancelRequest body after its request code: `Int32 pid, Int32 secret`. `None`
    /// for any other length (the agent only issues 3.0 keys, so no other key can be its own).
    pub fn from_cancel_body(body: &[u8]) -> Option<Self> {
        let body: &[u8; 8] = body.try_into().ok()?;
        let [p0, p1, p2, p3, s0, s1, s2, s3] = *body;
        Some(Self {
            pid: u32::from_be_bytes([p0, p1, p2, p3]),
            secret: u32::from_be_bytes([s0, s1, s2, s3]),
        })
    }

    /// A key from 8 random bytes, with the pid's top bit cleared so it reads as a positive
    /// Int32; `None` for pid 0, which no process has.
    fn from_random(bytes: [u8; 8]) -> Option<Self> {
        let key = Self::from_cancel_body(&bytes)?;
        let pid = key.pid & 0x7fff_ffff;
        (pid != 0).then_some(Self { pid, ..key })
    }
}

/// Where a cancel for one session goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelTarget {
    /// The server address the session's upstream connection went to.
    pub upstream: SocketAddr,
    /// The body of the server's BackendKeyData (its pid and secret), sent back to it as the
    /// CancelRequest body unchanged.
    pub server_key: Bytes,
}

impl CancelTarget {
    /// The server's process id, when its key has the 3.0 shape.
    fn server_pid(&self) -> Option<u32> {
        BackendKey::from_cancel_body(&self.server_key).map(|k| k.pid)
    }
}

/// Why no key could be issued.
#[derive(Debug, Error)]
pub enum CancelError {
    /// The operating system's random source failed.
    #[error("cannot draw a random cancel key: {0}")]
    Random(#[source] getrandom::Error),
    /// Every key drawn was already taken.
    #[error("no unused cancel key after {draws} draws")]
    Exhausted {
        /// How many keys were drawn.
        draws: u32,
    },
}

/// One live session's entry.
#[derive(Debug)]
struct Entry {
    secret: u32,
    target: CancelTarget,
}

/// The live sessions' keys: by agent process id (unique among live sessions), and the agent
/// process id by (upstream address, server process id), to translate the process ids in
/// NotificationResponse.
#[derive(Debug, Default)]
struct Live {
    by_pid: HashMap<u32, Entry>,
    by_server: HashMap<(SocketAddr, u32), u32>,
}

/// The agent keys of all live sessions.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    live: Mutex<Live>,
}

impl CancelRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn live(&self) -> MutexGuard<'_, Live> {
        // Nothing panics while the lock is held; a poisoned map is still consistent.
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Draws a random key whose pid no live session has (nor the server's own pid, so the two
    /// cannot be confused) and registers `target` under it until the returned guard drops.
    ///
    /// # Errors
    /// [`CancelError::Random`] when the OS random source fails; [`CancelError::Exhausted`] when
    /// every draw collided.
    pub fn register(&self, target: CancelTarget) -> Result<Registration<'_>, CancelError> {
        let server_pid = target.server_pid();
        for _ in 0..MAX_DRAWS {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).map_err(CancelError::Random)?;
            let Some(key) = BackendKey::from_random(bytes) else {
                continue;
            };
            if Some(key.pid) == server_pid {
                continue;
            }
            let mut live = self.live();
            if let std::collections::hash_map::Entry::Vacant(slot) = live.by_pid.entry(key.pid) {
                let upstream = target.upstream;
                slot.insert(Entry {
                    secret: key.secret,
                    target,
                });
                if let Some(server_pid) = server_pid {
                    live.by_server.insert((upstream, server_pid), key.pid);
                }
                return Ok(Registration {
                    registry: self,
                    key,
                });
            }
        }
        Err(CancelError::Exhausted { draws: MAX_DRAWS })
    }

    /// Where a cancel with `key` goes: `Some` only when a live session has this pid and secret.
    pub fn lookup(&self, key: BackendKey) -> Option<CancelTarget> {
        self.live()
            .by_pid
            .get(&key.pid)
            .filter(|entry| entry.secret == key.secret)
            .map(|entry| entry.target.clone())
    }

    /// Whether a live session has `pid` (whatever the secret); for the log line of a refused
    /// cancel.
    fn has_pid(&self, pid: u32) -> bool {
        self.live().by_pid.contains_key(&pid)
    }

    /// The process id the agent gave the client of the live session whose upstream backend at
    /// `upstream` has process id `server_pid`; `None` for a backend no live session of this
    /// agent uses.
    pub fn agent_pid(&self, upstream: SocketAddr, server_pid: u32) -> Option<u32> {
        self.live().by_server.get(&(upstream, server_pid)).copied()
    }
}

/// A session's key in the registry; dropping it removes the key.
#[derive(Debug)]
pub struct Registration<'a> {
    registry: &'a CancelRegistry,
    key: BackendKey,
}

impl Registration<'_> {
    /// The key the client is given in BackendKeyData.
    pub fn key(&self) -> BackendKey {
        self.key
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut live = self.registry.live();
        if let Some(entry) = live.by_pid.remove(&self.key.pid)
            && let Some(server_pid) = entry.target.server_pid()
        {
            live.by_server.remove(&(entry.target.upstream, server_pid));
        }
    }
}

/// Serves a CancelRequest whose body (after the request code) is `body`, sent to an address of
/// `dialled` (`None`: not a configured target). A registered key is sent on as the server's
/// key to that session's upstream; anything else is logged and dropped. The client is never
/// answered (PostgreSQL docs 55.2.7).
///
/// # Errors
/// [`ProxyError::UpstreamConnect`] or [`ProxyError::Upstream`] when the server cannot be
/// reached with the translated request.
pub async fn route(ctx: &Context, dialled: Option<&Target>, body: &[u8]) -> Result<(), ProxyError> {
    let Some(key) = BackendKey::from_cancel_body(body) else {
        tracing::warn!(
            len = body.len(),
            "CancelRequest with a key of another shape dropped"
        );
        return Ok(());
    };
    let Some(target) = ctx.cancels.lookup(key) else {
        if ctx.cancels.has_pid(key.pid) {
            tracing::warn!(pid = key.pid, "CancelRequest with a wrong secret dropped");
        } else {
            tracing::debug!(pid = key.pid, "CancelRequest for no live session dropped");
        }
        return Ok(());
    };
    let same_target = dialled
        .zip(ctx.target_for(target.upstream))
        .is_some_and(|(dialled, session)| std::ptr::eq(dialled, session));
    if !same_target {
        tracing::warn!(
            pid = key.pid,
            upstream = %target.upstream,
            "CancelRequest sent to another target than the session's dropped"
        );
        return Ok(());
    }
    tracing::debug!(pid = key.pid, upstream = %target.upstream, "CancelRequest forwarded");
    upstream::forward_cancel(target.upstream, &target.server_key).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(port: u16, server_pid: u32) -> CancelTarget {
        let mut key = server_pid.to_be_bytes().to_vec();
        key.extend_from_slice(&0xdead_beef_u32.to_be_bytes());
        CancelTarget {
            upstream: SocketAddr::from(([127, 0, 0, 1], port)),
            server_key: Bytes::from(key),
        }
    }

    #[test]
    fn a_registered_key_finds_its_session() {
        let registry = CancelRegistry::new();
        let registration = registry.register(target(5432, 4242)).expect("register");
        let key = registration.key();
        assert!((1..=0x7fff_ffff).contains(&key.pid), "{key:?}");
        assert_ne!(key.pid, 4242, "never the server's pid");
        assert_eq!(registry.lookup(key), Some(target(5432, 4242)));
    }

    #[test]
    fn dropping_the_registration_removes_the_key() {
        let registry = CancelRegistry::new();
        let key = {
            let registration = registry.register(target(5432, 1)).expect("register");
            registration.key()
        };
        assert_eq!(registry.lookup(key), None, "a stale key cancels nothing");
        assert!(!registry.has_pid(key.pid));
        assert_eq!(registry.agent_pid(target(5432, 1).upstream, 1), None);
    }

    #[test]
    fn server_pids_translate_to_agent_pids_per_upstream() {
        let registry = CancelRegistry::new();
        let a = registry.register(target(5432, 77)).expect("register");
        let b = registry.register(target(5433, 77)).expect("register");
        assert_eq!(
            registry.agent_pid(target(5432, 0).upstream, 77),
            Some(a.key().pid)
        );
        assert_eq!(
            registry.agent_pid(target(5433, 0).upstream, 77),
            Some(b.key().pid)
        );
        assert_eq!(registry.agent_pid(target(5432, 0).upstream, 78), None);
    }

    #[test]
    fn unknown_keys_and_wrong_secrets_find_nothing() {
        let registry = CancelRegistry::new();
        let registration = registry.register(target(5432, 7)).expect("register");
        let key = registration.key();
        let wrong_secret = BackendKey {
            secret: key.secret ^ 1,
            ..key
        };
        assert_eq!(registry.lookup(wrong_secret), None);
        assert!(registry.has_pid(key.pid));
        let unknown = BackendKey {
            pid: if key.pid == 1 { 2 } else { key.pid - 1 },
            ..key
        };
        assert_eq!(registry.lookup(unknown), None);
    }

    #[test]
    fn live_sessions_get_distinct_keys() {
        let registry = CancelRegistry::new();
        let registrations: Vec<Registration<'_>> = (0..1000)
            .map(|i| registry.register(target(i, 99)).expect("register"))
            .collect();
        let pids: std::collections::HashSet<u32> =
            registrations.iter().map(|r| r.key().pid).collect();
        assert_eq!(pids.len(), registrations.len());
        for (i, registration) in (0u16..).zip(&registrations) {
            assert_eq!(registry.lookup(registration.key()), Some(target(i, 99)));
        }
        drop(registrations);
        assert!(registry.live().by_pid.is_empty() && registry.live().by_server.is_empty());
    }

    #[test]
    fn backend_key_data_carries_the_agent_key() {
        let mut out = bytes::BytesMut::new();
        crate::pgwire::write::backend_key_data(&mut out, 12345, 0xdead_beef);
        assert_eq!(
            &out[..],
            &[b'K', 0, 0, 0, 12, 0, 0, 0x30, 0x39, 0xde, 0xad, 0xbe, 0xef]
        );
    }

    #[test]
    fn cancel_bodies_parse_only_in_the_3_0_shape() {
        let body = [0, 0, 0x30, 0x39, 0xde, 0xad, 0xbe, 0xef];
        assert_eq!(
            BackendKey::from_cancel_body(&body),
            Some(BackendKey {
                pid: 12345,
                secret: 0xdead_beef
            })
        );
        assert_eq!(BackendKey::from_cancel_body(&body[..7]), None);
        assert_eq!(BackendKey::from_cancel_body(&[0; 12]), None);
        assert_eq!(
            BackendKey::from_random([0x80, 0, 0, 0, 1, 2, 3, 4]),
            None,
            "pid 0"
        );
        assert_eq!(
            BackendKey::from_random([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1]).map(|k| k.pid),
            Some(0x7fff_ffff)
        );
    }
}
