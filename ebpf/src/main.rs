//! jitgate kernel programs, attached by the agent to the CI jobs' cgroup.
//!
//! - `cgroup/connect4`, `cgroup/connect6` ([`connect`]): a connect to a protected destination is
//!   recorded in `BY_COOKIE` and rewritten to the agent's listener.
//! - `sockops` ([`sockops`]): once the client's source address exists, the record is copied to
//!   `BY_TUPLE`, where the agent finds it by the accepted socket's peer address.
//! - `cgroup/getpeername4`, `cgroup/getpeername6` ([`peername`]): the client sees its original
//!   destination.
//!
//! Byte orders follow `jitgate_common`: addresses in network order, ports in host order.
#![no_std]
#![no_main]

mod connect;
mod facts;
mod maps;
mod peername;
mod sockops;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// Kernel-visible license; GPL-compatible so GPL-only helpers stay available.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
