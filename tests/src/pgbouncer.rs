//! A throwaway PgBouncer (the Debian package's `/usr/sbin/pgbouncer`) in front of one database,
//! as an RAII guard: the ini and userlist are generated in a temp dir, it listens on a free
//! 127.0.0.1 port, and it is stopped by pid (SIGTERM, then SIGKILL) on Drop.
//!
//! PgBouncer refuses to run as root, so it is started with `-u postgres` (it reads its files as
//! root, then drops privileges). It runs in session mode. `server_lifetime = 0` makes every
//! server connection single-use — the like-for-like peer of a proxy that opens one upstream
//! connection per client connection; the pooled default reuses them (after `DISCARD ALL`).
//! See <https://www.pgbouncer.org/config.html>.

use std::ffi::CString;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;

use crate::postgres::PG_OS_USER;
use crate::process::{ChildGuard, free_port};

/// The PgBouncer binary; `JITGATE_PGBOUNCER_BIN` overrides it.
pub const DEFAULT_PGBOUNCER_BIN: &str = "/usr/sbin/pgbouncer";

/// How long PgBouncer may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// What one PgBouncer instance serves.
#[derive(Debug, Clone)]
pub struct PgBouncerConfig {
    /// The database name clients ask for (and the upstream database of the same name).
    pub database: String,
    /// Upstream server address (host:port).
    pub upstream: SocketAddrV4,
    /// The role clients log in as; PgBouncer logs in upstream as the same role.
    pub user: String,
    /// The role's secret for the userlist: a plaintext password or the server's
    /// `SCRAM-SHA-256$…` verifier (from `pg_authid.rolpassword`). With a verifier, clients must
    /// use SCRAM and PgBouncer passes their proof's ClientKey upstream (no PBKDF2 of its own).
    pub secret: String,
    /// `false`: `server_lifetime = 0`, each server connection serves one client and is closed.
    pub reuse_server_connections: bool,
    /// Run PgBouncer pinned to this CPU (`taskset -c CPU`).
    pub cpu: Option<usize>,
}

/// A running PgBouncer.
#[derive(Debug)]
pub struct PgBouncer {
    child: Option<ChildGuard>,
    port: u16,
    dir: TempDir,
}

impl PgBouncer {
    /// Writes the ini and userlist, starts PgBouncer and returns once it accepts TCP
    /// connections. Needs root (`-u postgres`). Retries with a new port when the chosen one was
    /// taken meanwhile; the error quotes PgBouncer's log.
    pub fn start(config: &PgBouncerConfig) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("jitgate-pgbouncer-")
            .tempdir()
            .context("creating the PgBouncer temp dir")?;
        let userlist = dir.path().join("userlist.txt");
        std::fs::write(
            &userlist,
            format!(
                "{} {}\n",
                quoted(&config.user),
                quoted(config.secret.trim())
            ),
        )
        .context("writing userlist.txt")?;
        chown_to_postgres(dir.path())?;
        chown_to_postgres(&userlist)?;

        let mut last_error = None;
        for _ in 0..3 {
            let port = free_port()?;
            let ini = dir.path().join("pgbouncer.ini");
            std::fs::write(&ini, ini_text(config, port, &userlist)).context("writing the ini")?;
            chown_to_postgres(&ini)?;
            match spawn(config, &ini, &dir.path().join("pgbouncer.log"), port) {
                Ok(child) => {
                    return Ok(Self {
                        child: Some(child),
                        port,
                        dir,
                    });
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("PgBouncer did not start")))
    }

    /// The TCP port PgBouncer listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// PgBouncer's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::pid)
    }

    /// PgBouncer's log (stderr) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    /// The generated ini file.
    pub fn ini_path(&self) -> PathBuf {
        self.dir.path().join("pgbouncer.ini")
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.pid()) {
            // SAFETY: kill(2) on the pid of our own un-reaped child: it cannot be reused yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Dropping the guard sends SIGKILL and reaps.
    }
}

/// The ini for `config` listening on `port`.
fn ini_text(config: &PgBouncerConfig, port: u16, userlist: &Path) -> String {
    let lifetime = if config.reuse_server_connections {
        3600
    } else {
        0
    };
    format!(
        "[databases]\n\
         {db} = host={host} port={upstream_port} dbname={db}\n\
         \n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         auth_type = scram-sha-256\n\
         auth_file = {userlist}\n\
         pool_mode = session\n\
         server_lifetime = {lifetime}\n\
         max_client_conn = 200\n\
         default_pool_size = 40\n\
         ignore_startup_parameters = extra_float_digits\n\
         log_connections = 0\n\
         log_disconnections = 0\n\
         stats_period = 3600\n",
        db = config.database,
        host = config.upstream.ip(),
        upstream_port = config.upstream.port(),
        userlist = userlist.display(),
    )
}

/// Starts PgBouncer on `ini` and waits until `port` accepts connections.
fn spawn(
    config: &PgBouncerConfig,
    ini: &Path,
    log: &Path,
    port: u16,
) -> anyhow::Result<ChildGuard> {
    let bin = std::env::var_os("JITGATE_PGBOUNCER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PGBOUNCER_BIN));
    let stderr = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut command = match config.cpu {
        Some(cpu) => {
            // taskset execs PgBouncer, so the child's pid is PgBouncer's.
            let mut command = Command::new("taskset");
            command.args(["-c", &cpu.to_string()]).arg(&bin);
            command
        }
        None => Command::new(&bin),
    };
    command
        .args(["-u", PG_OS_USER])
        .arg(ini)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let mut child = ChildGuard::spawn(&mut command, "pgbouncer")?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(child);
        }
        let log_text = || std::fs::read_to_string(log).unwrap_or_default();
        if let Some(status) = child.try_wait()? {
            bail!("pgbouncer exited ({status}); its log:\n{}", log_text());
        }
        if Instant::now() > deadline {
            bail!(
                "pgbouncer not accepting on port {port} after {START_TIMEOUT:?}; its log:\n{}",
                log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A userlist field: double-quoted, inner quotes doubled.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}

/// Makes `path` owned by the `postgres` OS user (PgBouncer reloads its files after dropping
/// privileges).
fn chown_to_postgres(path: &Path) -> anyhow::Result<()> {
    let name = CString::new(PG_OS_USER).context("user name")?;
    // SAFETY: getpwnam with a valid C string; the fields are copied out before any other call
    // that could overwrite the static record.
    let (uid, gid) = unsafe {
        let entry = libc::getpwnam(name.as_ptr());
        if entry.is_null() {
            bail!("no OS user {PG_OS_USER}");
        }
        ((*entry).pw_uid, (*entry).pw_gid)
    };
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {PG_OS_USER} {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_reuse_switch_and_quoting() {
        let mut config = PgBouncerConfig {
            database: "shop".into(),
            upstream: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5432),
            user: "ci".into(),
            secret: "pw".into(),
            reuse_server_connections: false,
            cpu: None,
        };
        let ini = ini_text(&config, 6432, Path::new("/tmp/u.txt"));
        assert!(ini.contains("shop = host=127.0.0.1 port=5432 dbname=shop"));
        assert!(ini.contains("listen_port = 6432"));
        assert!(ini.contains("server_lifetime = 0\n"));
        config.reuse_server_connections = true;
        assert!(!ini_text(&config, 6432, Path::new("/u")).contains("server_lifetime = 0\n"));
        assert_eq!(quoted("a\"b"), "\"a\"\"b\"");
    }
}
