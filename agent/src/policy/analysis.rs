//! What a query string does, from PostgreSQL's own parser (`pg_query` / libpg_query): the class
//! of every statement, including statements nested in CTEs, EXPLAIN, PREPARE and COPY (query),
//! and every relation named. [`super::cache::Analyzer`] caches the results.

use std::collections::BTreeSet;
use std::sync::Arc;

use pg_query::NodeEnum;
use pg_query::protobuf::{CopyStmt, TransactionStmtKind};

use super::access::{self, Object, QualifiedName, Touch};
use super::params::ParamTies;
use super::{StatementKind, integrity};

/// The analysis of one query string (one or more statements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// Classes of all statements, top-level and nested, deduplicated.
    pub kinds: BTreeSet<StatementKind>,
    /// Relations named, as written (schema-qualified when the SQL qualifies them).
    pub tables: BTreeSet<String>,
    /// Every (class, object) pair the string needs permission for ([`access`]).
    pub touches: BTreeSet<Touch>,
    /// Dangerous features used ([`super::catalogue`]).
    pub dangerous: BTreeSet<&'static str>,
    /// Schemas this string adds to `search_path` (`SET search_path`, `set_config`).
    pub search_path: Vec<String>,
    /// Names of SQL-level prepared statements this string runs (`EXECUTE name`).
    pub executes: BTreeSet<String>,
    /// Names of SQL-level prepared statements this string creates (`PREPARE name AS …`).
    pub prepares: BTreeSet<String>,
    /// Number of top-level statements.
    pub statements: usize,
    /// Set when a statement would change a setting the agent's analysis depends on
    /// ([`super::integrity`]), or `search_path` to a value it cannot read; such strings are
    /// always refused.
    pub integrity: Option<String>,
    /// `pg_query` fingerprint of the text (hex; constants do not change it), as approvals and
    /// the audit trail name the statement's shape; empty when it cannot be computed.
    pub fingerprint: String,
    /// Which column each `$n` parameter is tied to ([`super::params`]).
    pub params: ParamTies,
    /// The top-level statements of a string holding more than one, in order (empty for a
    /// single statement): the server answers each with its own CommandComplete, and the audit
    /// trail records each as its own event.
    pub parts: Vec<Part>,
    /// Where values go in each top-level statement, in order ([`super::lineage`]).
    pub lineage: Vec<super::lineage::Lineage>,
}

/// One top-level statement of a multi-statement query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Its text: byte range in the query string, as the parser located it (`RawStmt`
    /// `stmt_location`/`stmt_len`), without surrounding white space.
    pub range: std::ops::Range<usize>,
    /// Its `pg_query` fingerprint (hex; empty when it cannot be computed).
    pub fingerprint: String,
    /// Classes of this statement (top-level and nested).
    pub kinds: BTreeSet<StatementKind>,
    /// Relations it names.
    pub tables: BTreeSet<String>,
    /// Dangerous features it uses.
    pub dangerous: BTreeSet<&'static str>,
}

impl Analysis {
    /// The analysis of a fast-path FunctionCall of `function` (`schema.name`, as the server
    /// named it): one statement of class [`StatementKind::FunctionCall`] touching that function
    /// (the message carries only the function's OID and its arguments).
    pub fn function_call(function: QualifiedName) -> Self {
        let mut dangerous = BTreeSet::new();
        if let Some(category) = super::catalogue::function_category(&function) {
            dangerous.insert(category);
        }
        // Its arguments are binary values the agent does not read: which setting it changes
        // (search_path, role, standard_conforming_strings) cannot be told.
        let integrity = function.name.eq_ignore_ascii_case("set_config").then(|| {
            "set_config through the fast-path FunctionCall cannot be checked; use SET".to_owned()
        });
        Self {
            kinds: [StatementKind::FunctionCall].into(),
            tables: BTreeSet::new(),
            touches: [Touch {
                class: StatementKind::FunctionCall,
                object: Object::Function(function),
            }]
            .into(),
            dangerous,
            search_path: Vec::new(),
            executes: BTreeSet::new(),
            prepares: BTreeSet::new(),
            statements: 1,
            integrity,
            fingerprint: String::new(),
            params: ParamTies::default(),
            parts: Vec::new(),
            lineage: Vec::new(),
        }
    }
}

/// A query string PostgreSQL's parser rejects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseFailure {
    /// The parser's message, e.g. `syntax error at or near "SELEC"`.
    pub message: String,
}

/// Cached analysis.
pub type Analyzed = Result<Arc<Analysis>, ParseFailure>;

/// Longest query text analysed on the calling thread, bytes. libpg_query recurses in C (its
/// parser and its protobuf serialisation) about once per nesting level, a few hundred bytes of
/// stack each; below this size even fully nested text stays far inside a 2 MiB tokio worker stack.
pub(super) const INLINE_LIMIT: usize = 2048;

/// Longest query text analysed at all, bytes; longer text is refused (fails closed).
pub const MAX_ANALYZED_BYTES: usize = 1024 * 1024;

/// Stack of the thread that analyses longer text: enough for [`MAX_ANALYZED_BYTES`] of nesting.
/// Reserved address space only; pages are committed as the recursion touches them.
const LARGE_STACK: usize = 512 * 1024 * 1024;

/// Analyses `sql` without the cache. Text longer than [`INLINE_LIMIT`] is parsed on a thread
/// with a large stack, so deeply nested SQL (`SELECT 1+1+…`, thousands of terms) cannot overflow
/// the caller's stack and crash the agent.
pub fn analyze(sql: &str) -> Result<Analysis, ParseFailure> {
    if sql.len() <= INLINE_LIMIT {
        return analyze_here(sql);
    }
    if sql.len() > MAX_ANALYZED_BYTES {
        return Err(ParseFailure {
            message: format!(
                "the statement text is {} bytes, more than the {MAX_ANALYZED_BYTES} bytes jitgate analyses",
                sql.len()
            ),
        });
    }
    let owned = sql.to_owned();
    let worker = std::thread::Builder::new()
        .name("jitgate-analyze".into())
        .stack_size(LARGE_STACK)
        .spawn(move || analyze_here(&owned));
    match worker.map(std::thread::JoinHandle::join) {
        Ok(Ok(result)) => result,
        _ => Err(ParseFailure {
            message: "the statement could not be analysed".into(),
        }),
    }
}

fn analyze_here(sql: &str) -> Result<Analysis, ParseFailure> {
    let parsed = pg_query::parse(sql).map_err(|e| ParseFailure {
        message: match e {
            pg_query::Error::Parse(m) => m,
            other => other.to_string(),
        },
    })?;
    let mut analysis = Analysis {
        kinds: BTreeSet::new(),
        tables: BTreeSet::new(),
        touches: BTreeSet::new(),
        dangerous: BTreeSet::new(),
        search_path: Vec::new(),
        executes: BTreeSet::new(),
        prepares: BTreeSet::new(),
        statements: parsed.protobuf.stmts.len(),
        integrity: None,
        fingerprint: pg_query::fingerprint(sql)
            .map(|f| f.hex)
            .unwrap_or_default(),
        params: ParamTies::default(),
        parts: Vec::new(),
        lineage: Vec::new(),
    };
    if parsed.protobuf.stmts.len() > 1 {
        analysis.parts = parts(sql, &parsed.protobuf.stmts);
    }
    let mut trees = Vec::with_capacity(parsed.protobuf.stmts.len());
    for (index, raw) in parsed.protobuf.stmts.iter().enumerate() {
        let Some(stmt) = raw.stmt.as_ref() else {
            continue;
        };
        let Some(node) = stmt.node.as_ref() else {
            continue;
        };
        let mut kinds = BTreeSet::new();
        classify(node, &mut kinds);
        match node {
            NodeEnum::VariableSetStmt(v) if integrity::is_pinned(&v.name) => {
                analysis.integrity.get_or_insert(format!(
                    "{} cannot be changed through jitgate: it changes how the server reads SQL text",
                    v.name
                ));
            }
            NodeEnum::PrepareStmt(p) => {
                analysis.prepares.insert(p.name.clone());
            }
            _ => {}
        }
        let tree = serde_json::to_value(stmt).map_err(|e| ParseFailure {
            message: format!("the parse tree could not be walked: {e}"),
        })?;
        let found = access::walk_statement(&tree);
        analysis.lineage.push(super::lineage::of_statement(&tree));
        trees.push(tree);
        if let Some(reason) = settings_write(&found) {
            analysis.integrity.get_or_insert(reason);
        }
        kinds.extend(found.nested_kinds.iter().copied());
        add_touches(&mut analysis, &kinds, &found);
        if let Some(reason) = found.integrity {
            analysis.integrity.get_or_insert(reason);
        }
        if found.opaque_search_path {
            analysis.integrity.get_or_insert(
                "search_path can only be set to constant schema names through jitgate, so \
                 that the tables a statement names can be told"
                    .to_owned(),
            );
        }
        if let Some(part) = analysis.parts.get_mut(index) {
            part.kinds.clone_from(&kinds);
            part.tables = found.relations.iter().map(|(_, n)| n.to_string()).collect();
            part.dangerous.clone_from(&found.dangerous);
        }
        analysis.dangerous.extend(found.dangerous);
        analysis.search_path.extend(found.search_path);
        analysis.executes.extend(found.executes);
        analysis.kinds.extend(kinds);
    }
    analysis.params = ParamTies::of(&trees);
    Ok(analysis)
}

/// The top-level statements of `sql`, located by the parser (`stmt_len` 0 means "to the end").
fn parts(sql: &str, stmts: &[pg_query::protobuf::RawStmt]) -> Vec<Part> {
    stmts
        .iter()
        .map(|raw| {
            let start = usize::try_from(raw.stmt_location)
                .unwrap_or(0)
                .min(sql.len());
            let end = match usize::try_from(raw.stmt_len) {
                Ok(0) | Err(_) => sql.len(),
                Ok(len) => start.saturating_add(len).min(sql.len()),
            };
            let text = sql.get(start..end).unwrap_or_default();
            let trimmed = text.trim_start();
            let start = start + (text.len() - trimmed.len());
            let range = start..start + trimmed.trim_end().len();
            let fingerprint = sql
                .get(range.clone())
                .and_then(|t| pg_query::fingerprint(t).ok())
                .map(|f| f.hex)
                .unwrap_or_default();
            Part {
                range,
                fingerprint,
                kinds: BTreeSet::new(),
                tables: BTreeSet::new(),
                dangerous: BTreeSet::new(),
            }
        })
        .collect()
}

/// A write to `pg_settings` (any schema): its update rule calls `set_config`, so it changes
/// settings — `standard_conforming_strings`, `search_path`, `role` — the agent must see changed.
fn settings_write(found: &access::Found) -> Option<String> {
    found
        .relations
        .iter()
        .find(|(class, name)| *class != StatementKind::Select && name.name == "pg_settings")
        .map(|(class, _)| {
            format!(
                "{} on pg_settings changes settings jitgate must see; use SET for what is allowed",
                class.as_str().to_uppercase()
            )
        })
}

/// Adds one statement's touches: every relation with the class touching it, every function
/// call, and for each class that touches no relation, the database itself.
fn add_touches(analysis: &mut Analysis, kinds: &BTreeSet<StatementKind>, found: &access::Found) {
    for (class, name) in &found.relations {
        analysis.tables.insert(name.to_string());
        analysis.touches.insert(Touch {
            class: *class,
            object: Object::Relation(name.clone()),
        });
    }
    for function in &found.functions {
        analysis.touches.insert(Touch {
            class: StatementKind::FunctionCall,
            object: Object::Function(function.clone()),
        });
    }
    for kind in kinds {
        if !found.relations.iter().any(|(class, _)| class == kind) {
            analysis.touches.insert(Touch {
                class: *kind,
                object: Object::Database,
            });
        }
    }
}

fn inner(node: &Option<Box<pg_query::protobuf::Node>>, kinds: &mut BTreeSet<StatementKind>) {
    if let Some(n) = node.as_ref().and_then(|n| n.node.as_ref()) {
        classify(n, kinds);
    }
}

/// Classifies one statement node, recursing into statements it wraps.
fn classify(node: &NodeEnum, kinds: &mut BTreeSet<StatementKind>) {
    use StatementKind as K;
    let kind = match node {
        NodeEnum::SelectStmt(s) if s.into_clause.is_some() => K::Ddl,
        NodeEnum::SelectStmt(_) => K::Select,
        NodeEnum::InsertStmt(_) => K::Insert,
        NodeEnum::UpdateStmt(_) => K::Update,
        NodeEnum::DeleteStmt(_) => K::Delete,
        NodeEnum::MergeStmt(_) => K::Merge,
        NodeEnum::TruncateStmt(_) => K::Truncate,
        NodeEnum::CopyStmt(c) => copy_kind(c, kinds),
        NodeEnum::ExplainStmt(e) => {
            inner(&e.query, kinds);
            K::Explain
        }
        NodeEnum::PrepareStmt(p) => {
            inner(&p.query, kinds);
            K::Prepare
        }
        NodeEnum::CreateTableAsStmt(c) => {
            inner(&c.query, kinds);
            K::Ddl
        }
        NodeEnum::DeclareCursorStmt(d) => {
            inner(&d.query, kinds);
            K::Utility
        }
        NodeEnum::ExecuteStmt(_) => K::Execute,
        NodeEnum::TransactionStmt(t) => match t.kind() {
            TransactionStmtKind::Undefined => K::Utility,
            _ => K::Transaction,
        },
        NodeEnum::VariableSetStmt(_) => K::Set,
        NodeEnum::VariableShowStmt(_) => K::Show,
        NodeEnum::CallStmt(_) => K::Call,
        NodeEnum::DoStmt(_) => K::Do,
        NodeEnum::GrantStmt(_)
        | NodeEnum::GrantRoleStmt(_)
        | NodeEnum::CreateRoleStmt(_)
        | NodeEnum::AlterRoleStmt(_)
        | NodeEnum::AlterRoleSetStmt(_)
        | NodeEnum::DropRoleStmt(_)
        | NodeEnum::AlterDefaultPrivilegesStmt(_)
        | NodeEnum::ReassignOwnedStmt(_)
        | NodeEnum::DropOwnedStmt(_) => K::Dcl,
        NodeEnum::ClosePortalStmt(_)
        | NodeEnum::FetchStmt(_)
        | NodeEnum::ListenStmt(_)
        | NodeEnum::UnlistenStmt(_)
        | NodeEnum::NotifyStmt(_)
        | NodeEnum::VacuumStmt(_)
        | NodeEnum::LockStmt(_)
        | NodeEnum::DiscardStmt(_)
        | NodeEnum::DeallocateStmt(_)
        | NodeEnum::CheckPointStmt(_)
        | NodeEnum::LoadStmt(_)
        | NodeEnum::ConstraintsSetStmt(_) => K::Utility,
        // Everything else that is a statement creates, alters or drops objects (CreateStmt,
        // AlterTableStmt, DropStmt, IndexStmt, RenameStmt, CommentStmt, CreateFunctionStmt,
        // AlterSystemStmt, ClusterStmt, ReindexStmt, …): classed as DDL, the strictest class.
        _ => K::Ddl,
    };
    kinds.insert(kind);
}

fn copy_kind(copy: &CopyStmt, kinds: &mut BTreeSet<StatementKind>) -> StatementKind {
    inner(&copy.query, kinds);
    if copy.is_from {
        StatementKind::CopyFrom
    } else {
        StatementKind::CopyTo
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StatementKind as K;

    fn kinds(sql: &str) -> Vec<StatementKind> {
        analyze(sql).expect("parses").kinds.into_iter().collect()
    }

    #[test]
    fn a_multi_statement_string_is_split_into_its_statements() {
        let sql = "  update t set a = 1 ;\n select 'x;y' /* ; */;;select 2";
        let analysis = analyze(sql).expect("parses");
        let texts: Vec<&str> = analysis
            .parts
            .iter()
            .map(|p| &sql[p.range.clone()])
            .collect();
        assert_eq!(
            texts,
            ["update t set a = 1", "select 'x;y' /* ; */", "select 2"]
        );
        assert_eq!(analysis.statements, 3);
        assert!(analysis.parts.iter().all(|p| !p.fingerprint.is_empty()));
        assert_ne!(analysis.parts[0].fingerprint, analysis.parts[1].fingerprint);
        assert!(analyze("select 1;").expect("parses").parts.is_empty());
        let two = analyze("select * from a; delete from b").expect("parses");
        assert_eq!(two.parts[0].kinds, [StatementKind::Select].into());
        assert_eq!(two.parts[0].tables, ["a".to_owned()].into());
        assert_eq!(two.parts[1].kinds, [StatementKind::Delete].into());
        assert_eq!(two.parts[1].tables, ["b".to_owned()].into());
    }

    #[test]
    fn plain_statements() {
        assert_eq!(kinds("SELECT * FROM customers"), vec![K::Select]);
        assert_eq!(kinds("insert into t values (1)"), vec![K::Insert]);
        assert_eq!(kinds("UPDATE t SET a = 1"), vec![K::Update]);
        assert_eq!(kinds("DELETE FROM t"), vec![K::Delete]);
        assert_eq!(kinds("TRUNCATE t"), vec![K::Truncate]);
        assert_eq!(kinds("BEGIN"), vec![K::Transaction]);
        assert_eq!(kinds("SET search_path = x"), vec![K::Set]);
        assert_eq!(kinds("GRANT SELECT ON t TO bob"), vec![K::Dcl]);
    }

    #[test]
    fn ddl_statements() {
        for sql in [
            "DROP TABLE customers",
            "CREATE TABLE x (a int)",
            "ALTER TABLE t ADD COLUMN b int",
            "CREATE INDEX ON t (a)",
            "SELECT * INTO newt FROM t",
            "CREATE TABLE c AS SELECT 1",
            "ALTER SYSTEM SET work_mem = '1GB'",
            "COMMENT ON TABLE t IS 'x'",
        ] {
            assert!(kinds(sql).contains(&K::Ddl), "{sql} should be ddl");
        }
    }

    #[test]
    fn nested_dml_is_found() {
        assert_eq!(
            kinds("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"),
            vec![K::Select, K::Delete]
        );
        assert_eq!(
            kinds("EXPLAIN ANALYZE DELETE FROM t"),
            vec![K::Delete, K::Explain]
        );
        assert_eq!(
            kinds("PREPARE p AS UPDATE t SET a=1"),
            vec![K::Update, K::Prepare]
        );
        assert_eq!(
            kinds("COPY (SELECT * FROM t) TO STDOUT"),
            vec![K::Select, K::CopyTo]
        );
        assert_eq!(kinds("COPY t FROM STDIN"), vec![K::CopyFrom]);
    }

    #[test]
    fn multi_statement_strings_have_every_kind() {
        let a = analyze("SELECT 1; DROP TABLE customers").expect("parses");
        assert_eq!(a.statements, 2);
        assert!(a.kinds.contains(&K::Ddl) && a.kinds.contains(&K::Select));
        assert!(a.tables.contains("customers"));
    }

    #[test]
    fn tables_are_schema_qualified_as_written() {
        let a = analyze("SELECT * FROM public.customers c JOIN orders o ON o.customer_id = c.id")
            .expect("parses");
        assert!(a.tables.contains("public.customers"));
        assert!(a.tables.contains("orders"));
    }

    #[test]
    fn select_into_in_a_union_branch_is_ddl() {
        assert!(kinds("SELECT 1 AS a INTO TEMP t UNION SELECT 2").contains(&K::Ddl));
        assert!(kinds("EXPLAIN ANALYZE SELECT 1 INTO t UNION SELECT 2").contains(&K::Ddl));
    }

    #[test]
    fn settings_that_change_lexing_are_flagged() {
        for sql in [
            "SET standard_conforming_strings = off",
            "set CLIENT_ENCODING to 'GBK'",
            "SET NAMES 'SJIS'",
            "RESET standard_conforming_strings",
            "SELECT set_config('standard_conforming_strings', 'off', false)",
            "SELECT 1 WHERE set_config(chr(115) || 'tandard_conforming_strings', 'off', false) IS NULL",
        ] {
            assert!(analyze(sql).expect("parses").integrity.is_some(), "{sql}");
        }
        for sql in [
            "SET search_path = app",
            "SELECT set_config('application_name', 'x', false)",
        ] {
            assert!(analyze(sql).expect("parses").integrity.is_none(), "{sql}");
        }
    }

    #[test]
    fn deeply_nested_sql_does_not_overflow_the_stack() {
        // libpg_query recurses per nesting level; 20 000 terms overflowed an 8 MiB stack.
        let sql = format!("SELECT 1{}", "+1".repeat(20_000));
        let result = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || analyze(&sql).map(|a| a.kinds))
            .expect("thread")
            .join()
            .expect("no crash");
        if let Ok(kinds) = result {
            assert!(kinds.contains(&K::Select));
        }
        let huge = "x".repeat(MAX_ANALYZED_BYTES + 1);
        assert!(analyze(&huge).is_err(), "over the limit is refused");
    }

    #[test]
    fn unparseable_sql_fails() {
        let err = analyze("SELEC * FROM t").expect_err("syntax error");
        assert!(err.message.contains("syntax error"), "{}", err.message);
    }
}
