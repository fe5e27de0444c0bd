//! Statement classes, the unit deny rules are written in. Names follow PostgreSQL's command
//! groups: DDL is any statement creating, altering or dropping a schema object.

use serde::Deserialize;

/// The class of one statement (or of a statement nested inside another, such as DML in a CTE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementKind {
    /// SELECT, VALUES, TABLE, SHOW-free reads.
    Select,
    /// INSERT.
    Insert,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
    /// MERGE.
    Merge,
    /// CREATE / ALTER / DROP / RENAME / COMMENT of schema objects, SELECT INTO, CREATE TABLE AS.
    Ddl,
    /// TRUNCATE.
    Truncate,
    /// COPY … TO.
    CopyTo,
    /// COPY … FROM.
    CopyFrom,
    /// GRANT / REVOKE / role management.
    Dcl,
    /// BEGIN / COMMIT / ROLLBACK / SAVEPOINT / PREPARE TRANSACTION.
    Transaction,
    /// SET / RESET.
    Set,
    /// SHOW.
    Show,
    /// EXPLAIN.
    Explain,
    /// CALL of a procedure.
    Call,
    /// DO (anonymous code block).
    Do,
    /// PREPARE.
    Prepare,
    /// EXECUTE of a prepared statement.
    Execute,
    /// Cursors, LISTEN/NOTIFY, VACUUM, ANALYZE, LOCK, DISCARD and other utility commands.
    Utility,
    /// A function called through the fast-path FunctionCall message (PostgreSQL docs 55.2.6),
    /// as libpq's large-object functions do.
    FunctionCall,
}

impl StatementKind {
    /// The snake_case name used in config and audit.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Select => "select",
            Self::Insert => "insert",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Merge => "merge",
            Self::Ddl => "ddl",
            Self::Truncate => "truncate",
            Self::CopyTo => "copy_to",
            Self::CopyFrom => "copy_from",
            Self::Dcl => "dcl",
            Self::Transaction => "transaction",
            Self::Set => "set",
            Self::Show => "show",
            Self::Explain => "explain",
            Self::Call => "call",
            Self::Do => "do",
            Self::Prepare => "prepare",
            Self::Execute => "execute",
            Self::Utility => "utility",
            Self::FunctionCall => "function_call",
        }
    }
}

impl std::fmt::Display for StatementKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
