//! Settings that change how the server's lexer reads SQL text. The agent analyses statements
//! with PostgreSQL's parser as it behaves with `client_encoding = UTF8` and
//! `standard_conforming_strings = on`; the server must read the same text the same way, or a
//! string literal can hide a statement from the agent (`SELECT 'x\''; TRUNCATE t; --'` with
//! `standard_conforming_strings = off`, or a backslash swallowed by a GBK/SJIS multibyte
//! character). So the agent pins both settings at startup, refuses statements that change them,
//! and ends a session if the server reports either changed (ParameterStatus).

use pg_query::NodeEnum;
use pg_query::protobuf::{FuncCall, Node, a_const};

/// `(setting, required value)`, as the server reports them in ParameterStatus.
pub const PINNED_SETTINGS: [(&str, &str); 2] = [
    ("client_encoding", "UTF8"),
    ("standard_conforming_strings", "on"),
];

/// Whether `name` (case-insensitive) is a pinned setting.
pub fn is_pinned(name: &str) -> bool {
    PINNED_SETTINGS
        .iter()
        .any(|(pinned, _)| pinned.eq_ignore_ascii_case(name))
}

/// Whether a reported setting has a value the agent cannot analyse under; `None` when the
/// setting is not pinned.
pub fn violates(name: &str, value: &str) -> Option<bool> {
    PINNED_SETTINGS
        .iter()
        .find(|(pinned, _)| pinned.eq_ignore_ascii_case(name))
        .map(|(_, required)| !required.eq_ignore_ascii_case(value))
}

/// A reason to refuse a `set_config(name, …)` call: the name is pinned, or not a constant the
/// agent can read.
pub fn set_config_violation(call: &FuncCall) -> Option<String> {
    let name = call.funcname.last().and_then(|n| match n.node.as_ref() {
        Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
        _ => None,
    })?;
    if !name.eq_ignore_ascii_case("set_config") {
        return None;
    }
    match call.args.first().and_then(constant_text) {
        Some(setting) if is_pinned(setting) => Some(format!(
            "set_config('{setting}', …) would change how the server reads SQL text"
        )),
        Some(_) => None,
        None => Some("set_config with a setting name that is not a constant".into()),
    }
}

fn constant_text(node: &Node) -> Option<&str> {
    match node.node.as_ref()? {
        NodeEnum::AConst(c) => match c.val.as_ref()? {
            a_const::Val::Sval(s) => Some(s.sval.as_str()),
            _ => None,
        },
        NodeEnum::TypeCast(t) => t.arg.as_deref().and_then(constant_text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_values() {
        assert_eq!(violates("standard_conforming_strings", "off"), Some(true));
        assert_eq!(violates("client_encoding", "utf8"), Some(false));
        assert_eq!(violates("client_encoding", "GBK"), Some(true));
        assert_eq!(violates("TimeZone", "UTC"), None);
    }
}
