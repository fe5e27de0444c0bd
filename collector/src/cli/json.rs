//! JSON-lines output of the `jitgate` CLI (`--json`, `jitgate export`): one object per session
//! or event, for `jq`, scripts and SIEMs. Field names are the snake_case names of
//! `audit.proto` and stay stable; every field of an event is present; times are given both as
//! RFC 3339 strings (`started`, `time`) and as the raw microseconds; enums as lowercase names;
//! hashes as lowercase hex.

use std::io::{self, Write};

use jitgate_proto::audit::v1::{
    ApprovalRequested, Event, GrantScope, Identity, Origin, Parameter, Process, ResultSample,
    SessionSummary, Tls, event::Kind,
};
use jitgate_proto::chain::hex;
use serde_json::{Value, json};

use super::format_time;
use crate::storage::{decision_name, kind_name, mode_name};

/// Writes one JSON object per session.
///
/// # Errors
/// The writer's I/O error.
pub fn write_sessions(out: &mut dyn Write, sessions: &[SessionSummary]) -> io::Result<()> {
    for s in sessions {
        let ended = (s.ended_unix_us != 0).then(|| format_time(s.ended_unix_us));
        let object = json!({
            "session_id": s.session_id,
            "started": format_time(s.started_unix_us),
            "started_unix_us": s.started_unix_us,
            "ended": ended,
            "ended_unix_us": s.ended_unix_us,
            "agent_host": s.agent_host,
            "identity": s.identity.as_ref().map(identity),
            "process": s.process.as_ref().map(process),
            "target": s.target,
            "database": s.database,
            "upstream_user": s.upstream_user,
            "statements": s.statements,
            "denied": s.denied,
            "refused": s.refused,
            "refused_reason": s.refused_reason,
            "agent_run": s.agent_run,
        });
        writeln!(out, "{object}")?;
    }
    Ok(())
}

/// Writes one JSON object per event; the kind's fields are under a key named after the kind
/// (`statement`, `session_started`, ...).
///
/// # Errors
/// The writer's I/O error.
pub fn write_events(out: &mut dyn Write, events: &[Event]) -> io::Result<()> {
    for e in events {
        let kind = kind_name(e.kind.as_ref());
        let mut object = json!({
            "event_id": e.event_id,
            "session_id": e.session_id,
            "seq": e.seq,
            "time": format_time(e.time_unix_us),
            "time_unix_us": e.time_unix_us,
            "agent_host": e.agent_host,
            "origin": origin_name(e.origin()),
            "prev_hash": hex(&e.prev_hash),
            "hash": hex(&e.hash),
            "kind": kind,
        });
        if let (Some(body), Some(map)) = (e.kind.as_ref().map(kind_body), object.as_object_mut()) {
            map.insert(kind.to_owned(), body);
        }
        writeln!(out, "{object}")?;
    }
    Ok(())
}

fn kind_body(kind: &Kind) -> Value {
    match kind {
        Kind::SessionStarted(s) => json!({
            "identity": s.identity.as_ref().map(identity),
            "process": s.process.as_ref().map(process),
            "target": s.target,
            "target_name": s.target_name,
            "database": s.database,
            "user": s.user,
            "upstream_user": s.upstream_user,
            "client_addr": s.client_addr,
            "ancestry": s.ancestry.iter().map(process).collect::<Vec<_>>(),
            "ci": s.ci.iter().map(|c| json!({ "name": c.name, "value": c.value })).collect::<Vec<_>>(),
            "client_tls": s.client_tls.as_ref().map(tls),
            "upstream_tls": s.upstream_tls.as_ref().map(tls),
            "credential_mode": s.credential_mode,
            "valid_until": (s.valid_until_unix_us != 0).then(|| format_time(s.valid_until_unix_us)),
            "valid_until_unix_us": s.valid_until_unix_us,
        }),
        Kind::SessionRefused(r) => json!({
            "process": r.process.as_ref().map(process),
            "target": r.target,
            "reason": r.reason,
            "sqlstate": r.sqlstate,
        }),
        Kind::SessionEnded(e) => json!({
            "reason": e.reason,
            "statements": e.statements,
            "denied": e.denied,
        }),
        Kind::Statement(s) => json!({
            "text": s.text,
            "protocol": s.protocol,
            "kinds": s.kinds,
            "tables": s.tables,
            "decision": decision_name(s.decision()),
            "rule": s.rule,
            "reason": s.reason,
            "rows": s.rows,
            "masked_cells": s.masked_cells,
            "command_tag": s.command_tag,
            "sqlstate": s.sqlstate,
            "duration_us": s.duration_us,
            "fingerprint": s.fingerprint,
            "parameters": s.parameters.iter().map(parameter).collect::<Vec<_>>(),
            "policies": s.policies,
            "approval_id": s.approval_id,
            "bytes": s.bytes,
            "sample": s.sample.as_ref().map(sample),
            "dangerous": s.dangerous,
        }),
        Kind::ApprovalRequested(r) => requested(r),
        Kind::ApprovalGranted(g) => json!({
            "approval_id": g.approval_id,
            "decided_by": g.decided_by,
            "comment": g.comment,
            "grant_expires": (g.grant_expires_unix_us != 0).then(|| format_time(g.grant_expires_unix_us)),
            "grant_expires_unix_us": g.grant_expires_unix_us,
        }),
        Kind::ApprovalDenied(d) => json!({
            "approval_id": d.approval_id,
            "decided_by": d.decided_by,
            "comment": d.comment,
        }),
        Kind::ApprovalExpired(x) => json!({
            "approval_id": x.approval_id,
            "expired": format_time(x.expired_unix_us),
            "expired_unix_us": x.expired_unix_us,
        }),
        Kind::AgentStarted(a) => json!({
            "version": a.version,
            "pid": a.pid,
            "config_sha256": a.config_sha256,
            "policy_sha256": a.policy_sha256,
            "spooled_events": a.spooled_events,
        }),
        Kind::AgentStopped(a) => json!({
            "reason": a.reason,
            "open_sessions": a.open_sessions,
        }),
        Kind::PolicyReloaded(p) => json!({
            "policy_sha256": p.policy_sha256,
            "applied": p.applied,
            "error": p.error,
            "policies": p.policies,
        }),
        Kind::SpoolOverflow(o) => json!({
            "bytes": o.bytes,
            "max_bytes": o.max_bytes,
            "action": o.action,
            "cleared": o.cleared,
        }),
    }
}

/// The fields of an approval request (an `approval_requested` event or a listed approval).
pub fn requested(r: &ApprovalRequested) -> Value {
    json!({
        "approval_id": r.approval_id,
        "identity": r.identity.as_ref().map(identity),
        "target": r.target,
        "database": r.database,
        "statement": r.statement,
        "fingerprint": r.fingerprint,
        "tables": r.tables,
        "actions": r.actions,
        "policy_ids": r.policy_ids,
        "reason": r.reason,
        "mode": mode_name(r.mode()),
        "grant_scope": scope_name(r.grant_scope()),
        "grant_ttl_s": r.grant_ttl_s,
        "expires": format_time(r.expires_unix_us),
        "expires_unix_us": r.expires_unix_us,
    })
}

/// The lowercase name of a grant scope.
pub fn scope_name(scope: GrantScope) -> &'static str {
    match scope {
        GrantScope::Fingerprint => "fingerprint",
        GrantScope::Tables => "tables",
        GrantScope::Unspecified => "unspecified",
    }
}

fn identity(i: &Identity) -> Value {
    json!({
        "issuer": i.issuer,
        "subject": i.subject,
        "audience": i.audience,
        "tenant_id": i.tenant_id,
        "object_id": i.object_id,
        "app_id": i.app_id,
        "roles": i.roles,
        "identity_type": i.identity_type,
        "repository": i.repository,
        "git_ref": i.git_ref,
        "workflow": i.workflow,
        "run_id": i.run_id,
        "expires_at": i.expires_at,
    })
}

fn process(p: &Process) -> Value {
    json!({
        "pid": p.pid,
        "tgid": p.tgid,
        "uid": p.uid,
        "gid": p.gid,
        "cgroup_id": p.cgroup_id,
        "comm": p.comm,
        "exe": p.exe,
        "ppid": p.ppid,
        "cmdline": p.cmdline,
    })
}

fn tls(t: &Tls) -> Value {
    json!({
        "enabled": t.enabled,
        "version": t.version,
        "cipher_suite": t.cipher_suite,
        "server_name": t.server_name,
    })
}

/// A bound parameter; a redacted one has `"value": null` and `"redacted": true`.
fn parameter(p: &Parameter) -> Value {
    json!({
        "index": p.index,
        "null": p.null,
        "binary": p.binary,
        "value": (!p.redacted && !p.null).then_some(&p.value),
        "redacted": p.redacted,
    })
}

/// The sample: column names and rows of values (`null` for SQL NULL).
fn sample(s: &ResultSample) -> Value {
    let rows: Vec<Vec<Option<&str>>> = s
        .rows
        .iter()
        .map(|row| {
            row.values
                .iter()
                .map(|v| (!v.null).then_some(v.text.as_str()))
                .collect()
        })
        .collect();
    json!({ "columns": s.columns, "rows": rows, "truncated": s.truncated })
}

/// The lowercase name of who wrote an event.
pub fn origin_name(origin: Origin) -> &'static str {
    match origin {
        Origin::Agent => "agent",
        Origin::Collector => "collector",
        Origin::Unspecified => "unspecified",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitgate_proto::audit::v1::{Claim, SampleRow, SampleValue, SessionStarted, Statement};

    fn one(kind: Kind) -> Value {
        let event = Event {
            kind: Some(kind),
            ..Event::default()
        };
        let mut out = Vec::new();
        write_events(&mut out, &[event]).expect("written");
        serde_json::from_slice(&out).expect("one JSON object")
    }

    #[test]
    fn session_and_statement_details_are_printed() {
        let started = one(Kind::SessionStarted(SessionStarted {
            ancestry: vec![Process {
                pid: 7,
                ppid: 1,
                cmdline: "bash -e".into(),
                ..Process::default()
            }],
            ci: vec![Claim {
                name: "tid".into(),
                value: "t".into(),
            }],
            client_tls: Some(Tls {
                enabled: true,
                version: "TLSv1_3".into(),
                ..Tls::default()
            }),
            credential_mode: "dynamic".into(),
            valid_until_unix_us: 5,
            ..SessionStarted::default()
        }));
        let s = &started["session_started"];
        assert_eq!(s["ancestry"][0]["cmdline"], "bash -e");
        assert_eq!(s["ci"][0]["name"], "tid");
        assert_eq!(s["client_tls"]["version"], "TLSv1_3");
        assert_eq!(s["upstream_tls"], Value::Null);
        assert_eq!(s["credential_mode"], "dynamic");
        let statement = one(Kind::Statement(Statement {
            parameters: vec![Parameter {
                index: 1,
                redacted: true,
                ..Parameter::default()
            }],
            sample: Some(ResultSample {
                columns: vec!["a".into()],
                rows: vec![SampleRow {
                    values: vec![SampleValue {
                        null: true,
                        text: String::new(),
                    }],
                }],
                truncated: true,
            }),
            policies: vec!["p".into()],
            ..Statement::default()
        }));
        let s = &statement["statement"];
        assert_eq!(s["parameters"][0]["redacted"], true);
        assert_eq!(s["sample"]["rows"][0][0], Value::Null);
        assert_eq!(s["policies"][0], "p");
    }
}
