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
use crate::telemetry::metrics::Metrics;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::stack::Options;
    use gw_contract_tests::paygov::{PayGovKeys, PayGovSandbox, CREATE_PATH, TOKEN_PATH};
    use gw_contract_tests::portal::{OAuth2Clients, Portal, PortalConfig};

    fn stack() -> Outbound {
        Outbound::build(&Options::plain("test", Duration::from_secs(5))).unwrap()
    }

    fn paygov_keys(secret: &str) -> PayGovKeys {
        PayGovKeys {
            client_id: "gateway".into(),
            client_secret: secret.into(),
            partner_code: "P".into(),
            access_key: "A".into(),
            secret_key: "S".into(),
        }
    }

    async fn paygov_sandbox() -> PayGovSandbox {
        let k = paygov_keys("lgsp-secret");
        let sum = gw_crypto::checksum::FieldChecksum::new(
            gw_crypto::checksum::FieldAlgorithm::Sha256,
            vec!["orderId".to_string()],
            "",
            gw_crypto::keys::Secret::new("S".to_string()),
        );
        PayGovSandbox::start(0, k, sum).await.unwrap()
    }

    fn paygov_cache(sandbox: &PayGovSandbox, secret: &str) -> TokenCache {
        TokenCache::new(
            "paygov",
            TokenEndpoint {
                url: sandbox.url(TOKEN_PATH),
                client_id: "gateway".into(),
                client_secret: Secret::new(secret),
                client_auth: ClientAuth::Basic,
            },
            stack(),
            Duration::from_secs(30),
        )
    }

    /// The portal's LGSP mode (credentials in the form): concurrent callers share one fetch;
    /// the token is used until its lifetime minus the margin, then fetched again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_fetch_for_concurrent_callers_and_a_new_one_after_expiry() {
        let portal = Portal::start(
            0,
            PortalConfig {
                oauth2: Some(OAuth2Clients {
                    client_id: "gw".into(),
                    client_secret: "lgsp-secret".into(),
                    token_ttl_secs: 2,
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let cache = Arc::new(TokenCache::new(
            "dvcqg",
            TokenEndpoint {
                url: format!("{}/token", portal.base_url()),
                client_id: "gw".into(),
                client_secret: Secret::new("lgsp-secret"),
                client_auth: ClientAuth::Body,
            },
            stack(),
            Duration::from_secs(1),
        ));
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let c = cache.clone();
            calls.spawn(async move { c.token().await.unwrap() });
        }
        let tokens = calls.join_all().await;
        assert!(tokens.iter().all(|t| t == &tokens[0]), "one token for all");
        assert_eq!(portal.records().tokens_issued, 1, "no stampede");
        assert_eq!(cache.token().await.unwrap(), tokens[0], "cached");
        assert_eq!(cache.fetches(), 1);
        // Two seconds of life minus one of margin: due after one second.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let renewed = cache.token().await.unwrap();
        assert_ne!(renewed, tokens[0]);
        assert_eq!(portal.records().tokens_issued, 2);
        assert_eq!(cache.failures(), 0);
    }

    /// PayGov's LGSP (HTTP Basic): a token the party refuses (401) is dropped once, however
    /// many callers saw the refusal, and the new one is accepted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_refused_token_is_fetched_again_once() {
        let sandbox = paygov_sandbox().await;
        let cache = Arc::new(paygov_cache(&sandbox, "lgsp-secret"));
        let first = cache.token().await.unwrap();
        assert_eq!(sandbox.token_calls(), 1);
        sandbox.expire_tokens();
        let refused = stack()
            .post_json(&sandbox.url(CREATE_PATH), &serde_json::json!({}))
            .auth(Auth::Bearer(&first))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status, 401);
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (c, stale) = (cache.clone(), first.clone());
            calls.spawn(async move {
                c.invalidate(&stale).await;
                c.token().await.unwrap()
            });
        }
        let renewed = calls.join_all().await;
        assert!(renewed.iter().all(|t| t == &renewed[0] && t != &first));
        assert_eq!(
            sandbox.token_calls(),
            2,
            "one fetch for every caller of the 401"
        );
        let accepted = stack()
            .post_json(&sandbox.url(CREATE_PATH), &serde_json::json!({}))
            .auth(Auth::Bearer(&renewed[0]))
            .send()
            .await
            .unwrap();
        assert_ne!(accepted.status, 401);
    }

    /// A refused or unreachable token endpoint is an error by step, counted in the metric.
    #[tokio::test]
    async fn failed_fetches_are_counted_in_the_metric() {
        let sandbox = paygov_sandbox().await;
        let cache = paygov_cache(&sandbox, "wrong-secret");
        let metrics = Arc::new(Metrics::new());
        cache.report_to(metrics.clone());
        assert!(matches!(
            cache.token().await,
            Err(TokenError::Refused { status: 401 })
        ));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = format!("http://{}/token", l.local_addr().unwrap());
        drop(l);
        let down = TokenCache::new(
            "paygov",
            TokenEndpoint {
                url: closed,
                client_id: "gateway".into(),
                client_secret: Secret::new("x"),
                client_auth: ClientAuth::Basic,
            },
            stack(),
            Duration::ZERO,
        );
        down.report_to(metrics.clone());
        assert!(matches!(
            down.token().await,
            Err(TokenError::Transport(TransportError::Connect(_)))
        ));
        assert_eq!(cache.failures() + down.failures(), 2);
        let text = metrics.render();
        assert!(
            text.contains("gateway_token_refresh_failures_total{adapter=\"paygov\"} 2"),
            "{text}"
        );
    }
}
