//! Where a workload token may come from, and the lookups that read it from the connecting
//! process and its ancestors in the CI job ([`super::process::job_ancestry`]):
//!
//! - [`TokenSource::TokenFile`]: a file named by an environment variable
//!   (`AZURE_FEDERATED_TOKEN_FILE`, `JITGATE_OIDC_TOKEN_FILE` by default), read with the
//!   connecting process's credentials ([`super::token_file`]);
//! - [`TokenSource::EnvToken`]: the JWT itself in an environment variable (`JITGATE_OIDC_TOKEN`
//!   by default; GitLab's `id_tokens` put tokens in variables the pipeline names);
//! - [`TokenSource::GithubActions`]: the GitHub Actions request variables ([`super::github`]);
//! - [`TokenSource::StartupPassword`]: the JWT as the client's password
//!   ([`super::startup_password`]), on targets that accept it.
//!
//! Sources are tried in the configured order; for each, the process is searched first, then its
//! ancestors nearest first. The first source that finds something decides: a variable that is
//! set but unusable (an unreadable file, a request URL that is not allowed) is a refusal, not a
//! reason to try the next source.

use std::path::PathBuf;

use serde::Deserialize;

use super::github::{REQUEST_TOKEN_VAR, REQUEST_URL_VAR};
use super::process::{env_value, environ};
use super::{IdentityError, token_file};

/// One kind of token source (`[identity] sources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// A token file named by an environment variable.
    TokenFile,
    /// A token in an environment variable.
    EnvToken,
    /// The GitHub Actions token request.
    GithubActions,
    /// A token sent as the password in the client's startup.
    StartupPassword,
}

impl TokenSource {
    /// The default order: files, variables, GitHub's request, then the password.
    pub const DEFAULT_ORDER: [TokenSource; 4] = [
        TokenSource::TokenFile,
        TokenSource::EnvToken,
        TokenSource::GithubActions,
        TokenSource::StartupPassword,
    ];

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            TokenSource::TokenFile => "token_file",
            TokenSource::EnvToken => "env_token",
            TokenSource::GithubActions => "github_actions",
            TokenSource::StartupPassword => "startup_password",
        }
    }
}

/// Default variables holding a token directly.
pub const DEFAULT_ENV_TOKEN_VARS: [&str; 1] = ["JITGATE_OIDC_TOKEN"];

/// What a process-side source found.
#[derive(Debug)]
pub enum Found {
    /// A token, read from a file or a variable.
    Token {
        /// The JWT text.
        token: String,
        /// Where it came from, for logs.
        origin: Origin,
    },
    /// GitHub's request variables: the token is still to be asked for.
    GithubRequest {
        /// The process whose environment holds them.
        pid: u32,
        /// `ACTIONS_ID_TOKEN_REQUEST_URL` (unchecked).
        url: String,
        /// `ACTIONS_ID_TOKEN_REQUEST_TOKEN` (a secret: never logged).
        request_token: String,
    },
}

impl Found {
    /// The process whose environment it was found in.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Found::Token { origin, .. } => origin.pid(),
            Found::GithubRequest { pid, .. } => Some(*pid),
        }
    }
}

impl Origin {
    /// The process whose environment named the token, if any.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Origin::File { pid, .. } | Origin::Env { pid, .. } | Origin::GithubActions { pid } => {
                Some(*pid)
            }
            Origin::StartupPassword => None,
        }
    }
}

/// Where a token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A file named by `var` in the environment of `pid`.
    File {
        /// The naming process.
        pid: u32,
        /// The variable.
        var: String,
        /// The file as named.
        path: PathBuf,
    },
    /// Variable `var` of process `pid`.
    Env {
        /// The process.
        pid: u32,
        /// The variable.
        var: String,
    },
    /// The GitHub Actions token service, asked with the variables of `pid`.
    GithubActions {
        /// The process.
        pid: u32,
    },
    /// The client's PasswordMessage.
    StartupPassword,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File { pid, var, path } => {
                write!(f, "file {} (${var} of process {pid})", path.display())
            }
            Origin::Env { pid, var } => write!(f, "${var} of process {pid}"),
            Origin::GithubActions { pid } => {
                write!(f, "GitHub Actions token request of process {pid}")
            }
            Origin::StartupPassword => f.write_str("the client's startup password"),
        }
    }
}

/// Looks for `source` (a process-side one) in the environments of `ancestry` (connecting process
/// first). `file_vars` and `env_vars` are the configured variable names. `None` when nothing is
/// set; [`TokenSource::StartupPassword`] is never found here.
///
/// # Errors
/// [`IdentityError::TokenFile`] when a named file cannot be used.
pub fn lookup(
    source: TokenSource,
    ancestry: &[u32],
    file_vars: &[String],
    env_vars: &[String],
) -> Result<Option<Found>, IdentityError> {
    let Some(&connecting) = ancestry.first() else {
        return Ok(None);
    };
    for &pid in ancestry {
        let Some(env) = environ(pid) else { continue };
        match source {
            TokenSource::TokenFile => {
                if let Some((var, path)) = first_set(&env, file_vars) {
                    let path = PathBuf::from(path);
                    let token = token_file::read(connecting, pid, &var, &path)?;
                    return Ok(Some(Found::Token {
                        token,
                        origin: Origin::File { pid, var, path },
                    }));
                }
            }
            TokenSource::EnvToken => {
                if let Some((var, token)) = first_set(&env, env_vars) {
                    return Ok(Some(Found::Token {
                        token: token.trim().to_owned(),
                        origin: Origin::Env { pid, var },
                    }));
                }
            }
            TokenSource::GithubActions => {
                if let (Some(url), Some(request_token)) = (
                    env_value(&env, REQUEST_URL_VAR),
                    env_value(&env, REQUEST_TOKEN_VAR),
                ) {
                    return Ok(Some(Found::GithubRequest {
                        pid,
                        url,
                        request_token,
                    }));
                }
            }
            TokenSource::StartupPassword => return Ok(None),
        }
    }
    Ok(None)
}

/// The first of `vars` set (non-empty) in `env`, with its value.
fn first_set(env: &[u8], vars: &[String]) -> Option<(String, String)> {
    vars.iter()
        .find_map(|var| env_value(env, var).map(|value| (var.clone(), value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_by_name_and_unknown_ones_fail() {
        #[derive(Deserialize)]
        struct S {
            sources: Vec<TokenSource>,
        }
        let s: S =
            toml::from_str(r#"sources = ["env_token", "startup_password"]"#).expect("parses");
        assert_eq!(
            s.sources,
            vec![TokenSource::EnvToken, TokenSource::StartupPassword]
        );
        assert!(toml::from_str::<S>(r#"sources = ["kerberos"]"#).is_err());
        for source in TokenSource::DEFAULT_ORDER {
            let text = format!("sources = [\"{}\"]", source.name());
            let parsed: S = toml::from_str(&text).expect("name round-trips");
            assert_eq!(parsed.sources, vec![source]);
        }
    }

    #[test]
    fn first_configured_variable_wins() {
        let env = b"B=2\0A=1\0";
        let vars = ["A".to_owned(), "B".to_owned()];
        assert_eq!(first_set(env, &vars), Some(("A".into(), "1".into())));
        assert_eq!(first_set(env, &["C".to_owned()]), None);
    }

    #[test]
    fn own_environment_is_searched() {
        // This test process has PATH set; as an "env token" variable it is found in the first
        // process of the ancestry.
        let me = std::process::id();
        let found =
            lookup(TokenSource::EnvToken, &[me], &[], &["PATH".to_owned()]).expect("no error");
        match found {
            Some(Found::Token { origin, .. }) => assert_eq!(
                origin,
                Origin::Env {
                    pid: me,
                    var: "PATH".into()
                }
            ),
            other => panic!("expected PATH, got {other:?}"),
        }
        let none = lookup(TokenSource::GithubActions, &[me], &[], &[]).expect("no error");
        assert!(none.is_none() || std::env::var_os(REQUEST_URL_VAR).is_some());
    }
}
