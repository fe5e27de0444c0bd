//! Pure helpers for the jitgate kernel programs (no maps, no helpers calls), kept in the library
//! target so they can be read and linted apart from the program sections in `main.rs`.
#![no_std]

/// A port as `bpf_sock_addr::user_port` holds it (network byte order in the low 16 bits of the
/// word, as loaded on this host) converted to host byte order.
#[inline(always)]
pub const fn port_from_user(user_port: u32) -> u16 {
    u16::from_be(user_port as u16)
}

/// A host-byte-order port in the form `bpf_sock_addr::user_port` expects (network byte order in
/// the low 16 bits).
#[inline(always)]
pub const fn port_to_user(port: u32) -> u32 {
    u16::to_be(port as u16) as u32
}
