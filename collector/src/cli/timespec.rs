//! `--since` / `--until` values: a duration back from now (`90s`, `15m`, `1h`, `7d`, `2w`) or an
//! RFC 3339 time (`2026-11-01T09:30:00Z`), as microseconds since the Unix epoch.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A value that is neither a duration nor an RFC 3339 time.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is neither a duration like 1h / 30m / 7d nor an RFC 3339 time")]
pub struct TimeError(pub String);

/// Parses `value` relative to `now_unix_us`.
///
/// # Errors
/// [`TimeError`] for anything else.
pub fn parse(value: &str, now_unix_us: i64) -> Result<i64, TimeError> {
    let bad = || TimeError(value.to_owned());
    let value = value.trim();
    if let Ok(t) = OffsetDateTime::parse(value, &Rfc3339) {
        return i64::try_from(t.unix_timestamp_nanos() / 1000).map_err(|_| bad());
    }
    let split = value.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = value.split_at(split);
    let number: i64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    let back = number
        .checked_mul(seconds)
        .and_then(|s| s.checked_mul(1_000_000))
        .ok_or_else(bad)?;
    Ok(now_unix_us.saturating_sub(back))
}

/// Parses an optional value (`None` → 0, "no bound").
///
/// # Errors
/// As [`parse`].
pub fn parse_opt(value: Option<&str>, now_unix_us: i64) -> Result<i64, TimeError> {
    value.map_or(Ok(0), |v| parse(v, now_unix_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_rfc3339() {
        let now = crate::fixtures::START_US;
        assert_eq!(parse("1h", now).ok(), Some(now - 3_600_000_000));
        assert_eq!(parse("30m", now).ok(), Some(now - 1_800_000_000));
        assert_eq!(parse("2d", now).ok(), Some(now - 172_800_000_000));
        assert_eq!(parse("2026-11-01T09:30:00Z", 0).ok(), Some(now));
        for bad in ["", "h", "1y", "yesterday", "-1h"] {
            assert!(parse(bad, now).is_err(), "{bad}");
        }
        assert_eq!(parse_opt(None, now).ok(), Some(0));
    }
}
