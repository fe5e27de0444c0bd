//! The agent's outbound HTTP for identity: OIDC discovery documents, JWK Sets and the GitHub
//! Actions token request. One `reqwest` client (rustls with the ring provider and the public
//! web roots; no proxy from the environment, no redirects followed, bounded connect and total
//! time) and a GET whose body is read up to a size limit.
//!
//! The agent runs as root, so what it may call is constrained: `https` URLs, or plain `http`
//! only to a literal loopback address (`127.0.0.0/8`, `[::1]`: test issuers and token services
//! on the same host). Redirects are not followed, since a redirect would lead the request to an
//! address that was never checked.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

/// Time to establish a connection (TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Time for a whole request, body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Parses `url` and checks that the agent may call it: `https`, or `http` to a literal loopback
/// address.
///
/// # Errors
/// A description of what is wrong with the URL.
pub fn checked_url(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if is_loopback(&parsed) => Ok(parsed),
        "http" => Err(format!(
            "{url} uses plain http; only https is allowed (http only to a loopback address)"
        )),
        other => Err(format!("{url}: scheme {other} is not allowed")),
    }
}

/// Whether the URL's host is a literal loopback address.
pub fn is_loopback(url: &Url) -> bool {
    url.host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .and_then(|h| h.parse::<IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback())
}

/// Why a GET failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No answer (connect, TLS, timeout, reading the body).
    #[error("request to {url} failed: {detail}")]
    Transport {
        /// The URL without its query.
        url: String,
        /// Why.
        detail: String,
    },
    /// An answer other than 200 OK.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL without its query.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The body is larger than the limit.
    #[error("{url} answered more than {max} bytes")]
    TooLarge {
        /// The URL without its query.
        url: String,
        /// The limit, bytes.
        max: usize,
    },
}

/// The identity HTTP client.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: reqwest::Client,
}

impl HttpClient {
    /// A client verifying servers against the public web roots.
    ///
    /// # Errors
    /// When the TLS configuration or the client cannot be built.
    pub fn new() -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("jitgate-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { client })
    }

    /// GETs `url` (already [`checked_url`]) with an optional bearer token, and returns the body
    /// of a 200 answer of at most `max` bytes.
    ///
    /// # Errors
    /// [`HttpError`]; its text never contains the bearer token or the URL's query.
    pub async fn get(
        &self,
        url: Url,
        bearer: Option<&str>,
        max: usize,
    ) -> Result<Vec<u8>, HttpError> {
        let shown = {
            let mut u = url.clone();
            u.set_query(None);
            u.to_string()
        };
        let transport = |detail: String| HttpError::Transport {
            url: shown.clone(),
            detail,
        };
        let mut request = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| transport(without_url(&e)))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(HttpError::Status {
                url: shown,
                status: status.as_u16(),
            });
        }
        let too_large = || HttpError::TooLarge {
            url: shown.clone(),
            max,
        };
        if response.content_length().is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport(without_url(&e)))?
        {
            if body.len() + chunk.len() > max {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// A reqwest error's kind and causes, without the URL (which may carry a query the job chose).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "cannot read the answer"
    } else {
        "request failed"
    }
    .to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http() {
        assert!(checked_url("https://token.actions.githubusercontent.com").is_ok());
        assert!(checked_url("http://127.0.0.1:8080/x").is_ok());
        assert!(checked_url("http://[::1]:8080/x").is_ok());
        assert!(checked_url("http://localhost:8080/x").is_err());
        assert!(checked_url("http://10.0.0.1/x").is_err());
        assert!(checked_url("http://127.0.0.1.example.com/x").is_err());
        assert!(checked_url("file:///etc/passwd").is_err());
        assert!(checked_url("not a url").is_err());
    }
}
