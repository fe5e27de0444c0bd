//! Realistic sample events for tests and demos: one Entra-authenticated `psql` session with an
//! allowed and a denied statement, and a refused connection. Shared by this crate's tests, the
//! agent's audit tests and the CLI tests so they all assert on the same facts.

use jitgate_proto::audit::v1::{
    Decision, Event, Identity, Process, SessionEnded, SessionRefused, SessionStarted, Statement,
    event::Kind,
};

/// Issuer of the sample identity (Entra v1 token issuer for a made-up tenant).
pub const ISSUER: &str = "https://sts.windows.net/72f988bf-0000-4000-8000-2d7cd011db47/";
/// Subject of the sample identity.
pub const SUBJECT: &str = "9b2c4a7e-1111-4222-8333-444455556666";
/// Entra object id of the sample identity.
pub const OBJECT_ID: &str = "0f5e2d1c-aaaa-4bbb-8ccc-dddd0000eeee";
/// Entra app id of the sample identity.
pub const APP_ID: &str = "c0ffee00-1234-4567-89ab-cdef01234567";
/// Executable of the sample process.
pub const EXE: &str = "/usr/lib/postgresql/15/bin/psql";
/// The allowed sample statement.
pub const ALLOWED_SQL: &str = "SELECT id, email FROM public.customers WHERE id < 4";
/// The denied sample statement.
pub const DENIED_SQL: &str = "DROP TABLE public.customers";
/// Start time of the sample session, microseconds since the Unix epoch (2026-11-01T09:30:00Z).
pub const START_US: i64 = 1_793_525_400_000_000;

/// The sample identity.
pub fn identity() -> Identity {
    Identity {
        issuer: ISSUER.into(),
        subject: SUBJECT.into(),
        audience: vec!["api://jitgate".into()],
        tenant_id: "72f988bf-0000-4000-8000-2d7cd011db47".into(),
        object_id: OBJECT_ID.into(),
        app_id: APP_ID.into(),
        roles: vec!["db.reader".into()],
        identity_type: "app".into(),
        expires_at: START_US / 1_000_000 + 3600,
        ..Identity::default()
    }
}

/// The sample process (`psql`, pid 4242).
pub fn process() -> Process {
    Process {
        pid: 4242,
        tgid: 4242,
        uid: 1001,
        gid: 1001,
        cgroup_id: 77,
        comm: "psql".into(),
        exe: EXE.into(),
    }
}

/// The four event kinds of the sample session, in order: started, an allowed `SELECT`, a denied
/// `DROP TABLE`, ended.
pub fn session_kinds() -> Vec<Kind> {
    vec![
        Kind::SessionStarted(SessionStarted {
            identity: Some(identity()),
            process: Some(process()),
            target: "db.prod.internal:5432".into(),
            database: "shop".into(),
            user: "ci".into(),
            upstream_user: "jit_4242_a1b2".into(),
            client_addr: "127.0.0.1:51234".into(),
        }),
        Kind::Statement(Statement {
            text: ALLOWED_SQL.into(),
            protocol: "simple".into(),
            kinds: vec!["select".into()],
            tables: vec!["public.customers".into()],
            decision: Decision::Allowed.into(),
            rows: 3,
            masked_cells: 3,
            command_tag: "SELECT 3".into(),
            duration_us: 812,
            ..Statement::default()
        }),
        Kind::Statement(Statement {
            text: DENIED_SQL.into(),
            protocol: "simple".into(),
            kinds: vec!["ddl".into()],
            tables: vec!["public.customers".into()],
            decision: Decision::Denied.into(),
            rule: "forbid-ddl".into(),
            reason: "DDL is not permitted for CI identities".into(),
            sqlstate: "42501".into(),
            ..Statement::default()
        }),
        Kind::SessionEnded(SessionEnded {
            reason: "client terminated".into(),
            statements: 2,
            denied: 1,
        }),
    ]
}

/// The sample session as complete events with ids `<session_id>-<seq>`, one second apart.
pub fn session_events(session_id: &str) -> Vec<Event> {
    session_kinds()
        .into_iter()
        .zip(0u64..)
        .map(|(kind, seq)| Event {
            event_id: format!("{session_id}-{seq}"),
            session_id: session_id.into(),
            seq,
            time_unix_us: START_US + i64::try_from(seq).unwrap_or(0) * 1_000_000,
            agent_host: "runner-01".into(),
            kind: Some(kind),
        })
        .collect()
}

/// A refused connection (no identity token) as a one-event session, 10 minutes after
/// [`START_US`].
pub fn refused_event(session_id: &str) -> Event {
    Event {
        event_id: format!("{session_id}-0"),
        session_id: session_id.into(),
        seq: 0,
        time_unix_us: START_US + 600_000_000,
        agent_host: "runner-01".into(),
        kind: Some(Kind::SessionRefused(SessionRefused {
            process: Some(process()),
            target: "db.prod.internal:5432".into(),
            reason: "no identity token for pid 4242".into(),
            sqlstate: "28000".into(),
        })),
    }
}
