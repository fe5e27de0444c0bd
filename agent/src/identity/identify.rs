//! Who a redirected connection is: the kernel's record of the connecting process is checked
//! against `/proc` ([`super::liveness`]: start time, uid, cgroup, comm; [`super::socket`]: it
//! holds the connection's client socket), the configured token sources are tried in order
//! ([`super::sources`]), and the token found is validated ([`super::jwt`]).
//!
//! Reading `/proc` and files the job named runs off the async workers with a time limit; the
//! GitHub Actions request and the password exchange are async with their own limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use jitgate_common::ConnInfo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::github::{self, AllowedUrl};
use super::http::HttpClient;
use super::process::{comm_of, exe_of, job_ancestry};
use super::sources::{self, Found, Origin, TokenSource};
use super::{IdentityError, Validator, WorkloadIdentity, liveness, socket, startup_password};
use crate::config::IdentitySection;

/// How long one step reading `/proc` and token files may take.
pub const BLOCKING_TIMEOUT: Duration = Duration::from_secs(5);

/// The client's side of the connection, for [`TokenSource::StartupPassword`].
pub struct PasswordChannel<'a, R: ?Sized, W: ?Sized> {
    /// Read half, right after the StartupMessage.
    pub reader: &'a mut R,
    /// Write half.
    pub writer: &'a mut W,
    /// Whether the client connection is TLS.
    pub tls: bool,
}

/// A validated identity and where its token came from.
#[derive(Debug)]
pub struct Identified {
    /// The identity.
    pub identity: WorkloadIdentity,
    /// The token's source.
    pub origin: Origin,
    /// The connecting process's executable (`/proc/<tgid>/exe`), read while it was verified to
    /// be the process that connected; empty when unreadable.
    pub exe: String,
}

/// Finds and validates workload identities as configured.
pub struct Identifier {
    sources: Vec<TokenSource>,
    file_vars: Vec<String>,
    env_vars: Vec<String>,
    github_audience: Option<String>,
    github_allowed: Vec<AllowedUrl>,
    password_requires_tls: bool,
    validator: Validator,
    http: HttpClient,
    runner_cgroup: String,
    cgroup_mount: PathBuf,
}

impl Identifier {
    /// The identity machinery for `config`, with `validator`'s issuers, for jobs in
    /// `runner_cgroup` (a path relative to the cgroup2 mount `cgroup_mount`).
    ///
    /// # Errors
    /// [`IdentityError::Config`] for an allowed URL that does not parse or may not be called.
    pub fn new(
        config: &IdentitySection,
        validator: Validator,
        http: HttpClient,
        runner_cgroup: String,
        cgroup_mount: PathBuf,
    ) -> Result<Self, IdentityError> {
        let github_allowed = github::parse_allowed(&config.github_allowed_urls)
            .map_err(|detail| IdentityError::Config { detail })?;
        Ok(Self {
            sources: config.sources.clone(),
            file_vars: config.token_file_vars.clone(),
            env_vars: config.env_token_vars.clone(),
            github_audience: config.github_audience.clone(),
            github_allowed,
            password_requires_tls: config.startup_password_requires_tls,
            validator,
            http,
            runner_cgroup,
            cgroup_mount,
        })
    }

    /// The token validator.
    pub fn validator(&self) -> &Validator {
        &self.validator
    }

    /// Identifies the process the kernel recorded in `info` for the connection from `client`
    /// to the agent's `agent` address. `password` is the client channel when the target accepts
    /// a token as the password, `None` otherwise.
    ///
    /// # Errors
    /// The [`IdentityError`] the connection is refused with (SQLSTATE 28000).
    pub async fn identify<R, W>(
        &self,
        info: &ConnInfo,
        client: SocketAddr,
        agent: SocketAddr,
        mut password: Option<PasswordChannel<'_, R, W>>,
    ) -> Result<Identified, IdentityError>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        let facts = info.process;
        let (connect_ns, mount, cgroup) = (
            info.connect_ns,
            self.cgroup_mount.clone(),
            self.runner_cgroup.clone(),
        );
        let (ancestry, exe, inode) = blocking(facts.tgid, move || {
            liveness::check(&facts, connect_ns, &mount)?;
            let inode = socket::client_socket_inode(facts.tgid, client, agent)?;
            socket::check_holds(facts.tgid, inode)?;
            let ancestry = job_ancestry(facts.tgid, &cgroup);
            let exe = exe_of(facts.tgid);
            // The executable and ancestry just read are the recorded process's only if it is
            // still there.
            liveness::check(&facts, connect_ns, &mount)?;
            Ok((ancestry, exe, inode))
        })
        .await?;

        let mut looked = Vec::new();
        for &source in &self.sources {
            let (token, origin) = match source {
                TokenSource::StartupPassword => {
                    let Some(channel) = password.take() else {
                        looked.push("a token as password (not accepted by this target)".into());
                        continue;
                    };
                    if self.password_requires_tls && !channel.tls {
                        looked.push(
                            "a token as password (accepted over TLS only; this client did not \
                             use TLS)"
                                .into(),
                        );
                        continue;
                    }
                    let token = startup_password::ask(channel.reader, channel.writer).await?;
                    (token, Origin::StartupPassword)
                }
                _ => {
                    looked.push(self.describe(source));
                    let (file_vars, env_vars) = (self.file_vars.clone(), self.env_vars.clone());
                    let chain = ancestry.clone();
                    let found = blocking(facts.tgid, move || {
                        sources::lookup(source, &chain, &file_vars, &env_vars)
                    })
                    .await?;
                    let Some(found) = found else { continue };
                    // The environment just read belonged to the recorded process (or its
                    // ancestor) only if that process is still there, and that one still its
                    // ancestor, now: a pid is not reused while its process exists, and a process
                    // that took a pid later is nobody's ancestor.
                    let (mount, cgroup) = (self.cgroup_mount.clone(), self.runner_cgroup.clone());
                    let namer = found.pid();
                    blocking(facts.tgid, move || {
                        liveness::check(&facts, connect_ns, &mount)?;
                        socket::check_holds(facts.tgid, inode)?;
                        match namer {
                            Some(pid) if !job_ancestry(facts.tgid, &cgroup).contains(&pid) => {
                                Err(IdentityError::ProcessGone {
                                    pid,
                                    detail: format!(
                                        "it is no longer an ancestor of process {} in the job",
                                        facts.tgid
                                    ),
                                })
                            }
                            _ => Ok(()),
                        }
                    })
                    .await?;
                    self.token_of(found).await?
                }
            };
            let identity = self.validator.validate(&token).await?;
            tracing::debug!(%origin, identity = %identity.label(), "workload identity");
            return Ok(Identified {
                identity,
                origin,
                exe,
            });
        }
        Err(IdentityError::NoToken {
            pid: facts.tgid,
            comm: comm_of(&facts),
            looked: looked.join("; "),
        })
    }

    /// The token of a process-side find (asking GitHub's service when that is what was found).
    async fn token_of(&self, found: Found) -> Result<(String, Origin), IdentityError> {
        match found {
            Found::Token { token, origin } => Ok((token, origin)),
            Found::GithubRequest {
                pid,
                url,
                request_token,
            } => {
                let url = github::request_url(
                    &url,
                    self.github_audience.as_deref(),
                    &self.github_allowed,
                    pid,
                )?;
                let token = github::request_token(&self.http, url, &request_token, pid).await?;
                Ok((token, Origin::GithubActions { pid }))
            }
        }
    }

    /// What a process-side source looks for, for the "no token" message.
    fn describe(&self, source: TokenSource) -> String {
        let vars = |list: &[String]| {
            list.iter()
                .map(|v| format!("${v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match source {
            TokenSource::TokenFile => format!("a token file named by {}", vars(&self.file_vars)),
            TokenSource::EnvToken => format!("a token in {}", vars(&self.env_vars)),
            TokenSource::GithubActions => format!(
                "GitHub Actions' ${} and ${}",
                github::REQUEST_URL_VAR,
                github::REQUEST_TOKEN_VAR
            ),
            TokenSource::StartupPassword => "a token as password".into(),
        }
    }
}

/// Runs `f` off the async workers within [`BLOCKING_TIMEOUT`].
async fn blocking<T: Send + 'static>(
    pid: u32,
    f: impl FnOnce() -> Result<T, IdentityError> + Send + 'static,
) -> Result<T, IdentityError> {
    match tokio::time::timeout(BLOCKING_TIMEOUT, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(IdentityError::ProcessGone {
            pid,
            detail: format!("token lookup failed: {join}"),
        }),
        Err(_) => Err(IdentityError::ProcessGone {
            pid,
            detail: format!("token lookup took longer than {BLOCKING_TIMEOUT:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitgate_common::ConnInfo;

    /// An identifier for this test process (its own cgroup as the runner cgroup), with `sources`
    /// and `PATH` as the only token file and env token variable.
    fn identifier(sources: Vec<TokenSource>) -> (Identifier, ConnInfo) {
        let (facts, connect_ns, mount) = liveness::own_facts();
        let cgroup = super::super::process::cgroup_of(facts.tgid).unwrap_or_default();
        let config = IdentitySection {
            sources,
            token_file_vars: vec!["PATH".into()],
            env_token_vars: vec!["PATH".into()],
            ..IdentitySection::default()
        };
        let http = HttpClient::new().expect("client");
        let validator = Validator::from_config(&[], &http).expect("validator");
        let identifier =
            Identifier::new(&config, validator, http, cgroup, mount).expect("identifier");
        let info = ConnInfo {
            process: facts,
            connect_ns,
            ..ConnInfo::default()
        };
        (identifier, info)
    }

    async fn identify(sources: Vec<TokenSource>) -> IdentityError {
        let (identifier, info) = identifier(sources);
        // A real connection held by this process, as a job's would be.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let agent = listener.local_addr().expect("addr");
        let _client = std::net::TcpStream::connect(agent).expect("connect");
        let (_accepted, client) = listener.accept().expect("accept");
        identifier
            .identify(
                &info,
                client,
                agent,
                None::<PasswordChannel<'_, &[u8], Vec<u8>>>,
            )
            .await
            .expect_err("PATH is no token")
    }

    #[tokio::test]
    async fn the_first_configured_source_that_finds_something_decides() {
        // PATH as an env token: found first, then rejected as a JWT.
        let env_first = identify(vec![TokenSource::EnvToken, TokenSource::TokenFile]).await;
        assert!(
            matches!(env_first, IdentityError::Malformed { .. }),
            "{env_first}"
        );
        // PATH as a token file name: found first, then not a file.
        let file_first = identify(vec![TokenSource::TokenFile, TokenSource::EnvToken]).await;
        assert!(
            matches!(file_first, IdentityError::TokenFile { .. }),
            "{file_first}"
        );
    }

    #[tokio::test]
    async fn nothing_found_lists_what_was_looked_for() {
        let none = identify(vec![TokenSource::StartupPassword]).await;
        match none {
            IdentityError::NoToken { looked, .. } => {
                assert!(looked.contains("not accepted by this target"), "{looked}")
            }
            other => panic!("expected NoToken, got {other}"),
        }
    }
}
