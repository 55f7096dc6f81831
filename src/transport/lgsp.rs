//! The provincial integration platform's (LGSP) OAuth2 client-credentials token, cached: one
//! cache serves the DVCQG connector and the PayGov provider alike.
//!
//! # Invariants
//! - A token is used until `expires_in` (300 s when the answer gives none) minus the cache's
//!   margin; after that it is fetched again before the next call.
//! - **Single flight**: one fetch at a time; callers arriving while it runs wait for it and use
//!   its token, so an expiry never makes concurrent callers stampede the token endpoint.
//! - A token the party refused (HTTP 401) is dropped with [`TokenCache::invalidate`], only if
//!   nobody has replaced it meanwhile: one refusal costs one fetch, however many callers saw it.
//! - Every failed fetch bumps `gateway_token_refresh_failures_total{adapter}` (when a metrics
//!   registry is attached) and is counted in [`TokenCache::failures`].
//! - The token request carries the client secret: it is never handed to the evidence capture,
//!   and neither the secret nor a token is logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::stack::{Auth, Outbound, TransportError};
use crate::config::Secret;
use crate::metrics::Metrics;

/// A token's lifetime when the endpoint does not state one.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// How the client presents its credentials to the token endpoint (both are RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_id` and `client_secret` in the form body (the DVCQG LGSP).
    Body,
    /// HTTP Basic, only `grant_type` in the form (the PayGov LGSP).
    Basic,
}

/// Why no token could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// No answer from the token endpoint (connect, timeout, broken exchange).
    #[error("token endpoint: {0}")]
    Transport(TransportError),
    /// The endpoint answered with a non-2xx status.
    #[error("token endpoint refused: HTTP {status}")]
    Refused { status: u16 },
    /// The answer is not JSON.
    #[error("token endpoint answer: {0}")]
    Decode(String),
    /// JSON without `access_token`.
    #[error("token endpoint answered without access_token")]
    NoToken,
}

/// Where the token comes from.
pub struct TokenEndpoint {
    pub url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub client_auth: ClientAuth,
}

/// A cached client-credentials token (see the module invariants).
pub struct TokenCache {
    /// Names the cache in the metric's `adapter` label (an adapter or provider name).
    owner: String,
    endpoint: TokenEndpoint,
    stack: Outbound,
    /// A token is dropped this long before it expires (a call in flight must not outlive it).
    margin: Duration,
    /// The token and when it stops being used; the lock makes the fetch single-flight.
    current: Mutex<Option<(String, Instant)>>,
    fetches: AtomicU64,
    failures: AtomicU64,
    metrics: OnceLock<Arc<Metrics>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("owner", &self.owner)
            .field("url", &self.endpoint.url)
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    pub fn new(owner: &str, endpoint: TokenEndpoint, stack: Outbound, margin: Duration) -> Self {
        TokenCache {
            owner: owner.into(),
            endpoint,
            stack,
            margin,
            current: Mutex::new(None),
            fetches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            metrics: OnceLock::new(),
        }
    }

    /// Report failed fetches to `metrics` (once; later calls are ignored).
    pub fn report_to(&self, metrics: Arc<Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Tokens fetched so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Fetches that failed so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// A token valid for at least the margin, fetched when the cached one is missing or due.
    pub async fn token(&self) -> Result<String, TokenError> {
        let mut cur = self.current.lock().await;
        if let Some((tok, until)) = cur.as_ref() {
            if Instant::now() < *until {
                return Ok(tok.clone());
            }
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match self.fetch().await {
            Ok((tok, ttl)) => {
                let until = Instant::now() + ttl.saturating_sub(self.margin);
                *cur = Some((tok.clone(), until));
                Ok(tok)
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                if let Some(m) = self.metrics.get() {
                    m.inc_token_refresh_failure(&self.owner);
                }
                tracing::warn!(owner = %self.owner, error = %e, "LGSP token refresh failed");
                Err(e)
            }
        }
    }

    /// Drop `stale` (a token the party refused), unless it was replaced meanwhile.
    pub async fn invalidate(&self, stale: &str) {
        let mut cur = self.current.lock().await;
        if cur.as_ref().map(|(t, _)| t.as_str()) == Some(stale) {
            *cur = None;
        }
    }

    async fn fetch(&self) -> Result<(String, Duration), TokenError> {
        let e = &self.endpoint;
        let call = match e.client_auth {
            ClientAuth::Body => self.stack.post_form(
                &e.url,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", e.client_id.as_str()),
                    ("client_secret", e.client_secret.expose()),
                ],
            ),
            ClientAuth::Basic => self
                .stack
                .post_form(&e.url, &[("grant_type", "client_credentials")])
                .auth(Auth::Basic(&e.client_id, e.client_secret.expose())),
        };
        let reply = call.send().await.map_err(TokenError::Transport)?;
        if !(200..300).contains(&reply.status) {
            return Err(TokenError::Refused {
                status: reply.status,
            });
        }
        let v: serde_json::Value = reply.json().map_err(|e| TokenError::Decode(e.detail()))?;
        let tok = v
            .get("access_token")
            .and_then(serde_json::Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or(TokenError::NoToken)?;
        let ttl = v
            .get("expires_in")
            .and_then(serde_json::Value::as_u64)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TTL);
        Ok((tok.to_string(), ttl))
    }
}
