//! Values as audit records show them: text cut at a byte limit on a character boundary, and
//! protocol values (a Bind parameter, a DataRow value) as text — text format as is (invalid
//! UTF-8 replaced), binary format as lowercase hex — after cutting the raw value at the limit.

/// Longest value recorded in a statement's parameters or result sample, bytes of the raw value.
pub const VALUE_BYTES: usize = 256;

/// `text` cut to at most `max` bytes, on a character boundary.
pub fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A protocol value as recorded: its first [`VALUE_BYTES`] bytes, as UTF-8 text (format code
/// 0, invalid sequences replaced) or lowercase hex (format code 1).
pub fn value(raw: &[u8], binary: bool) -> String {
    let head = &raw[..raw.len().min(VALUE_BYTES)];
    if binary {
        return jitgate_proto::chain::hex(head);
    }
    match std::str::from_utf8(head) {
        Ok(text) => text.to_owned(),
        // Cut inside a character: keep the complete ones.
        Err(e) if e.error_len().is_none() => {
            String::from_utf8_lossy(&head[..e.valid_up_to()]).into_owned()
        }
        Err(_) => String::from_utf8_lossy(head).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_cut_and_rendered() {
        assert_eq!(value(b"abc", false), "abc");
        assert_eq!(value(&[0xde, 0xad], true), "dead");
        assert_eq!(value(&[7u8; 300], true).len(), 2 * VALUE_BYTES);
        let mut long = vec![b'a'; VALUE_BYTES - 1];
        long.extend("é".as_bytes());
        assert_eq!(value(&long, false).len(), VALUE_BYTES - 1);
        assert_eq!(cut("aé", 2), "a");
        assert_eq!(cut("abc", 5), "abc");
    }
}
