//! Aligned text output of the `jitgate` CLI, for people reading a terminal.
//!
//! Sessions are one table row each. Events are one row each with a detail column that may
//! continue on indented lines (identity, process, the SQL text). Empty fields are left out;
//! values with spaces are quoted.

use std::io::{self, Write};

use jitgate_proto::audit::v1::{Event, Identity, Process, SessionSummary, Statement, event::Kind};

use super::format_time;
use crate::storage::{decision_name, kind_name};

/// Writes `sessions` as a table: session id, start time, identity, process, target, database,
/// upstream role, statement and denial counts, and status (open, ended, or refused with reason).
///
/// # Errors
/// The writer's I/O error.
pub fn write_sessions(out: &mut dyn Write, sessions: &[SessionSummary]) -> io::Result<()> {
    if sessions.is_empty() {
        return writeln!(out, "no sessions");
    }
    let header = [
        "SESSION", "STARTED", "IDENTITY", "PROCESS", "TARGET", "DATABASE", "ROLE", "STMTS",
        "DENIED", "STATUS",
    ];
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            let status = if s.refused {
                format!("refused: {}", s.refused_reason)
            } else if s.ended_unix_us == 0 {
                "open".to_owned()
            } else {
                format!("ended {}", format_time(s.ended_unix_us))
            };
            vec![
                s.session_id.clone(),
                format_time(s.started_unix_us),
                or_dash(identity(s.identity.as_ref())),
                or_dash(process(s.process.as_ref())),
                or_dash(s.target.clone()),
                or_dash(s.database.clone()),
                or_dash(s.upstream_user.clone()),
                s.statements.to_string(),
                s.denied.to_string(),
                status,
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

/// Detail lines of one event; the first goes in the DETAIL column, the rest below it.
fn details(event: &Event) -> Vec<String> {
    match &event.kind {
        Some(Kind::SessionStarted(s)) => vec![
            format!("identity {}", or_dash(identity(s.identity.as_ref()))),
            format!("process  {}", or_dash(process(s.process.as_ref()))),
            format!(
                "target   {}",
                fields(&[
                    ("addr", &s.target),
                    ("database", &s.database),
                    ("user", &s.user),
                    ("upstream", &s.upstream_user),
                    ("client", &s.client_addr),
                ])
            ),
        ],
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
        None => vec!["(event kind unknown to this CLI)".to_owned()],
    }
}

fn statement(s: &Statement) -> Vec<String> {
    let decision = decision_name(s.decision()).to_uppercase();
    let summary = fields(&[
        ("rule", &s.rule),
        ("reason", &s.reason),
        ("kinds", &s.kinds.join(",")),
        ("tables", &s.tables.join(",")),
        ("rows", &s.rows.to_string()),
        ("masked", &s.masked_cells.to_string()),
        ("tag", &s.command_tag),
        ("sqlstate", &s.sqlstate),
        ("protocol", &s.protocol),
        ("duration_us", &s.duration_us.to_string()),
    ]);
    let mut lines = vec![format!("{decision} {summary}")];
    let mut sql = s.text.lines();
    lines.push(format!("sql: {}", sql.next().unwrap_or_default()));
    lines.extend(sql.map(|line| format!("     {line}")));
    lines
}

/// `iss=.. sub=.. oid=.. appid=..` plus tenant, repository and roles when present.
fn identity(identity: Option<&Identity>) -> String {
    let Some(i) = identity else {
        return String::new();
    };
    fields(&[
        ("iss", &i.issuer),
        ("sub", &i.subject),
        ("oid", &i.object_id),
        ("appid", &i.app_id),
        ("tid", &i.tenant_id),
        ("repo", &i.repository),
        ("roles", &i.roles.join(",")),
    ])
}

/// `pid=.. comm=.. exe=..`.
fn process(process: Option<&Process>) -> String {
    let Some(p) = process else {
        return String::new();
    };
    fields(&[
        ("pid", &p.pid.to_string()),
        ("comm", &p.comm),
        ("exe", &p.exe),
    ])
}

/// `key=value` pairs separated by spaces, empty values left out, values with spaces quoted.
fn fields(pairs: &[(&str, &str)]) -> String {
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

fn or_dash(value: String) -> String {
    if value.is_empty() {
        "-".to_owned()
    } else {
        value
    }
}

/// Writes a header and rows with every column but the last padded to its widest cell.
fn write_table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
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
