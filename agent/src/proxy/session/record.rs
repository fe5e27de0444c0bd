//! Statement events for the session's audit trail, and the fence that keeps the client from
//! seeing a statement complete before its event is committed to the spool.
//!
//! A simple Query holding several statements is recorded as one event per top-level statement
//! ([`crate::policy::analysis::Part`]), each when the server completes it (CommandComplete,
//! EmptyQueryResponse or ErrorResponse), because the client sees each complete on its own:
//! psql prints a result as soon as its CommandComplete arrives. Statements the server never
//! completed (skipped after an error, cut off when the session ended) are recorded with a tag
//! saying so. Each event carries the analysis, decision and policies of the whole string.

use jitgate_proto::audit::v1 as pb;

use super::Session;
use crate::proxy::pending::{Execution, Pending};

impl Session<'_> {
    /// Records one event for a finished (or refused) request, with its whole text.
    pub(super) fn record_statement(&mut self, exec: &Execution) {
        let fingerprint = exec
            .analysis
            .as_deref()
            .map(|a| a.fingerprint.clone())
            .unwrap_or_default();
        let event = statement_event(exec, &exec.sql, fingerprint);
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

/// The event of the statement of `exec` the server answers next: one of its parts, or its whole
/// text when it was refused or is a single statement.
fn part_event(exec: &Execution) -> pb::Statement {
    match exec.current_part() {
        Some(part) => statement_event(
            exec,
            exec.sql.get(part.range.clone()).unwrap_or(&exec.sql),
            part.fingerprint.clone(),
        ),
        None => {
            let fingerprint = exec
                .analysis
                .as_deref()
                .map(|a| a.fingerprint.clone())
                .unwrap_or_default();
            statement_event(exec, &exec.sql, fingerprint)
        }
    }
}

/// The Statement event of `exec`, naming `text` (fingerprint `fingerprint`).
fn statement_event(exec: &Execution, text: &str, fingerprint: String) -> pb::Statement {
    let analysis = exec.analysis.as_deref();
    let (decision, rule, reason) = match &exec.rejection {
        Some(r) => (pb::Decision::Denied, r.rule.clone(), r.message.clone()),
        None => (pb::Decision::Allowed, String::new(), String::new()),
    };
    pb::Statement {
        text: crate::audit::statement_text(text),
        protocol: exec.protocol.to_owned(),
        kinds: analysis
            .map(|a| a.kinds.iter().map(|k| k.as_str().to_owned()).collect())
            .unwrap_or_default(),
        tables: analysis
            .map(|a| a.tables.iter().cloned().collect())
            .unwrap_or_default(),
        decision: decision.into(),
        rule,
        reason,
        rows: exec.rows,
        masked_cells: exec.masked,
        command_tag: exec.tags.join("; "),
        sqlstate: exec.sqlstate.clone().unwrap_or_default(),
        duration_us: u64::try_from(exec.started.elapsed().as_micros()).unwrap_or(u64::MAX),
        fingerprint,
        parameters: exec.parameters.to_vec(),
        policies: exec.verdict.policies.clone(),
        approval_id: exec.verdict.approval_id.clone().unwrap_or_default(),
        bytes: exec.bytes,
        sample: exec.sample.as_ref().and_then(|s| s.finish()),
        dangerous: analysis
            .map(|a| a.dangerous.iter().map(|d| (*d).to_owned()).collect())
            .unwrap_or_default(),
    }
}
