//! Whether the process the kernel recorded still holds the client end of the connection.
//!
//! The start-time check of [`super::liveness`] has the granularity of a clock tick (10 ms): a
//! process that exits right after connecting and whose pid is handed to another process within
//! the same tick passes it. The socket check closes that gap for the case that matters: a
//! process that took over the pid (another job's step holding a better token) does not hold the
//! attacker's connection. The client end is found by the connection's addresses in the
//! process's network namespace table (`/proc/<tgid>/net/tcp`, `tcp6`: proc(5)), and must be one
//! of the process's descriptors (`/proc/<tgid>/fd/*` → `socket:[inode]`).
//!
//! A client that passes its connection to another process and closes its own descriptor before
//! authenticating is refused too; clients do not do that.

use std::net::{IpAddr, SocketAddr};

use super::IdentityError;

/// The inode of the TCP socket whose local address is `client` and remote address `agent` (the
/// client end of the connection the agent accepted), in the network namespace of `tgid`.
///
/// # Errors
/// [`IdentityError::ProcessGone`] when the tables cannot be read or hold no such socket (the
/// client closed the connection).
pub fn client_socket_inode(
    tgid: u32,
    client: SocketAddr,
    agent: SocketAddr,
) -> Result<u64, IdentityError> {
    let gone = |detail: String| IdentityError::ProcessGone { pid: tgid, detail };
    let local = forms(client);
    let remote = forms(agent);
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{tgid}/net/{table}")) else {
            continue;
        };
        if let Some(inode) = find(&text, &local, &remote) {
            return Ok(inode);
        }
    }
    Err(gone(format!(
        "no socket {client} → {agent} in its network namespace (the client closed the connection)"
    )))
}

/// Whether `tgid` has the socket `inode` among its descriptors.
///
/// # Errors
/// [`IdentityError::ProcessGone`] when it does not, naming the likely cause.
pub fn check_holds(tgid: u32, inode: u64) -> Result<(), IdentityError> {
    let wanted = format!("socket:[{inode}]");
    let holds = std::fs::read_dir(format!("/proc/{tgid}/fd"))
        .map(|entries| {
            entries.filter_map(Result::ok).any(|entry| {
                std::fs::read_link(entry.path())
                    .is_ok_and(|target| target.as_os_str() == wanted.as_str())
            })
        })
        .unwrap_or(false);
    if holds {
        Ok(())
    } else {
        Err(IdentityError::ProcessGone {
            pid: tgid,
            detail: format!(
                "it does not hold the connection's socket (inode {inode}): the pid was reused \
                 or the connection was handed to another process"
            ),
        })
    }
}

/// The ways `addr` is printed in `/proc/net/tcp*`: `ADDR:PORT` in hex, the address as the
/// kernel's 32-bit words in host byte order; an IPv4 address also in its IPv4-mapped IPv6 form
/// (a client's AF_INET6 socket connected to an IPv4 address).
fn forms(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    let words = |octets: &[u8]| -> String {
        octets
            .chunks(4)
            .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
            .collect()
    };
    match addr.ip() {
        IpAddr::V4(v4) => vec![
            format!("{}:{port:04X}", words(&v4.octets())),
            format!("{}:{port:04X}", words(&v4.to_ipv6_mapped().octets())),
        ],
        IpAddr::V6(v6) => {
            let mut all = vec![format!("{}:{port:04X}", words(&v6.octets()))];
            if let Some(v4) = v6.to_ipv4_mapped() {
                all.push(format!("{}:{port:04X}", words(&v4.octets())));
            }
            all
        }
    }
}

/// The inode of the table line with a local address in `local` and a remote one in `remote`.
fn find(table: &str, local: &[String], remote: &[String]) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (l, r, inode) = (fields.get(1)?, fields.get(2)?, fields.get(9)?);
        (local.iter().any(|f| f == l) && remote.iter().any(|f| f == r))
            .then(|| inode.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_print_as_the_kernel_prints_them() {
        let v4: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        if cfg!(target_endian = "little") {
            assert_eq!(forms(v4)[0], "0100007F:1F90");
            assert_eq!(forms(v4)[1], "0000000000000000FFFF00000100007F:1F90");
        }
        let v6: SocketAddr = "[::1]:80".parse().expect("addr");
        assert_eq!(forms(v6).len(), 1);
    }

    #[test]
    fn a_live_connection_is_found_and_held() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (_accepted, peer) = listener.accept().expect("accept");
        let me = std::process::id();
        let agent = listener.local_addr().expect("addr");
        let inode = client_socket_inode(me, peer, agent).expect("found");
        check_holds(me, inode).expect("this process holds it");
        assert!(check_holds(me, inode + 1_000_000_000).is_err());
        drop(client);
        let unknown: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        assert!(client_socket_inode(me, unknown, agent).is_err());
    }
}
