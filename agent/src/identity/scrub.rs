//! Secrets removed from a process's command line before it enters the audit trail: CI jobs pass
//! passwords and tokens as arguments (`--password X`, `PGPASSWORD=X`, `postgres://u:X@h`,
//! conninfo strings, `Authorization: Bearer X`, a job's OIDC token), and the trail is read by
//! more people than the job's secrets are meant for. Each secret is replaced by [`REDACTED`];
//! the rest of the line stays, so an auditor still sees what ran.
//!
//! An argument holding white space (an `sh -c` script, a conninfo string, a header) is split
//! into words with shell quoting rules (`shlex`), checked word by word (a quoted word holding
//! white space is split again, once) and joined with spaces, a word holding white space in
//! single quotes. It is a best effort: a secret in a form no rule here knows still shows.

/// What a removed secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Endings that make an option or `KEY=value` name a secret (compared without case, `-`, `_`
/// and `.`): `PGPASSWORD`, `--api-key`, `GITHUB_TOKEN`, `client_secret`, …
const SECRET_ENDINGS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
    "credential",
    "credentials",
    "authorization",
    "auth",
];

/// Whole words (between `-`, `_`, `.`) that make a name a secret: `DB_PASS`, `--pw`.
const SECRET_WORDS: &[&str] = &["pass", "pw", "pwd"];

/// Names that look like secrets but are not: the shell's working directories.
const NOT_SECRETS: &[&str] = &["pwd", "oldpwd"];

/// Endings that make a secret-sounding name point at where a secret is kept (`--token-file`,
/// `PASSWORD_FILE`), which the trail keeps.
const LOCATION_SUFFIXES: &[&str] = &["file", "path", "dir", "env", "command", "cmd"];

/// Prefixes of well-known credentials (GitHub, GitLab, Slack tokens; AWS access key ids).
const TOKEN_PREFIXES: &[&str] = &[
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "xoxr-",
    "xoxs-",
    "AKIA",
    "ASIA",
];

/// PostgreSQL client programs whose `--password`/`-W` and `--no-password`/`-w` take no value.
const PG_PROGRAMS: &[&str] = &[
    "psql",
    "pg_dump",
    "pg_dumpall",
    "pg_restore",
    "pg_basebackup",
    "pgbench",
    "createdb",
    "dropdb",
    "createuser",
    "dropuser",
    "vacuumdb",
    "reindexdb",
    "clusterdb",
];

/// Short options that take a password as their value, by program: (program, option,
/// attached) — `attached` when the value follows the option in the same argument (`-pX`).
const SHORT_SECRET_OPTIONS: &[(&str, &str, bool)] = &[
    ("mysql", "-p", true),
    ("mariadb", "-p", true),
    ("mysqldump", "-p", true),
    ("mysqladmin", "-p", true),
    ("sshpass", "-p", false),
    ("redis-cli", "-a", false),
];

/// How many times a quoted word is split again.
const MAX_DEPTH: usize = 2;

/// What the next word is, given the words before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Anything.
    Word,
    /// A secret (after `--password`, `Bearer`, SQL `PASSWORD`, `password =`, …).
    Secret,
    /// `=` after a secret name written `password = X` (libpq conninfo).
    Equals,
    /// An authorization scheme (`Bearer`, `Basic`, `token`) or a bare credential, after
    /// `Authorization:`.
    Scheme,
    /// `user:password` (after curl's `-u`).
    UserPassword,
}

/// Reads one process's argv, keeping what the words before each one say about it.
struct Scrubber<'a> {
    program: &'a str,
    expect: Expect,
}

/// `args` (one process's argv) with every secret replaced by [`REDACTED`].
pub fn scrub_args(args: &[&str]) -> Vec<String> {
    let program = args
        .first()
        .map(|p| p.rsplit('/').next().unwrap_or(p))
        .unwrap_or_default();
    let mut scrubber = Scrubber {
        program,
        expect: Expect::Word,
    };
    args.iter().map(|arg| scrubber.argument(arg)).collect()
}

impl Scrubber<'_> {
    /// One argument: a single word, or words split with shell quoting and joined again.
    fn argument(&mut self, arg: &str) -> String {
        self.text(arg, 0)
    }

    fn text(&mut self, text: &str, depth: usize) -> String {
        if !text.contains(char::is_whitespace) || self.expect == Expect::Secret {
            // A secret's value is the whole argument, spaces and all.
            return self.word(text, depth);
        }
        let words = shlex::split(text).unwrap_or_else(|| {
            text.split_whitespace()
                .map(|w| w.trim_matches(['\'', '"']).to_owned())
                .collect()
        });
        let scrubbed: Vec<String> = words.iter().map(|w| self.word(w, depth + 1)).collect();
        scrubbed
            .iter()
            .map(|w| {
                if w.contains(char::is_whitespace) {
                    format!("'{}'", w.replace('\'', "'\\''"))
                } else {
                    w.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// One word, with what it says about the next.
    fn word(&mut self, word: &str, depth: usize) -> String {
        if word.is_empty() {
            return String::new();
        }
        if word.contains(char::is_whitespace) && self.expect == Expect::Word {
            // `NAME=value with spaces` from a quoted shell word: the whole value goes.
            if let Some((name, _)) = word.split_once('=')
                && !name.contains(char::is_whitespace)
                && names_secret(name)
            {
                return format!("{name}={REDACTED}");
            }
            if depth < MAX_DEPTH {
                return self.text(word, depth);
            }
        }
        match std::mem::replace(&mut self.expect, Expect::Word) {
            Expect::Secret if word == "=" => {
                // `password = X`.
                self.expect = Expect::Secret;
                return word.to_owned();
            }
            Expect::Secret => return REDACTED.to_owned(),
            Expect::Equals if word == "=" => {
                self.expect = Expect::Secret;
                return word.to_owned();
            }
            Expect::Scheme => {
                if ["bearer", "basic", "token", "digest"].contains(&word.to_lowercase().as_str()) {
                    self.expect = Expect::Secret;
                    return word.to_owned();
                }
                return REDACTED.to_owned();
            }
            Expect::UserPassword => return redact_after_colon(word),
            Expect::Equals | Expect::Word => {}
        }
        let lower = word.to_lowercase();
        if lower.ends_with("authorization:") {
            self.expect = Expect::Scheme;
            return word.to_owned();
        }
        if lower == "bearer" || lower == "password" {
            // `Bearer X`; SQL `… PASSWORD 'X'`.
            self.expect = Expect::Secret;
            return word.to_owned();
        }
        if let Some(flag) = word.strip_prefix('-') {
            return self.option(word, flag);
        }
        self.value(word)
    }

    /// A word starting with `-`.
    fn option(&mut self, word: &str, flag: &str) -> String {
        if let Some((name, value)) = word.split_once('=') {
            if !value.is_empty() && names_secret(name) {
                return format!("{name}={REDACTED}");
            }
            return self.value(word);
        }
        if PG_PROGRAMS.contains(&self.program)
            && ["-W", "-w", "--password", "--no-password"].contains(&word)
        {
            return word.to_owned();
        }
        for (program, option, attached) in SHORT_SECRET_OPTIONS {
            if self.program != *program || !word.starts_with(option) {
                continue;
            }
            if word.len() > option.len() && *attached {
                return format!("{option}{REDACTED}");
            }
            if word == *option && !*attached {
                self.expect = Expect::Secret;
                return word.to_owned();
            }
        }
        if self.program == "curl" && (word == "-u" || word == "--user") {
            self.expect = Expect::UserPassword;
            return word.to_owned();
        }
        if self.program == "openssl" && flag.starts_with("pass") {
            // `-pass pass:X | env:VAR | file:PATH`: the value says which (see `value`).
            return word.to_owned();
        }
        if names_secret(flag) {
            self.expect = Expect::Secret;
        }
        word.to_owned()
    }

    /// A word that is not an option: `name=value` pairs (also inside URI queries and
    /// conninfo), a secret name before `=`, a URI's user information, a token.
    fn value(&mut self, word: &str) -> String {
        if names_secret(word) && !word.contains(['=', '/', ':']) {
            // `password = X` (conninfo with spaces around `=`).
            self.expect = Expect::Equals;
            return word.to_owned();
        }
        if looks_like_token(word) {
            return REDACTED.to_owned();
        }
        if let Some(rest) = word.strip_prefix("pass:") {
            // openssl's `-pass pass:X` (`env:` and `file:` name where it is kept).
            return if rest.is_empty() {
                word.to_owned()
            } else {
                format!("pass:{REDACTED}")
            };
        }
        scrub_pairs(&scrub_uri_userinfo(word))
    }
}

/// `word` with the value of every `name=value` pair whose name names a secret replaced; pairs
/// are separated by `&`, `;` or `?` (URI queries, JDBC URLs) and may follow a prefix such as
/// `--set=` or `-c`.
fn scrub_pairs(word: &str) -> String {
    if !word.contains('=') {
        return word.to_owned();
    }
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while !rest.is_empty() {
        let end = rest.find(['&', ';', '?']).unwrap_or(rest.len());
        let (segment, tail) = rest.split_at(end);
        out.push_str(&scrub_pair(segment));
        match tail.chars().next() {
            Some(separator) => {
                out.push(separator);
                rest = &tail[separator.len_utf8()..];
            }
            None => rest = tail,
        }
    }
    out
}

/// One `name=value` segment; the name is what follows the last `=`-free prefix separator
/// (`--set=db.password=X` names `db.password`).
fn scrub_pair(segment: &str) -> String {
    let Some(eq) = segment.rfind('=') else {
        return segment.to_owned();
    };
    let (head, value) = (&segment[..eq], &segment[eq + 1..]);
    let name = head.rsplit(['=', ',', ':']).next().unwrap_or(head);
    if !value.is_empty() && names_secret(name) {
        format!("{head}={REDACTED}")
    } else {
        segment.to_owned()
    }
}

/// Whether an option or variable name names a secret (not a file or variable holding one).
fn names_secret(name: &str) -> bool {
    let name = name.trim_start_matches('-');
    let lower = name.to_lowercase();
    if NOT_SECRETS.contains(&lower.as_str()) {
        return false;
    }
    let folded: String = lower
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.'))
        .collect();
    if LOCATION_SUFFIXES.iter().any(|s| folded.ends_with(s)) {
        return false;
    }
    SECRET_ENDINGS.iter().any(|w| folded.ends_with(w))
        || lower
            .split(['-', '_', '.'])
            .any(|part| SECRET_WORDS.contains(&part))
}

/// `user:X` with `X` replaced.
fn redact_after_colon(word: &str) -> String {
    match word.split_once(':') {
        Some((user, _)) => format!("{user}:{REDACTED}"),
        None => word.to_owned(),
    }
}

/// `scheme://user:password@host…` with the password replaced, and an `http(s)` URI's user
/// name replaced when it is alone (a token used as the user name) — RFC 3986 §3.2.1.
fn scrub_uri_userinfo(word: &str) -> String {
    let Some(scheme_end) = word.find("://") else {
        return word.to_owned();
    };
    let scheme = word[..scheme_end].to_lowercase();
    let authority_start = scheme_end + 3;
    let rest = &word[authority_start..];
    // The user information ends at the last `@` before the path: a password may hold `/`.
    let Some(at) = rest
        .rfind('@')
        .filter(|at| !rest[..*at].contains(['?', '#']))
    else {
        return word.to_owned();
    };
    let userinfo = &rest[..at];
    let masked = match userinfo.find(':') {
        Some(colon) => format!("{}:{REDACTED}", &userinfo[..colon]),
        None if scheme == "http" || scheme == "https" => REDACTED.to_owned(),
        None => userinfo.to_owned(),
    };
    format!("{}{masked}{}", &word[..authority_start], &rest[at..])
}

/// A JWT (RFC 7519: three base64url segments, the first a JSON object's encoding) or a
/// credential with a well-known prefix.
fn looks_like_token(word: &str) -> bool {
    let parts: Vec<&str> = word.split('.').collect();
    let jwt = parts.len() == 3
        && parts[0].starts_with("eyJ")
        && parts.iter().all(|p| {
            p.len() >= 4
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    jwt || TOKEN_PREFIXES.iter().any(|prefix| {
        word.len() >= prefix.len() + 12
            && word.starts_with(prefix)
            && word[prefix.len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrub(args: &[&str]) -> String {
        scrub_args(args).join(" ")
    }

    const SECRET: &str = "S3CR3T";

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
    }

    /// Forms a review found leaking: each must lose the secret.
    #[test]
    fn no_known_form_of_a_secret_survives() {
        let s = SECRET;
        let cases: Vec<Vec<String>> = vec![
            vec!["tool".into(), "--password".into(), format!("horse {s}")],
            vec![
                "sh".into(),
                "-c".into(),
                format!("psql \"password='p {s}' host=db\""),
            ],
            vec!["sh".into(), "-c".into(), format!("PGPASSWORD='x {s}' psql")],
            vec![
                "sh".into(),
                "-c".into(),
                format!("tool --password=\"x {s}\""),
            ],
            vec![
                "psql".into(),
                "-c".into(),
                format!("ALTER ROLE app PASSWORD '{s}'"),
            ],
            vec!["psql".into(), format!("host=db password = {s}")],
            vec!["tool".into(), format!("--password\t{s}")],
            vec!["tool".into(), "--token".into(), format!("-{s}")],
            vec![
                "psql".into(),
                format!("postgres://db/shop?sslmode=require&password={s}"),
            ],
            vec![
                "java".into(),
                format!("jdbc:postgresql://db/shop?user=a&password={s}"),
            ],
            vec![
                "git".into(),
                "clone".into(),
                format!("https://ghp_{s}abcdef@github.com/o/r"),
            ],
            vec!["psql".into(), format!("postgres://app:pa/{s}@db/shop")],
            vec!["mysql".into(), "-uroot".into(), format!("-p{s}")],
            vec![
                "sshpass".into(),
                "-p".into(),
                s.into(),
                "ssh".into(),
                "h".into(),
            ],
            vec!["redis-cli".into(), "-a".into(), s.into()],
            vec!["curl".into(), "-u".into(), format!("user:{s}")],
            vec![
                "curl".into(),
                "-H".into(),
                format!("Authorization: Bearer {s}"),
            ],
            vec![
                "git".into(),
                "-c".into(),
                format!("http.extraHeader=Authorization: Basic {s}"),
            ],
            vec![
                "docker".into(),
                "run".into(),
                format!("--env=POSTGRES_PASSWORD={s}"),
            ],
            vec!["kubectl".into(), format!("--from-literal=password={s}")],
            vec!["helm".into(), format!("--set=db.password={s}")],
            vec!["env".into(), format!("DB_PASS={s}")],
            vec!["tool".into(), "--pass".into(), s.into()],
            vec![
                "openssl".into(),
                "enc".into(),
                "-pass".into(),
                format!("pass:{s}"),
            ],
            vec![
                "sh".into(),
                "-c".into(),
                format!("curl -H 'Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.{s}'"),
            ],
            vec!["tool".into(), format!("ghp_{s}0123456789abcdef")],
        ];
        for case in cases {
            let args: Vec<&str> = case.iter().map(String::as_str).collect();
            let line = scrub(&args);
            assert!(!line.contains(s), "{args:?} → {line}");
        }
    }

    #[test]
    fn ordinary_command_lines_are_kept() {
        for line in [
            &["psql", "-h", "127.0.0.1", "-p", "5432", "-c", "select 1"][..],
            &["cargo", "test", "--", "--test-threads=1"],
            &["git", "clone", "https://github.com/org/repo"],
            &["ssh", "git@github.com"],
            &["tool", "--password"],
            &["agent", "--query-token-file", "/etc/jitgate/token"],
            &["env", "JITGATE_PASSWORD_FILE=/run/secret"],
            &["psql", "--password", "shop"],
            &["psql", "--no-password", "dbname=shop"],
            &["pg_dump", "-w", "shop"],
            &["env", "PWD=/builds/org/repo", "make"],
            &["llm", "--max-tokens", "512"],
            &["train", "--tokenizer", "bert-base"],
            &["ssh", "-p", "2222", "host"],
            &["openssl", "enc", "-pass", "env:KEY"],
            &["docker", "run", "-p", "8080:80", "image"],
            &["sh", "-c", "psql -c 'select 1'"],
        ] {
            assert_eq!(scrub(line), line.join(" "));
        }
    }
}
