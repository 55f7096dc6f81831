//! The agency push connector: project, sign, POST, classify; disable on 410 or a long failure.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tracing::error;

use super::settings::PushSettings;
use super::state::SubscriptionState;
use super::webhook;
use crate::agencies::Subscription;
use crate::connectors::connector::{Attempted, Connector};
use crate::model::envelope::Envelope;
use crate::model::outcome::{classify, health, Answer, Decision, Health, Reason, TransportFailure};
use crate::model::time::now_ms;
use crate::transport::client::OutRequest;

/// Header naming what the evidence log records as the exchange's operation: the subscription,
/// the fields sent and the legal basis (percent-encoded UTF-8). The agency receives it too.
pub const HDR_EVIDENCE: &str = crate::evidence::capture::DELIVERY_HEADER;

/// One push subscription's connector.
pub struct AgencyConnector {
    adapter: String,
    sub: Arc<Subscription>,
    settings: PushSettings,
    pub state: Arc<SubscriptionState>,
}

impl AgencyConnector {
    pub fn new(
        sub: Arc<Subscription>,
        settings: PushSettings,
        state: Arc<SubscriptionState>,
    ) -> Self {
        AgencyConnector {
            adapter: format!("agency.{}", sub.name),
            sub,
            settings,
            state,
        }
    }

    /// The request for `env`, signed; `None` when the subscription does not take it.
    pub fn request(&self, env: &Envelope, timestamp: i64) -> Option<Result<OutRequest, String>> {
        let p = self.sub.project(env)?;
        let id = env.natural_key().unwrap_or_else(|| env.id.to_string());
        let id = format!(
            "msg_{}",
            id.replace(
                |c: char| !(c.is_ascii_alphanumeric()
                    || c == '-'
                    || c == '.'
                    || c == '@'
                    || c == '#'),
                "_"
            )
        );
        let delivery = format!(
            "subscription={}; fields={}; legal_basis={}",
            self.sub.name,
            p.fields.join(","),
            p.legal_basis.as_deref().unwrap_or("-")
        );
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            (HDR_EVIDENCE.to_string(), percent_encode(&delivery)),
            ("traceparent".to_string(), env.traceparent.clone()),
        ];
        match webhook::headers(&self.settings.secrets, &id, timestamp, &p.body) {
            Ok(h) => headers.extend(h),
            Err(e) => return Some(Err(e.to_string())),
        }
        if let Some(sig) = &self.settings.rfc9421 {
            let parts = gw_crypto::httpsig::RequestParts {
                method: "POST",
                target_uri: &self.settings.url,
                headers: &headers,
                body: &p.body,
            };
            let params = gw_crypto::httpsig::SignParams {
                algorithm: Some(sig.alg),
                extra_headers: vec!["content-type".into(), "webhook-id".into()],
                ..Default::default()
            };
            match gw_crypto::httpsig::sign_request(&parts, &sig.key, &params) {
                Ok(s) => headers.extend(s.to_pairs()),
                Err(e) => return Some(Err(e.to_string())),
            }
        }
        Some(Ok(OutRequest {
            url: self.settings.url.clone(),
            headers,
            body: p.body,
        }))
    }

    fn refused_unsent(&self, reason: Reason, detail: String) -> Attempted {
        self.state.refused.fetch_add(1, Ordering::Relaxed);
        Attempted {
            answer: Answer::Transport {
                failure: TransportFailure::Request,
                detail,
            },
            decision: Decision::Permanent { reason },
            latency: Duration::ZERO,
            request_digest: String::new(),
            health: Health::Silent,
        }
    }

    async fn disable(&self, reason: &str) {
        match self.state.disable(reason).await {
            Ok(true) => error!(
                subscription = %self.sub.name,
                reason,
                "agency subscription disabled: nothing is pushed to it until `gateway agencies enable {}`",
                self.sub.name
            ),
            Ok(false) => {}
            Err(e) => {
                error!(subscription = %self.sub.name, error = %e, "could not write the subscription's disabled state")
            }
        }
    }
}

/// Percent-encode everything but unreserved ASCII and a few separators, for a header value.
fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~,;=@ /".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[async_trait]
impl Connector for AgencyConnector {
    fn adapter(&self) -> &str {
        &self.adapter
    }

    async fn deliver(&self, env: &Envelope, _prior: Option<i64>) -> Attempted {
        if let Some(d) = self.state.disabled().await {
            // Dead-lettered: nothing of this dossier waits for a delivery any more.
            self.state.settled(&env.key);
            return self.refused_unsent(
                Reason::SubscriptionDisabled,
                format!("subscription disabled ({}) since {}", d.reason, d.since_ms),
            );
        }
        let now = now_ms();
        self.state.attempting(&env.key, env.created_ms);
        let req = match self.request(env, now / 1000) {
            // Not taken (a route never hands it one; kept total): nothing to send.
            None => {
                self.state.settled(&env.key);
                return Attempted {
                    answer: Answer::Http {
                        status: 204,
                        retry_after: None,
                        body: "not taken by the subscription".into(),
                    },
                    decision: Decision::Delivered,
                    latency: Duration::ZERO,
                    request_digest: String::new(),
                    health: Health::Silent,
                };
            }
            Some(Err(e)) => {
                self.state.settled(&env.key);
                return self.refused_unsent(Reason::RequestBuild, format!("signing failed: {e}"));
            }
            Some(Ok(r)) => r,
        };
        let request_digest = gw_crypto::digest::sha256_hex(&req.body);
        let (answer, latency) = self.settings.client.post(&req).await;
        let decision = classify(&answer, |_| None);
        match (&decision, answer.status()) {
            (Decision::Delivered, _) => {
                self.state.succeeded().await;
                self.state.delivered.fetch_add(1, Ordering::Relaxed);
                self.state.settled(&env.key);
            }
            (_, Some(410)) => {
                self.state.refused.fetch_add(1, Ordering::Relaxed);
                self.state.settled(&env.key);
                self.disable("gone").await;
            }
            (d, _) => {
                if matches!(d, Decision::Retry { .. }) {
                    self.state.retried.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.state.refused.fetch_add(1, Ordering::Relaxed);
                    self.state.settled(&env.key);
                }
                if self.state.failed(now).await >= self.settings.disable_after {
                    self.disable("failing").await;
                }
            }
        }
        Attempted {
            health: health(&answer),
            answer,
            decision,
            latency,
            request_digest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encodes_the_legal_basis() {
        assert_eq!(
            percent_encode("legal_basis=Điều 19"),
            "legal_basis=%C4%90i%E1%BB%81u 19"
        );
    }
}
