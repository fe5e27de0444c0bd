//! Root integration tests of the kernel redirect (`jitgate_agent::bpf`), against the real kernel.
//!
//! Each test loads a [`Redirector`] for a fresh child cgroup with its own pin directory under
//! `/sys/fs/bpf`, a "fake agent" listener on `127.0.0.1:0` / `[::1]:0` and "protected" listeners
//! on `127.0.0.2` / `[::1]`, then runs `python3` clients inside (or outside) the cgroup.
//!
//! Run serially: `cargo test -p jitgate-tests --test redirect -- --test-threads=1`. Without root
//! every test prints why it is skipped and passes.

use std::{
    io::{BufRead as _, BufReader},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use jitgate_agent::bpf::{self, RedirectConfig, Redirector, SockAddrExt as _};
use jitgate_common::ConnInfo;
use jitgate_tests::cgroup::{CgroupGuard, cgroup_of, move_pid};

/// How long to wait for a connection to show up on a listener.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to watch a listener that must stay silent.
const SILENCE: Duration = Duration::from_millis(300);
/// `ECONNREFUSED` on Linux.
const ECONNREFUSED: i32 = 111;

/// The client: connects, prints `ok <peer host> <peer port>` (from getpeername) or
/// `err <errno>`, then waits until the server closes so the test can inspect the connection.
const CLIENT: &str = r#"
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect((host, port))
except OSError as e:
    print("err", e.errno, flush=True)
    sys.exit(0)
peer = s.getpeername()
print("ok", peer[0], peer[1], flush=True)
try:
    s.recv(1)
except OSError:
    pass
"#;

/// Skips the calling test (with the reason printed) unless running as root.
macro_rules! require_root {
    () => {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: the redirect tests need root (cgroups, bpffs, BPF programs)");
            return;
        }
    };
}

/// A pin directory under `/sys/fs/bpf`, unloaded (links detached, pins removed) on drop.
struct PinDir(PathBuf);

impl PinDir {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            Path::new(bpf::BPFFS_MOUNT).join(format!("jitgate-test-{}-{n}", std::process::id()));
        // A leftover of a crashed run with the same pid.
        bpf::unload(&dir).expect("clearing a stale pin directory");
        Self(dir)
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Err(e) = bpf::unload(&self.0) {
            eprintln!("unloading {}: {e}", self.0.display());
        }
    }
}

/// Everything one test needs. Field order is drop order: the redirector first, the pins (unload)
/// and the cgroup last.
struct Fixture {
    redirector: Option<Redirector>,
    agent_v4: Option<TcpListener>,
    agent_v6: Option<TcpListener>,
    protected_v4: TcpListener,
    protected_v6: TcpListener,
    pins: PinDir,
    cgroup: CgroupGuard,
}

impl Fixture {
    fn new() -> Self {
        let cgroup = CgroupGuard::new("jitgate-redirect-test").expect("creating a cgroup");
        let pins = PinDir::new();
        let agent_v4 = listen("127.0.0.1:0");
        let agent_v6 = listen("[::1]:0");
        let protected_v4 = listen("127.0.0.2:0");
        let protected_v6 = listen("[::1]:0");
        let redirector = Redirector::load(&RedirectConfig {
            cgroup: cgroup.path().to_path_buf(),
            pin_dir: pins.0.clone(),
            listen_v4: v4(&agent_v4),
            listen_v6: Some(v6(&agent_v6)),
            protected: vec![addr(&protected_v4), addr(&protected_v6)],
        })
        .expect("loading the redirector");
        assert_eq!(redirector.cgroup_path(), cgroup.path());
        Self {
            redirector: Some(redirector),
            agent_v4: Some(agent_v4),
            agent_v6: Some(agent_v6),
            protected_v4,
            protected_v6,
            pins,
            cgroup,
        }
    }

    fn redirector(&self) -> &Redirector {
        self.redirector.as_ref().expect("redirector loaded")
    }

    fn agent_v4(&self) -> &TcpListener {
        self.agent_v4.as_ref().expect("agent v4 listener")
    }

    fn agent_v6(&self) -> &TcpListener {
        self.agent_v6.as_ref().expect("agent v6 listener")
    }

    /// Starts the client inside the test cgroup, connecting to `host:port`.
    fn client_in_cgroup(&self, host: &str, port: u16) -> Client {
        let mut command = self.cgroup.command("python3");
        Client::spawn(
            command
                .arg("-c")
                .arg(CLIENT)
                .arg(host)
                .arg(port.to_string()),
        )
    }

    /// Checks a redirected connection end to end: the client reached `agent`, the kernel record
    /// names the client process and `original`, and the client's getpeername shows `original`.
    fn assert_redirected(&self, client: Client, agent: &TcpListener, original: SocketAddr) {
        let mut client = client;
        let line = client.line();
        let (stream, peer) = accept_within(agent, ACCEPT_TIMEOUT).expect("connection at the agent");
        let info = self
            .redirector()
            .lookup(peer)
            .expect("lookup")
            .expect("a record for the redirected connection");
        self.assert_record(&info, &client, original);
        assert_eq!(
            self.redirector().lookup(peer).expect("second lookup"),
            None,
            "a record is claimed once: a later connection from the same source port gets nothing"
        );
        assert_eq!(line, format!("ok {} {}", original.ip(), original.port()));
        drop(stream);
        client.finish();
    }

    fn assert_record(&self, info: &ConnInfo, client: &Client, original: SocketAddr) {
        let ConnInfo {
            original: recorded,
            process,
            connect_ns,
        } = info;
        assert_eq!(recorded.to_std().expect("known family"), original);
        let pid = client.pid();
        assert_eq!(process.pid, pid, "thread id of a single-threaded client");
        assert_eq!(process.tgid, pid);
        // SAFETY: getuid/getgid have no preconditions; the client inherits our ids.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        assert_eq!((process.uid, process.gid), (uid, gid));
        assert_eq!(process.cgroup_id, self.cgroup.id());
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("client comm");
        assert_eq!(process.comm_bytes(), comm.trim_end().as_bytes());
        assert!(
            *connect_ns > 0 && *connect_ns <= monotonic_ns(),
            "connect_ns {connect_ns}"
        );
    }
}

/// A `python3` client; killed on drop if still running.
struct Client {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Client {
    fn spawn(command: &mut Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning python3");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Self { child, stdout }
    }

    fn outside_cgroup(host: &str, port: u16) -> Self {
        let mut command = Command::new("python3");
        Self::spawn(
            command
                .arg("-c")
                .arg(CLIENT)
                .arg(host)
                .arg(port.to_string()),
        )
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The client's report line (`ok <host> <port>` or `err <errno>`).
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("reading the client");
        line.trim_end().to_owned()
    }

    fn finish(mut self) {
        let status = self.child.wait().expect("waiting for the client");
        assert!(status.success(), "client exited with {status}");
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Kill by pid (our own child); errors mean it already exited.
        let _already_gone = self.child.kill();
        let _reaped = self.child.wait();
    }
}

fn listen(addr: &str) -> TcpListener {
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    listener
}

fn addr(listener: &TcpListener) -> SocketAddr {
    listener.local_addr().expect("listener address")
}

fn v4(listener: &TcpListener) -> std::net::SocketAddrV4 {
    match addr(listener) {
        SocketAddr::V4(v4) => v4,
        SocketAddr::V6(v6) => panic!("expected an IPv4 listener, got {v6}"),
    }
}

fn v6(listener: &TcpListener) -> std::net::SocketAddrV6 {
    match addr(listener) {
        SocketAddr::V6(v6) => v6,
        SocketAddr::V4(v4) => panic!("expected an IPv6 listener, got {v4}"),
    }
}

fn accept_within(listener: &TcpListener, timeout: Duration) -> Option<(TcpStream, SocketAddr)> {
    let deadline = Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok(accepted) => return Some(accepted),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return None;
                }
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn assert_silent(listener: &TcpListener, what: &str) {
    if let Some((_, peer)) = accept_within(listener, SILENCE) {
        panic!("{what} got a connection from {peer}");
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds, the clock of `bpf_ktime_get_ns()`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    let secs = u64::try_from(ts.tv_sec).expect("non-negative seconds");
    let nanos = u64::try_from(ts.tv_nsec).expect("non-negative nanoseconds");
    secs * 1_000_000_000 + nanos
}

#[test]
fn ipv4_connect_is_redirected_and_recorded() {
    require_root!();
    let fx = Fixture::new();
    let original = addr(&fx.protected_v4);
    let client = fx.client_in_cgroup("127.0.0.2", original.port());
    fx.assert_redirected(client, fx.agent_v4(), original);
    assert_silent(&fx.protected_v4, "the protected IPv4 listener");
}

#[test]
fn ipv6_connect_is_redirected_and_recorded() {
    require_root!();
    let fx = Fixture::new();
    let original = addr(&fx.protected_v6);
    let client = fx.client_in_cgroup("::1", original.port());
    fx.assert_redirected(client, fx.agent_v6(), original);
    assert_silent(&fx.protected_v6, "the protected IPv6 listener");
}

#[test]
fn ipv4_mapped_connect_goes_to_the_ipv4_listener() {
    require_root!();
    let fx = Fixture::new();
    let port = addr(&fx.protected_v4).port();
    let original: SocketAddr = format!("[::ffff:127.0.0.2]:{port}")
        .parse()
        .expect("mapped address");
    let client = fx.client_in_cgroup("::ffff:127.0.0.2", port);
    fx.assert_redirected(client, fx.agent_v4(), original);
    assert_silent(&fx.protected_v4, "the protected IPv4 listener");
}

#[test]
fn unprotected_destination_is_not_redirected_until_protected() {
    require_root!();
    let fx = Fixture::new();
    let other = listen("127.0.0.2:0");
    let port = addr(&other).port();

    let mut client = fx.client_in_cgroup("127.0.0.2", port);
    assert_eq!(client.line(), format!("ok 127.0.0.2 {port}"));
    let (stream, peer) = accept_within(&other, ACCEPT_TIMEOUT).expect("direct connection");
    assert_eq!(fx.redirector().lookup(peer).expect("lookup"), None);
    drop(stream);
    client.finish();
    assert_silent(fx.agent_v4(), "the agent");

    fx.redirector().protect(addr(&other)).expect("protect");
    let client = fx.client_in_cgroup("127.0.0.2", port);
    fx.assert_redirected(client, fx.agent_v4(), addr(&other));
    assert_silent(&other, "the newly protected listener");
}

#[test]
fn process_outside_the_cgroup_is_not_redirected() {
    require_root!();
    let fx = Fixture::new();
    let original = addr(&fx.protected_v4);
    let mut client = Client::outside_cgroup("127.0.0.2", original.port());
    assert_eq!(client.line(), format!("ok 127.0.0.2 {}", original.port()));
    let (stream, _) = accept_within(&fx.protected_v4, ACCEPT_TIMEOUT).expect("direct connection");
    drop(stream);
    client.finish();
    assert_silent(fx.agent_v4(), "the agent");
}

#[test]
fn agent_own_connects_are_not_redirected() {
    require_root!();
    let fx = Fixture::new();
    let me = std::process::id();
    let home = cgroup_of(me).expect("our cgroup");
    fx.cgroup.add_pid(me).expect("entering the test cgroup");
    let connected = TcpStream::connect_timeout(&addr(&fx.protected_v4), ACCEPT_TIMEOUT);
    move_pid(&home, me).expect("leaving the test cgroup");
    let stream = connected.expect("connecting from the agent process");
    assert_eq!(stream.peer_addr().expect("peer"), addr(&fx.protected_v4));
    accept_within(&fx.protected_v4, ACCEPT_TIMEOUT).expect("direct connection");
    assert_silent(fx.agent_v4(), "the agent");
}

#[test]
fn agent_death_fails_closed_and_unload_restores_direct_access() {
    require_root!();
    let mut fx = Fixture::new();
    let original = addr(&fx.protected_v4);
    // The agent dies: its redirector and listeners go away, nothing is unloaded.
    drop(fx.redirector.take());
    drop(fx.agent_v4.take());
    drop(fx.agent_v6.take());

    let mut client = fx.client_in_cgroup("127.0.0.2", original.port());
    assert_eq!(client.line(), format!("err {ECONNREFUSED}"));
    client.finish();
    assert_silent(
        &fx.protected_v4,
        "the protected listener while the agent is down",
    );

    bpf::unload(&fx.pins.0).expect("unload");
    assert!(!fx.pins.0.exists(), "pin directory removed");
    let mut client = fx.client_in_cgroup("127.0.0.2", original.port());
    assert_eq!(client.line(), format!("ok 127.0.0.2 {}", original.port()));
    accept_within(&fx.protected_v4, ACCEPT_TIMEOUT).expect("direct connection after unload");
    drop(client);
}

#[test]
fn a_new_agent_instance_replaces_the_pinned_programs() {
    require_root!();
    let mut fx = Fixture::new();
    let agent_v4 = listen("127.0.0.1:0");
    let agent_v6 = listen("[::1]:0");
    let second = Redirector::load(&RedirectConfig {
        cgroup: fx.cgroup.path().to_path_buf(),
        pin_dir: fx.pins.0.clone(),
        listen_v4: v4(&agent_v4),
        listen_v6: Some(v6(&agent_v6)),
        protected: vec![addr(&fx.protected_v4)],
    })
    .expect("loading a second instance over the first one's pins");
    // The first instance is gone; if its programs were still attached they would send the
    // client to its (closed) listener.
    drop(fx.redirector.replace(second));
    drop(fx.agent_v4.replace(agent_v4));
    drop(fx.agent_v6.replace(agent_v6));

    let original = addr(&fx.protected_v4);
    let client = fx.client_in_cgroup("127.0.0.2", original.port());
    fx.assert_redirected(client, fx.agent_v4(), original);
}
