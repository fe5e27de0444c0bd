//! Statement text as audit events carry it: bounded, so one huge statement cannot make an event
//! (and the batch carrying it) too large to deliver, yet still identifiable.

use sha2::Digest as _;

/// Longest statement text kept whole in an audit event, bytes.
pub const STATEMENT_TEXT_BYTES: usize = 64 * 1024;

/// A statement's text for its audit event: whole up to [`STATEMENT_TEXT_BYTES`]; longer text is cut
/// there (at a character boundary) and followed by its full length and SHA-256, so the event
/// stays small while the statement can still be matched against a copy of it.
pub fn statement_text(sql: &str) -> String {
    if sql.len() <= STATEMENT_TEXT_BYTES {
        return sql.to_owned();
    }
    let mut cut = STATEMENT_TEXT_BYTES;
    while !sql.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = sha2::Sha256::digest(sql.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}… [jitgate: truncated; {} bytes in all, sha256 {hex}]",
        &sql[..cut],
        sql.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_statements_are_cut_in_audit_events_with_length_and_digest() {
        assert_eq!(statement_text("SELECT 1"), "SELECT 1");
        let long = format!("SELECT '{}'", "é".repeat(STATEMENT_TEXT_BYTES));
        let text = statement_text(&long);
        assert!(text.len() < STATEMENT_TEXT_BYTES + 200, "{}", text.len());
        assert!(text.contains(&format!("{} bytes in all", long.len())));
        let digest = sha2::Sha256::digest(long.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert!(text.ends_with(&format!("sha256 {hex}]")));
    }
}
