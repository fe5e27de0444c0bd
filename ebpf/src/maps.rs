//! The maps shared with the agent; names, key and value types come from `jitgate_common`.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap},
};
use jitgate_common::{
    AgentConfig, CONN_MAP_ENTRIES, ConnInfo, PROTECTED_MAP_ENTRIES, SockAddr, TupleKey,
};

/// Protected destinations (`MAP_PROTECTED`), keyed by family/address/port; filled by the agent.
#[map]
pub static PROTECTED: HashMap<SockAddr, u8> = HashMap::with_max_entries(PROTECTED_MAP_ENTRIES, 0);

/// The agent's configuration (`MAP_AGENT_CONFIG`), index 0.
#[map]
pub static AGENT_CONFIG: Array<AgentConfig> = Array::with_max_entries(1, 0);

/// Redirected connections by socket cookie (`MAP_BY_COOKIE`), written by `connect4/6`.
#[map]
pub static BY_COOKIE: LruHashMap<u64, ConnInfo> = LruHashMap::with_max_entries(CONN_MAP_ENTRIES, 0);

/// Redirected connections by client source address (`MAP_BY_TUPLE`), written by `sock_ops`.
#[map]
pub static BY_TUPLE: LruHashMap<TupleKey, ConnInfo> =
    LruHashMap::with_max_entries(CONN_MAP_ENTRIES, 0);

/// The agent's configuration, if the agent has enabled it.
#[inline(always)]
pub fn agent_config() -> Option<&'static AgentConfig> {
    AGENT_CONFIG.get(0).filter(|cfg| cfg.enabled != 0)
}

/// Whether `dest` is a protected destination.
#[inline(always)]
pub fn is_protected(dest: &SockAddr) -> bool {
    PROTECTED.get_ptr(dest).is_some()
}
