//! `cgroup/connect4` and `cgroup/connect6`: send connects to protected destinations to the agent.
//!
//! A connect is left alone when the agent is not configured, when the caller is the agent itself,
//! when the socket is not a stream socket (the PostgreSQL wire is TCP only) or when the
//! destination is not in `PROTECTED`. Otherwise the original destination and the caller's facts
//! are recorded in `BY_COOKIE` and the destination is rewritten to the agent's listener. If the
//! record cannot be written the connect is redirected anyway: the agent refuses connections it
//! cannot identify, so nothing bypasses it (fail closed).

use aya_ebpf::{
    EbpfContext as _,
    bindings::bpf_sock_addr,
    helpers::generated::{bpf_get_socket_cookie, bpf_ktime_get_ns},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use jitgate_common::{AF_INET6, AgentConfig, ConnInfo, SockAddr};
use jitgate_ebpf::{port_from_user, port_to_user};

use crate::{
    facts,
    maps::{BY_COOKIE, agent_config, is_protected},
};

/// Verdict: let the (possibly rewritten) connect proceed.
const ALLOW: i32 = 1;
/// Verdict: fail the connect with `EPERM`.
const DENY: i32 = 0;
/// `SOCK_STREAM`, as in `<sys/socket.h>`.
const SOCK_STREAM: u32 = 1;

/// Why a connect to a protected destination cannot be redirected; the wrapper denies it.
enum Refused {
    /// An IPv6 destination is protected but the agent has no IPv6 listener.
    NoIpv6Listener,
}

/// Redirects IPv4 connects to protected destinations to the agent's IPv4 listener.
#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    match try_connect4(&ctx) {
        Ok(verdict) => verdict,
        Err(Refused::NoIpv6Listener) => DENY,
    }
}

/// Redirects IPv6 connects to the agent's IPv6 listener, and IPv4-mapped ones
/// (`::ffff:a.b.c.d`) to the IPv4 listener in mapped form; denies protected IPv6 destinations
/// when the agent has no IPv6 listener.
#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    match try_connect6(&ctx) {
        Ok(verdict) => verdict,
        Err(Refused::NoIpv6Listener) => DENY,
    }
}

fn try_connect4(ctx: &SockAddrContext) -> Result<i32, Refused> {
    let sa = ctx.sock_addr;
    let Some(cfg) = redirect_config(sa) else {
        return Ok(ALLOW);
    };
    // SAFETY: `sa` is the program's context; 4-byte reads and writes of these fields are allowed.
    let dest = unsafe { SockAddr::v4((*sa).user_ip4, port_from_user((*sa).user_port)) };
    if !is_protected(&dest) {
        return Ok(ALLOW);
    }
    record(ctx, dest);
    // SAFETY: as above.
    unsafe {
        (*sa).user_ip4 = cfg.listen_v4.addr[0];
        (*sa).user_port = port_to_user(cfg.listen_v4.port);
    }
    Ok(ALLOW)
}

fn try_connect6(ctx: &SockAddrContext) -> Result<i32, Refused> {
    let sa = ctx.sock_addr;
    let Some(cfg) = redirect_config(sa) else {
        return Ok(ALLOW);
    };
    let words = read_user_ip6(sa);
    // SAFETY: `sa` is the program's context; a 4-byte read of `user_port` is allowed.
    let port = port_from_user(unsafe { (*sa).user_port });
    let original = SockAddr::v6(words, port);
    let target = match SockAddr::v4_mapped(words) {
        Some(v4) => {
            if !is_protected(&SockAddr::v4(v4, port)) {
                return Ok(ALLOW);
            }
            SockAddr::v6(
                SockAddr::map_v4(cfg.listen_v4.addr[0]),
                cfg.listen_v4.port as u16,
            )
        }
        None => {
            if !is_protected(&original) {
                return Ok(ALLOW);
            }
            if cfg.listen_v6.family != AF_INET6 {
                return Err(Refused::NoIpv6Listener);
            }
            cfg.listen_v6
        }
    };
    record(ctx, original);
    write_user_ip6(sa, target.addr);
    // SAFETY: `sa` is the program's context; a 4-byte write of `user_port` is allowed.
    unsafe { (*sa).user_port = port_to_user(target.port) };
    Ok(ALLOW)
}

/// The agent's configuration if this connect is a candidate for redirection: the agent is
/// enabled, the caller is not the agent, and the socket is a stream socket.
#[inline(always)]
fn redirect_config(sa: *mut bpf_sock_addr) -> Option<&'static AgentConfig> {
    let cfg = agent_config()?;
    if facts::current_tgid() == cfg.agent_tgid {
        return None;
    }
    // SAFETY: `sa` is the program's context; a 4-byte read of `type` is allowed.
    if unsafe { (*sa).type_ } != SOCK_STREAM {
        return None;
    }
    Some(cfg)
}

/// Records `original` and the caller's facts under the socket's cookie. A failed insert is
/// ignored on purpose: the caller still redirects (fail closed, see the module docs).
#[inline(always)]
fn record(ctx: &SockAddrContext, original: SockAddr) {
    // SAFETY: the context pointer is the one the kernel passed to this program.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let info = ConnInfo {
        original,
        process: facts::current(),
        // SAFETY: helper without arguments.
        connect_ns: unsafe { bpf_ktime_get_ns() },
    };
    let _ignored: Result<(), i32> = BY_COOKIE.insert(cookie, info, 0);
}

/// Reads `user_ip6` one 4-byte word at a time (the verifier's allowed access size); volatile so
/// the compiler does not merge the loads.
#[inline(always)]
pub fn read_user_ip6(sa: *mut bpf_sock_addr) -> [u32; 4] {
    // SAFETY: `sa` is the program's context; each word is a valid 4-byte read.
    unsafe {
        [
            core::ptr::read_volatile(&raw const (*sa).user_ip6[0]),
            core::ptr::read_volatile(&raw const (*sa).user_ip6[1]),
            core::ptr::read_volatile(&raw const (*sa).user_ip6[2]),
            core::ptr::read_volatile(&raw const (*sa).user_ip6[3]),
        ]
    }
}

/// Writes `user_ip6` one 4-byte word at a time (see [`read_user_ip6`]).
#[inline(always)]
pub fn write_user_ip6(sa: *mut bpf_sock_addr, words: [u32; 4]) {
    // SAFETY: `sa` is the program's context; each word is a valid 4-byte write.
    unsafe {
        core::ptr::write_volatile(&raw mut (*sa).user_ip6[0], words[0]);
        core::ptr::write_volatile(&raw mut (*sa).user_ip6[1], words[1]);
        core::ptr::write_volatile(&raw mut (*sa).user_ip6[2], words[2]);
        core::ptr::write_volatile(&raw mut (*sa).user_ip6[3], words[3]);
    }
}
