//! Content detectors: a second layer for values of columns no mask rule names. With a target's
//! `detectors` list set (off by default), every textual value of a result is scanned, and a
//! value holding something a detector recognises is replaced whole by `[redacted: NAME]`.
//! Patterns are `regex` crate expressions; card numbers and IBANs are also checked by their
//! check digits (Luhn, ISO/IEC 7812-1; ISO 13616 mod 97), so digit runs that merely look like
//! them pass.

use regex::bytes::Regex;
use serde::Deserialize;

use super::card::luhn_check_digit;

/// One kind of sensitive content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// An e-mail address (`local@domain.tld`).
    Email,
    /// A payment card number: 13–19 digits, optionally grouped by spaces or dashes, with a
    /// valid Luhn check digit.
    CardNumber,
    /// An IBAN (ISO 13616) whose mod-97 check holds.
    Iban,
    /// A US social security number (`123-45-6789`; area not 000, 666 or 9xx).
    NationalId,
    /// A JSON Web Token (RFC 7519 compact form).
    Jwt,
    /// A cloud or code-hosting credential: AWS access key ids (`AKIA…`, `ASIA…`), Google API
    /// keys (`AIza…`), GitHub (`ghp_…` and kin), GitLab (`glpat-…`) and Slack (`xox?-…`) tokens.
    CloudKey,
    /// A PEM private key block (`-----BEGIN … PRIVATE KEY-----`).
    PrivateKey,
}

impl Detector {
    /// The name used in configuration and in the replacement text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::CardNumber => "card_number",
            Self::Iban => "iban",
            Self::NationalId => "national_id",
            Self::Jwt => "jwt",
            Self::CloudKey => "cloud_key",
            Self::PrivateKey => "private_key",
        }
    }

    fn pattern(self) -> &'static str {
        match self {
            Self::Email => r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
            Self::CardNumber => r"\b\d(?:[ -]?\d){12,18}\b",
            Self::Iban => r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b",
            Self::NationalId => {
                r"\b(?:00[1-9]|0[1-9]\d|[1-578]\d\d|6[0-57-9]\d|66[0-57-9])-\d{2}-\d{4}\b"
            }
            Self::Jwt => r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}",
            Self::CloudKey => {
                r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b|\bAIza[0-9A-Za-z_-]{35}\b|\bgh[pousr]_[A-Za-z0-9]{36,}\b|\bgithub_pat_[A-Za-z0-9_]{22,}\b|\bglpat-[A-Za-z0-9_-]{20,}\b|\bxox[abprs]-[A-Za-z0-9-]{10,}"
            }
            Self::PrivateKey => r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----",
        }
    }

    /// Whether a match of [`Self::pattern`] is really one (check digits).
    fn confirms(self, found: &[u8]) -> bool {
        match self {
            Self::CardNumber => {
                let digits: Vec<u16> = found
                    .iter()
                    .filter(|b| b.is_ascii_digit())
                    .map(|b| u16::from(b - b'0'))
                    .collect();
                digits
                    .split_last()
                    .is_some_and(|(check, body)| luhn_check_digit(body) == *check)
            }
            Self::Iban => iban_valid(found),
            _ => true,
        }
    }
}

/// The enabled detectors, compiled.
#[derive(Debug, Clone)]
pub struct Detectors {
    compiled: Vec<(Detector, Regex)>,
}

impl PartialEq for Detectors {
    fn eq(&self, other: &Self) -> bool {
        self.compiled
            .iter()
            .map(|(d, _)| d)
            .eq(other.compiled.iter().map(|(d, _)| d))
    }
}

impl Eq for Detectors {}

impl Detectors {
    /// Compiles `enabled` (duplicates ignored); `None` when the list is empty.
    pub fn new(enabled: &[Detector]) -> Option<Detectors> {
        let mut compiled: Vec<(Detector, Regex)> = Vec::new();
        for detector in enabled {
            if compiled.iter().any(|(d, _)| d == detector) {
                continue;
            }
            // The patterns are constants tested below.
            let regex = Regex::new(detector.pattern()).unwrap_or_else(|_| unreachable!());
            compiled.push((*detector, regex));
        }
        (!compiled.is_empty()).then_some(Detectors { compiled })
    }

    /// The first detector that finds something in `value`.
    pub fn find(&self, value: &[u8]) -> Option<Detector> {
        self.compiled.iter().find_map(|(detector, regex)| {
            regex
                .find_iter(value)
                .any(|m| detector.confirms(m.as_bytes()))
                .then_some(*detector)
        })
    }
}

/// ISO 13616: move the first four characters to the end, letters to numbers (A = 10 …), and
/// the number mod 97 must be 1.
fn iban_valid(found: &[u8]) -> bool {
    let compact: Vec<u8> = found.iter().copied().filter(|b| *b != b' ').collect();
    if compact.len() < 15 {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut remainder: u32 = 0;
    for b in tail.iter().chain(head) {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Detector; 7] = [
        Detector::Email,
        Detector::CardNumber,
        Detector::Iban,
        Detector::NationalId,
        Detector::Jwt,
        Detector::CloudKey,
        Detector::PrivateKey,
    ];

    fn found(value: &str) -> Option<&'static str> {
        Detectors::new(&ALL)
            .expect("enabled")
            .find(value.as_bytes())
            .map(Detector::as_str)
    }

    #[test]
    fn each_detector_finds_its_content_inside_other_text() {
        assert_eq!(found("write to ana.lima@example.com today"), Some("email"));
        assert_eq!(
            found("card 4111 1111 1111 1111 on file"),
            Some("card_number")
        );
        assert_eq!(found("IBAN GB82 WEST 1234 5698 7654 32"), Some("iban"));
        assert_eq!(found("DE89370400440532013000"), Some("iban"));
        assert_eq!(found("ssn 123-45-6789"), Some("national_id"));
        assert_eq!(
            found("Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"),
            Some("jwt")
        );
        assert_eq!(found("key AKIAIOSFODNN7EXAMPLE"), Some("cloud_key"));
        assert_eq!(
            found("ghp_0123456789abcdefghijABCDEFGHIJ012345"),
            Some("cloud_key")
        );
        assert_eq!(
            found("-----BEGIN RSA PRIVATE KEY-----\nMIIE...\n-----END RSA PRIVATE KEY-----"),
            Some("private_key")
        );
    }

    #[test]
    fn look_alikes_pass() {
        for value in [
            "order 4111 1111 1111 1112",
            "GB82 WEST 1234 5698 7654 33",
            "000-12-3456",
            "version 1.2.3",
            "user@localhost",
            "-----BEGIN CERTIFICATE-----",
            "Ana Lima",
            "",
        ] {
            assert_eq!(found(value), None, "{value:?}");
        }
    }

    #[test]
    fn only_enabled_detectors_run() {
        let emails = Detectors::new(&[Detector::Email, Detector::Email]).expect("enabled");
        assert_eq!(emails.find(b"4111111111111111"), None);
        assert_eq!(emails.find(b"a@b.io"), Some(Detector::Email));
        assert!(Detectors::new(&[]).is_none());
    }
}
