//! Side channels: protected values leaving in messages other than DataRow, on a database with
//! masked columns (PostgreSQL docs 55.8 "Error and Notice Message Fields", 55.7
//! NotificationResponse), once the session may have read protected data: a statement whose
//! lineage reaches a protected column, names a protected table, runs a DO block or CALL, or
//! writes while some function reads protected tables. Before that, messages pass unchanged.
//!
//! - ErrorResponse and NoticeResponse lose the fields that quote row values: `D` detail
//!   ("Key (email)=(…) already exists", "Failing row contains (…)"), `W` where (PL/pgSQL context
//!   with values), `q` internal query.
//! - Their message `M` is withheld where its text may be a value: data exceptions (class 22,
//!   `invalid input syntax for type integer: "…"` keeps the part before the value), and what
//!   `RAISE` sends (classes 00, 01 and P0: user text that may hold anything a function read;
//!   its hint and object-name fields go too).
//! - NotificationResponse payloads are withheld (a trigger or function may `pg_notify` any
//!   value); the channel is kept. Payloads from other sessions are withheld when some function
//!   of the database reads protected tables (a trigger fired by another session may notify
//!   what it read).
//!
//! - Any other message or hint has its double-quoted parts withheld (`relation "…" does not
//!   exist` quotes a value cast to regclass; `current_setting(email)` a setting name).
//!
//! SQLSTATE, severity, the rest of the text and the other fields pass, so clients still see
//! what failed.

/// Field codes removed from ErrorResponse and NoticeResponse.
const VALUE_FIELDS: [u8; 3] = [b'D', b'W', b'q'];

/// Fields kept from a message whose text is withheld.
const RAISE_KEPT: [u8; 8] = [b'S', b'V', b'C', b'M', b'P', b'F', b'L', b'R'];

/// What replaces a payload or message withheld.
pub const WITHHELD: &str = "(withheld by jitgate: it may carry a masked value)";

/// The fields to send instead of `fields`, or `None` when nothing needs to change.
pub fn scrub_fields(fields: &[(u8, String)]) -> Option<Vec<(u8, String)>> {
    let sqlstate = fields
        .iter()
        .find(|(c, _)| *c == b'C')
        .map_or("", |(_, v)| v.as_str());
    let class = sqlstate.get(..2).unwrap_or("");
    let withhold_message = matches!(class, "22" | "00" | "01" | "P0");
    let quotes = |v: &str| v.contains('"');
    let changes = fields.iter().any(|(c, v)| {
        VALUE_FIELDS.contains(c)
            || (*c == b'M' && withhold_message)
            || (matches!(c, b'M' | b'H') && quotes(v))
    });
    if !changes {
        return None;
    }
    Some(
        fields
            .iter()
            .filter(|(c, _)| !VALUE_FIELDS.contains(c))
            // What RAISE sends is user text in every field it sets (HINT, COLUMN, TABLE…): only
            // severity, SQLSTATE, the withheld message and source position remain.
            .filter(|(c, _)| !withhold_message || RAISE_KEPT.contains(c))
            .map(|(c, v)| match c {
                b'M' if class == "22" => (*c, message_before_value(v)),
                b'M' if withhold_message => (*c, format!("{WITHHELD} (SQLSTATE {sqlstate})")),
                b'M' | b'H' => (*c, without_quoted(v)),
                _ => (*c, v.clone()),
            })
            .collect(),
    )
}

/// `message` with every double-quoted part withheld: PostgreSQL quotes the names and values it
/// reports (`relation "…" does not exist`, where a cast to regclass puts a value), and which
/// is which cannot be told.
fn without_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut parts = message.split('"');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    let mut inside = true;
    for part in parts {
        if inside {
            out.push_str("\"(withheld)\"");
        } else {
            out.push_str(part);
        }
        inside = !inside;
    }
    out
}

/// A data exception's message without the value it quotes: PostgreSQL puts the value after the
/// last `: ` (`invalid input syntax for type integer: "x"`); a message without one is withheld.
fn message_before_value(message: &str) -> String {
    match message.split_once(": ") {
        Some((head, _)) => format!("{head}: {WITHHELD}"),
        None => WITHHELD.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(code: &str, message: &str, detail: Option<&str>) -> Vec<(u8, String)> {
        let mut f = vec![
            (b'S', "ERROR".to_owned()),
            (b'C', code.to_owned()),
            (b'M', message.to_owned()),
        ];
        if let Some(d) = detail {
            f.push((b'D', d.to_owned()));
        }
        f
    }

    #[test]
    fn value_quoting_fields_and_messages_are_withheld() {
        let unique = scrub_fields(&fields(
            "23505",
            "duplicate key value violates unique constraint \"customers_email_key\"",
            Some("Key (email)=(ana.lima@example.com) already exists."),
        ))
        .expect("changed");
        assert!(unique.iter().all(|(c, _)| *c != b'D'));
        assert!(
            unique
                .iter()
                .any(|(_, v)| v.contains("violates unique constraint"))
        );
        let cast = scrub_fields(&fields(
            "22P02",
            "invalid input syntax for type integer: \"ana.lima@example.com\"",
            None,
        ))
        .expect("changed");
        let text: String = cast.iter().map(|(_, v)| v.as_str()).collect();
        assert!(!text.contains("ana.lima"), "{text}");
        assert!(
            text.contains("invalid input syntax for type integer"),
            "{text}"
        );
        for code in ["00000", "01000", "P0001"] {
            let mut raised = fields(code, "ana.lima@example.com", None);
            raised.push((b'H', "bruno.costa@example.com".into()));
            raised.push((b'c', "chen.wei@example.com".into()));
            let raised = scrub_fields(&raised).expect("changed");
            let text: String = raised.iter().map(|(_, v)| v.as_str()).collect();
            assert!(!text.contains("@example.com"), "{code}: {text}");
            assert!(text.contains(code), "the SQLSTATE is named: {text}");
        }
    }

    #[test]
    fn quoted_parts_of_other_messages_are_withheld() {
        let out = scrub_fields(&fields(
            "42P01",
            "relation \"4111111111111111\" does not exist",
            None,
        ))
        .expect("changed");
        let text: String = out.iter().map(|(_, v)| v.as_str()).collect();
        assert!(!text.contains("4111"), "{text}");
        assert!(
            text.contains("relation \"(withheld)\" does not exist"),
            "{text}"
        );
    }

    #[test]
    fn messages_that_quote_no_values_pass_unchanged() {
        assert_eq!(
            scrub_fields(&fields("42501", "permission denied for table orders", None)),
            None
        );
        assert_eq!(
            scrub_fields(&fields("25P02", "current transaction is aborted", None)),
            None
        );
    }
}
