//! `sockops`: when an active TCP connection gets its source address (`TCP_CONNECT_CB`, with
//! `ACTIVE_ESTABLISHED_CB` as a fallback), copy its `BY_COOKIE` record to `BY_TUPLE` keyed by the
//! client's source address, which the agent sees as the accepted socket's peer address. The
//! `BY_COOKIE` record stays for getpeername; both maps are LRU.

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_TCP_CONNECT_CB, bpf_sock_ops},
    helpers::generated::bpf_get_socket_cookie,
    macros::sock_ops,
    programs::SockOpsContext,
};
use jitgate_common::{AF_INET, AF_INET6, ConnInfo, SockAddr, TupleKey};

use crate::maps::{BY_COOKIE, BY_TUPLE};

/// Return value of sock_ops programs when they do not reply to the operation.
const DONE: u32 = 1;

/// Why nothing was written.
enum Skipped {
    /// Another `sock_ops` operation.
    OtherOp,
    /// The socket was not redirected.
    NotRedirected,
    /// Neither IPv4 nor IPv6.
    OtherFamily,
    /// `BY_TUPLE` refused the insert (the agent will refuse the connection).
    InsertFailed,
}

/// Publishes redirected connections under their client address.
#[sock_ops]
pub fn sock_ops(ctx: SockOpsContext) -> u32 {
    match try_sock_ops(&ctx) {
        Ok(())
        | Err(
            Skipped::OtherOp
            | Skipped::NotRedirected
            | Skipped::OtherFamily
            | Skipped::InsertFailed,
        ) => DONE,
    }
}

fn try_sock_ops(ctx: &SockOpsContext) -> Result<(), Skipped> {
    let op = ctx.op();
    if op != BPF_SOCK_OPS_TCP_CONNECT_CB && op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB {
        return Err(Skipped::OtherOp);
    }
    // SAFETY: the context pointer is the one the kernel passed to this program.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let info = BY_COOKIE.get_ptr(cookie).ok_or(Skipped::NotRedirected)?;
    // SAFETY: a map value pointer returned by the lookup; copied out at once.
    let info: ConnInfo = unsafe { *info };
    let client = local_addr(ctx)?;
    BY_TUPLE
        .insert(TupleKey { client }, info, 0)
        .map_err(|_| Skipped::InsertFailed)
}

/// The socket's local address in `TupleKey` form: IPv4-mapped IPv6 as plain IPv4, because the
/// agent's IPv4 listener sees such clients as IPv4 peers.
#[inline(always)]
fn local_addr(ctx: &SockOpsContext) -> Result<SockAddr, Skipped> {
    // `local_port` is in host byte order in `bpf_sock_ops`.
    let port = ctx.local_port() as u16;
    match ctx.family() {
        AF_INET => Ok(SockAddr::v4(ctx.local_ip4(), port)),
        AF_INET6 => {
            let words = read_local_ip6(ctx.ops);
            Ok(match SockAddr::v4_mapped(words) {
                Some(v4) => SockAddr::v4(v4, port),
                None => SockAddr::v6(words, port),
            })
        }
        _ => Err(Skipped::OtherFamily),
    }
}

/// Reads `local_ip6` one 4-byte word at a time (the verifier's allowed access size).
#[inline(always)]
fn read_local_ip6(ops: *mut bpf_sock_ops) -> [u32; 4] {
    // SAFETY: `ops` is the program's context; each word is a valid 4-byte read.
    unsafe {
        [
            core::ptr::read_volatile(&raw const (*ops).local_ip6[0]),
            core::ptr::read_volatile(&raw const (*ops).local_ip6[1]),
            core::ptr::read_volatile(&raw const (*ops).local_ip6[2]),
            core::ptr::read_volatile(&raw const (*ops).local_ip6[3]),
        ]
    }
}
