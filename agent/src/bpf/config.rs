//! [`RedirectConfig`]: what the agent tells the kernel redirect at start-up.

use std::{
    net::{SocketAddr, SocketAddrV4, SocketAddrV6},
    path::PathBuf,
};

/// Where to attach, where to pin, where to send protected connects, and what is protected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectConfig {
    /// The cgroup v2 directory whose processes (and descendants) are redirected: absolute, or
    /// relative to the cgroup2 mount found in `/proc/self/mounts` (e.g. `ci.slice`).
    pub cgroup: PathBuf,
    /// Directory on bpffs for the link and map pins, e.g. `/sys/fs/bpf/jitgate`. Under
    /// `/sys/fs/bpf`, bpffs is mounted there if the host has none.
    pub pin_dir: PathBuf,
    /// The agent's IPv4 listener (a loopback address); IPv4 and IPv4-mapped connects go here.
    pub listen_v4: SocketAddrV4,
    /// The agent's IPv6 listener (e.g. `[::1]:port`). Without one, connects to protected IPv6
    /// destinations are refused with `EPERM` (fail closed).
    pub listen_v6: Option<SocketAddrV6>,
    /// Protected destinations (database address and port). IPv4-mapped IPv6 addresses are
    /// stored as IPv4 and match both forms.
    pub protected: Vec<SocketAddr>,
}
