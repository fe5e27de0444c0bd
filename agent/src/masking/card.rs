//! `format_preserving` for payment card numbers (ISO/IEC 7812 PANs): the digits before the check
//! digit are encrypted with FF1 (NIST SP 800-38G, radix 10) under the masking key and the check
//! digit is computed again (Luhn, ISO/IEC 7812-1 Annex B), so the masked number keeps its length,
//! its separators and a valid check digit, and the same number always masks the same way.

use bytes::{BufMut as _, BytesMut};

use super::key::MaskKey;

/// Digits a card number may have (ISO/IEC 7812: 8 to 19; FF1 needs 6 before the check digit,
/// and numbers this short are not card numbers in practice).
pub const CARD_DIGITS: std::ops::RangeInclusive<usize> = 12..=19;

/// Appends the masked form of `value` (digits with optional spaces or `-`) and returns `true`;
/// returns `false` and appends nothing when `value` is not a card number.
pub fn write_card(value: &[u8], key: &MaskKey, out: &mut BytesMut) -> bool {
    if !value
        .iter()
        .all(|b| b.is_ascii_digit() || *b == b' ' || *b == b'-')
    {
        return false;
    }
    let digits: Vec<u16> = value
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|b| u16::from(b - b'0'))
        .collect();
    if !CARD_DIGITS.contains(&digits.len()) {
        return false;
    }
    let body = digits[..digits.len() - 1].to_vec();
    let Some(mut masked) = key.encrypt_digits(body) else {
        return false;
    };
    masked.push(luhn_check_digit(&masked));
    let mut next = masked.into_iter();
    for b in value {
        if b.is_ascii_digit() {
            let d = next.next().unwrap_or_default();
            out.put_u8(b'0' + u8::try_from(d).unwrap_or(0));
        } else {
            out.put_u8(*b);
        }
    }
    true
}

/// The Luhn check digit for `body` (the digits before it).
pub fn luhn_check_digit(body: &[u16]) -> u16 {
    let sum: u16 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

/// Whether the digits of `text` pass the Luhn check.
pub fn luhn_valid(text: &str) -> bool {
    let digits: Vec<u16> = text
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| u16::from(b - b'0'))
        .collect();
    match digits.split_last() {
        Some((check, body)) => luhn_check_digit(body) == *check,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(value: &str) -> Option<String> {
        let key = MaskKey::from_secret(&[9u8; 32]);
        let mut out = BytesMut::new();
        write_card(value.as_bytes(), &key, &mut out)
            .then(|| String::from_utf8(out.to_vec()).expect("ascii"))
    }

    #[test]
    fn luhn_matches_known_numbers() {
        for valid in [
            "4111 1111 1111 1111",
            "5555555555554444",
            "378282246310005",
            "79927398713",
        ] {
            assert!(luhn_valid(valid), "{valid}");
        }
        assert!(!luhn_valid("4111 1111 1111 1112"));
    }

    #[test]
    fn a_card_keeps_length_separators_and_luhn_and_changes_its_digits() {
        for card in [
            "4111-1111-1111-1111",
            "5555 5555 5555 4444",
            "378282246310005",
        ] {
            let masked = mask(card).expect("a card number");
            assert_eq!(masked.len(), card.len());
            assert!(luhn_valid(&masked), "{masked}");
            let separators = |s: &str| {
                s.chars()
                    .filter(|c| !c.is_ascii_digit())
                    .collect::<String>()
            };
            assert_eq!(separators(&masked), separators(card));
            let same = masked
                .chars()
                .zip(card.chars())
                .filter(|(a, b)| a == b && a.is_ascii_digit())
                .count();
            assert!(same < 8, "{card} → {masked}: too many digits kept");
            assert_eq!(mask(card), Some(masked), "deterministic");
        }
        assert_ne!(mask("4111111111111111"), mask("4111111111111129"));
    }

    #[test]
    fn what_is_not_a_card_number_is_refused() {
        for value in [
            "",
            "1234",
            "4111 1111 1111 111x",
            "12345678901234567890",
            "ana@x.io",
        ] {
            assert_eq!(mask(value), None, "{value:?}");
        }
    }
}
