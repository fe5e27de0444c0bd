//! The queue of responses the agent expects from the server, one entry per forwarded request
//! message, so it always knows which request a response answers and where a request ends —
//! including errors in the middle of a pipeline, after which the server skips to Sync
//! (PostgreSQL docs 55.2.3 "Extended Query").

use std::sync::Arc;
use std::time::Instant;

use crate::masking::MaskPlan;
use crate::policy::Analysis;
use crate::policy::analysis::Part;

/// A statement refused by the agent: what the client is told instead of the server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// SQLSTATE, e.g. `42501`.
    pub sqlstate: &'static str,
    /// Rule id (or `unparseable`).
    pub rule: String,
    /// The approval request it is refused pending (or that was denied or expired).
    pub approval_id: Option<String>,
    /// Message for the client and the audit trail.
    pub message: String,
    /// Hint for the client.
    pub hint: Option<String>,
}

/// A prepared statement as the agent knows it (for the audit trail: which SQL a portal runs).
#[derive(Debug)]
pub struct PreparedStatement {
    /// SQL text.
    pub sql: Arc<str>,
    /// Its analysis (absent when it was refused).
    pub analysis: Option<Arc<Analysis>>,
    /// How it was decided at Parse, for the audit events of its executions.
    pub verdict: Verdict,
}

/// A portal as the agent knows it.
#[derive(Debug)]
pub struct Portal {
    /// The statement it was bound from.
    pub statement: Arc<PreparedStatement>,
    /// The Bind's parameters as the audit trail records them ([`crate::proxy::params`]).
    pub parameters: Arc<[jitgate_proto::audit::v1::Parameter]>,
}

/// What decided a statement, for its audit event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// `@id`s of the Cedar policies that determined the decision: the permitting policies of an
    /// allow, the forbid policies of a denial, the policies requiring an approval.
    pub policies: Vec<String>,
    /// The approval (or grant's approval) it ran under, or is refused pending.
    pub approval_id: Option<String>,
}

/// Progress of one statement execution, for its audit event.
#[derive(Debug)]
pub struct Execution {
    /// SQL text.
    pub sql: Arc<str>,
    /// `simple` or `extended`.
    pub protocol: &'static str,
    /// The analysis, when the text parsed.
    pub analysis: Option<Arc<Analysis>>,
    /// Set when the agent refused it.
    pub rejection: Option<Rejection>,
    /// What decided it.
    pub verdict: Verdict,
    /// Bound parameters (extended protocol), as recorded.
    pub parameters: Arc<[jitgate_proto::audit::v1::Parameter]>,
    /// DataRows sent to the client.
    pub rows: u64,
    /// Bytes of the DataRow messages sent to the client (after masking).
    pub bytes: u64,
    /// The first rows sent to the client.
    pub sample: Option<Box<crate::proxy::sample::Sampler>>,
    /// Values masked.
    pub masked: u64,
    /// CommandComplete tags.
    pub tags: Vec<String>,
    /// SQLSTATE of the server's ErrorResponse, if any.
    pub sqlstate: Option<String>,
    /// When the request was forwarded.
    pub started: Instant,
    /// CopyDone/CopyFail sent by the client before this request: if it starts a COPY-in, the
    /// copy ends with the next one, and Syncs sent before that are ignored by the server.
    pub copy_ends: u64,
    /// Masking plan for the current result: set by each RowDescription of a simple Query, and
    /// by the answer to the Describe the agent sends before each Execute on a masked database.
    pub plan: Option<MaskPlan>,
    /// Statements of a multi-statement Query already recorded ([`Analysis::parts`]); `rows`,
    /// `bytes`, `masked`, `sample`, `tags`, `sqlstate` and `started` count from the last one.
    pub parts_done: usize,
}

impl Execution {
    /// A new execution record.
    pub fn new(
        sql: Arc<str>,
        protocol: &'static str,
        analysis: Option<Arc<Analysis>>,
        rejection: Option<Rejection>,
    ) -> Self {
        Self {
            sql,
            protocol,
            analysis,
            rejection,
            verdict: Verdict::default(),
            parameters: Arc::from([]),
            rows: 0,
            bytes: 0,
            sample: None,
            masked: 0,
            tags: Vec::new(),
            sqlstate: None,
            started: Instant::now(),
            copy_ends: 0,
            plan: None,
            parts_done: 0,
        }
    }

    /// Whether it is recorded as one event with its whole text: refused (nothing ran) or a
    /// single statement.
    fn whole(&self) -> bool {
        self.rejection.is_some() || self.analysis.as_ref().is_none_or(|a| a.parts.is_empty())
    }

    /// The statement the server answers next, when it is recorded statement by statement.
    pub fn current_part(&self) -> Option<&Part> {
        if self.whole() {
            return None;
        }
        self.analysis.as_ref()?.parts.get(self.parts_done)
    }

    /// How many of its events are still to be recorded.
    pub fn parts_left(&self) -> usize {
        let total = match &self.analysis {
            Some(a) if !self.whole() => a.parts.len(),
            _ => 1,
        };
        total.saturating_sub(self.parts_done)
    }

    /// Notes the current statement recorded: the counters start again for the next one.
    pub fn part_done(&mut self) {
        self.parts_done += 1;
        self.rows = 0;
        self.bytes = 0;
        self.masked = 0;
        self.sample = None;
        self.tags.clear();
        self.sqlstate = None;
        self.started = Instant::now();
    }
}

/// One expected response.
#[derive(Debug)]
pub enum Pending {
    /// Query: responses up to ReadyForQuery.
    Query(Execution),
    /// Parse: ParseComplete (or the error replaced by `rejection`).
    Parse {
        /// Set when the agent substituted the Parse because the statement is refused.
        rejection: Option<Rejection>,
        /// The statement name and what it named before, restored if the server rejects this
        /// Parse.
        undo: Undo<PreparedStatement>,
    },
    /// Bind: BindComplete.
    Bind {
        /// Set when the agent substituted the Bind because its statement is refused.
        rejection: Option<Rejection>,
        /// The portal name and what it named before, restored if the server rejects this Bind.
        undo: Undo<Portal>,
    },
    /// Describe: ParameterDescription (statements) then RowDescription or NoData.
    Describe {
        /// Sent by the agent right before an Execute: the answer becomes that Execute's masking
        /// plan and is not forwarded.
        injected: bool,
    },
    /// Execute: DataRows then CommandComplete, EmptyQueryResponse or PortalSuspended.
    Execute(Execution),
    /// Close: CloseComplete.
    Close,
    /// The agent's own Query naming the function of a held FunctionCall (its OID is all the
    /// message carries): RowDescription, at most one DataRow, CommandComplete (or an
    /// ErrorResponse) and ReadyForQuery, none of them forwarded.
    Lookup {
        /// The function's OID.
        oid: u32,
        /// The function, from the DataRow.
        name: Option<NamedFunction>,
    },
    /// Sync: ReadyForQuery. `copy_ends` is how many CopyDone/CopyFail the client had sent
    /// before this Sync: a Sync the server receives while in COPY-in is ignored by it, which
    /// the agent learns from the CopyInResponse (see `Execution::copy_ends`).
    Sync {
        /// CopyDone/CopyFail sent by the client before this Sync.
        copy_ends: u64,
    },
}

/// How to undo an optimistic update of the statement or portal table when the server rejects
/// the message that made it.
#[derive(Debug)]
pub struct Undo<T> {
    /// The name updated.
    pub name: String,
    /// What it named before (`None`: nothing).
    pub previous: Option<Arc<T>>,
}

/// A function the server named for a fast-path call's OID.
#[derive(Debug, Clone)]
pub struct NamedFunction {
    /// Schema and name, for policy.
    pub name: crate::policy::access::QualifiedName,
    /// `schema.name(argument types)`, quoted where needed, for audit.
    pub signature: String,
}
