//! Statement events for the session's audit trail, and the fence that keeps the client from
//! seeing a statement complete before its event is committed to the spool.
//!
//! A simple Query holding several statements is recorded as one event per top-level statement
//! ([`crate::policy::analysis::Part`]), each when the server completes it (CommandComplete,
//! EmptyQueryResponse or ErrorResponse), because the client sees each complete on its own:
//! psql prints a result as soon as its CommandComplete arrives. Statements the server never
//! completed (skipped after an error, cut off when the session ended) are recorded with a tag
//! saying so. Each event carries its own statement's classes, tables and dangerous features,
//! and the decision and policies of the whole string.

use jitgate_proto::audit::v1 as pb;

use super::Session;
use crate::policy::analysis::Part;
use crate::proxy::pending::{Execution, Pending};

impl Session<'_> {
    /// Records one event for a finished (or refused) request, with its whole text.
    pub(super) fn record_statement(&mut self, exec: &Execution) {
        let event = statement_event(exec, Scope::whole(exec));
        self.commit_statement(event);
    }

    /// Records the statement of the simple Query at the head of the queue that the server has
    /// just completed; call it before appending the completing message for the client.
    pub(super) fn record_completed_part(&mut self) {
        let Some(Pending::Query(exec)) = self.pending.front_mut() else {
            return;
        };
        if exec.parts_left() == 0 {
            // More completions than statements the parser found: nothing is left to name.
            tracing::warn!(sql = %exec.sql, "a completion beyond the statements of a Query");
            return;
        }
        let event = part_event(exec);
        exec.part_done();
        self.commit_statement(event);
    }

    /// Records every statement of `exec` (a simple Query) not yet recorded, each with `tag`:
    /// the server did not complete them.
    pub(super) fn record_remaining_parts(&mut self, mut exec: Execution, tag: &str) {
        for _ in 0..exec.parts_left() {
            exec.tags.push(tag.to_owned());
            let event = part_event(&exec);
            exec.part_done();
            self.commit_statement(event);
        }
    }

    /// Spools `event` and holds everything appended for the client from here on (the
    /// CommandComplete, ErrorResponse or ReadyForQuery that completes the statement) until the
    /// event is committed.
    fn commit_statement(&mut self, event: pb::Statement) {
        let ticket = self.audit.record(pb::event::Kind::Statement(event));
        let position = self.fence.appended(self.to_client.len());
        self.fence.hold(position, ticket);
    }
}

/// What one event says the statement is: its text and shape, and what it does.
struct Scope<'a> {
    text: &'a str,
    fingerprint: &'a str,
    kinds: Vec<String>,
    tables: Vec<String>,
    dangerous: Vec<String>,
}

impl<'a> Scope<'a> {
    /// The whole request `exec`, as its analysis describes it.
    fn whole(exec: &'a Execution) -> Scope<'a> {
        let analysis = exec.analysis.as_deref();
        Scope {
            text: &exec.sql,
            fingerprint: analysis.map_or("", |a| a.fingerprint.as_str()),
            kinds: analysis.map(|a| names(&a.kinds)).unwrap_or_default(),
            tables: analysis
                .map(|a| a.tables.iter().cloned().collect())
                .unwrap_or_default(),
            dangerous: analysis
                .map(|a| a.dangerous.iter().map(|d| (*d).to_owned()).collect())
                .unwrap_or_default(),
        }
    }

    /// One statement of a multi-statement string.
    fn part(exec: &'a Execution, part: &'a Part) -> Scope<'a> {
        Scope {
            text: exec.sql.get(part.range.clone()).unwrap_or(&exec.sql),
            fingerprint: &part.fingerprint,
            kinds: names(&part.kinds),
            tables: part.tables.iter().cloned().collect(),
            dangerous: part.dangerous.iter().map(|d| (*d).to_owned()).collect(),
        }
    }
}

fn names(kinds: &std::collections::BTreeSet<crate::policy::StatementKind>) -> Vec<String> {
    kinds.iter().map(|k| k.as_str().to_owned()).collect()
}

/// The event of the statement of `exec` the server answers next: one of its parts, or its whole
/// text when it was refused or is a single statement.
fn part_event(exec: &Execution) -> pb::Statement {
    let scope = match exec.current_part() {
        Some(part) => Scope::part(exec, part),
        None => Scope::whole(exec),
    };
    statement_event(exec, scope)
}

/// The Statement event of `exec`, describing `scope`.
fn statement_event(exec: &Execution, scope: Scope<'_>) -> pb::Statement {
    let (decision, rule, reason) = match &exec.rejection {
        Some(r) => (pb::Decision::Denied, r.rule.clone(), r.message.clone()),
        None => (pb::Decision::Allowed, String::new(), String::new()),
    };
    pb::Statement {
        text: crate::audit::statement_text(scope.text),
        protocol: exec.protocol.to_owned(),
        kinds: scope.kinds,
        tables: scope.tables,
        decision: decision.into(),
        rule,
        reason,
        rows: exec.rows,
        masked_cells: exec.masked,
        command_tag: exec.tags.join("; "),
        sqlstate: exec.sqlstate.clone().unwrap_or_default(),
        duration_us: u64::try_from(exec.started.elapsed().as_micros()).unwrap_or(u64::MAX),
        fingerprint: scope.fingerprint.to_owned(),
        parameters: exec.parameters.to_vec(),
        policies: exec.verdict.policies.clone(),
        approval_id: exec.verdict.approval_id.clone().unwrap_or_default(),
        bytes: exec.bytes,
        sample: exec.sample.as_ref().and_then(|s| s.finish()),
        dangerous: scope.dangerous,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prost::Message;

    use super::*;

    fn events_of(sql: &str) -> Vec<pb::Statement> {
        let analysis = Arc::new(crate::policy::analysis::analyze(sql).expect("parses"));
        let mut exec = Execution::new(sql.into(), "simple", Some(analysis), None);
        let mut events = Vec::new();
        for _ in 0..exec.parts_left() {
            events.push(part_event(&exec));
            exec.part_done();
        }
        events
    }

    #[test]
    fn each_statement_event_describes_its_own_statement() {
        let events = events_of("select * from a; delete from b where id = 1");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].text, "select * from a");
        assert_eq!(events[0].kinds, ["select"]);
        assert_eq!(events[0].tables, ["a"]);
        assert_eq!(events[1].text, "delete from b where id = 1");
        assert_eq!(events[1].kinds, ["delete"]);
        assert_eq!(events[1].tables, ["b"]);
    }

    #[test]
    fn events_of_a_long_string_grow_with_it_linearly() {
        let n = 2000;
        let sql: String = (0..n).map(|i| format!("select * from tbl_{i};")).collect();
        let total: usize = events_of(&sql).iter().map(Message::encoded_len).sum();
        assert!(
            total < 20 * sql.len(),
            "{total} bytes of events for a {} byte string",
            sql.len()
        );
    }
}
