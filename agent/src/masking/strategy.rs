//! How a protected value is replaced. Replacements keep the value valid for its column type and
//! format code: textual types (text, varchar, bpchar, name) get masked text, in both text and
//! binary format (their binary form is the same bytes); other types become NULL, since no fake
//! value of their type can be produced safely.

use serde::Deserialize;

/// A masking strategy, configured per column (`strategy = "…"` plus its options).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case", deny_unknown_fields)]
pub enum MaskStrategy {
    /// Replace with a fixed text (default `***`).
    Redact {
        /// The replacement text.
        #[serde(default = "default_redaction")]
        text: String,
    },
    /// Replace with NULL.
    Null,
    /// Keep the first `keep_first` and last `keep_last` letters and digits, replace the other
    /// letters and digits with `*`; punctuation (`-`, `@`, `.`, spaces) is kept so the shape stays.
    Partial {
        /// Leading alphanumerics kept.
        #[serde(default)]
        keep_first: usize,
        /// Trailing alphanumerics kept.
        #[serde(default)]
        keep_last: usize,
    },
}

fn default_redaction() -> String {
    "***".to_owned()
}

/// Type OIDs whose text and binary representations are both the UTF-8 text (pg_type.dat).
const TEXTUAL_TYPES: [u32; 5] = [25, 1043, 1042, 19, 705];

/// Whether values of `type_oid` can carry masked text.
pub fn is_textual(type_oid: u32) -> bool {
    TEXTUAL_TYPES.contains(&type_oid)
}

impl MaskStrategy {
    /// The replacement for `value` of type `type_oid`; `None` = send NULL.
    pub fn apply(&self, value: &[u8], type_oid: u32) -> Option<Vec<u8>> {
        if !is_textual(type_oid) {
            return None;
        }
        match self {
            Self::Redact { text } => Some(text.as_bytes().to_vec()),
            Self::Null => None,
            Self::Partial {
                keep_first,
                keep_last,
            } => {
                Some(partial(&String::from_utf8_lossy(value), *keep_first, *keep_last).into_bytes())
            }
        }
    }
}

fn partial(text: &str, keep_first: usize, keep_last: usize) -> String {
    let total = text.chars().filter(|c| c.is_alphanumeric()).count();
    let mut seen = 0;
    text.chars()
        .map(|c| {
            if !c.is_alphanumeric() {
                return c;
            }
            seen += 1;
            if seen <= keep_first || seen + keep_last > total {
                c
            } else {
                '*'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_keeps_last_digits_and_separators() {
        let s = MaskStrategy::Partial {
            keep_first: 0,
            keep_last: 4,
        };
        let out = s.apply(b"4111-1111-1111-1234", 25).expect("text");
        assert_eq!(out, b"****-****-****-1234");
    }

    #[test]
    fn partial_never_reveals_more_than_asked() {
        let s = MaskStrategy::Partial {
            keep_first: 1,
            keep_last: 0,
        };
        assert_eq!(
            s.apply(b"ana.lima@example.com", 1043).expect("text"),
            b"a**.****@*******.***"
        );
        let all = MaskStrategy::Partial {
            keep_first: 10,
            keep_last: 10,
        };
        assert_eq!(all.apply(b"ab", 25).expect("text"), b"ab");
    }

    #[test]
    fn redact_and_null() {
        let r = MaskStrategy::Redact { text: "x".into() };
        assert_eq!(r.apply(b"secret", 25), Some(b"x".to_vec()));
        assert_eq!(MaskStrategy::Null.apply(b"secret", 25), None);
    }

    #[test]
    fn non_textual_types_become_null() {
        let r = MaskStrategy::Redact { text: "x".into() };
        assert_eq!(r.apply(&[0, 0, 0, 1], 23), None);
    }

    #[test]
    fn strategy_parses_from_config() {
        let s: MaskStrategy =
            toml::from_str("strategy = \"partial\"\nkeep_last = 4").expect("toml");
        assert_eq!(
            s,
            MaskStrategy::Partial {
                keep_first: 0,
                keep_last: 4
            }
        );
    }
}
