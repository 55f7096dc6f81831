//! The portal session: a session login (`session` in every body) or an LGSP bearer token
//! ([`crate::transport::lgsp::TokenCache`]), cached and shared by every caller.
//!
//! # Invariants
//! - One login (or token fetch) at a time: concurrent callers wait for it and share its result.
//! - A credential is forgotten only if it is still the one the portal refused
//!   ([`Credentials::invalidate`]): one expiry costs one renewal, however many callers saw it.
//! - A failed login is a retryable `unauthorized` (a bad password is fixed in the settings,
//!   not in the message), counted in the adapter's `token_refresh_failures`.
//! - The login request is noted in the evidence capture with its password redacted; the token
//!   request is not noted at all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::Value;

use super::request;
use super::response::{error_code, failed, is_success};
use super::settings::{Auth, Settings};
use crate::connectors::connector::Attempted;
use crate::model::outcome::{classify, health, Answer, Decision, Health, Reason};
use crate::telemetry::metrics::Metrics;
use crate::transport::client::HttpClient;
use crate::transport::lgsp::TokenError;

/// The connector's credential and how it is renewed.
pub(super) struct Credentials {
    name: String,
    auth: Auth,
    /// Session logins made so far (token fetches are counted by the cache).
    logins: AtomicU64,
    metrics: std::sync::OnceLock<Arc<Metrics>>,
}

impl Credentials {
    pub(super) fn new(name: &str, auth: Auth) -> Self {
        Credentials {
            name: name.into(),
            auth,
            logins: AtomicU64::new(0),
            metrics: Default::default(),
        }
    }

    /// Count failed renewals in `metrics` (`gateway_token_refresh_failures_total`).
    pub(super) fn report_to(&self, metrics: Arc<Metrics>) {
        if let Auth::OAuth2(cache) = &self.auth {
            cache.report_to(metrics.clone());
        }
        let _ = self.metrics.set(metrics);
    }

    /// Logins and token fetches made so far.
    pub(super) fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
            + match &self.auth {
                Auth::OAuth2(cache) => cache.fetches(),
                Auth::Session { .. } => 0,
            }
    }

    /// Whether the credential travels as a bearer token (else as the body's `session`).
    pub(super) fn is_bearer(&self) -> bool {
        matches!(self.auth, Auth::OAuth2(_))
    }

    /// The current session or token, logging in / refreshing when needed (one at a time).
    pub(super) async fn credential(
        &self,
        client: &HttpClient,
        settings: &Settings,
    ) -> Result<String, Attempted> {
        match &self.auth {
            Auth::Session {
                login_url,
                login_service,
                username,
                password,
                current,
            } => {
                let mut cur = current.lock().await;
                if let Some(s) = cur.as_ref() {
                    return Ok(s.clone());
                }
                let req = request::login(
                    login_url,
                    &settings.unit_code,
                    login_service,
                    username,
                    password.expose(),
                );
                self.logins.fetch_add(1, Ordering::Relaxed);
                let (answer, latency) = client.post(&req).await;
                match session_of(&answer) {
                    Some(s) => {
                        *cur = Some(s.clone());
                        Ok(s)
                    }
                    None => {
                        if let Some(m) = self.metrics.get() {
                            m.inc_token_refresh_failure(&self.name);
                        }
                        tracing::warn!(adapter = %self.name, "portal login failed: {}", answer.status().map(|s| format!("HTTP {s}")).unwrap_or_else(|| "no answer".into()));
                        Err(Attempted {
                            health: health(&answer),
                            decision: login_decision(&answer),
                            answer,
                            latency,
                            request_digest: String::new(),
                        })
                    }
                }
            }
            Auth::OAuth2(cache) => {
                let started = std::time::Instant::now();
                cache
                    .token()
                    .await
                    .map_err(|e| token_failed(e, started.elapsed()))
            }
        }
    }

    /// Forget a credential the portal said expired (only if nobody renewed it meanwhile).
    pub(super) async fn invalidate(&self, stale: &str) {
        match &self.auth {
            Auth::Session { current, .. } => {
                let mut cur = current.lock().await;
                if cur.as_deref() == Some(stale) {
                    *cur = None;
                }
            }
            Auth::OAuth2(cache) => cache.invalidate(stale).await,
        }
    }
}

/// The session a login answer grants: HTTP 200, a success `error_code` and a `session`.
fn session_of(answer: &Answer) -> Option<String> {
    let Answer::Http {
        status: 200, body, ..
    } = answer
    else {
        return None;
    };
    let v = serde_json::from_str::<Value>(body).ok()?;
    let ok = error_code(&v).map(|c| is_success(&c)).unwrap_or(false);
    v.get("session")
        .and_then(Value::as_str)
        .filter(|_| ok)
        .map(str::to_string)
}

/// A failed login is retried as `unauthorized`, never refused for good.
fn login_decision(answer: &Answer) -> Decision {
    let unauthorized = Decision::Retry {
        reason: Reason::Unauthorized,
        not_before: None,
    };
    match classify(answer, |_| Some(unauthorized.clone())) {
        Decision::Permanent { .. } => unauthorized,
        d => d,
    }
}

/// A failed token fetch as the attempt it stopped.
fn token_failed(e: TokenError, latency: std::time::Duration) -> Attempted {
    let unauthorized = Decision::Retry {
        reason: Reason::Unauthorized,
        not_before: None,
    };
    match e {
        TokenError::Refused { status } => {
            let answer = Answer::Http {
                status,
                retry_after: None,
                body: "token endpoint refused".into(),
            };
            Attempted {
                health: health(&answer),
                answer,
                decision: unauthorized,
                latency,
                request_digest: String::new(),
            }
        }
        TokenError::Transport(_) => Attempted {
            health: Health::Down,
            ..failed(
                Decision::Retry {
                    reason: Reason::ConnectionError,
                    not_before: None,
                },
                &e.to_string(),
            )
        },
        TokenError::Decode(_) | TokenError::NoToken => {
            failed(unauthorized, "token endpoint answered without access_token")
        }
    }
}
