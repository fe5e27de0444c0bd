//! The agent's durable audit spool and its own lifecycle trail: nothing a client saw complete is
//! lost when the agent is killed or the collector is away, every session's hash chain verifies,
//! a full spool refuses new sessions, and SIGHUP reloads the policy.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::process::{Child, Stdio};

use jitgate_proto::audit::v1::{Event, event::Kind};
use jitgate_proto::chain;

use super::support::*;

/// Every event the collector has stored, read from its database.
fn stored_events(stack: &Stack) -> Vec<Event> {
    let db = rusqlite::Connection::open_with_flags(
        stack.collector.db_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the collector's database");
    let mut statement = db
        .prepare("SELECT payload FROM events ORDER BY session_id, seq")
        .expect("prepare");
    let rows = statement
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .expect("query");
    rows.map(|r| prost::Message::decode(r.expect("row").as_slice()).expect("an Event"))
        .collect()
}

/// The stored events grouped by session, each in `seq` order.
fn by_session(events: &[Event]) -> BTreeMap<String, Vec<&Event>> {
    let mut sessions: BTreeMap<String, Vec<&Event>> = BTreeMap::new();
    for event in events {
        sessions
            .entry(event.session_id.clone())
            .or_default()
            .push(event);
    }
    for events in sessions.values_mut() {
        events.sort_by_key(|e| e.seq);
    }
    sessions
}

/// Asserts that every session's chain in `events` verifies.
fn assert_chains_verify(events: &[Event]) {
    for (session, events) in by_session(events) {
        let report = chain::verify(events.iter().copied());
        assert!(report.intact(), "session {session}: {report:?}");
    }
}

/// The statement texts stored, with how often each occurs.
fn statement_counts(events: &[Event]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for event in events {
        if let Some(Kind::Statement(s)) = &event.kind {
            *counts.entry(s.text.clone()).or_default() += 1;
        }
    }
    counts
}

/// The numbered statement of client `c`, number `n` (as psql sends it from a script, with its
/// semicolon): its result is the marker `c{c} n{n}`.
fn numbered(c: usize, n: usize) -> String {
    format!("select 'c{c} n{n}' /* c{c} n{n} */;")
}

/// Starts `clients` psql jobs, each running `statements` numbered statements.
fn start_clients(stack: &Stack, clients: usize, statements: usize) -> Vec<Child> {
    (0..clients)
        .map(|c| {
            let script: String = (0..statements)
                .map(|n| format!("{}\n", numbered(c, n)))
                .collect();
            let path = stack.dir.path().join(format!("client-{c}.sql"));
            std::fs::write(&path, script).expect("script written");
            let mut command = stack.psql_command(true);
            command
                .args(["-v", "ON_ERROR_STOP=1", "-f"])
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            command.spawn().expect("psql spawns")
        })
        .collect()
}

/// Waits for the clients; returns the statements each saw complete (its printed markers),
/// whether each ran to the end, and what they said on stderr.
fn finish_clients(clients: Vec<Child>) -> (Vec<String>, Vec<bool>, String) {
    let mut completed = Vec::new();
    let mut whole = Vec::new();
    let mut stderr = String::new();
    for child in clients {
        let out = child.wait_with_output().expect("psql finishes");
        whole.push(out.status.success());
        stderr.push_str(&text(&out.stderr));
        for line in text(&out.stdout).lines() {
            let mut parts = line.split_whitespace();
            if let (Some(c), Some(n)) = (parts.next(), parts.next()) {
                let (Ok(c), Ok(n)) = (
                    c.trim_start_matches('c').parse(),
                    n.trim_start_matches('n').parse(),
                ) else {
                    continue;
                };
                completed.push(numbered(c, n));
            }
        }
    }
    (completed, whole, stderr)
}

/// Waits (up to `limit`) until the collector holds an event for every statement in `texts`;
/// returns the stored events then.
fn wait_for_statements(stack: &Stack, texts: &[String], limit: Duration) -> Vec<Event> {
    let deadline = Instant::now() + limit;
    loop {
        let events = stored_events(stack);
        let counts = statement_counts(&events);
        let missing = texts.iter().filter(|t| !counts.contains_key(*t)).count();
        if missing == 0 {
            return events;
        }
        let sample: Vec<&String> = counts.keys().take(3).collect();
        assert!(
            Instant::now() < deadline,
            "{missing} of {} completed statements never reached the collector ({} events \
             stored, e.g. {sample:?}; first expected {:?}); agent log:\n{}",
            texts.len(),
            events.len(),
            texts.first(),
            stack.agent.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn assert_exactly_once(events: &[Event], texts: &[String]) {
    let counts = statement_counts(events);
    for text in texts {
        assert_eq!(counts.get(text), Some(&1), "{text} stored once");
    }
    let ids: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), events.len(), "no event stored twice");
}

/// Lifecycle events (`AgentStarted` … `AgentStopped`, `PolicyReloaded`, `SpoolOverflow`).
fn lifecycle(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                Some(
                    Kind::AgentStarted(_)
                        | Kind::AgentStopped(_)
                        | Kind::PolicyReloaded(_)
                        | Kind::SpoolOverflow(_)
                )
            )
        })
        .collect()
}

#[test]
fn a_killed_agent_loses_no_statement_its_clients_saw_complete() {
    let Some(mut stack) = stack() else { return };
    let clients = start_clients(&stack, 4, 50_000);
    // Under load: every client has statements behind it (at the collector) and many to go.
    eventually("every client running statements", || {
        let counts = statement_counts(&stored_events(&stack));
        (0..4)
            .all(|c| counts.contains_key(&numbered(c, 50)))
            .then_some(())
    });
    stack.restart_agent_after_kill().expect("agent restarts");
    let (completed, whole, stderr) = finish_clients(clients);
    assert!(
        whole.iter().all(|w| !w),
        "every client was cut off by the kill: {whole:?}"
    );
    assert!(
        completed.len() > 100,
        "{} completed; clients said:\n{stderr}",
        completed.len()
    );

    let events = wait_for_statements(&stack, &completed, Duration::from_secs(60));
    assert_exactly_once(&events, &completed);
    assert_chains_verify(&events);
    eprintln!(
        "killed under load: {} statements completed by 4 clients, each stored once; {} events \
         in {} chains verified",
        completed.len(),
        events.len(),
        by_session(&events).len()
    );
    // The restarted agent's own start event is delivered from its spool like any other, and
    // may arrive after the statements: wait for it.
    let runs: Vec<String> = eventually("both agent runs recorded", || {
        let runs: Vec<String> = lifecycle(&stored_events(&stack))
            .into_iter()
            .filter(|e| matches!(e.kind, Some(Kind::AgentStarted(_))))
            .map(|e| e.session_id.clone())
            .collect();
        (runs.len() >= 2).then_some(runs)
    });
    assert_eq!(runs.len(), 2, "two agent runs, each with its own chain");
    assert_ne!(runs[0], runs[1]);
}

/// The server flushes a multi-statement Query's output only when its send buffer fills or the
/// Query ends, so the second statement streams rows slowly: the first statement's
/// CommandComplete reaches psql while the second still runs, and psql prints the first result
/// once the connection breaks.
const MULTI: &str = "select 'first of two' as marker; \
     select pg_sleep(0.005), repeat('y', 2000) from generate_series(1, 6000)";

#[test]
fn a_killed_agent_keeps_a_statement_completed_earlier_in_the_same_query() {
    let Some(mut stack) = stack() else { return };
    let mut command = stack.psql_command(true);
    command
        .args(["-c", MULTI])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let client = command.spawn().expect("psql spawns");
    // The second statement has been streaming rows for a while: the first one's
    // CommandComplete went out with the first buffer of them.
    eventually("the second statement to stream rows", || {
        let active = stack
            .pg
            .psql_superuser_in(
                "shop",
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%first of two%' \
                 AND state = 'active' AND now() - query_start > interval '1 second' \
                 AND pid <> pg_backend_pid();",
            )
            .ok()?;
        (active.trim() == "1").then_some(())
    });
    stack.restart_agent_after_kill().expect("agent restarts");
    let out = client.wait_with_output().expect("psql finishes");
    assert!(
        !out.status.success(),
        "the kill cut psql off: {}",
        describe(&out)
    );
    assert!(
        text(&out.stdout).contains("first of two"),
        "psql saw the first statement complete: {}",
        describe(&out)
    );
    let first = "select 'first of two' as marker";
    let events = wait_for_statements(&stack, &[first.to_owned()], Duration::from_secs(60));
    let recorded: Vec<&jitgate_proto::audit::v1::Statement> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::Statement(s)) if s.text == first => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].command_tag, "SELECT 1");
    assert_eq!(recorded[0].rows, 1);
    assert_chains_verify(&events);
}

#[test]
fn events_recorded_while_the_collector_is_down_arrive_exactly_once() {
    let Some(mut stack) = stack() else { return };
    let clients = start_clients(&stack, 3, 3000);
    std::thread::sleep(Duration::from_millis(300));
    stack.collector.stop();
    std::thread::sleep(Duration::from_secs(4));
    stack.collector.restart().expect("collector restarts");
    let (completed, whole, stderr) = finish_clients(clients);
    assert!(
        whole.iter().all(|w| *w),
        "the clients ran to the end: {whole:?}; they said:\n{stderr}"
    );
    assert_eq!(completed.len(), 3 * 3000);
    let events = wait_for_statements(&stack, &completed, Duration::from_secs(60));
    assert_exactly_once(&events, &completed);
    assert_chains_verify(&events);
}

/// A psql session kept open, reading statements from its stdin.
fn open_session(stack: &Stack) -> Child {
    let mut command = stack.psql_command(true);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.spawn().expect("psql spawns")
}

fn send(session: &mut Child, sql: &str) {
    let stdin = session.stdin.as_mut().expect("stdin");
    writeln!(stdin, "{sql};").expect("statement written");
    stdin.flush().expect("flushed");
}

fn wait_for_log(stack: &Stack, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stack.agent.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the agent log:\n{}",
            stack.agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_full_spool_refuses_new_sessions_and_recovers_when_the_collector_returns() {
    let Some(mut stack) = stack_with(StackOptions {
        audit: Some("spool_max_bytes = 16384".into()),
        ..StackOptions::default()
    }) else {
        return;
    };
    let mut open = open_session(&stack);
    send(&mut open, "select 'open a1'");
    std::thread::sleep(Duration::from_millis(500));
    stack.collector.stop();

    let fill: String = (0..100).map(|n| format!("select 'fill {n}';\n")).collect();
    let out = run_script(stack.psql_command(true), &fill);
    assert!(out.status.success(), "{}", describe(&out));
    wait_for_log(&stack, "audit spool full: refusing new sessions");

    let refused = stack.psql("select 'refused'", true).expect("psql runs");
    assert!(!refused.status.success(), "{}", describe(&refused));
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("audit spool full ("), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the collector at {} has not acknowledged events since",
            stack.collector.url()
        )),
        "{stderr}"
    );
    // The session opened before keeps working while the spool is full.
    send(&mut open, "select 'open a2 while full'");
    std::thread::sleep(Duration::from_millis(500));

    stack.collector.restart().expect("collector restarts");
    wait_for_log(&stack, "audit spool below its limit again");
    let accepted = stack.psql("select 'accepted again'", true).expect("psql");
    assert!(accepted.status.success(), "{}", describe(&accepted));
    assert!(text(&accepted.stdout).contains("accepted again"));
    drop(open.stdin.take());
    let out = open.wait_with_output().expect("open session ends");
    assert!(out.status.success(), "{}", describe(&out));
    assert!(text(&out.stdout).contains("open a2 while full"));

    let events = eventually(
        "the refusal, the overflow and its end at the collector",
        || {
            let events = stored_events(&stack);
            let counts = statement_counts(&events);
            let done = counts.contains_key("select 'accepted again'")
                && counts.contains_key("select 'open a2 while full';")
                && events
                    .iter()
                    .any(|e| matches!(&e.kind, Some(Kind::SpoolOverflow(o)) if o.cleared));
            done.then_some(events)
        },
    );
    let refusal = events
        .iter()
        .find_map(|e| match &e.kind {
            Some(Kind::SessionRefused(r)) if r.sqlstate == "53400" => Some(r),
            _ => None,
        })
        .expect("the refusal is recorded with 53400");
    assert!(refusal.reason.contains("audit spool full ("), "{refusal:?}");
    let overflows: Vec<(bool, u64, u64)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::SpoolOverflow(o)) => Some((o.cleared, o.bytes, o.max_bytes)),
            _ => None,
        })
        .collect();
    assert_eq!(overflows.len(), 2, "{overflows:?}");
    assert!(!overflows[0].0 && overflows[0].1 >= 16384 && overflows[0].2 == 16384);
    assert!(overflows[1].0 && overflows[1].1 < 16384);
    let statements = statement_counts(&events);
    for n in 0..100 {
        assert_eq!(statements.get(&format!("select 'fill {n}';")), Some(&1));
    }
    assert_chains_verify(&events);
}

/// The policy reloads stored so far: `(applied, error, policy_sha256)`.
fn reloads(stack: &Stack) -> Vec<(bool, String, String)> {
    stored_events(stack)
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::PolicyReloaded(r)) => {
                Some((r.applied, r.error.clone(), r.policy_sha256.clone()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn sighup_reloads_a_valid_policy_and_keeps_the_old_one_when_invalid() {
    let Some(mut stack) = stack() else { return };
    let before = stack.psql("select 'before reload'", true).expect("psql");
    assert!(before.status.success(), "{}", describe(&before));

    let deny_all = format!(
        "{}\n@id(\"hup-deny-all\")\n@reason(\"reloaded: nothing runs\")\n\
         forbid(principal, action in Jitgate::Action::\"statement\", resource);\n",
        jitgate_tests::stack::stack_policy()
    );
    std::fs::write(stack.policy_path(), &deny_all).expect("policy written");
    stack.agent.signal(libc::SIGHUP);
    let applied = eventually("PolicyReloaded (applied)", || {
        let r = reloads(&stack);
        (r.len() == 1).then(|| r[0].clone())
    });
    assert!(applied.0, "{applied:?}");
    let denied = stack.psql("select 'after reload'", true).expect("psql");
    assert!(!denied.status.success(), "{}", describe(&denied));
    assert!(
        text(&denied.stderr).contains("hup-deny-all"),
        "{}",
        describe(&denied)
    );

    std::fs::write(stack.policy_path(), "this is not cedar").expect("policy written");
    stack.agent.signal(libc::SIGHUP);
    let refused = eventually("PolicyReloaded (not applied)", || {
        let r = reloads(&stack);
        (r.len() == 2).then(|| r[1].clone())
    });
    assert!(!refused.0, "{refused:?}");
    assert!(!refused.1.is_empty(), "the error is recorded");
    assert_ne!(refused.2, applied.2, "each names the file it read");
    let still = stack.psql("select 'after bad reload'", true).expect("psql");
    assert!(!still.status.success(), "{}", describe(&still));
    assert!(
        text(&still.stderr).contains("hup-deny-all"),
        "the last valid policy stays in force: {}",
        describe(&still)
    );

    // SIGTERM: the run's chain ends with AgentStopped, delivered before the agent exits.
    stack.agent.stop();
    let events = stored_events(&stack);
    let run = lifecycle(&events);
    let stopped = run.last().expect("lifecycle events");
    let Some(Kind::AgentStopped(stop)) = &stopped.kind else {
        panic!("the run ends with AgentStopped: {run:?}");
    };
    assert_eq!(stop.reason, "SIGTERM");
    let report = chain::verify(by_session(&events)[&stopped.session_id].iter().copied());
    assert!(report.intact() && report.ended, "{report:?}");
    assert_chains_verify(&events);
}
