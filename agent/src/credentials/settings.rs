//! The per-target credential settings of the configuration file: which kind of upstream
//! credential a target uses ([`CredentialMode`]), what happens to a dynamic role's objects at
//! session end ([`OnEnd`]) and the longest a dynamic role may live ([`MaxSession`]).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// `credentials`: how the agent logs in upstream for a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialMode {
    /// A role created for each session through the broker and dropped when it ends (default).
    #[default]
    Dynamic,
    /// The fixed `upstream_user` and its password, for servers that cannot do dynamic roles.
    Static,
}

/// `on_end`: what happens to the objects a dynamic role owns when its session ends (PostgreSQL
/// docs, SQL commands DROP OWNED and REASSIGN OWNED). Either way the role's privileges are then
/// revoked (`DROP OWNED`) and the role dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnEnd {
    /// `DROP OWNED BY role`: what the session created in its database is dropped (default).
    #[default]
    DropOwned,
    /// `REASSIGN OWNED BY role TO reassign_to`, then `DROP OWNED BY role`: what the session
    /// created is kept, owned by `reassign_to`.
    ReassignOwned,
}

/// `max_session`: the longest a session's role may log in (its `VALID UNTIL`), also capped by
/// the token's `exp`. Written as whole seconds (`3600`) or as a string of numbers with units
/// `s`, `m`, `h`, `d` (`"1h"`, `"90s"`, `"1h30m"`). Default 1 hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxSession(pub Duration);

impl Default for MaxSession {
    fn default() -> Self {
        Self(Duration::from_secs(3600))
    }
}

impl MaxSession {
    /// Parses `"1h30m"`-style text (see the type's documentation).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty duration".into());
        }
        if let Ok(seconds) = text.parse::<u64>() {
            return Ok(Self(Duration::from_secs(seconds)));
        }
        let mut total: u64 = 0;
        let mut number = String::new();
        for c in text.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                ' ' if number.is_empty() => continue,
                other => {
                    return Err(format!(
                        "unknown unit {other:?} in {text:?} (use s, m, h, d)"
                    ));
                }
            };
            let n: u64 = number
                .parse()
                .map_err(|_| format!("a unit without a number in {text:?}"))?;
            number.clear();
            total = n
                .checked_mul(unit)
                .and_then(|s| total.checked_add(s))
                .ok_or_else(|| format!("{text:?} is too long"))?;
        }
        if !number.is_empty() {
            return Err(format!("{text:?} ends without a unit (use s, m, h, d)"));
        }
        Ok(Self(Duration::from_secs(total)))
    }
}

impl<'de> Deserialize<'de> for MaxSession {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = MaxSession;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("seconds, or a duration such as \"1h\" or \"90m\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<MaxSession, E> {
                u64::try_from(v)
                    .map(|s| MaxSession(Duration::from_secs(s)))
                    .map_err(|_| E::custom("max_session must not be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<MaxSession, E> {
                Ok(MaxSession(Duration::from_secs(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MaxSession, E> {
                MaxSession::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_or_as_seconds() {
        let secs = |t: &str| MaxSession::parse(t).map(|m| m.0.as_secs());
        assert_eq!(secs("3600"), Ok(3600));
        assert_eq!(secs("1h"), Ok(3600));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("2d"), Ok(172_800));
        assert!(secs("").is_err());
        assert!(secs("10").is_ok());
        assert!(secs("10x").is_err());
        assert!(secs("h").is_err());
        assert!(secs("5m3").is_err());
    }
}
