//! Realistic sample events for tests and demos: one Entra-authenticated `psql` session with an
//! allowed and a denied statement, a refused connection, and a GitHub Actions session with
//! every detail field (sample rows, parameters, an approval) that is still open. Shared by this crate's tests, the
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
        ..Process::default()
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
            ..SessionStarted::default()
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
    let mut prev = Vec::new();
    session_kinds()
        .into_iter()
        .zip(0u64..)
        .map(|(kind, seq)| {
            let mut event = Event {
                event_id: format!("{session_id}-{seq}"),
                session_id: session_id.into(),
                seq,
                time_unix_us: START_US + i64::try_from(seq).unwrap_or(0) * 1_000_000,
                agent_host: "runner-01".into(),
                kind: Some(kind),
                ..Event::default()
            };
            prev = jitgate_proto::chain::seal(&mut event, &prev).to_vec();
            event
        })
        .collect()
}

/// A refused connection (no identity token) as a one-event session, 10 minutes after
/// [`START_US`].
pub fn refused_event(session_id: &str) -> Event {
    let mut event = Event {
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
        ..Event::default()
    };
    jitgate_proto::chain::seal(&mut event, &[]);
    event
}

/// Repository claim of the second sample identity ([`other_identity`]).
pub const OTHER_REPO: &str = "acme/billing";
/// Subject of the second sample identity.
pub const OTHER_SUBJECT: &str = "repo:acme/billing:ref:refs/heads/main";
/// Target of the rich sample session ([`rich_session_events`]).
pub const OTHER_TARGET: &str = "db.billing.internal:5432";
/// Approval id in the rich sample session.
pub const APPROVAL_ID: &str = "01935f00-0000-7000-8000-00000000a001";
/// The statement of the rich sample session that needed approval.
pub const APPROVED_SQL: &str = "UPDATE public.invoices SET paid = true WHERE id = $1";

/// A second identity: a GitHub Actions workload of [`OTHER_REPO`].
pub fn other_identity() -> Identity {
    Identity {
        issuer: "https://token.actions.githubusercontent.com".into(),
        subject: OTHER_SUBJECT.into(),
        audience: vec!["jitgate".into()],
        repository: OTHER_REPO.into(),
        git_ref: "refs/heads/main".into(),
        workflow: "deploy".into(),
        run_id: "4711".into(),
        expires_at: START_US / 1_000_000 + 7200,
        ..Identity::default()
    }
}

/// Seals `kinds` as one session's events: ids `<session_id>-<seq>`, one second apart from
/// `start_us`, recorded on `host`.
pub fn seal_session(session_id: &str, host: &str, start_us: i64, kinds: Vec<Kind>) -> Vec<Event> {
    let mut prev = Vec::new();
    kinds
        .into_iter()
        .zip(0u64..)
        .map(|(kind, seq)| {
            let mut event = Event {
                event_id: format!("{session_id}-{seq}"),
                session_id: session_id.into(),
                seq,
                time_unix_us: start_us + i64::try_from(seq).unwrap_or(0) * 1_000_000,
                agent_host: host.into(),
                kind: Some(kind),
                ..Event::default()
            };
            prev = jitgate_proto::chain::seal(&mut event, &prev).to_vec();
            event
        })
        .collect()
}

/// A session of [`other_identity`] to [`OTHER_TARGET`] on `runner-02`, one hour after
/// [`START_US`], with every detail field set: ancestry, CI claims, TLS on both legs, a SELECT
/// with a masked result sample, an UPDATE with parameters (one redacted) that ran after an
/// approval, and the approval's collector-written events (requested, granted). Not ended: the
/// session is still open.
pub fn rich_session_events(session_id: &str) -> Vec<Event> {
    use jitgate_proto::audit::v1::{
        ApprovalGranted, ApprovalMode, ApprovalRequested, Claim, Origin, Parameter, ResultSample,
        SampleRow, SampleValue, Tls,
    };
    let start = START_US + 3_600_000_000;
    let tls = |sni: &str| Tls {
        enabled: true,
        version: "TLSv1_3".into(),
        cipher_suite: "TLS13_AES_256_GCM_SHA384".into(),
        server_name: sni.into(),
    };
    let value = |text: &str| SampleValue {
        null: false,
        text: text.into(),
    };
    let mut events = seal_session(
        session_id,
        "runner-02",
        start,
        vec![
            Kind::SessionStarted(SessionStarted {
                identity: Some(other_identity()),
                process: Some(Process {
                    ppid: 4000,
                    cmdline: "python3 migrate.py".into(),
                    comm: "python3".into(),
                    exe: "/usr/bin/python3.11".into(),
                    pid: 4100,
                    tgid: 4100,
                    ..Process::default()
                }),
                target: OTHER_TARGET.into(),
                target_name: "billing".into(),
                database: "billing".into(),
                user: "ci".into(),
                upstream_user: "jit_4100_beef".into(),
                client_addr: "127.0.0.1:40000".into(),
                ancestry: vec![Process {
                    pid: 4000,
                    ppid: 1,
                    comm: "bash".into(),
                    exe: "/usr/bin/bash".into(),
                    cmdline: "bash -e run.sh".into(),
                    ..Process::default()
                }],
                ci: vec![
                    Claim {
                        name: "repository".into(),
                        value: OTHER_REPO.into(),
                    },
                    Claim {
                        name: "actor".into(),
                        value: "octocat".into(),
                    },
                ],
                client_tls: Some(tls("db.billing.internal")),
                upstream_tls: Some(tls("pg-primary.billing")),
                credential_mode: "dynamic".into(),
                valid_until_unix_us: start + 3_600_000_000,
            }),
            Kind::Statement(Statement {
                text: "SELECT id, email FROM public.customers".into(),
                protocol: "simple".into(),
                kinds: vec!["select".into()],
                tables: vec!["public.customers".into()],
                decision: Decision::Allowed.into(),
                policies: vec!["read-customers".into()],
                rows: 3,
                bytes: 96,
                masked_cells: 3,
                command_tag: "SELECT 3".into(),
                duration_us: 640,
                sample: Some(ResultSample {
                    columns: vec!["id".into(), "email".into()],
                    rows: vec![
                        SampleRow {
                            values: vec![value("1"), value("a***@example.com")],
                        },
                        SampleRow {
                            values: vec![value("2"), value("b***@example.com")],
                        },
                        SampleRow {
                            values: vec![
                                value("3"),
                                SampleValue {
                                    null: true,
                                    text: String::new(),
                                },
                            ],
                        },
                    ],
                    truncated: false,
                }),
                ..Statement::default()
            }),
            Kind::Statement(Statement {
                text: APPROVED_SQL.into(),
                protocol: "extended".into(),
                kinds: vec!["update".into()],
                tables: vec!["public.invoices".into()],
                decision: Decision::Allowed.into(),
                policies: vec!["invoices-need-approval".into()],
                approval_id: APPROVAL_ID.into(),
                parameters: vec![
                    Parameter {
                        index: 1,
                        value: "42".into(),
                        ..Parameter::default()
                    },
                    Parameter {
                        index: 2,
                        redacted: true,
                        ..Parameter::default()
                    },
                ],
                rows: 0,
                command_tag: "UPDATE 1".into(),
                duration_us: 1_200,
                fingerprint: "a1b2c3d4".into(),
                ..Statement::default()
            }),
        ],
    );
    let approval = |step: &str, offset_us: i64, kind: Kind| Event {
        event_id: format!("{APPROVAL_ID}/{step}"),
        session_id: session_id.into(),
        seq: 2,
        time_unix_us: start + offset_us,
        agent_host: "runner-02".into(),
        origin: Origin::Collector.into(),
        kind: Some(kind),
        ..Event::default()
    };
    events.push(approval(
        "requested",
        1_200_000,
        Kind::ApprovalRequested(ApprovalRequested {
            approval_id: APPROVAL_ID.into(),
            identity: Some(other_identity()),
            target: OTHER_TARGET.into(),
            database: "billing".into(),
            statement: APPROVED_SQL.into(),
            tables: vec!["public.invoices".into()],
            actions: vec!["update".into()],
            policy_ids: vec!["invoices-need-approval".into()],
            reason: "writes to invoices need a second person".into(),
            mode: ApprovalMode::Hold.into(),
            expires_unix_us: start + 600_000_000,
            ..ApprovalRequested::default()
        }),
    ));
    events.push(approval(
        "granted",
        1_800_000,
        Kind::ApprovalGranted(ApprovalGranted {
            approval_id: APPROVAL_ID.into(),
            decided_by: "alice".into(),
            comment: "ticket OPS-12".into(),
            grant_expires_unix_us: 0,
        }),
    ));
    events
}
