//! An issuer's keys fetched over the network: OpenID Connect Discovery 1.0 §4 (RFC 8414 §3 for
//! the same document shape) — `GET {issuer}/.well-known/openid-configuration`, whose `issuer`
//! must equal the configured one (§4.3) and whose `jwks_uri` names the JWK Set — then the JWK
//! Set itself ([`super::keys`]).
//!
//! The keys are cached. A token whose `kid` is not in the cache triggers a refresh, at most once
//! per `min_interval` per issuer (a flood of tokens with made-up key ids cannot make the agent
//! hammer the issuer); concurrent callers wait for the one refresh in flight. When a refresh
//! fails, the keys already cached stay in use, so an unreachable issuer does not stop tokens
//! signed with known keys. An issuer whose keys were never fetched refuses its tokens, naming
//! the last failure, until a fetch succeeds.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use reqwest::Url;
use serde::Deserialize;

use super::IdentityError;
use super::http::{HttpClient, checked_url};
use super::keys::KeySet;

/// Largest discovery document read, bytes.
pub const MAX_DISCOVERY_BYTES: usize = 64 * 1024;

/// Largest JWK Set read, bytes.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// The discovery URL of `issuer`: the issuer with any trailing `/` removed, then
/// `/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4).
pub fn discovery_url_of(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// The members of a discovery document the agent uses.
#[derive(Debug, Deserialize)]
struct ProviderMetadata {
    issuer: String,
    jwks_uri: String,
}

/// When and how the last fetch went.
#[derive(Debug, Default)]
struct FetchState {
    last_attempt: Option<Instant>,
    last_error: Option<String>,
}

/// The cached, refreshable keys of one issuer.
#[derive(Debug)]
pub struct RemoteKeys {
    issuer: String,
    discovery_url: Url,
    min_interval: Duration,
    http: HttpClient,
    /// The keys of the last successful fetch.
    cache: RwLock<Option<Arc<KeySet>>>,
    /// Held for the whole of a fetch, so only one runs per issuer.
    fetch: tokio::sync::Mutex<FetchState>,
}

impl RemoteKeys {
    /// Keys of `issuer` found through `discovery_url` (checked: https, or http to loopback),
    /// refreshed at most once per `min_interval`. Nothing is fetched yet.
    ///
    /// # Errors
    /// [`IdentityError::Discovery`] when the URL may not be used.
    pub fn new(
        issuer: &str,
        discovery_url: &str,
        min_interval: Duration,
        http: HttpClient,
    ) -> Result<Self, IdentityError> {
        let discovery_url =
            checked_url(discovery_url).map_err(|detail| IdentityError::Discovery {
                issuer: issuer.to_owned(),
                detail,
            })?;
        Ok(Self {
            issuer: issuer.to_owned(),
            discovery_url,
            min_interval,
            http,
            cache: RwLock::new(None),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
        })
    }

    /// The issuer these keys belong to.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    fn cached(&self) -> Option<Arc<KeySet>> {
        self.cache.read().ok().and_then(|c| c.clone())
    }

    /// The first fetch, at agent start: failures are logged, never fatal. Counts as a refresh
    /// for the rate limit.
    pub async fn prefetch(&self) {
        let mut state = self.fetch.lock().await;
        if state.last_attempt.is_some() {
            // A token got here first and fetched.
            return;
        }
        match self.fetch_now(&mut state).await {
            Ok(keys) => {
                tracing::info!(issuer = %self.issuer, keys = keys.len(), "issuer keys fetched")
            }
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, error = %e, "issuer keys unavailable; its tokens are refused until a fetch succeeds")
            }
        }
    }

    /// The key set holding `kid`, refreshing the cache when `kid` is unknown and the rate limit
    /// allows.
    ///
    /// # Errors
    /// [`IdentityError::KeysUnavailable`] when no keys were ever fetched;
    /// [`IdentityError::UnknownKey`] when `kid` is in neither the cache nor a refresh (or a
    /// refresh is not allowed yet, or failed).
    pub async fn keys_with(&self, kid: &str) -> Result<Arc<KeySet>, IdentityError> {
        if let Some(keys) = self.cached().filter(|k| k.contains(kid)) {
            return Ok(keys);
        }
        let mut state = self.fetch.lock().await;
        // Another session may have refreshed while this one waited.
        let cached = self.cached();
        if let Some(keys) = cached.clone().filter(|k| k.contains(kid)) {
            return Ok(keys);
        }
        let unknown = |detail: String| IdentityError::UnknownKey {
            kid: kid.to_owned(),
            issuer: self.issuer.clone(),
            detail,
        };
        if let Some(last) = state.last_attempt
            && last.elapsed() < self.min_interval
        {
            let wait = self.min_interval.saturating_sub(last.elapsed());
            return Err(match cached {
                None => IdentityError::KeysUnavailable {
                    issuer: self.issuer.clone(),
                    detail: format!(
                        "{}; next attempt in {} s",
                        state
                            .last_error
                            .as_deref()
                            .unwrap_or("no fetch has succeeded yet"),
                        wait.as_secs().max(1)
                    ),
                },
                Some(_) => unknown(format!(
                    "keys were refreshed {} s ago; the next refresh is allowed in {} s",
                    last.elapsed().as_secs(),
                    wait.as_secs().max(1)
                )),
            });
        }
        match self.fetch_now(&mut state).await {
            Ok(keys) if keys.contains(kid) => Ok(keys),
            Ok(_) => Err(unknown("not in the issuer's current keys either".into())),
            Err(detail) => Err(match cached {
                None => IdentityError::KeysUnavailable {
                    issuer: self.issuer.clone(),
                    detail,
                },
                Some(_) => unknown(format!("refreshing the keys failed: {detail}")),
            }),
        }
    }

    /// Fetches discovery document and JWK Set now; on success the cache is replaced.
    async fn fetch_now(&self, state: &mut FetchState) -> Result<Arc<KeySet>, String> {
        state.last_attempt = Some(Instant::now());
        match self.fetch_keys().await {
            Ok(keys) => {
                let keys = Arc::new(keys);
                if let Ok(mut cache) = self.cache.write() {
                    *cache = Some(keys.clone());
                }
                state.last_error = None;
                Ok(keys)
            }
            Err(e) => {
                state.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    async fn fetch_keys(&self) -> Result<KeySet, String> {
        let body = self
            .http
            .get(self.discovery_url.clone(), None, MAX_DISCOVERY_BYTES)
            .await
            .map_err(|e| format!("discovery: {e}"))?;
        let metadata: ProviderMetadata = serde_json::from_slice(&body)
            .map_err(|e| format!("discovery document of {}: {e}", self.discovery_url))?;
        if metadata.issuer != self.issuer {
            return Err(format!(
                "discovery document names issuer {:?}, not {:?} (OpenID Connect Discovery §4.3)",
                metadata.issuer, self.issuer
            ));
        }
        let jwks_uri = checked_url(&metadata.jwks_uri).map_err(|e| format!("jwks_uri: {e}"))?;
        let body = self
            .http
            .get(jwks_uri.clone(), None, MAX_JWKS_BYTES)
            .await
            .map_err(|e| format!("JWKS: {e}"))?;
        KeySet::parse(&body).map_err(|e| format!("JWKS at {jwks_uri}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_urls() {
        assert_eq!(
            discovery_url_of("https://token.actions.githubusercontent.com"),
            "https://token.actions.githubusercontent.com/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url_of("https://sts.windows.net/t/"),
            "https://sts.windows.net/t/.well-known/openid-configuration"
        );
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let http = HttpClient::new().expect("client");
        let ok = RemoteKeys::new(
            "http://127.0.0.1:9",
            "http://127.0.0.1:9/.well-known/openid-configuration",
            Duration::from_secs(30),
            http.clone(),
        );
        assert!(ok.is_ok());
        let bad = RemoteKeys::new(
            "http://issuer.example",
            "http://issuer.example/.well-known/openid-configuration",
            Duration::from_secs(30),
            http,
        );
        assert!(bad.is_err());
    }

    #[tokio::test]
    async fn unreachable_issuer_is_refused_and_rate_limited() {
        // Port 9 (discard) on loopback: nothing listens in the test environment.
        let keys = RemoteKeys::new(
            "http://127.0.0.1:9",
            "http://127.0.0.1:9/.well-known/openid-configuration",
            Duration::from_secs(30),
            HttpClient::new().expect("client"),
        )
        .expect("keys");
        let first = keys.keys_with("k1").await;
        assert!(matches!(first, Err(IdentityError::KeysUnavailable { .. })));
        let second = keys.keys_with("k1").await;
        match second {
            Err(IdentityError::KeysUnavailable { detail, .. }) => {
                assert!(detail.contains("next attempt in"), "{detail}");
            }
            other => panic!("expected a rate-limited refusal, got {other:?}"),
        }
    }
}
