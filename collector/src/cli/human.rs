//! Aligned text output of the `jitgate` CLI, for people reading a terminal.
//!
//! Sessions are one table row each. Events are one row each with a detail column that may
//! continue on indented lines (identity, process, the SQL text). Empty fields are left out;
//! values with spaces are quoted.

use std::io::{self, Write};

use jitgate_proto::audit::v1::{
    Decision, Event, Identity, Parameter, Process, SampleValue, SessionStarted, SessionSummary,
    Statement, Tls, event::Kind,
};

use super::format_time;
use crate::storage::{decision_name, kind_name, mode_name};

/// Writes `sessions` as a table: session id, start time, status (open, ended, refused; running
/// or stopped for an agent's own lifecycle chain), statement and denial counts, target, database, upstream role, process, and last (the widest) the
/// identity, or the reason a refused connection was refused.
///
/// # Errors
/// The writer's I/O error.
pub fn write_sessions(out: &mut dyn Write, sessions: &[SessionSummary]) -> io::Result<()> {
    if sessions.is_empty() {
        return writeln!(out, "no sessions");
    }
    let header = [
        "SESSION", "STARTED", "STATUS", "STMTS", "DENIED", "TARGET", "DATABASE", "ROLE", "PROCESS",
        "IDENTITY",
    ];
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            let (status, who) = if s.refused {
                ("refused", format!("refused: {}", s.refused_reason))
            } else if s.agent_run {
                let status = if s.ended_unix_us == 0 {
                    "running"
                } else {
                    "stopped"
                };
                (
                    status,
                    format!("agent run on {}", or_dash(s.agent_host.clone())),
                )
            } else {
                let status = if s.ended_unix_us == 0 {
                    "open"
                } else {
                    "ended"
                };
                (status, or_dash(identity(s.identity.as_ref(), false)))
            };
            vec![
                s.session_id.clone(),
                format_time(s.started_unix_us),
                status.to_owned(),
                s.statements.to_string(),
                s.denied.to_string(),
                or_dash(s.target.clone()),
                or_dash(s.database.clone()),
                or_dash(s.upstream_user.clone()),
                or_dash(process(s.process.as_ref())),
                who,
            ]
        })
        .collect();
    write_table(out, &header, &rows)
}

/// Writes the events of `session_id`: seq, time, kind and the kind's details.
///
/// # Errors
/// The writer's I/O error.
pub fn write_events(out: &mut dyn Write, session_id: &str, events: &[Event]) -> io::Result<()> {
    if events.is_empty() {
        return writeln!(out, "no events for session {session_id}");
    }
    let header = ["SEQ", "TIME", "KIND", "DETAIL"];
    let rows: Vec<(Vec<String>, Vec<String>)> = events
        .iter()
        .map(|e| {
            let cells = vec![
                e.seq.to_string(),
                format_time(e.time_unix_us),
                kind_name(e.kind.as_ref()).to_owned(),
            ];
            (cells, details(e))
        })
        .collect();
    let mut widths: Vec<usize> = header[..3].iter().map(|h| h.len()).collect();
    for (cells, _) in &rows {
        for (width, cell) in widths.iter_mut().zip(cells) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let indent: usize = widths.iter().map(|w| w + 2).sum();
    writeln!(out, "session {session_id}")?;
    write_line(out, &widths, &header.map(str::to_owned))?;
    for (mut cells, lines) in rows {
        let mut lines = lines.into_iter();
        cells.push(lines.next().unwrap_or_default());
        write_line(out, &widths, &cells)?;
        for line in lines {
            writeln!(out, "{:indent$}{line}", "")?;
        }
    }
    Ok(())
}

/// Writes one live event (`jitgate events --follow`): time, session, seq and kind on one line,
/// the kind's details indented below.
///
/// # Errors
/// The writer's I/O error.
pub fn write_live_event(out: &mut dyn Write, event: &Event) -> io::Result<()> {
    writeln!(
        out,
        "{}  {}  #{}  {}",
        format_time(event.time_unix_us),
        event.session_id,
        event.seq,
        kind_name(event.kind.as_ref())
    )?;
    for line in details(event) {
        writeln!(out, "    {line}")?;
    }
    Ok(())
}

/// Detail lines of one event; the first goes in the DETAIL column, the rest below it.
pub fn details(event: &Event) -> Vec<String> {
    match &event.kind {
        Some(Kind::SessionStarted(s)) => session_started(s),
        Some(Kind::SessionRefused(r)) => vec![
            fields(&[
                ("reason", &r.reason),
                ("sqlstate", &r.sqlstate),
                ("target", &r.target),
            ]),
            format!("process  {}", or_dash(process(r.process.as_ref()))),
        ],
        Some(Kind::SessionEnded(e)) => vec![fields(&[
            ("reason", &e.reason),
            ("statements", &e.statements.to_string()),
            ("denied", &e.denied.to_string()),
        ])],
        Some(Kind::Statement(s)) => statement(s),
        Some(Kind::ApprovalRequested(r)) => {
            let (tables, actions) = (r.tables.join(","), r.actions.join(","));
            let policies = r.policy_ids.join(",");
            let by = r
                .identity
                .as_ref()
                .map(|i| i.subject.clone())
                .unwrap_or_default();
            let mut lines = vec![fields(&[
                ("approval", &r.approval_id),
                ("by", &by),
                ("mode", mode_name(r.mode())),
                ("policy", &policies),
                ("reason", &r.reason),
                ("tables", &tables),
                ("actions", &actions),
                ("expires", &format_time(r.expires_unix_us)),
            ])];
            lines.push(format!(
                "sql: {}",
                r.statement.lines().next().unwrap_or_default()
            ));
            lines
        }
        Some(Kind::ApprovalGranted(g)) => {
            let until = if g.grant_expires_unix_us == 0 {
                String::new()
            } else {
                format_time(g.grant_expires_unix_us)
            };
            vec![format!(
                "APPROVED {}",
                fields(&[
                    ("approval", &g.approval_id),
                    ("by", &g.decided_by),
                    ("comment", &g.comment),
                    ("grant_until", &until),
                ])
            )]
        }
        Some(Kind::ApprovalDenied(d)) => vec![format!(
            "DENIED {}",
            fields(&[
                ("approval", &d.approval_id),
                ("by", &d.decided_by),
                ("comment", &d.comment),
            ])
        )],
        Some(Kind::ApprovalExpired(x)) => vec![format!(
            "EXPIRED {}",
            fields(&[
                ("approval", &x.approval_id),
                ("at", &format_time(x.expired_unix_us)),
            ])
        )],
        Some(Kind::AgentStarted(a)) => vec![format!(
            "AGENT STARTED {}",
            fields(&[
                ("version", &a.version),
                ("pid", &a.pid.to_string()),
                ("policy", &a.policy_sha256),
                ("spooled", &a.spooled_events.to_string()),
            ])
        )],
        Some(Kind::AgentStopped(a)) => vec![format!(
            "AGENT STOPPED {}",
            fields(&[
                ("reason", &a.reason),
                ("open_sessions", &a.open_sessions.to_string())
            ])
        )],
        Some(Kind::PolicyReloaded(p)) => vec![format!(
            "POLICY {} {}",
            if p.applied {
                "RELOADED"
            } else {
                "RELOAD FAILED"
            },
            fields(&[
                ("policy", &p.policy_sha256),
                ("policies", &p.policies.to_string()),
                ("error", &p.error),
            ])
        )],
        Some(Kind::SpoolOverflow(o)) => vec![format!(
            "SPOOL {} {}",
            if o.cleared { "BELOW LIMIT" } else { "FULL" },
            fields(&[
                ("bytes", &o.bytes.to_string()),
                ("max_bytes", &o.max_bytes.to_string()),
                ("action", &o.action),
            ])
        )],
        None => vec!["(event kind unknown to this CLI)".to_owned()],
    }
}

fn session_started(s: &SessionStarted) -> Vec<String> {
    let mut lines = vec![
        format!("identity {}", or_dash(identity(s.identity.as_ref(), true))),
        format!("process  {}", or_dash(process(s.process.as_ref()))),
    ];
    for (depth, ancestor) in s.ancestry.iter().enumerate() {
        let label = if depth == 0 { "parents " } else { "        " };
        lines.push(format!("{label} {}", process(Some(ancestor))));
    }
    if !s.ci.is_empty() {
        let claims: Vec<(&str, &str)> =
            s.ci.iter()
                .map(|c| (c.name.as_str(), c.value.as_str()))
                .collect();
        lines.push(format!("ci       {}", fields(&claims)));
    }
    let valid_until = if s.valid_until_unix_us == 0 {
        String::new()
    } else {
        format_time(s.valid_until_unix_us)
    };
    lines.push(format!(
        "target   {}",
        fields(&[
            ("name", &s.target_name),
            ("addr", &s.target),
            ("database", &s.database),
            ("user", &s.user),
            ("upstream", &s.upstream_user),
            ("client", &s.client_addr),
            ("credential", &s.credential_mode),
            ("valid_until", &valid_until),
        ])
    ));
    if s.client_tls.is_some() || s.upstream_tls.is_some() {
        lines.push(format!(
            "tls      client: {}; upstream: {}",
            tls(s.client_tls.as_ref()),
            tls(s.upstream_tls.as_ref())
        ));
    }
    lines
}

/// `TLSv1_3 TLS13_AES_256_GCM_SHA384 sni=db.internal`, or `none`.
fn tls(tls: Option<&Tls>) -> String {
    match tls {
        Some(t) if t.enabled => {
            let detail = fields(&[
                ("version", &t.version),
                ("cipher", &t.cipher_suite),
                ("sni", &t.server_name),
            ]);
            if detail.is_empty() {
                "on".to_owned()
            } else {
                detail
            }
        }
        _ => "none".to_owned(),
    }
}

/// `$1='abc' $2=NULL $3=<redacted>`.
fn parameters(parameters: &[Parameter]) -> String {
    parameters
        .iter()
        .map(|p| {
            let value = if p.redacted {
                "<redacted>".to_owned()
            } else if p.null {
                "NULL".to_owned()
            } else if p.binary {
                format!("\\x{}", p.value)
            } else {
                format!("'{}'", p.value.replace('\'', "''"))
            };
            format!("${}={value}", p.index)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One value of a result sample as shown in a table: `NULL`, or the text.
pub fn sample_value(value: &SampleValue) -> String {
    if value.null {
        "NULL".to_owned()
    } else {
        value.text.clone()
    }
}

fn statement(s: &Statement) -> Vec<String> {
    let decision = decision_name(s.decision()).to_uppercase();
    let (kinds, tables) = (s.kinds.join(","), s.tables.join(","));
    let (rows, masked) = (s.rows.to_string(), s.masked_cells.to_string());
    let (bytes, policies) = (s.bytes.to_string(), s.policies.join(","));
    let dangerous = s.dangerous.join(",");
    let duration = if s.duration_us == 0 {
        String::new()
    } else {
        format!("{}us", s.duration_us)
    };
    let mut pairs = vec![
        ("policy", policies.as_str()),
        ("rule", &s.rule),
        ("reason", &s.reason),
        ("approval", &s.approval_id),
        ("kinds", &kinds),
        ("tables", &tables),
        ("dangerous", &dangerous),
    ];
    // A denied statement never reached the server: no rows, masking or command tag.
    if s.decision() != Decision::Denied {
        pairs.extend([
            ("rows", rows.as_str()),
            ("bytes", &bytes),
            ("masked", &masked),
        ]);
    }
    pairs.extend([
        ("tag", s.command_tag.as_str()),
        ("sqlstate", &s.sqlstate),
        ("protocol", &s.protocol),
        ("took", &duration),
    ]);
    let summary = fields(&pairs);
    let mut lines = vec![format!("{decision} {summary}")];
    let mut sql = s.text.lines();
    lines.push(format!("sql: {}", sql.next().unwrap_or_default()));
    lines.extend(sql.map(|line| format!("     {line}")));
    if !s.parameters.is_empty() {
        lines.push(format!("params: {}", parameters(&s.parameters)));
    }
    if let Some(sample) = s.sample.as_ref().filter(|x| !x.columns.is_empty()) {
        lines.push(format!(
            "sample: {} rows{} of ({})",
            sample.rows.len(),
            if sample.truncated { "+" } else { "" },
            sample.columns.join(", ")
        ));
    }
    lines
}

/// `iss=.. sub=.. oid=.. appid=..`, with `full` also tenant, repository, ref, workflow, run
/// and roles when present.
pub(super) fn identity(identity: Option<&Identity>, full: bool) -> String {
    let Some(i) = identity else {
        return String::new();
    };
    let roles = i.roles.join(",");
    let mut pairs = vec![
        ("iss", i.issuer.as_str()),
        ("sub", &i.subject),
        ("oid", &i.object_id),
        ("appid", &i.app_id),
    ];
    if full {
        pairs.extend([
            ("tid", i.tenant_id.as_str()),
            ("type", &i.identity_type),
            ("repo", &i.repository),
            ("ref", &i.git_ref),
            ("workflow", &i.workflow),
            ("run", &i.run_id),
            ("roles", &roles),
        ]);
    }
    fields(&pairs)
}

/// `pid=.. ppid=.. comm=.. exe=.. cmdline=..`.
fn process(process: Option<&Process>) -> String {
    let Some(p) = process else {
        return String::new();
    };
    let ppid = if p.ppid == 0 {
        String::new()
    } else {
        p.ppid.to_string()
    };
    fields(&[
        ("pid", &p.pid.to_string()),
        ("ppid", &ppid),
        ("comm", &p.comm),
        ("exe", &p.exe),
        ("cmdline", &p.cmdline),
    ])
}

/// `key=value` pairs separated by spaces, empty values left out, values with spaces quoted.
pub(super) fn fields(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, value)| {
            if value.contains(char::is_whitespace) || value.contains('"') {
                format!("{key}={value:?}")
            } else {
                format!("{key}={value}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn or_dash(value: String) -> String {
    if value.is_empty() {
        "-".to_owned()
    } else {
        value
    }
}

/// Writes a header and rows with every column but the last padded to its widest cell.
///
/// # Errors
/// The writer's I/O error.
pub fn write_table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    write_line(out, &widths, &header)?;
    for row in rows {
        write_line(out, &widths, row)?;
    }
    Ok(())
}

fn write_line(out: &mut dyn Write, widths: &[usize], cells: &[String]) -> io::Result<()> {
    let last = cells.len().saturating_sub(1);
    for (i, cell) in cells.iter().enumerate() {
        if i == last {
            writeln!(out, "{cell}")?;
        } else {
            let width = widths.get(i).copied().unwrap_or(0);
            write!(out, "{cell:<width$}  ")?;
        }
    }
    Ok(())
}
