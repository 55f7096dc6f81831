//! The generic HTTP connector: POST the envelope's payload as JSON to the adapter's URL.
//!
//! Request headers: `Content-Type: application/json`, `Idempotency-Key` (the envelope's
//! natural key when versioned, else the envelope id: the receiver can drop duplicates),
//! `X-Gateway-Envelope`, `X-Gateway-Kind`, `X-Gateway-Key`, `X-Gateway-Version` when versioned,
//! and `traceparent`; then whatever the signing profile adds.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::connector::{Attempted, Connector};
use super::error::ConnectorError;
use crate::config::AdapterSection;
use crate::model::envelope::Envelope;
use crate::model::outcome::{classify, health, Answer, Decision, Health, Reason, TransportFailure};
use crate::signing::SigningProfile;
use crate::transport::client::{HttpClient, OutRequest};

pub struct HttpConnector {
    name: String,
    url: String,
    client: HttpClient,
    signing: Arc<dyn SigningProfile>,
}

impl HttpConnector {
    pub fn new(
        name: &str,
        a: &AdapterSection,
        base: &Path,
        signing: Arc<dyn SigningProfile>,
    ) -> Result<Self, ConnectorError> {
        Ok(HttpConnector {
            name: name.into(),
            url: a.url.clone(),
            client: HttpClient::build(name, a, base)?,
            signing,
        })
    }

    /// The request this connector sends for `env` (before signing).
    pub fn request(&self, env: &Envelope) -> OutRequest {
        let body = serde_json::to_vec(&env.payload).expect("JSON values serialize");
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            (
                "idempotency-key".to_string(),
                env.natural_key().unwrap_or_else(|| env.id.to_string()),
            ),
            ("x-gateway-envelope".to_string(), env.id.to_string()),
            ("x-gateway-kind".to_string(), env.kind.clone()),
            ("x-gateway-key".to_string(), env.key.clone()),
            // The pipeline's `send` span: the destination's spans become its children.
            ("traceparent".to_string(), env.traceparent.clone()),
        ];
        if let Some(v) = env.version {
            headers.push(("x-gateway-version".to_string(), v.to_string()));
        }
        OutRequest {
            url: self.url.clone(),
            headers,
            body,
        }
    }
}

#[async_trait]
impl Connector for HttpConnector {
    fn adapter(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, env: &Envelope, _prior: Option<i64>) -> Attempted {
        let req = self.request(env);
        let req = match self.signing.sign(req).await {
            Ok(r) => r,
            Err(e) => {
                let answer = Answer::Transport {
                    failure: TransportFailure::Request,
                    detail: format!("signing failed: {e}"),
                };
                return Attempted {
                    answer,
                    decision: Decision::Retry {
                        reason: Reason::RequestBuild,
                        not_before: None,
                    },
                    latency: Default::default(),
                    request_digest: String::new(),
                    health: Health::Silent,
                };
            }
        };
        let request_digest = hex::encode(Sha256::digest(&req.body));
        let (answer, latency) = self.client.post(&req).await;
        let decision = classify(&answer, |_| None);
        Attempted {
            health: health(&answer),
            answer,
            decision,
            latency,
            request_digest,
        }
    }
}
