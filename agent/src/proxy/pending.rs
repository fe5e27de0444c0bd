//! The queue of responses the agent expects from the server, one entry per forwarded request
//! message, so it always knows which request a response answers and where a request ends —
//! including errors in the middle of a pipeline, after which the server skips to Sync
//! (PostgreSQL docs 55.2.3 "Extended Query").

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::masking::MaskPlan;
use crate::policy::Analysis;

/// A statement refused by the agent: what the client is told instead of the server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// SQLSTATE, e.g. `42501`.
    pub sqlstate: &'static str,
    /// Rule id (or `unparseable`).
    pub rule: String,
    /// Message for the client and the audit trail.
    pub message: String,
    /// Hint for the client.
    pub hint: Option<String>,
}

/// A prepared statement as the agent knows it.
#[derive(Debug)]
pub struct PreparedStatement {
    /// SQL text.
    pub sql: Arc<str>,
    /// Its analysis (absent when it was refused).
    pub analysis: Option<Arc<Analysis>>,
    /// The masking plan, once a Describe of the statement has been answered.
    pub plan: OnceLock<MaskPlan>,
    /// Whether the client asked to describe it (so its RowDescription will be seen).
    pub described: AtomicBool,
}

/// A portal as the agent knows it.
#[derive(Debug)]
pub struct Portal {
    /// The statement it was bound from.
    pub statement: Arc<PreparedStatement>,
    /// The masking plan, once a Describe of the portal has been answered.
    pub plan: OnceLock<MaskPlan>,
    /// Whether a Describe of this portal was sent.
    pub described: AtomicBool,
}

impl Portal {
    /// The masking plan for rows of this portal, if known.
    pub fn plan(&self) -> Option<&MaskPlan> {
        self.plan.get().or_else(|| self.statement.plan.get())
    }
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
    /// DataRows sent to the client.
    pub rows: u64,
    /// Values masked.
    pub masked: u64,
    /// CommandComplete tags.
    pub tags: Vec<String>,
    /// SQLSTATE of the server's ErrorResponse, if any.
    pub sqlstate: Option<String>,
    /// When the request was forwarded.
    pub started: Instant,
    /// Masking plan for the current result (simple protocol: set by each RowDescription).
    pub plan: Option<MaskPlan>,
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
            rows: 0,
            masked: 0,
            tags: Vec::new(),
            sqlstate: None,
            started: Instant::now(),
            plan: None,
        }
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
    },
    /// Bind: BindComplete.
    Bind,
    /// Describe: ParameterDescription (statements) then RowDescription or NoData.
    Describe {
        /// Where the resulting plan goes.
        target: DescribeTarget,
        /// Injected by the agent: the response is consumed, not forwarded.
        injected: bool,
    },
    /// Execute: DataRows then CommandComplete, EmptyQueryResponse or PortalSuspended.
    Execute {
        /// The portal.
        portal: Arc<Portal>,
        /// Its execution record.
        execution: Execution,
    },
    /// Close: CloseComplete.
    Close,
    /// Sync: ReadyForQuery.
    Sync,
}

/// What a Describe describes.
#[derive(Debug, Clone)]
pub enum DescribeTarget {
    /// A prepared statement.
    Statement(Arc<PreparedStatement>),
    /// A portal.
    Portal(Arc<Portal>),
    /// Something the agent does not track (an unknown name: the server will answer an error).
    Unknown,
}
