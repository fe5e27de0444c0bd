//! `cargo xtask fuzz --capture-seeds`: records real client sessions against a throwaway
//! PostgreSQL and writes them as the fuzz targets' seed corpus (`agent/fuzz/corpus/<target>`).
//!
//! A loopback byte relay sits between the clients and the server and tees each direction of
//! every connection into memory; psql (a script of simple-protocol statements, errors, COPY,
//! LISTEN/NOTIFY, catalog queries) and pgbench (`-M simple`, `extended`, `prepared`) connect
//! through it with `sslmode=disable`, so both streams are plain protocol. The streams are cut
//! into seeds by [`super::seeds`]. Needs root, like every harness PostgreSQL.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, ensure};
use jitgate_tests::postgres::{PasswordAuth, PgServer};
use jitgate_tests::shop::SHOP_DB;

use crate::step;

/// Role the captured clients log in as (SCRAM over TCP, so the seeds hold a SASL exchange).
const ROLE: &str = "fuzz_seed";
/// Its throwaway password; the server it is valid for is deleted after the capture.
const PASSWORD: &str = "fuzz-seed-password";

/// Both directions of one captured connection, labelled by the client run that opened it.
#[derive(Debug, Default)]
pub struct Session {
    /// Which client run opened the connection, e.g. `pgbench-extended`.
    pub label: String,
    /// Client → server bytes.
    pub client: Vec<u8>,
    /// Server → client bytes.
    pub server: Vec<u8>,
}

/// The psql script: simple queries with results, NULLs, errors inside and outside a
/// transaction, notices, COPY both ways, notifications, prepared statements and `\d` catalog
/// queries.
const PSQL_SCRIPT: &str = r#"
SELECT id, name, email, card_number FROM customers ORDER BY id LIMIT 5;
SELECT c FROM customers c WHERE id = 1;
SELECT NULL::text AS nothing, 42 AS answer, now() > '2000-01-01' AS later;
SELECT 1 AS a; SELECT 'two' AS b;
BEGIN;
SELECT count(*) FROM orders WHERE total_cents > 10000;
SELECT 1/0;
ROLLBACK;
DO $$ BEGIN RAISE NOTICE 'seed notice %', 7; END $$;
SELECT missing_column FROM customers;
SELEC broken;
;
\copy (SELECT id, email FROM customers WHERE id < 4) TO STDOUT
CREATE TEMP TABLE scratch (a int, b text);
\copy scratch FROM STDIN
1	one
2	\N
\.
LISTEN seeds;
NOTIFY seeds, 'payload';
PREPARE byid(int) AS SELECT name FROM customers WHERE id = $1;
EXECUTE byid(3);
SHOW server_version;
SET application_name = 'seed';
SELECT name AS n FROM customers WHERE id = 2 \gset
SELECT :'n' AS echoed;
\d customers
"#;

/// Starts PostgreSQL and the relay, runs the clients through it, and returns every session.
pub fn sessions() -> anyhow::Result<Vec<Session>> {
    ensure!(
        step::is_root(),
        "capturing seeds starts a throwaway PostgreSQL, which needs root"
    );
    let server = PgServer::start()?;
    server.load_shop_dataset(SHOP_DB)?;
    server.create_role(ROLE, PASSWORD, PasswordAuth::Scram)?;
    server.psql_superuser(&format!("ALTER ROLE {ROLE} SUPERUSER;"))?;

    let relay = Relay::start(server.port())?;
    let script = std::env::temp_dir().join(format!("jitgate-fuzz-seed-{}.sql", std::process::id()));
    std::fs::write(&script, PSQL_SCRIPT).context("writing the psql script")?;
    let psql = client(&server, "psql", relay.port)
        .args(["-X", "-v", "ON_ERROR_STOP=0", "-f"])
        .arg(&script)
        .output();
    let _ = std::fs::remove_file(&script);
    checked("psql", psql?)?;
    relay.label("psql");

    let pgbench = |args: &[&str]| client(&server, "pgbench", relay.port).args(args).output();
    checked(
        "pgbench -i",
        pgbench(&["-i", "-I", "dtGp", "-s", "1", "-q"])?,
    )?;
    relay.label("pgbench-init");
    for mode in ["simple", "extended", "prepared"] {
        checked(mode, pgbench(&["-M", mode, "-t", "4", "-c", "1", "-n"])?)?;
        relay.label(&format!("pgbench-{mode}"));
        checked(
            mode,
            pgbench(&["-M", mode, "-S", "-t", "4", "-c", "1", "-n"])?,
        )?;
        relay.label(&format!("pgbench-{mode}-select"));
    }
    Ok(relay.finish())
}

/// `program` (psql, pgbench) from the server's bindir, pointed at the relay as [`ROLE`] over
/// TCP without TLS or GSS encryption.
fn client(server: &PgServer, program: &str, port: u16) -> Command {
    let mut command = Command::new(server.bin(program));
    command
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            ROLE,
            "-d",
            SHOP_DB,
        ])
        .env("PGPASSWORD", PASSWORD)
        .env("PGSSLMODE", "disable")
        .env("PGGSSENCMODE", "disable");
    command
}

/// Fails with the client's stderr when it exited non-zero (psql continues past the script's
/// intended errors and exits 0).
fn checked(what: &str, output: std::process::Output) -> anyhow::Result<()> {
    ensure!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// A loopback TCP relay to the server that records both directions of each connection.
struct Relay {
    port: u16,
    sessions: Arc<Mutex<Vec<Arc<Mutex<Session>>>>>,
    pumps: Arc<Mutex<Vec<JoinHandle<()>>>>,
    labelled: Mutex<usize>,
}

impl Relay {
    /// Listens on 127.0.0.1 (any port) and relays each accepted connection to `upstream`.
    fn start(upstream: u16) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the relay")?;
        let port = listener.local_addr()?.port();
        let sessions: Arc<Mutex<Vec<Arc<Mutex<Session>>>>> = Arc::default();
        let pumps: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (all, threads) = (sessions.clone(), pumps.clone());
        // The accept loop lives until xtask exits; every connection it takes is recorded.
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let session = Arc::new(Mutex::new(Session::default()));
                if let Ok(mut all) = all.lock() {
                    all.push(session.clone());
                }
                let handles = [
                    pump(&client, &server, session.clone(), true),
                    pump(&server, &client, session, false),
                ];
                if let Ok(mut threads) = threads.lock() {
                    threads.extend(handles.into_iter().flatten());
                }
            }
        });
        Ok(Self {
            port,
            sessions,
            pumps,
            labelled: Mutex::new(0),
        })
    }

    /// Names every session opened since the previous call `label`, once their bytes are in.
    fn label(&self, label: &str) {
        self.join_pumps();
        let (Ok(all), Ok(mut done)) = (self.sessions.lock(), self.labelled.lock()) else {
            return;
        };
        for session in &all[*done..] {
            if let Ok(mut session) = session.lock() {
                session.label = label.to_owned();
            }
        }
        *done = all.len();
    }

    fn join_pumps(&self) {
        let handles: Vec<JoinHandle<()>> = match self.pumps.lock() {
            Ok(mut pumps) => pumps.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for handle in handles {
            let _ = handle.join();
        }
    }

    /// Every labelled session, in connection order.
    fn finish(self) -> Vec<Session> {
        self.join_pumps();
        let Ok(all) = self.sessions.lock() else {
            return Vec::new();
        };
        all.iter()
            .filter_map(|s| s.lock().ok().map(|mut s| std::mem::take(&mut *s)))
            .filter(|s| !s.label.is_empty())
            .collect()
    }
}

/// Copies `from` → `to` until EOF, appending every chunk to the session's client or server
/// bytes; then half-closes `to` so the peer sees the end too.
fn pump(
    from: &TcpStream,
    to: &TcpStream,
    session: Arc<Mutex<Session>>,
    from_client: bool,
) -> Option<JoinHandle<()>> {
    let (mut from, mut to) = (from.try_clone().ok()?, to.try_clone().ok()?);
    Some(std::thread::spawn(move || {
        let mut chunk = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut chunk) {
            if n == 0 || to.write_all(&chunk[..n]).is_err() {
                break;
            }
            if let Ok(mut session) = session.lock() {
                let record = if from_client {
                    &mut session.client
                } else {
                    &mut session.server
                };
                record.extend_from_slice(&chunk[..n]);
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    }))
}
