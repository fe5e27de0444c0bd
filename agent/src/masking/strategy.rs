//! How a protected value is replaced. Replacements keep the value valid for its column type and
//! format code: textual types (text, varchar, bpchar, name) get masked text, in both text and
//! binary format (their binary form is the same bytes); other types become NULL, since no fake
//! value of their type can be produced safely. The keyed strategies (`hash`,
//! `format_preserving`) use the target's masking key ([`super::key`]); without one they send
//! NULL.

use std::sync::Arc;

use bytes::{BufMut as _, BytesMut};
use serde::Deserialize;

use super::card;
use super::detect::Detectors;
use super::key::MaskKey;

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
        /// For e-mail addresses: the domain (from the last `@`) is kept whole and `keep_first` /
        /// `keep_last` apply to the local part.
        #[serde(default)]
        keep_domain: bool,
    },
    /// Lowercase hex of HMAC-SHA-256 (RFC 2104) of the value under the masking key: 64
    /// characters, the same for the same value, so joins and grouping on it still work.
    Hash {
        /// The target's masking key, set from `mask_key_file` when the configuration loads.
        #[serde(skip)]
        key: Option<Arc<MaskKey>>,
    },
    /// Card numbers: FF1-encrypted digits with a valid Luhn check digit, same length and
    /// separators ([`card`]); a value that is not a card number becomes NULL.
    FormatPreserving {
        /// The target's masking key, set from `mask_key_file` when the configuration loads.
        #[serde(skip)]
        key: Option<Arc<MaskKey>>,
    },
    /// Not configured per column: a column no rule names, on a target with `detectors`. A
    /// value in which a detector finds something becomes `[redacted: NAME]`; others pass.
    #[serde(skip)]
    Detect {
        /// The target's detectors.
        detectors: Arc<Detectors>,
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
        let mut out = BytesMut::new();
        self.write_masked(value, type_oid, &mut out)
            .then(|| out.to_vec())
    }

    /// Appends the replacement for `value` of type `type_oid` to `out`; returns `false` (and
    /// appends nothing) when the value must be sent as NULL instead.
    pub fn write_masked(&self, value: &[u8], type_oid: u32, out: &mut BytesMut) -> bool {
        if !is_textual(type_oid) {
            return false;
        }
        match self {
            Self::Redact { text } => out.extend_from_slice(text.as_bytes()),
            Self::Null => return false,
            Self::Partial {
                keep_first,
                keep_last,
                keep_domain,
            } => match value.iter().rposition(|b| *b == b'@') {
                Some(at) if *keep_domain => {
                    partial(&value[..at], *keep_first, *keep_last, out);
                    out.extend_from_slice(&value[at..]);
                }
                _ => partial(value, *keep_first, *keep_last, out),
            },
            Self::Hash { key } => {
                let Some(key) = key else {
                    return false;
                };
                out.extend_from_slice(jitgate_proto::chain::hex(&key.hmac(value)).as_bytes());
            }
            Self::FormatPreserving { key } => {
                return key
                    .as_ref()
                    .is_some_and(|k| card::write_card(value, k, out));
            }
            Self::Detect { detectors } => match detectors.find(value) {
                Some(found) => {
                    out.extend_from_slice(b"[redacted: ");
                    out.extend_from_slice(found.as_str().as_bytes());
                    out.put_u8(b']');
                }
                None => out.extend_from_slice(value),
            },
        }
        true
    }

    /// Whether `value` goes to the client as it is (a [`Self::Detect`] column whose value no
    /// detector flags); such values are not counted as masked.
    pub fn leaves(&self, value: &[u8]) -> bool {
        match self {
            Self::Detect { detectors } => detectors.find(value).is_none(),
            _ => false,
        }
    }

    /// Whether it needs the target's masking key.
    pub fn needs_key(&self) -> bool {
        matches!(self, Self::Hash { .. } | Self::FormatPreserving { .. })
    }

    /// Gives a keyed strategy its key (others are left as they are).
    pub fn set_key(&mut self, key: &Arc<MaskKey>) {
        if let Self::Hash { key: slot } | Self::FormatPreserving { key: slot } = self {
            *slot = Some(Arc::clone(key));
        }
    }
}

/// Appends `value` with every letter and digit but the first `keep_first` and last `keep_last`
/// replaced by `*`. Invalid UTF-8 is read lossily (each bad sequence becomes U+FFFD).
fn partial(value: &[u8], keep_first: usize, keep_last: usize, out: &mut BytesMut) {
    if value.is_ascii() {
        // One byte per character: copy, then star the letters and digits between the last
        // kept leading one and the first kept trailing one, in place.
        let alnum = |b: &u8| b.is_ascii_alphanumeric();
        let from = match keep_first {
            0 => 0,
            n => value
                .iter()
                .enumerate()
                .filter(|(_, b)| alnum(b))
                .nth(n - 1)
                .map_or(value.len(), |(i, _)| i + 1),
        };
        let to = match keep_last {
            0 => value.len(),
            n => value
                .iter()
                .enumerate()
                .rev()
                .filter(|(_, b)| alnum(b))
                .nth(n - 1)
                .map_or(0, |(i, _)| i),
        };
        let start = out.len();
        out.extend_from_slice(value);
        if from < to {
            for b in &mut out[start + from..start + to] {
                *b = if alnum(b) { b'*' } else { *b };
            }
        }
        return;
    }
    partial_chars(&String::from_utf8_lossy(value), keep_first, keep_last, out);
}

/// [`partial`] for any text, one character at a time.
fn partial_chars(text: &str, keep_first: usize, keep_last: usize, out: &mut BytesMut) {
    let total = text.chars().filter(|c| c.is_alphanumeric()).count();
    let mut seen = 0;
    let mut utf8 = [0u8; 4];
    for c in text.chars() {
        let keep = if c.is_alphanumeric() {
            seen += 1;
            seen <= keep_first || seen + keep_last > total
        } else {
            true
        };
        if keep {
            out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
        } else {
            out.put_u8(b'*');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_keeps_last_digits_and_separators() {
        let s = MaskStrategy::Partial {
            keep_first: 0,
            keep_last: 4,
            keep_domain: false,
        };
        let out = s.apply(b"4111-1111-1111-1234", 25).expect("text");
        assert_eq!(out, b"****-****-****-1234");
    }

    #[test]
    fn partial_never_reveals_more_than_asked() {
        let s = MaskStrategy::Partial {
            keep_first: 1,
            keep_last: 0,
            keep_domain: false,
        };
        assert_eq!(
            s.apply(b"ana.lima@example.com", 1043).expect("text"),
            b"a**.****@*******.***"
        );
        let all = MaskStrategy::Partial {
            keep_first: 10,
            keep_last: 10,
            keep_domain: false,
        };
        assert_eq!(all.apply(b"ab", 25).expect("text"), b"ab");
    }

    #[test]
    fn partial_ascii_fast_path_matches_the_general_rule() {
        let values = [
            "",
            "-",
            "a",
            "ab",
            "a-b-c",
            "ana.lima@example.com",
            "4111-1111-1111-1234",
        ];
        for (first, last) in [(0, 0), (1, 0), (0, 4), (2, 2), (3, 9), (9, 9), (0, 1)] {
            for value in values {
                let mut fast = BytesMut::new();
                partial(value.as_bytes(), first, last, &mut fast);
                let mut general = BytesMut::new();
                partial_chars(value, first, last, &mut general);
                assert_eq!(
                    fast, general,
                    "{value:?} keep_first {first} keep_last {last}"
                );
            }
        }
    }

    #[test]
    fn partial_handles_non_ascii_and_invalid_utf8() {
        let s = MaskStrategy::Partial {
            keep_first: 1,
            keep_last: 1,
            keep_domain: false,
        };
        assert_eq!(
            s.apply("José-Ümit".as_bytes(), 25).expect("text"),
            "J***-***t".as_bytes()
        );
        assert_eq!(
            s.apply(b"ab\xffcd", 25).expect("text"),
            "a*\u{fffd}*d".as_bytes()
        );
    }

    #[test]
    fn redact_and_null() {
        let r = MaskStrategy::Redact { text: "x".into() };
        assert_eq!(r.apply(b"secret", 25), Some(b"x".to_vec()));
        assert_eq!(MaskStrategy::Null.apply(b"secret", 25), None);
    }

    #[test]
    fn partial_can_keep_an_email_domain() {
        let s = MaskStrategy::Partial {
            keep_first: 1,
            keep_last: 0,
            keep_domain: true,
        };
        assert_eq!(
            s.apply(b"ana.lima@example.com", 25).expect("text"),
            b"a**.****@example.com"
        );
        assert_eq!(s.apply(b"no-at-sign", 25).expect("text"), b"n*-**-****");
    }

    #[test]
    fn hash_is_keyed_deterministic_hex_and_null_without_a_key() {
        let key = Arc::new(MaskKey::from_secret(&[3u8; 32]));
        let mut s: MaskStrategy = toml::from_str("strategy = \"hash\"").expect("toml");
        assert_eq!(s.apply(b"ana@example.com", 25), None, "no key: NULL");
        assert!(s.needs_key());
        s.set_key(&key);
        let a = s.apply(b"ana@example.com", 25).expect("text");
        assert_eq!(a.len(), 64);
        assert!(
            a.iter()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(s.apply(b"ana@example.com", 1043), Some(a.clone()));
        assert_ne!(s.apply(b"bob@example.com", 25), Some(a));
        assert_eq!(s.apply(&[0, 0, 0, 1], 23), None, "not textual: NULL");
    }

    #[test]
    fn format_preserving_masks_cards_and_nulls_the_rest() {
        let key = Arc::new(MaskKey::from_secret(&[3u8; 32]));
        let mut s: MaskStrategy = toml::from_str("strategy = \"format_preserving\"").expect("toml");
        assert_eq!(s.apply(b"4111111111111111", 25), None, "no key: NULL");
        s.set_key(&key);
        let masked = s.apply(b"4111111111111111", 25).expect("a card");
        let masked = String::from_utf8(masked).expect("ascii");
        assert_eq!(masked.len(), 16);
        assert!(card::luhn_valid(&masked));
        assert_ne!(masked, "4111111111111111");
        assert_eq!(s.apply(b"not a card", 25), None);
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
                keep_last: 4,
                keep_domain: false,
            }
        );
    }
}
