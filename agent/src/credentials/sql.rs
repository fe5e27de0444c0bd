//! The SQL the broker sends, built as text with every identifier and literal quoted
//! (PostgreSQL docs 4.1.1 "Identifiers and Key Words", 4.1.2.1 "String Constants"; the broker's
//! connections run with `standard_conforming_strings = on`, so a literal needs only its quotes
//! doubled). No plaintext password ever appears: a role gets a SCRAM-SHA-256 verifier.

use std::time::{SystemTime, UNIX_EPOCH};

use super::CredentialError;
use super::settings::OnEnd;

/// `name` as a quoted identifier. Errors on a NUL byte, which no identifier may hold.
pub fn ident(name: &str) -> Result<String, CredentialError> {
    if name.contains('\0') {
        return Err(CredentialError::BadName { name: name.into() });
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// `value` as a string literal. Errors on a NUL byte.
pub fn literal(value: &str) -> Result<String, CredentialError> {
    if value.contains('\0') {
        return Err(CredentialError::BadName { name: value.into() });
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

/// What a new session role is made of.
pub struct NewRole<'a> {
    /// The role's name.
    pub name: &'a str,
    /// Its SCRAM-SHA-256 verifier (`SCRAM-SHA-256$4096:…`).
    pub verifier: &'a str,
    /// Its `VALID UNTIL`.
    pub valid_until: SystemTime,
    /// Roles it becomes a member of (`IN ROLE`).
    pub grant_roles: &'a [String],
    /// The broker, made a member of the new role so it may later drop what the role owns and
    /// terminate its backends (`ROLE`).
    pub broker: &'a str,
    /// `COMMENT ON ROLE` text: jitgate's marker ([`super::marker`]).
    pub comment: &'a str,
}

/// `CREATE ROLE … LOGIN … PASSWORD '<verifier>' VALID UNTIL … IN ROLE … ROLE <broker>;` and its
/// `COMMENT ON ROLE`, as one simple Query (one implicit transaction: both or neither). The role
/// gets no attribute but LOGIN and INHERIT, and one connection (PostgreSQL docs: CREATE ROLE).
pub fn create_role(role: &NewRole<'_>) -> Result<String, CredentialError> {
    let name = ident(role.name)?;
    let grants = role
        .grant_roles
        .iter()
        .map(|r| ident(r))
        .collect::<Result<Vec<_>, _>>()?
        .join(", ");
    Ok(format!(
        "CREATE ROLE {name} LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
         NOBYPASSRLS CONNECTION LIMIT 1 PASSWORD {verifier} VALID UNTIL {until} \
         IN ROLE {grants} ROLE {broker}; COMMENT ON ROLE {name} IS {comment};",
        verifier = literal(role.verifier)?,
        until = literal(&timestamp(role.valid_until))?,
        broker = ident(role.broker)?,
        comment = literal(role.comment)?,
    ))
}

/// How many backends are logged in as `name` (one row).
pub fn count_backends(name: &str) -> Result<String, CredentialError> {
    Ok(format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = {};",
        literal(name)?
    ))
}

/// Ends the backends logged in as `name`, waiting up to 5 s for each to exit
/// (`pg_terminate_backend(pid, timeout)`, PostgreSQL 14+; docs 9.27.2 "Server Signaling
/// Functions"). Returns one row: how many were signalled.
pub fn terminate_backends(name: &str) -> Result<String, CredentialError> {
    Ok(format!(
        "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity \
         WHERE usename = {} AND pid <> pg_backend_pid();",
        literal(name)?
    ))
}

/// `[REASSIGN OWNED BY … TO …;] DROP OWNED BY …; DROP ROLE …;` as one simple Query (one
/// implicit transaction). Run in the database the role used: DROP/REASSIGN OWNED act on the
/// current database only (PostgreSQL docs: DROP OWNED, REASSIGN OWNED, DROP ROLE).
pub fn drop_role(
    name: &str,
    on_end: OnEnd,
    reassign_to: Option<&str>,
) -> Result<String, CredentialError> {
    let quoted = ident(name)?;
    let mut sql = String::new();
    if let (OnEnd::ReassignOwned, Some(to)) = (on_end, reassign_to) {
        sql.push_str(&format!("REASSIGN OWNED BY {quoted} TO {}; ", ident(to)?));
    }
    sql.push_str(&format!("DROP OWNED BY {quoted}; DROP ROLE {quoted};"));
    Ok(sql)
}

/// Roles whose name starts with `prefix` and that are not superusers: name, comment (empty when
/// none), and whether `VALID UNTIL` passed more than `grace_seconds` ago.
pub fn list_roles(prefix: &str, grace_seconds: u64) -> Result<String, CredentialError> {
    Ok(format!(
        "SELECT r.rolname, coalesce(shobj_description(r.oid, 'pg_authid'), ''), \
         coalesce(r.rolvaliduntil < now() - interval '{grace_seconds} seconds', false) \
         FROM pg_roles r WHERE NOT r.rolsuper AND starts_with(r.rolname, {});",
        literal(prefix)?
    ))
}

/// `t` as an ISO 8601 UTC timestamp PostgreSQL reads whatever its DateStyle and TimeZone:
/// `2026-11-30 17:27:15+00`. Whole seconds, rounded down (never later than `t`).
pub fn timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}+00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn quoting_doubles_quotes_and_refuses_nul() {
        assert_eq!(ident("a\"b").expect("ok"), "\"a\"\"b\"");
        assert_eq!(literal("O'Brien").expect("ok"), "'O''Brien'");
        assert!(ident("a\0b").is_err());
        assert!(literal("a\0b").is_err());
    }

    #[test]
    fn timestamps_are_utc_iso() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_059_635);
        assert_eq!(timestamp(t), "2026-11-30 17:27:15+00");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01 00:00:00+00");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(timestamp(leap), "2000-02-29 00:00:00+00");
    }

    #[test]
    fn create_role_quotes_everything() {
        let grants = ["ci\"reader".to_owned()];
        let sql = create_role(&NewRole {
            name: "jitgate_x",
            verifier: "SCRAM-SHA-256$4096:abc$def:ghi",
            valid_until: UNIX_EPOCH,
            grant_roles: &grants,
            broker: "broker",
            comment: "it's",
        })
        .expect("sql");
        assert!(
            sql.contains("IN ROLE \"ci\"\"reader\" ROLE \"broker\""),
            "{sql}"
        );
        assert!(sql.contains("IS 'it''s';"), "{sql}");
        assert!(
            sql.contains("VALID UNTIL '1970-01-01 00:00:00+00'"),
            "{sql}"
        );
    }

    #[test]
    fn drop_role_reassigns_only_when_asked() {
        let sql = drop_role("r", OnEnd::DropOwned, None).expect("sql");
        assert_eq!(sql, "DROP OWNED BY \"r\"; DROP ROLE \"r\";");
        let sql = drop_role("r", OnEnd::ReassignOwned, Some("app")).expect("sql");
        assert!(sql.starts_with("REASSIGN OWNED BY \"r\" TO \"app\"; DROP OWNED"));
    }
}
