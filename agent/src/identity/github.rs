//! The GitHub Actions token request: a job with `permissions: id-token: write` has
//! `ACTIONS_ID_TOKEN_REQUEST_URL` and `ACTIONS_ID_TOKEN_REQUEST_TOKEN` in its environment; the
//! token is `GET <url>&audience=<audience>` with `Authorization: Bearer <request token>`,
//! answered `{"value": "<jwt>"}` (GitHub's "About security hardening with OpenID Connect",
//! and `@actions/core` `getIDToken`).
//!
//! The URL comes from the job and the agent runs as root, so it is called only when it matches
//! one of the configured allowed URL prefixes ([`AllowedUrl`], compared on the parsed URL, not
//! as text), never follows redirects, and reads a bounded answer in bounded time
//! ([`super::http`]). The request token is never logged.

use reqwest::Url;
use serde::Deserialize;

use super::IdentityError;
use super::http::{HttpClient, checked_url};

/// Environment variable holding the token request URL.
pub const REQUEST_URL_VAR: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";

/// Environment variable holding the bearer token for the request.
pub const REQUEST_TOKEN_VAR: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

/// GitHub's token service hosts (github.com): every `https` host under
/// `actions.githubusercontent.com`.
pub const DEFAULT_ALLOWED_URLS: [&str; 1] = ["https://*.actions.githubusercontent.com/"];

/// Largest answer read, bytes.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Host label standing for `*` while a pattern is parsed.
const WILDCARD_LABEL: &str = "jitgate-wildcard-label";

/// One allowed URL prefix: scheme, host (exact, or `*.` followed by a domain for any host
/// strictly below it), port (explicit or the scheme's default) and path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedUrl {
    scheme: String,
    host: String,
    wildcard: bool,
    port: Option<u16>,
    path: String,
}

impl AllowedUrl {
    /// Parses a pattern such as `https://*.actions.githubusercontent.com/` or
    /// `http://127.0.0.1:8080/token`.
    ///
    /// # Errors
    /// A description when the pattern is not a URL, has a query, credentials, or a scheme the
    /// agent may not call ([`checked_url`]).
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let (text, wildcard) = match pattern.split_once("://*.") {
            Some((scheme, rest)) => (format!("{scheme}://{WILDCARD_LABEL}.{rest}"), true),
            None => (pattern.to_owned(), false),
        };
        let url = checked_url(&text).map_err(|e| e.replace(&text, pattern))?;
        if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "allowed URL {pattern:?} must have no query and no credentials"
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| format!("allowed URL {pattern:?} has no host"))?;
        let host = match host.strip_prefix(&format!("{WILDCARD_LABEL}.")) {
            Some(domain) if wildcard => domain.to_owned(),
            _ => host.to_owned(),
        };
        Ok(Self {
            scheme: url.scheme().to_owned(),
            host,
            wildcard,
            port: url.port_or_known_default(),
            path: url.path().to_owned(),
        })
    }

    /// Whether `url` is under this prefix.
    pub fn matches(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host_ok = if self.wildcard {
            host.strip_suffix(&self.host)
                .and_then(|sub| sub.strip_suffix('.'))
                .is_some_and(|sub| !sub.is_empty())
        } else {
            host == self.host
        };
        url.scheme() == self.scheme
            && host_ok
            && url.port_or_known_default() == self.port
            && url.username().is_empty()
            && url.password().is_none()
            && url.path().starts_with(&self.path)
    }
}

/// Parses every pattern.
///
/// # Errors
/// The first pattern that does not parse.
pub fn parse_allowed(patterns: &[String]) -> Result<Vec<AllowedUrl>, String> {
    patterns.iter().map(|p| AllowedUrl::parse(p)).collect()
}

/// The request URL with `audience` appended, when it may be called.
///
/// # Errors
/// [`IdentityError::GithubUrlNotAllowed`] naming the URL's scheme, host and path (not its
/// query).
pub fn request_url(
    raw: &str,
    audience: Option<&str>,
    allowed: &[AllowedUrl],
    pid: u32,
) -> Result<Url, IdentityError> {
    let refuse = |shown: String| IdentityError::GithubUrlNotAllowed { url: shown, pid };
    let mut url = checked_url(raw).map_err(|_| refuse(shown_url(raw)))?;
    if !allowed.iter().any(|a| a.matches(&url)) {
        return Err(refuse(shown_url(raw)));
    }
    if let Some(audience) = audience {
        url.query_pairs_mut().append_pair("audience", audience);
    }
    Ok(url)
}

/// A URL as shown in messages: without query and credentials.
fn shown_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) => {
            url.set_query(None);
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => "(not a URL)".into(),
    }
}

#[derive(Deserialize)]
struct Answer {
    value: String,
}

/// Asks the token service for the job's token.
///
/// # Errors
/// [`IdentityError::GithubRequest`] when the service does not answer 200 with `{"value": ...}`
/// in time and within [`MAX_ANSWER_BYTES`].
pub async fn request_token(
    http: &HttpClient,
    url: Url,
    request_token: &str,
    pid: u32,
) -> Result<String, IdentityError> {
    let fail = |detail: String| IdentityError::GithubRequest { pid, detail };
    let body = http
        .get(url, Some(request_token), MAX_ANSWER_BYTES)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let answer: Answer = serde_json::from_slice(&body)
        .map_err(|e| fail(format!("the answer is not {{\"value\": \"<jwt>\"}}: {e}")))?;
    Ok(answer.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("test URL")
    }

    #[test]
    fn wildcard_matches_hosts_below_only() {
        let a = AllowedUrl::parse(DEFAULT_ALLOWED_URLS[0]).expect("pattern");
        assert!(a.matches(&url(
            "https://pipelinesghubeus6.actions.githubusercontent.com/x/idtoken?api-version=2.0"
        )));
        assert!(!a.matches(&url("https://actions.githubusercontent.com/x")));
        assert!(!a.matches(&url("https://evil.com/.actions.githubusercontent.com/")));
        assert!(!a.matches(&url("https://a.actions.githubusercontent.com.evil.com/")));
        assert!(!a.matches(&url("https://a.actions.githubusercontent.com:8443/")));
        assert!(!a.matches(&url("http://a.actions.githubusercontent.com/")));
        assert!(!a.matches(&url("https://u:p@a.actions.githubusercontent.com/")));
    }

    #[test]
    fn exact_host_port_and_path_prefix() {
        let a = AllowedUrl::parse("http://127.0.0.1:8080/token").expect("pattern");
        assert!(a.matches(&url("http://127.0.0.1:8080/token/abc?x=1")));
        assert!(!a.matches(&url("http://127.0.0.1:8081/token")));
        assert!(!a.matches(&url("http://127.0.0.1:8080/other")));
        assert!(!a.matches(&url("http://127.0.0.2:8080/token")));
    }

    #[test]
    fn unsafe_patterns_are_rejected() {
        assert!(AllowedUrl::parse("http://example.com/").is_err());
        assert!(AllowedUrl::parse("https://x.com/?q=1").is_err());
        assert!(AllowedUrl::parse("ftp://x.com/").is_err());
    }

    #[test]
    fn audience_is_appended_and_refusals_hide_the_query() {
        let allowed = parse_allowed(&["http://127.0.0.1:8080/".into()]).expect("patterns");
        let ok = request_url(
            "http://127.0.0.1:8080/t?api-version=2.0",
            Some("api://x"),
            &allowed,
            1,
        )
        .expect("allowed");
        assert_eq!(ok.query(), Some("api-version=2.0&audience=api%3A%2F%2Fx"));
        let err = request_url("https://evil.example/t?secret=1", Some("a"), &allowed, 1)
            .expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("https://evil.example/t"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
}
