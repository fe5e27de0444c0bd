//! [`Analyzer`]: analyses query strings once and serves repeats from memory, so a statement seen
//! before costs a hash lookup instead of a parse (a `pg_query` parse costs about 20 µs).
//!
//! Two bounded caches (`quick_cache`, S3-FIFO eviction):
//!
//! - **by text**: the exact query string. Prepared statements (`$1` parameters) and repeated
//!   texts hit here.
//! - **by shape**: the text with every numeric constant replaced. Simple-protocol clients that
//!   inline numbers
//!   (`... WHERE aid = 48213`) send a new text each time but the same shape. The constants are
//!   found by [`plain_shape_key`] when the text uses only characters whose lexing is unambiguous
//!   (no quotes, dollar signs, backslashes, comments or non-ASCII), and otherwise by PostgreSQL's
//!   own lexer (`pg_query::scan`, about 3 µs). Only analyses whose
//!   every statement is a plain SELECT, INSERT, UPDATE, DELETE or MERGE are stored by shape:
//!   in those, a numeric constant cannot change a statement's class or the relations it names.
//!   Settings (`SET`, where `= 0` can mean `off`), utility statements, COPY and anything the
//!   integrity check flags are only ever cached by exact text. Unparseable text is cached by
//!   exact text too, never by shape.

use std::sync::Arc;

use pg_query::protobuf::Token;
use quick_cache::sync::Cache;

use super::StatementKind;
use super::analysis::{Analysis, Analyzed, INLINE_LIMIT, analyze};

/// Query strings kept in each cache.
const CACHE_ENTRIES: usize = 16_384;

/// Stand-ins for numeric constants in a shape key: integers and other numerics stay distinct,
/// since some grammar positions accept only integers.
const INTEGER_MARK: &str = "0";
const NUMERIC_MARK: &str = "0.0";

/// Statement classes whose analysis does not depend on the value of a numeric constant.
const SHAPE_SAFE: [StatementKind; 5] = [
    StatementKind::Select,
    StatementKind::Insert,
    StatementKind::Update,
    StatementKind::Delete,
    StatementKind::Merge,
];

/// Analyses query strings through the two caches; clones share them.
#[derive(Clone)]
pub struct Analyzer {
    by_text: Arc<Cache<Box<str>, Analyzed>>,
    by_shape: Arc<Cache<Box<str>, Arc<Analysis>>>,
}

impl Default for Analyzer {
    fn default() -> Self {
        Self {
            by_text: Arc::new(Cache::new(CACHE_ENTRIES)),
            by_shape: Arc::new(Cache::new(CACHE_ENTRIES)),
        }
    }
}

impl Analyzer {
    /// Analyses `sql`, from a cache when the same text or the same shape was seen before.
    pub fn analyze(&self, sql: &str) -> Analyzed {
        if let Some(hit) = self.by_text.get(sql) {
            return hit;
        }
        let shape = (sql.len() <= INLINE_LIMIT)
            .then(|| shape_key(sql))
            .flatten();
        if let Some(shape) = &shape
            && let Some(hit) = self.by_shape.get(shape.as_str())
        {
            return Ok(hit);
        }
        let result = analyze(sql).map(Arc::new);
        match (&result, shape) {
            (Ok(analysis), Some(shape)) if shape_safe(analysis) => {
                self.by_shape.insert(shape.into(), Arc::clone(analysis));
            }
            _ => self.by_text.insert(sql.into(), result.clone()),
        }
        result
    }
}

/// Whether `analysis` holds for every text of the same shape. A multi-statement string never
/// does: its [`Analysis::parts`] are byte ranges of the text analysed, which constants of
/// another length would shift.
fn shape_safe(analysis: &Analysis) -> bool {
    analysis.integrity.is_none()
        && analysis.parts.is_empty()
        && analysis.kinds.iter().all(|k| SHAPE_SAFE.contains(k))
}

/// `sql` with each numeric constant token replaced by a mark, or `None` when it has none (the
/// exact text is then the key) or the lexer rejects it.
fn shape_key(sql: &str) -> Option<String> {
    match plain_shape_key(sql) {
        Plain::Key(key) => Some(key),
        Plain::NoConstant => None,
        Plain::Outside => scanned_shape_key(sql),
    }
}

/// What [`plain_shape_key`] found.
#[derive(Debug, PartialEq, Eq)]
enum Plain {
    /// The shape key.
    Key(String),
    /// Plain text without a numeric constant.
    NoConstant,
    /// Text outside the plain subset: use the real lexer.
    Outside,
}

/// Longest digit run marked as an integer constant: longer ones may lex as a numeric (FCONST)
/// constant, because they overflow a 32-bit integer.
const INTEGER_DIGITS: usize = 9;
/// Stand-in for a digit run longer than [`INTEGER_DIGITS`].
const LONG_MARK: &str = "9999999999";

/// The shape key of text in the plain subset of SQL's lexical grammar: ASCII letters, digits,
/// whitespace and operator and punctuation characters, with no quote of any kind, `$`, `\`,
/// `--` or `/*`. In that subset (PostgreSQL docs 4.1 "Lexical Structure") every token is a
/// keyword or identifier (`[A-Za-z_][A-Za-z0-9_]*`), a number, an operator or punctuation, so a
/// digit run that does not continue an identifier is a numeric constant on its own exactly when
/// the characters around it cannot extend it (`.`, `e`, `_`, `x` and letters could: such text is
/// left to the real lexer).
fn plain_shape_key(sql: &str) -> Plain {
    let bytes = sql.as_bytes();
    let plain = bytes.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(b, b' ' | b'\t' | b'\n' | b'\r')
            || b"_=<>()[],;.:+-*/%^|&!~#@?".contains(&b)
    });
    if !plain || sql.contains("--") || sql.contains("/*") {
        return Plain::Outside;
    }
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut key = String::with_capacity(sql.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if word(b) && !b.is_ascii_digit() {
            // An identifier or keyword, digits included.
            while i < bytes.len() && word(bytes[i]) {
                i += 1;
            }
            continue;
        }
        if !b.is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let before = start.checked_sub(1).map(|p| bytes[p]);
        let after = bytes.get(i).copied();
        if before == Some(b'.') || after.is_some_and(|a| word(a) || a == b'.') {
            return Plain::Outside;
        }
        key.push_str(&sql[copied..start]);
        key.push_str(if i - start <= INTEGER_DIGITS {
            INTEGER_MARK
        } else {
            LONG_MARK
        });
        copied = i;
    }
    if copied == 0 {
        return Plain::NoConstant;
    }
    key.push_str(&sql[copied..]);
    Plain::Key(key)
}

/// [`shape_key`] with PostgreSQL's lexer.
fn scanned_shape_key(sql: &str) -> Option<String> {
    let scanned = pg_query::scan(sql).ok()?;
    let mut key = String::with_capacity(sql.len());
    let mut copied = 0;
    for token in &scanned.tokens {
        let mark = match Token::try_from(token.token) {
            Ok(Token::Iconst) => INTEGER_MARK,
            Ok(Token::Fconst) => NUMERIC_MARK,
            _ => continue,
        };
        let start = usize::try_from(token.start).ok()?;
        let end = usize::try_from(token.end).ok()?;
        key.push_str(sql.get(copied..start)?);
        key.push_str(mark);
        copied = end;
    }
    if copied == 0 {
        return None;
    }
    key.push_str(sql.get(copied..)?);
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_statement_string_keeps_its_own_statement_ranges() {
        let analyzer = Analyzer::default();
        let _ = analyzer.analyze("select 1,1,1,1; delete from orders where id = 1");
        let sql = "select 111111111,111111111,111111111,111111111; delete from orders where id = 1";
        let analysis = analyzer.analyze(sql).expect("parses");
        let texts: Vec<&str> = analysis
            .parts
            .iter()
            .map(|p| &sql[p.range.clone()])
            .collect();
        assert_eq!(
            texts,
            [
                "select 111111111,111111111,111111111,111111111",
                "delete from orders where id = 1"
            ]
        );
    }

    #[test]
    fn repeated_text_is_served_from_the_cache() {
        let a = Analyzer::default();
        let first = a.analyze("SELECT relname FROM pg_class").expect("ok");
        let second = a.analyze("SELECT relname FROM pg_class").expect("ok");
        assert!(Arc::ptr_eq(&first, &second));
    }

    #[test]
    fn numeric_constants_share_a_shape() {
        assert_eq!(
            shape_key("SELECT a FROM t WHERE id = 42 AND x > 1.5e3 -- 7").as_deref(),
            Some("SELECT a FROM t WHERE id = 0 AND x > 0.0 -- 7")
        );
        assert_eq!(shape_key("SELECT a FROM t"), None);
        // Digits inside strings and quoted identifiers are not constants.
        assert_eq!(shape_key(r#"SELECT '1' FROM "t 2""#), None);
        let a = Analyzer::default();
        let first = a.analyze("SELECT a FROM t WHERE id = 1").expect("ok");
        let second = a.analyze("SELECT a FROM t WHERE id = 99").expect("ok");
        assert!(Arc::ptr_eq(&first, &second), "same shape, one parse");
        let other = a.analyze("SELECT a FROM u WHERE id = 99").expect("ok");
        assert!(other.tables.contains("u"));
    }

    #[test]
    fn plain_text_keys_match_the_real_lexer() {
        for sql in [
            "SELECT abalance FROM bench_accounts WHERE aid = 48213;",
            "SELECT t1.a, b2 FROM t1 JOIN s.t_2 ON t1.id=t_2.id WHERE x IN (1,2, 3) LIMIT 10",
            "UPDATE t SET a = a + 5 WHERE id = 7",
            "SELECT 1",
            "SELECT a FROM t",
        ] {
            let plain = match plain_shape_key(sql) {
                Plain::Key(k) => Some(k),
                Plain::NoConstant => None,
                Plain::Outside => panic!("{sql} is plain"),
            };
            assert_eq!(plain, scanned_shape_key(sql), "{sql}");
        }
        for sql in [
            "SELECT 1.5",
            "SELECT 1e5",
            "SELECT .5",
            "SELECT 0x1F",
            "SELECT 1_000",
            "SELECT '1'",
            "SELECT \"a 1\" FROM t",
            "SELECT $1",
            "SELECT 1 -- 2",
            "SELECT /* 1 */ 2",
            "SELECT 'é', 1",
        ] {
            assert_eq!(plain_shape_key(sql), Plain::Outside, "{sql}");
        }
        assert_eq!(
            plain_shape_key("SELECT 12345678901"),
            Plain::Key("SELECT 9999999999".into())
        );
    }

    #[test]
    fn settings_are_never_shared_by_shape() {
        // `= 1` is allowed, `= 0` turns the setting off: each must be analysed on its own.
        let a = Analyzer::default();
        let on = a
            .analyze("SET standard_conforming_strings = 1")
            .expect("ok");
        let off = a
            .analyze("SET standard_conforming_strings = 0")
            .expect("ok");
        assert!(!Arc::ptr_eq(&on, &off));
        assert!(off.integrity.is_some(), "{off:?}");
    }

    #[test]
    fn a_statement_mixing_classes_is_not_shared_by_shape() {
        let a = Analyzer::default();
        let sql = |n: u32| format!("SELECT {n}; TRUNCATE t{n}");
        let first = a.analyze(&sql(1)).expect("ok");
        let second = a.analyze(&sql(2)).expect("ok");
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(second.tables.contains("t2"));
    }

    #[test]
    fn unparseable_text_is_not_shared_by_shape() {
        let a = Analyzer::default();
        assert!(a.analyze("FETCH 1.5 FROM c").is_err());
        assert!(a.analyze("SELECT 1 FROM t WHERE").is_err());
        assert!(a.analyze("SELECT 2 FROM t").is_ok());
    }
}
