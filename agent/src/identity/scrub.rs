//! Secrets removed from a process's command line before it enters the audit trail: CI jobs pass
//! passwords and tokens as arguments (`--password X`, `PGPASSWORD=X`, `postgres://u:X@h`,
//! conninfo strings, a job's OIDC token), and the trail is read by more people than the job's
//! secrets are meant for. Each secret is replaced by [`REDACTED`]; the rest of the line stays,
//! so an auditor still sees what ran.

/// What a removed secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Words that make an option or `KEY=value` name a secret (compared without case, `-`/`_`
/// ignored).
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "credential",
    "authorization",
];

/// `args` (one process's argv) with every secret replaced by [`REDACTED`]. Each argument is
/// read as white-space separated words too, so `sh -c "tool --password X"` is covered.
pub fn scrub_args(args: &[&str]) -> Vec<String> {
    let mut value_is_secret = false;
    args.iter()
        .map(|arg| {
            arg.split(' ')
                .map(|word| scrub_word(word, &mut value_is_secret))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// One word with its secret replaced: the value after a secret option (`--password X`, noted
/// in `value_is_secret`), `name=value` with a secret name (conninfo `password=X`, `--token=X`,
/// `PGPASSWORD=X`), a JWT, or a URI's password (`scheme://user:X@host`).
fn scrub_word(word: &str, value_is_secret: &mut bool) -> String {
    if word.is_empty() {
        return String::new();
    }
    if std::mem::take(value_is_secret) && !word.starts_with('-') {
        return REDACTED.to_owned();
    }
    if let Some(flag) = word.strip_prefix('-')
        && !flag.contains('=')
        && names_secret(flag)
    {
        *value_is_secret = true;
        return word.to_owned();
    }
    if let Some((name, value)) = word.split_once('=')
        && !value.is_empty()
        && names_secret(name)
    {
        return format!("{name}={REDACTED}");
    }
    if looks_like_jwt(word) {
        return REDACTED.to_owned();
    }
    scrub_uri_password(word)
}

/// Suffixes that make a secret-sounding name point at where a secret is kept (`--token-file`,
/// `PGPASSFILE`-style paths), which the trail keeps.
const LOCATION_SUFFIXES: &[&str] = &["file", "path", "dir", "env"];

/// Whether an option or variable name names a secret (not a file or variable holding one).
fn names_secret(name: &str) -> bool {
    let folded: String = name
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.'))
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_WORDS.iter().any(|w| folded.contains(w))
        && !LOCATION_SUFFIXES.iter().any(|s| folded.ends_with(s))
}

/// `scheme://user:password@host…` with the password replaced (RFC 3986 §3.2.1 userinfo);
/// anything else unchanged.
fn scrub_uri_password(word: &str) -> String {
    let Some(scheme_end) = word.find("://") else {
        return word.to_owned();
    };
    let authority_start = scheme_end + 3;
    let rest = &word[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let Some(at) = authority.rfind('@') else {
        return word.to_owned();
    };
    let Some(colon) = authority[..at].find(':') else {
        return word.to_owned();
    };
    format!(
        "{}{}{REDACTED}{}",
        &word[..authority_start],
        &authority[..=colon],
        &word[authority_start + at..]
    )
}

/// Three base64url segments, the first a JSON object's encoding (`eyJ`): a JWT (RFC 7519).
fn looks_like_jwt(word: &str) -> bool {
    let parts: Vec<&str> = word.split('.').collect();
    parts.len() == 3
        && parts[0].starts_with("eyJ")
        && parts.iter().all(|p| {
            p.len() >= 4
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrub(args: &[&str]) -> String {
        scrub_args(args).join(" ")
    }

    #[test]
    fn secrets_in_options_variables_uris_and_conninfo_are_replaced() {
        assert_eq!(
            scrub(&["tool", "--password", "hunter2", "-v"]),
            "tool --password [redacted] -v"
        );
        assert_eq!(
            scrub(&["tool", "--api-key=abc", "--db-token", "t0k"]),
            "tool --api-key=[redacted] --db-token [redacted]"
        );
        assert_eq!(
            scrub(&["env", "PGPASSWORD=s3cret", "psql"]),
            "env PGPASSWORD=[redacted] psql"
        );
        assert_eq!(
            scrub(&["psql", "postgres://app:s3cret@db:5432/shop?sslmode=require"]),
            "psql postgres://app:[redacted]@db:5432/shop?sslmode=require"
        );
        assert_eq!(
            scrub(&["psql", "host=db user=app password=s3cret dbname=shop"]),
            "psql host=db user=app password=[redacted] dbname=shop"
        );
        assert_eq!(
            scrub(&[
                "curl",
                "-H",
                "x",
                "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
            ]),
            "curl -H x [redacted]"
        );
        assert_eq!(
            scrub(&["bash", "-c", "psql -c 'select 1' --password pw"]),
            "bash -c psql -c 'select 1' --password [redacted]"
        );
    }

    #[test]
    fn ordinary_command_lines_are_kept() {
        for line in [
            &["psql", "-h", "127.0.0.1", "-p", "5432", "-c", "select 1"][..],
            &["cargo", "test", "--", "--test-threads=1"],
            &["git", "clone", "https://github.com/org/repo"],
            &["ssh", "git@github.com"],
            &["tool", "--password"],
            &["tool", "--token", "--next"],
            &["agent", "--query-token-file", "/etc/jitgate/token"],
            &["env", "JITGATE_PASSWORD_FILE=/run/secret"],
        ] {
            assert_eq!(scrub(line), line.join(" "));
        }
    }
}
