//! Conversions between the kernel's [`SockAddr`] (addresses in network byte order, ports in host
//! byte order, see `jitgate_common`) and [`std::net::SocketAddr`].
//!
//! `SockAddr` lives in the `no_std` common crate and `SocketAddr` in std, so the conversions are
//! an extension trait rather than `From` impls. IPv6 flow info and scope ids are not kept.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use jitgate_common::{AF_INET, AF_INET6, SockAddr};

use super::BpfError;

/// Conversions of [`SockAddr`] to and from [`SocketAddr`].
pub trait SockAddrExt: Sized {
    /// The exact kernel form of `addr` (an IPv4-mapped IPv6 address stays IPv6).
    fn from_std(addr: SocketAddr) -> Self;

    /// The form the kernel programs use as map keys (`PROTECTED`, `BY_TUPLE`): like
    /// [`SockAddrExt::from_std`], except that IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`)
    /// become IPv4.
    fn key_from_std(addr: SocketAddr) -> Self;

    /// The std form of this address.
    ///
    /// # Errors
    /// [`BpfError::AddressFamily`] if the family is neither `AF_INET` nor `AF_INET6`.
    fn to_std(&self) -> Result<SocketAddr, BpfError>;
}

impl SockAddrExt for SockAddr {
    fn from_std(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(v4) => SockAddr::v4(u32::from_ne_bytes(v4.ip().octets()), v4.port()),
            SocketAddr::V6(v6) => SockAddr::v6(v6_words(v6.ip()), v6.port()),
        }
    }

    fn key_from_std(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
                Some(v4) => SockAddr::v4(u32::from_ne_bytes(v4.octets()), v6.port()),
                None => Self::from_std(addr),
            },
            SocketAddr::V4(_) => Self::from_std(addr),
        }
    }

    fn to_std(&self) -> Result<SocketAddr, BpfError> {
        let SockAddr { family, addr, port } = *self;
        // Only the low 16 bits carry the port (see `SockAddr::port`).
        let port = (port & 0xffff) as u16;
        match family {
            AF_INET => Ok(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(addr[0].to_ne_bytes()),
                port,
            ))),
            AF_INET6 => {
                let mut octets = [0u8; 16];
                for (chunk, word) in octets.chunks_exact_mut(4).zip(addr) {
                    chunk.copy_from_slice(&word.to_ne_bytes());
                }
                Ok(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(octets),
                    port,
                    0,
                    0,
                )))
            }
            family => Err(BpfError::AddressFamily { family }),
        }
    }
}

/// The four network-byte-order words of an IPv6 address.
fn v6_words(ip: &Ipv6Addr) -> [u32; 4] {
    let octets = ip.octets();
    let mut words = [0u32; 4];
    for (word, chunk) in words.iter_mut().zip(octets.chunks_exact(4)) {
        *word = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_round_trip_keeps_network_order() {
        let addr: SocketAddr = "10.1.2.3:5432".parse().expect("literal");
        let k = SockAddr::from_std(addr);
        assert_eq!(k.family, AF_INET);
        assert_eq!(k.addr[0].to_ne_bytes(), [10, 1, 2, 3]);
        assert_eq!(k.port, 5432);
        assert_eq!(k.to_std().expect("AF_INET"), addr);
    }

    #[test]
    fn ipv6_round_trip() {
        let addr: SocketAddr = "[2001:db8::1]:6432".parse().expect("literal");
        let k = SockAddr::from_std(addr);
        assert_eq!(k.family, AF_INET6);
        assert_eq!(k.addr[0].to_ne_bytes(), [0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(k.addr[3].to_ne_bytes(), [0, 0, 0, 1]);
        assert_eq!(k.to_std().expect("AF_INET6"), addr);
    }

    #[test]
    fn mapped_keys_are_ipv4_and_match_the_kernel_helpers() {
        let mapped: SocketAddr = "[::ffff:127.0.0.2]:5432".parse().expect("literal");
        let plain: SocketAddr = "127.0.0.2:5432".parse().expect("literal");
        assert_eq!(SockAddr::key_from_std(mapped), SockAddr::from_std(plain));
        let exact = SockAddr::from_std(mapped);
        assert_eq!(exact.family, AF_INET6);
        let v4 = SockAddr::from_std(plain).addr[0];
        assert_eq!(SockAddr::v4_mapped(exact.addr), Some(v4));
        assert_eq!(SockAddr::map_v4(v4), exact.addr);
    }

    #[test]
    fn unknown_family_is_an_error() {
        let bad = SockAddr {
            family: 1,
            ..SockAddr::default()
        };
        assert!(matches!(
            bad.to_std(),
            Err(BpfError::AddressFamily { family: 1 })
        ));
    }
}
