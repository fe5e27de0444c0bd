//! Types and map names shared by the kernel programs (`jitgate-ebpf`) and the agent.
//!
//! Everything here is `#[repr(C)]` plain data without implicit padding (checked at compile time
//! below) so the kernel and userspace agree byte for byte. Addresses are stored as the kernel
//! hands them to `bpf_sock_addr` / `bpf_sock_ops` programs: IPv4 and IPv6 addresses in **network
//! byte order** inside `u32` words (so `u32::from_ne_bytes(ip.octets())` on the host), ports in
//! **host byte order** (converted by the kernel programs), so userspace never guesses.
//!
//! IPv4-mapped IPv6 (`::ffff:a.b.c.d`): [`MAP_PROTECTED`] keys and [`TupleKey`]s are always the
//! plain [`AF_INET`] form; [`ConnInfo::original`] keeps exactly what the client asked for (an
//! [`AF_INET6`] mapped address when an IPv6 socket connected to an IPv4 destination).
#![no_std]

/// `AF_INET`, as in `<sys/socket.h>`.
pub const AF_INET: u32 = 2;
/// `AF_INET6`, as in `<sys/socket.h>`.
pub const AF_INET6: u32 = 10;

/// Name of the hash map `SockAddr -> u8` of protected destinations, filled by the agent.
pub const MAP_PROTECTED: &str = "PROTECTED";
/// Name of the one-element array map holding [`AgentConfig`].
pub const MAP_AGENT_CONFIG: &str = "AGENT_CONFIG";
/// Name of the LRU map `socket cookie (u64) -> ConnInfo`, written by `connect4/6`.
pub const MAP_BY_COOKIE: &str = "BY_COOKIE";
/// Name of the LRU map `TupleKey -> ConnInfo`, written by `sock_ops` once the client's source
/// address is known; the agent reads it with the accepted socket's peer address.
pub const MAP_BY_TUPLE: &str = "BY_TUPLE";

/// Value stored in [`MAP_PROTECTED`] for a protected destination (the kernel only tests presence).
pub const PROTECTED_VALUE: u8 = 1;

/// Program `cgroup/connect4`: redirects IPv4 connects to protected destinations.
pub const PROG_CONNECT4: &str = "connect4";
/// Program `cgroup/connect6`: redirects IPv6 (and IPv4-mapped) connects to protected destinations.
pub const PROG_CONNECT6: &str = "connect6";
/// Program `sockops`: copies the `BY_COOKIE` entry to `BY_TUPLE` when the client's source address is known.
pub const PROG_SOCK_OPS: &str = "sock_ops";
/// Program `cgroup/getpeername4`: shows IPv4 clients their original destination.
pub const PROG_GETPEERNAME4: &str = "getpeername4";
/// Program `cgroup/getpeername6`: shows IPv6 clients their original destination.
pub const PROG_GETPEERNAME6: &str = "getpeername6";

/// Capacity of the connection maps (entries). LRU: the oldest entries fall out first.
pub const CONN_MAP_ENTRIES: u32 = 65_536;
/// Capacity of the protected-destination map (entries).
pub const PROTECTED_MAP_ENTRIES: u32 = 4_096;

/// Length of `task_struct::comm` (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// A socket address: family, address, port.
///
/// `addr` holds an IPv4 address in `addr[0]` (network byte order, other words zero) or an
/// IPv6 address in all four words (network byte order). `port` is in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SockAddr {
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u32,
    /// Address words, network byte order.
    pub addr: [u32; 4],
    /// Port, host byte order (only the low 16 bits are used).
    pub port: u32,
}

impl SockAddr {
    /// An IPv4 address: `addr_be` in network byte order, `port` in host byte order.
    pub const fn v4(addr_be: u32, port: u16) -> Self {
        Self {
            family: AF_INET,
            addr: [addr_be, 0, 0, 0],
            port: port as u32,
        }
    }

    /// An IPv6 address: `words` in network byte order, `port` in host byte order.
    pub const fn v6(words: [u32; 4], port: u16) -> Self {
        Self {
            family: AF_INET6,
            addr: words,
            port: port as u32,
        }
    }

    /// If `words` (network byte order) is an IPv4-mapped IPv6 address `::ffff:a.b.c.d`, the IPv4
    /// address `a.b.c.d` in network byte order.
    pub const fn v4_mapped(words: [u32; 4]) -> Option<u32> {
        // `::ffff:` is the bytes 00 00 ff ff in the third word, whatever the host's byte order.
        let ffff = u32::from_ne_bytes([0, 0, 0xff, 0xff]);
        if words[0] == 0 && words[1] == 0 && words[2] == ffff {
            Some(words[3])
        } else {
            None
        }
    }

    /// The IPv4-mapped IPv6 words `::ffff:a.b.c.d` for `addr_be` (network byte order).
    pub const fn map_v4(addr_be: u32) -> [u32; 4] {
        [0, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff]), addr_be]
    }
}

/// The agent's configuration as the kernel programs see it (array map [`MAP_AGENT_CONFIG`], index 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentConfig {
    /// Where IPv4 connects to protected destinations are sent (the agent's IPv4 listener).
    pub listen_v4: SockAddr,
    /// Where IPv6 connects to protected destinations are sent (the agent's IPv6 listener).
    pub listen_v6: SockAddr,
    /// The agent's process id (`tgid`); its own connects are never redirected.
    pub agent_tgid: u32,
    /// Non-zero once the agent has filled this entry; zero means "no agent configured".
    pub enabled: u32,
}

/// Facts about the process that called `connect(2)`, read by the kernel at connect time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessFacts {
    /// Thread id (`pid` in kernel terms).
    pub pid: u32,
    /// Process id (`tgid` in kernel terms) — what `/proc/<tgid>` names.
    pub tgid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// cgroup v2 id of the process (the inode number of its cgroup directory).
    pub cgroup_id: u64,
    /// `comm`, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

/// What the agent needs to know about a redirected connection.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnInfo {
    /// The destination the client asked for, before the redirect.
    pub original: SockAddr,
    /// The connecting process.
    pub process: ProcessFacts,
    /// Kernel time of the connect, `bpf_ktime_get_ns()` (nanoseconds since boot, CLOCK_MONOTONIC).
    pub connect_ns: u64,
}

/// Key of [`MAP_BY_TUPLE`]: the client's source address as the agent sees it as peer address.
///
/// Destination is always one of the agent's listeners, so the source address and port identify
/// the connection.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TupleKey {
    /// The client's local (source) address; port in host byte order.
    pub client: SockAddr,
}

// The layouts the kernel programs and the agent rely on; a change here is a map format change.
const _: () = {
    assert!(core::mem::size_of::<SockAddr>() == 24);
    assert!(core::mem::size_of::<AgentConfig>() == 56);
    assert!(core::mem::size_of::<ProcessFacts>() == 40);
    assert!(core::mem::size_of::<ConnInfo>() == 72);
    assert!(core::mem::size_of::<TupleKey>() == 24);
};

#[cfg(feature = "user")]
mod user {
    // SAFETY: all five types are `#[repr(C)]`, `Copy`, contain only integers and integer arrays,
    // and have no implicit padding (every field is 4-byte or 8-byte aligned with sizes that
    // are multiples of 8 where a u64 follows), so any bit pattern is a valid value.
    unsafe impl aya::Pod for super::SockAddr {}
    unsafe impl aya::Pod for super::AgentConfig {}
    unsafe impl aya::Pod for super::ProcessFacts {}
    unsafe impl aya::Pod for super::ConnInfo {}
    unsafe impl aya::Pod for super::TupleKey {}
}

impl ProcessFacts {
    /// The `comm` as text, up to the first NUL (lossy for non-UTF-8 bytes is the caller's job).
    pub fn comm_bytes(&self) -> &[u8] {
        let end = self.comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
        &self.comm[..end]
    }
}
