//! The conformance harness: one [`Stack`] per test, a fixture reset before every run, and the
//! comparison of a client's output run straight against PostgreSQL (outside the runner cgroup,
//! with the password) and through the agent (inside the cgroup, no password).
//!
//! Every scenario runs in two databases: `shop`, which has masked columns, so the agent runs its
//! masking machinery (a Describe injected before every Execute) over tables that have no masked
//! column (and COPY ... TO data through its COPY masker); and `plain`, which has none, so the
//! agent relays without it.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

pub use jitgate_tests::stack::{CI_ROLE, Credentials, SHOP_DB, Stack, StackOptions};

/// A database with no masked columns, created by [`Conformance::start`].
pub const PLAIN_DB: &str = "plain";
/// Both databases, for scenarios the policy allows in each.
pub const BOTH: [&str; 2] = [SHOP_DB, PLAIN_DB];

/// Tables and a function the scenarios use, created fresh (owned by the CI role) before each run
/// so the direct and the agent run start from the same state, sequences included.
pub fn fixture_sql() -> String {
    format!(
        "DROP TABLE IF EXISTS conf_items, conf_log, conf_counters;
CREATE TABLE conf_items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2), tags text[],
  data jsonb, created date, flag boolean, blob bytea, ratio float8);
INSERT INTO conf_items SELECT i, 'item ' || i, (i * 1.25)::numeric(10,2), ARRAY['t' || (i % 3), 'u'],
  jsonb_build_object('i', i, 'even', i % 2 = 0), date '2024-01-01' + i, i % 2 = 0,
  decode(lpad(to_hex(i), 8, '0'), 'hex'), i / 8.0 FROM generate_series(1, 200) i;
UPDATE conf_items SET price = NULL, tags = NULL WHERE id % 50 = 0;
CREATE TABLE conf_log (id serial PRIMARY KEY, note text);
CREATE TABLE conf_counters (id int PRIMARY KEY, n int NOT NULL);
INSERT INTO conf_counters SELECT i, 0 FROM generate_series(1, 8) i;
CREATE OR REPLACE FUNCTION conf_notice(msg text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'conf: %', msg; RAISE WARNING 'conf warning'; RETURN msg; END $$;
ALTER TABLE conf_items OWNER TO {CI_ROLE};
ALTER TABLE conf_log OWNER TO {CI_ROLE};
ALTER TABLE conf_counters OWNER TO {CI_ROLE};
ALTER FUNCTION conf_notice(text) OWNER TO {CI_ROLE};
"
    )
}

/// Which way a run reaches the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Straight to PostgreSQL from outside the runner cgroup, with the CI role's password.
    Direct,
    /// From inside the runner cgroup with the job's token: the kernel sends it to the agent.
    Agent,
}

/// What a client run produced, as compared between the two sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output, normalized by the scenario.
    pub stdout: String,
    /// Standard error, normalized by the scenario (empty when the scenario ignores it).
    pub stderr: String,
}

/// A stack plus what the conformance runs need.
pub struct Conformance {
    /// The running stack.
    pub stack: Stack,
    password: String,
}

/// Starts a stack, or prints why not and returns `None` when not root.
pub fn conformance() -> Option<Conformance> {
    if !jitgate_tests::process::is_root() {
        eprintln!("skipped: needs root (eBPF, cgroups, runuser)");
        return None;
    }
    // The direct side logs in as the CI role, so the agent does too: a per-session role would
    // show in current_user and in what the scenarios create.
    let stack = Stack::start_with_options(
        jitgate_tests::process::bins(),
        StackOptions {
            credentials: Credentials::Static,
            ..StackOptions::default()
        },
    )
    .expect("stack starts");
    stack
        .pg
        .psql_superuser(&format!("CREATE DATABASE {PLAIN_DB} OWNER {CI_ROLE};\n"))
        .expect("plain database created");
    let password = stack.upstream_password().expect("upstream password");
    Some(Conformance { stack, password })
}

impl Conformance {
    /// Recreates the fixture in `db`.
    pub fn reset(&self, db: &str) {
        self.stack
            .pg
            .psql_superuser_in(db, &fixture_sql())
            .expect("fixture loads");
    }

    /// The database's port (the agent is reached through the same address).
    pub fn port(&self) -> u16 {
        self.stack.pg.port()
    }

    /// A `postgresql://` URI for `db`: with the password for [`Side::Direct`], without it for
    /// [`Side::Agent`] (the job never has one).
    pub fn uri(&self, side: Side, db: &str) -> String {
        let port = self.port();
        match side {
            Side::Direct => format!(
                "postgresql://{CI_ROLE}:{}@127.0.0.1:{port}/{db}",
                self.password
            ),
            Side::Agent => format!("postgresql://{CI_ROLE}@127.0.0.1:{port}/{db}"),
        }
    }

    /// A libpq keyword connection string for `db` (password only for [`Side::Direct`]).
    pub fn keywords(&self, side: Side, db: &str) -> String {
        let base = format!(
            "host=127.0.0.1 port={} dbname={db} user={CI_ROLE} connect_timeout=10",
            self.port()
        );
        match side {
            Side::Direct => format!("{base} password={}", self.password),
            Side::Agent => base,
        }
    }

    /// `program` set up to run on `side`: libpq's `PGUSER` (and `PGPASSWORD` directly) set,
    /// inside the runner cgroup with the job's token for the agent.
    pub fn command(&self, side: Side, program: &str) -> Command {
        let mut command = match side {
            Side::Direct => {
                let mut command = Command::new(program);
                command.env("PGPASSWORD", &self.password);
                command
            }
            Side::Agent => self.stack.job(program, true),
        };
        command
            .env("PGUSER", CI_ROLE)
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGDATABASE")
            .env_remove("PGHOST");
        command
    }

    /// Runs the scenario in each of `dbs` on both sides, resetting the fixture before every run,
    /// and asserts the direct run passed `direct_ok` and the agent's outcome equals it. `run`
    /// builds and runs the client for one side and database; `normalize` turns its output into
    /// the compared [`Outcome`].
    pub fn compare(
        &self,
        scenario: &str,
        dbs: &[&str],
        mut run: impl FnMut(Side, &str) -> Output,
        normalize: impl Fn(&Output) -> Outcome,
        direct_ok: impl Fn(&Outcome) -> bool,
    ) {
        for db in dbs {
            self.reset(db);
            let direct = normalize(&run(Side::Direct, db));
            assert!(
                direct_ok(&direct),
                "{scenario} in {db}: the direct run itself is not as expected:\n{direct:#?}"
            );
            self.reset(db);
            let log_before = self.stack.agent.log().len();
            let agent = normalize(&run(Side::Agent, db));
            let agent_log = self.stack.agent.log();
            let new_log = agent_log.get(log_before..).unwrap_or_default();
            assert!(
                !new_log.contains("panicked"),
                "{scenario} in {db}: the agent panicked:\n{new_log}"
            );
            if direct != agent {
                panic!(
                    "{scenario} in {db}: the agent's result differs from PostgreSQL's\n{}\n\
                     --- direct ---\n{}\n--- agent ---\n{}\n--- agent log of this run (tail) ---\n{}",
                    first_difference(&direct, &agent),
                    render(&direct),
                    render(&agent),
                    tail(new_log, 40)
                );
            }
        }
    }
}

/// Runs `command` with `input` on its stdin and collects its output.
pub fn run_with_input(mut command: Command, input: &[u8]) -> Output {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("client spawns");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    // Written from a thread so a client that answers while reading never deadlocks on pipes.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().expect("client finishes");
    writer.join().expect("stdin writer");
    output
}

/// The outcome with stdout, stderr and the exit code kept as they are.
pub fn verbatim(out: &Output) -> Outcome {
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Whether the run exited 0.
pub fn succeeded(outcome: &Outcome) -> bool {
    outcome.code == Some(0)
}

fn render(outcome: &Outcome) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        outcome.code,
        tail(&outcome.stdout, 120),
        tail(&outcome.stderr, 40)
    )
}

/// The first line where two outcomes differ, with a little context, so a difference outside the
/// rendered tails is still shown.
fn first_difference(direct: &Outcome, agent: &Outcome) -> String {
    if direct.code != agent.code {
        return format!(
            "exit code: direct {:?}, agent {:?}",
            direct.code, agent.code
        );
    }
    for (stream, d, a) in [
        ("stdout", &direct.stdout, &agent.stdout),
        ("stderr", &direct.stderr, &agent.stderr),
    ] {
        let (d, a): (Vec<&str>, Vec<&str>) = (d.lines().collect(), a.lines().collect());
        let at = (0..d.len().max(a.len())).find(|&i| d.get(i) != a.get(i));
        if let Some(at) = at {
            let from = at.saturating_sub(5);
            let window = |lines: &[&str]| {
                lines
                    .get(from..(at + 5).min(lines.len()))
                    .unwrap_or_default()
                    .join("\n")
            };
            return format!(
                "first difference in {stream} at line {}:\n--- direct ---\n{}\n--- agent ---\n{}",
                at + 1,
                window(&d),
                window(&a)
            );
        }
    }
    "no line differs".into()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
