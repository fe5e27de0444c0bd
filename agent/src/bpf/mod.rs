//! The kernel redirect: loads the `jitgate-ebpf` programs, attaches them to the CI jobs'
//! cgroup and answers "who is this connection?" for the proxy.
//!
//! `connect4/6` rewrite connects to protected destinations to the agent's listener and record the
//! original destination and process facts; `sock_ops` files that record under the client's
//! source address, which [`Redirector::lookup`] reads with the accepted socket's peer address;
//! `getpeername4/6` show the client its original destination. Links and maps are pinned under
//! [`RedirectConfig::pin_dir`], so when the agent dies the programs stay attached and protected
//! connects are refused (nothing listens) instead of bypassing the agent; [`unload`] is the
//! operator's way out.
//!
//! Byte orders follow `jitgate_common`: addresses in network order, ports in host order; use
//! [`SockAddrExt`] to convert.

mod addr;
mod config;
mod error;
mod mounts;
mod pins;
mod programs;

use std::{
    fs::{self, File},
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, Map, MapData, MapError},
};
use jitgate_common::{
    AgentConfig, ConnInfo, MAP_AGENT_CONFIG, MAP_BY_COOKIE, MAP_BY_TUPLE, MAP_PROTECTED,
    PROTECTED_VALUE, SockAddr, TupleKey,
};

pub use self::{
    addr::SockAddrExt,
    config::RedirectConfig,
    error::BpfError,
    mounts::{BPFFS_MOUNT, cgroup2_mount},
    pins::unload,
};

/// The kernel object built by `build.rs` (empty when built without bpf-linker).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/jitgate"));

/// The loaded and attached redirect. Cheap to share (`Arc<Redirector>`); dropping it leaves
/// the programs attached through their pins (see the module docs).
pub struct Redirector {
    /// The cgroup the programs are attached to (absolute).
    cgroup: PathBuf,
    /// `BY_TUPLE`: client source address -> connection record; a mutex because records are
    /// removed when taken.
    by_tuple: Mutex<HashMap<MapData, TupleKey, ConnInfo>>,
    /// `PROTECTED`: protected destinations; a mutex because updates need `&mut`.
    protected: Mutex<HashMap<MapData, SockAddr, u8>>,
}

impl Redirector {
    /// Mounts bpffs if needed, loads the programs, fills `PROTECTED` and `AGENT_CONFIG` (with
    /// this process as the agent, whose own connects are never redirected), attaches all five
    /// programs to `cfg.cgroup` and pins links and maps under `cfg.pin_dir`, replacing the pins
    /// of a previous instance.
    ///
    /// # Errors
    /// [`BpfError::MissingPrograms`] for an agent built without its kernel object; otherwise
    /// the variant naming the step that failed (mount, cgroup, load or verifier, map, attach,
    /// pin). On error nothing of this call stays attached, but pins replaced before the
    /// failing step are not restored.
    pub fn load(cfg: &RedirectConfig) -> Result<Self, BpfError> {
        let RedirectConfig {
            cgroup,
            pin_dir,
            listen_v4,
            listen_v6,
            protected,
        } = cfg;
        if OBJECT.is_empty() {
            return Err(BpfError::MissingPrograms);
        }
        let cgroup = if cgroup.is_absolute() {
            cgroup.clone()
        } else {
            cgroup2_mount()?.join(cgroup)
        };
        let cgroup_dir = File::open(&cgroup).map_err(|source| BpfError::Io {
            action: "opening cgroup",
            path: cgroup.clone(),
            source,
        })?;
        mounts::ensure_bpffs(pin_dir)?;
        fs::create_dir_all(pin_dir).map_err(|source| BpfError::Io {
            action: "creating pin directory",
            path: pin_dir.clone(),
            source,
        })?;

        let mut ebpf = EbpfLoader::new()
            .load(OBJECT)
            .map_err(|source| BpfError::Load { source })?;

        let mut protected_map: HashMap<MapData, SockAddr, u8> =
            take_map(&mut ebpf, MAP_PROTECTED, pin_dir)?;
        for dest in protected {
            insert_protected(&mut protected_map, *dest)?;
        }
        let mut config_map: Array<MapData, AgentConfig> =
            take_map(&mut ebpf, MAP_AGENT_CONFIG, pin_dir)?;
        let agent = AgentConfig {
            listen_v4: SockAddr::from_std((*listen_v4).into()),
            listen_v6: listen_v6.map_or_else(SockAddr::default, |v6| SockAddr::from_std(v6.into())),
            agent_tgid: std::process::id(),
            enabled: 1,
        };
        config_map
            .set(0, agent, 0)
            .map_err(map_error("writing", MAP_AGENT_CONFIG))?;
        let by_cookie: HashMap<MapData, u64, ConnInfo> =
            take_map(&mut ebpf, MAP_BY_COOKIE, pin_dir)?;
        let by_tuple = take_map(&mut ebpf, MAP_BY_TUPLE, pin_dir)?;

        // The programs refer to the maps by file descriptor until they are loaded, so the maps
        // above stay open across this call.
        programs::attach_and_pin(&mut ebpf, &cgroup_dir, pin_dir)?;
        drop((config_map, by_cookie));

        Ok(Self {
            cgroup,
            by_tuple: Mutex::new(by_tuple),
            protected: Mutex::new(protected_map),
        })
    }

    /// Takes the record of a redirected connection, by the accepted socket's peer address (the
    /// client's source address). `None` for a connection the kernel did not redirect (or whose
    /// record the LRU map has already evicted): the agent must refuse it.
    ///
    /// The record is removed as it is read, so each redirected connect is claimed by exactly one
    /// accepted connection: a later connection that reuses the same source address and port
    /// straight to the agent's listener (not redirected) finds nothing instead of inheriting the
    /// earlier process's identity.
    ///
    /// # Errors
    /// [`BpfError::Map`] if the map lookup fails for another reason than a missing key.
    pub fn lookup(&self, peer: SocketAddr) -> Result<Option<ConnInfo>, BpfError> {
        let key = TupleKey {
            client: SockAddr::key_from_std(peer),
        };
        let mut map = self.by_tuple.lock().unwrap_or_else(PoisonError::into_inner);
        let info = match map.get(&key, 0) {
            Ok(info) => info,
            Err(MapError::KeyNotFound) => return Ok(None),
            Err(source) => return Err(map_error("reading", MAP_BY_TUPLE)(source)),
        };
        match map.remove(&key) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(Some(info)),
            Err(source) => Err(map_error("removing", MAP_BY_TUPLE)(source)),
        }
    }

    /// Adds a protected destination; connects to it from the cgroup are redirected from now on.
    ///
    /// # Errors
    /// [`BpfError::Map`] if the map is full (`PROTECTED_MAP_ENTRIES`) or the update fails.
    pub fn protect(&self, dest: SocketAddr) -> Result<(), BpfError> {
        // A poisoned lock only means another thread panicked mid-call; the map has no
        // userspace invariant to protect.
        let mut map = self
            .protected
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        insert_protected(&mut map, dest)
    }

    /// The cgroup the programs are attached to (absolute path).
    pub fn cgroup_path(&self) -> &Path {
        &self.cgroup
    }
}

/// Takes map `name` out of the object, pins it under `pin_dir` and gives it its typed form.
fn take_map<T>(ebpf: &mut Ebpf, name: &'static str, pin_dir: &Path) -> Result<T, BpfError>
where
    T: TryFrom<Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(BpfError::MissingMap { name })?;
    pins::pin_map(pin_dir, name, &map)?;
    T::try_from(map).map_err(map_error("opening", name))
}

fn insert_protected(
    map: &mut HashMap<MapData, SockAddr, u8>,
    dest: SocketAddr,
) -> Result<(), BpfError> {
    map.insert(SockAddr::key_from_std(dest), PROTECTED_VALUE, 0)
        .map_err(map_error("writing", MAP_PROTECTED))
}

fn map_error(action: &'static str, name: &'static str) -> impl FnOnce(MapError) -> BpfError {
    move |source| BpfError::Map {
        action,
        name,
        source,
    }
}

// The proxy shares one `Redirector` between its per-connection tasks.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Redirector>();
};
