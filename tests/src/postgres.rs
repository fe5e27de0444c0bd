//! A throwaway PostgreSQL 15 server per test: `initdb` into a temp dir owned by the `postgres`
//! OS user, started on a free 127.0.0.1 port, stopped and deleted on Drop.
//!
//! `initdb` and `pg_ctl` refuse to run as root, so they run as `postgres` via `runuser` (this
//! needs root). Host connections use SCRAM-SHA-256 (`password_encryption = scram-sha-256`); the
//! Unix socket, in the temp dir, trusts everyone so the harness itself can administer the server.
//! Every statement is logged (`log_statement = 'all'`) to [`PgServer::log_path`] so tests can
//! assert what the server really executed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tempfile::TempDir;

use crate::process::checked;
use crate::shop::{quote_ident, quote_literal, shop_sql};

/// Directory of the Debian PostgreSQL 15 binaries; `JITGATE_PG_BINDIR` overrides it.
pub const DEFAULT_PG_BINDIR: &str = "/usr/lib/postgresql/15/bin";
/// OS user that owns data directories and runs the server.
pub const PG_OS_USER: &str = "postgres";
/// Database superuser the harness connects as over the Unix socket.
pub const PG_SUPERUSER: &str = "postgres";

/// How a role's password is stored and which `pg_hba.conf` method authenticates it over TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordAuth {
    /// MD5 hash, `md5` in pg_hba.conf (legacy clients and poolers).
    Md5,
    /// SCRAM-SHA-256 verifier, `scram-sha-256` in pg_hba.conf (the default).
    Scram,
}

/// A running PostgreSQL server; stopped (`pg_ctl stop -m fast`) and deleted when dropped.
#[derive(Debug)]
pub struct PgServer {
    port: u16,
    dir: TempDir,
    bindir: PathBuf,
}

impl PgServer {
    /// Creates, configures and starts a server; returns once `pg_isready` answers.
    ///
    /// Errors when not root, when the PostgreSQL binaries are missing, or when the server does
    /// not come up (the server log is quoted).
    pub fn start() -> anyhow::Result<Self> {
        ensure!(
            crate::process::is_root(),
            "PgServer needs root (runuser -u postgres)"
        );
        let bindir = std::env::var_os("JITGATE_PG_BINDIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PG_BINDIR));
        ensure!(
            bindir.join("initdb").exists(),
            "no initdb in {} (install postgresql-15: `cargo xtask setup`)",
            bindir.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("jitgate-pg-")
            .tempdir()
            .context("creating the PostgreSQL temp dir")?;
        chown_to_postgres(dir.path())?;

        let mut server = Self {
            port: 0,
            dir,
            bindir,
        };
        server.initdb()?;
        let mut last_error = None;
        // The free port can be taken between choosing and binding it: retry with a new one.
        for _ in 0..3 {
            server.port = crate::process::free_port()?;
            match server.configure_and_start() {
                Ok(()) => return Ok(server),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("PostgreSQL did not start")))
    }

    /// TCP port the server listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Host to connect to over TCP: always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// Directory holding the server's Unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server log file, holding every statement executed (`log_statement = 'all'`).
    pub fn log_path(&self) -> PathBuf {
        self.data_dir().join("server.log")
    }

    /// The whole server log so far (empty string if it cannot be read yet).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Path of a PostgreSQL binary (`psql`, `pgbench`, …) from the configured bindir.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }

    /// Runs `sql` with psql as the superuser over the Unix socket in database `postgres`
    /// (`-X -A -t -v ON_ERROR_STOP=1`); returns stdout. Statements run one by one from stdin, so
    /// `CREATE DATABASE` is fine alongside others.
    pub fn psql_superuser(&self, sql: &str) -> anyhow::Result<String> {
        self.psql_superuser_in("postgres", sql)
    }

    /// Like [`PgServer::psql_superuser`] but in database `db`.
    pub fn psql_superuser_in(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        let mut child = Command::new(self.bin("psql"))
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"])
            .args(["-h"])
            .arg(self.socket_dir())
            .args(["-p", &self.port.to_string(), "-U", PG_SUPERUSER, "-d", db])
            .env_remove("PGPASSWORD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning psql")?;
        child
            .stdin
            .take()
            .context("psql stdin")?
            .write_all(sql.as_bytes())
            .context("writing SQL to psql")?;
        let output = child.wait_with_output().context("waiting for psql")?;
        checked("psql", &output)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Creates a login role with `password`, stored and authenticated as `auth` says.
    ///
    /// For [`PasswordAuth::Md5`] the password is hashed with md5 and a
    /// `host all <role> 127.0.0.1/32 md5` line goes before the SCRAM lines of pg_hba.conf; the
    /// configuration is reloaded.
    pub fn create_role(
        &self,
        name: &str,
        password: &str,
        auth: PasswordAuth,
    ) -> anyhow::Result<()> {
        let encryption = match auth {
            PasswordAuth::Md5 => "md5",
            PasswordAuth::Scram => "scram-sha-256",
        };
        self.psql_superuser(&format!(
            "SET password_encryption = '{encryption}';\nCREATE ROLE {} LOGIN PASSWORD {};\n",
            quote_ident(name),
            quote_literal(password)
        ))?;
        if auth == PasswordAuth::Md5 {
            self.prepend_hba_line(&format!("host all {} 127.0.0.1/32 md5", quote_ident(name)))?;
        }
        Ok(())
    }

    /// Creates database `db` and loads the shop dataset into it (see [`crate::shop`]).
    pub fn load_shop_dataset(&self, db: &str) -> anyhow::Result<()> {
        self.psql_superuser(&format!("CREATE DATABASE {};\n", quote_ident(db)))?;
        self.psql_superuser_in(db, &shop_sql())?;
        Ok(())
    }

    /// Turns on TLS with a fresh self-signed certificate for `127.0.0.1` (RSA 2048, made with
    /// `openssl`), owned by the server's OS user, and reloads.
    pub fn enable_tls(&self) -> anyhow::Result<()> {
        let data = self.data_dir();
        let output = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(data.join("server.key"))
            .arg("-out")
            .arg(data.join("server.crt"))
            .output()
            .context("running openssl")?;
        checked("openssl req", &output)?;
        chown_to_postgres(&data.join("server.key"))?;
        chown_to_postgres(&data.join("server.crt"))?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )?;
        self.psql_superuser("ALTER SYSTEM SET ssl = on;")?;
        self.reload()
    }

    /// Turns on TLS with the given PEM certificate (chain) and key, copied into the data
    /// directory and owned by the server's OS user, and reloads.
    pub fn install_tls(&self, cert: &Path, key: &Path) -> anyhow::Result<()> {
        let data = self.data_dir();
        std::fs::copy(cert, data.join("server.crt")).context("copying the certificate")?;
        std::fs::copy(key, data.join("server.key")).context("copying the key")?;
        for name in ["server.crt", "server.key"] {
            chown_to_postgres(&data.join(name))?;
        }
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )?;
        self.psql_superuser("ALTER SYSTEM SET ssl = on;")?;
        self.reload()
    }

    /// Re-reads pg_hba.conf and postgresql.conf (`pg_reload_conf()`), then gives the postmaster
    /// a moment to process the SIGHUP before new connections arrive.
    pub fn reload(&self) -> anyhow::Result<()> {
        self.psql_superuser("SELECT pg_reload_conf();")?;
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }

    /// Inserts `line` before the first `host` rule of pg_hba.conf and reloads.
    pub fn prepend_hba_line(&self, line: &str) -> anyhow::Result<()> {
        let path = self.data_dir().join("pg_hba.conf");
        let current = std::fs::read_to_string(&path).context("reading pg_hba.conf")?;
        let mut lines: Vec<&str> = current.lines().collect();
        let first_host = lines
            .iter()
            .position(|l| l.trim_start().starts_with("host"))
            .unwrap_or(lines.len());
        lines.insert(first_host, line);
        // Writing in place keeps the file's owner (postgres).
        std::fs::write(&path, lines.join("\n") + "\n").context("writing pg_hba.conf")?;
        self.reload()
    }

    fn initdb(&self) -> anyhow::Result<()> {
        let output = self
            .as_postgres(&self.bin("initdb"))
            .arg("-D")
            .arg(self.data_dir())
            .args([
                "-U",
                PG_SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .args(["--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"])
            .output()
            .context("running initdb")?;
        checked("initdb", &output)
    }

    fn configure_and_start(&self) -> anyhow::Result<()> {
        let conf = format!(
            "\n# jitgate test harness\n\
             listen_addresses = '127.0.0.1'\n\
             port = {}\n\
             unix_socket_directories = '{}'\n\
             password_encryption = 'scram-sha-256'\n\
             log_statement = 'all'\n\
             log_line_prefix = '%m [%p] %q%u@%d '\n\
             logging_collector = off\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n",
            self.port,
            self.socket_dir().display()
        );
        // postgresql.auto.conf is read last and wins over earlier attempts' settings.
        std::fs::write(self.data_dir().join("postgresql.auto.conf"), conf)
            .context("writing postgresql.auto.conf")?;
        chown_to_postgres(&self.data_dir().join("postgresql.auto.conf"))?;

        let output = self
            .as_postgres(&self.bin("pg_ctl"))
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "60", "start"])
            .stdout(Stdio::null())
            .output()
            .context("running pg_ctl start")?;
        if let Err(error) = checked("pg_ctl start", &output) {
            bail!("{error:#}\nserver log:\n{}", self.server_log());
        }
        self.wait_ready(Duration::from_secs(30))
    }

    fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = Command::new(self.bin("pg_isready"))
                .args(["-q", "-h", self.host(), "-p", &self.port.to_string()])
                .status()
                .context("running pg_isready")?;
            if status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "PostgreSQL not ready after {timeout:?}\n{}",
                    self.server_log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn as_postgres(&self, program: &Path) -> Command {
        let mut command = Command::new("runuser");
        command
            .args(["-u", PG_OS_USER, "--"])
            .arg(program)
            // The caller's cwd may not be readable by postgres.
            .current_dir(self.dir.path());
        command
    }

    fn stop(&self) -> anyhow::Result<()> {
        let output = self
            .as_postgres(&self.bin("pg_ctl"))
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "stop"])
            .output()
            .context("running pg_ctl stop")?;
        checked("pg_ctl stop", &output)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // No postmaster.pid: the server never started (or already stopped).
        if !self.data_dir().join("postmaster.pid").exists() {
            return;
        }
        if let Err(error) = self.stop() {
            eprintln!(
                "jitgate-tests: stopping PostgreSQL on port {}: {error:#}",
                self.port
            );
        }
        // `dir` (a TempDir) is removed after this, as root.
    }
}

/// Makes `path` owned by the `postgres` OS user.
fn chown_to_postgres(path: &Path) -> anyhow::Result<()> {
    let id = |flag: &str| -> anyhow::Result<u32> {
        let output = Command::new("id")
            .args([flag, PG_OS_USER])
            .output()
            .context("running id")?;
        checked("id", &output)?;
        let text = String::from_utf8_lossy(&output.stdout);
        text.trim()
            .parse()
            .with_context(|| format!("parsing `id {flag} {PG_OS_USER}` output {text:?}"))
    };
    std::os::unix::fs::chown(path, Some(id("-u")?), Some(id("-g")?))
        .with_context(|| format!("chown postgres {}", path.display()))
}
