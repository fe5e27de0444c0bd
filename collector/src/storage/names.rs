//! Backend-independent pieces of an event row: the stable lowercase names of kinds and
//! decisions, and the searchable columns both backends derive from an event.

use jitgate_proto::audit::v1::{Decision, Event, event::Kind};

use super::StoreError;

/// The searchable columns of the `events` table derived from one event.
pub(crate) struct Searchable<'a> {
    /// [`kind_name`] of the event.
    pub kind: &'static str,
    /// Statements only: [`decision_name`].
    pub decision: Option<&'static str>,
    /// Statements and approval requests: the SQL text.
    pub text: Option<&'a str>,
    /// Statements and approval requests: relation names, space-separated.
    pub tables: Option<String>,
    /// Statements and refusals: the SQLSTATE.
    pub sqlstate: Option<&'a str>,
}

impl<'a> Searchable<'a> {
    /// The columns of `event`.
    pub fn of(event: &'a Event) -> Searchable<'a> {
        let none = Searchable {
            kind: kind_name(event.kind.as_ref()),
            decision: None,
            text: None,
            tables: None,
            sqlstate: None,
        };
        match &event.kind {
            Some(Kind::Statement(statement)) => Searchable {
                decision: Some(decision_name(statement.decision())),
                text: Some(&statement.text),
                tables: Some(statement.tables.join(" ")),
                sqlstate: Some(&statement.sqlstate),
                ..none
            },
            Some(Kind::SessionRefused(refused)) => Searchable {
                sqlstate: Some(&refused.sqlstate),
                ..none
            },
            Some(Kind::ApprovalRequested(requested)) => Searchable {
                text: Some(&requested.statement),
                tables: Some(requested.tables.join(" ")),
                ..none
            },
            _ => none,
        }
    }
}

/// Checks the fields every stored event needs.
///
/// # Errors
/// [`StoreError::MissingField`] for an empty `event_id` or `session_id`.
pub(crate) fn check(event: &Event) -> Result<(), StoreError> {
    if event.event_id.is_empty() {
        return Err(StoreError::MissingField { field: "event_id" });
    }
    if event.session_id.is_empty() {
        return Err(StoreError::MissingField {
            field: "session_id",
        });
    }
    Ok(())
}

/// The stable lowercase name of an event kind, as stored in `events.kind` and printed by the CLI.
pub fn kind_name(kind: Option<&Kind>) -> &'static str {
    match kind {
        Some(Kind::SessionStarted(_)) => "session_started",
        Some(Kind::SessionRefused(_)) => "session_refused",
        Some(Kind::SessionEnded(_)) => "session_ended",
        Some(Kind::Statement(_)) => "statement",
        Some(Kind::ApprovalRequested(_)) => "approval_requested",
        Some(Kind::ApprovalGranted(_)) => "approval_granted",
        Some(Kind::ApprovalDenied(_)) => "approval_denied",
        Some(Kind::ApprovalExpired(_)) => "approval_expired",
        Some(Kind::AgentStarted(_)) => "agent_started",
        Some(Kind::AgentStopped(_)) => "agent_stopped",
        Some(Kind::PolicyReloaded(_)) => "policy_reloaded",
        Some(Kind::SpoolOverflow(_)) => "spool_overflow",
        None => "unknown",
    }
}

/// Every name [`kind_name`] gives a known event kind.
pub const KIND_NAMES: &[&str] = &[
    "session_started",
    "session_refused",
    "session_ended",
    "statement",
    "approval_requested",
    "approval_granted",
    "approval_denied",
    "approval_expired",
    "agent_started",
    "agent_stopped",
    "policy_reloaded",
    "spool_overflow",
];

/// The stable lowercase name of a policy decision.
pub fn decision_name(decision: Decision) -> &'static str {
    match decision {
        Decision::Allowed => "allowed",
        Decision::Denied => "denied",
        Decision::Unspecified => "unspecified",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_lists_every_kind_once() {
        let kinds = [
            Kind::SessionStarted(Default::default()),
            Kind::SessionRefused(Default::default()),
            Kind::SessionEnded(Default::default()),
            Kind::Statement(Default::default()),
            Kind::ApprovalRequested(Default::default()),
            Kind::ApprovalGranted(Default::default()),
            Kind::ApprovalDenied(Default::default()),
            Kind::ApprovalExpired(Default::default()),
            Kind::AgentStarted(Default::default()),
            Kind::AgentStopped(Default::default()),
            Kind::PolicyReloaded(Default::default()),
            Kind::SpoolOverflow(Default::default()),
        ];
        let names: Vec<&str> = kinds.iter().map(|k| kind_name(Some(k))).collect();
        assert_eq!(names, KIND_NAMES);
    }
}
