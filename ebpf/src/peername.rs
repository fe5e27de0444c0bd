//! `cgroup/getpeername4` and `cgroup/getpeername6`: a redirected client sees the destination it
//! asked for, not the agent's listener. Sockets without a `BY_COOKIE` record are left alone.

use aya_ebpf::{
    EbpfContext as _, helpers::generated::bpf_get_socket_cookie, macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use jitgate_common::{AF_INET, AF_INET6, SockAddr};
use jitgate_ebpf::port_to_user;

use crate::{connect::write_user_ip6, maps::BY_COOKIE};

/// The only verdict the kernel accepts from getpeername programs.
const ALLOW: i32 = 1;

/// Why the returned address is left unchanged.
enum Unchanged {
    /// The socket was not redirected (no `BY_COOKIE` record).
    NotRedirected,
    /// The record is of the other address family than this socket.
    OtherFamily,
}

/// Rewrites an IPv4 socket's peer address to its original destination.
#[cgroup_sock_addr(getpeername4)]
pub fn getpeername4(ctx: SockAddrContext) -> i32 {
    match try_getpeername(&ctx, AF_INET) {
        Ok(()) | Err(Unchanged::NotRedirected | Unchanged::OtherFamily) => ALLOW,
    }
}

/// Rewrites an IPv6 socket's peer address (IPv4-mapped included) to its original destination.
#[cgroup_sock_addr(getpeername6)]
pub fn getpeername6(ctx: SockAddrContext) -> i32 {
    match try_getpeername(&ctx, AF_INET6) {
        Ok(()) | Err(Unchanged::NotRedirected | Unchanged::OtherFamily) => ALLOW,
    }
}

fn try_getpeername(ctx: &SockAddrContext, family: u32) -> Result<(), Unchanged> {
    // SAFETY: the context pointer is the one the kernel passed to this program.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let info = BY_COOKIE.get_ptr(cookie).ok_or(Unchanged::NotRedirected)?;
    // SAFETY: a map value pointer returned by the lookup; copied out at once.
    let original: SockAddr = unsafe { (*info).original };
    if original.family != family {
        return Err(Unchanged::OtherFamily);
    }
    let sa = ctx.sock_addr;
    if family == AF_INET {
        // SAFETY: `sa` is the program's context; 4-byte writes of these fields are allowed.
        unsafe { (*sa).user_ip4 = original.addr[0] };
    } else {
        write_user_ip6(sa, original.addr);
    }
    // SAFETY: as above.
    unsafe { (*sa).user_port = port_to_user(original.port) };
    Ok(())
}
