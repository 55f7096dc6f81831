//! The generic HTTP connector: POST the envelope's payload as JSON to the adapter's URL.
//!
//! Request headers: `Content-Type: application/json`, `Idempotency-Key` (the envelope's
//! natural key when versioned, else the envelope id: the receiver can drop duplicates),
//! `X-Gateway-Envelope`, `X-Gateway-Kind`, `X-Gateway-Key`, `X-Gateway-Version` when versioned,
//! and `traceparent`; then whatever the signing profile adds.
//!
//! Header values are visible ASCII: a key with other characters (a document number such as
//! `QĐ-UBND`) goes into `X-Gateway-Key` and `Idempotency-Key` percent-encoded as UTF-8
//! ([`header_value`]; `%` itself is encoded too, so the receiver decodes without ambiguity). A
//! key that is plain ASCII is sent as it is.

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

/// Bytes kept as they are in a header value: visible ASCII except `%`.
const HEADER_ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%').add(b' ');

/// `s` as a header value: percent-encoded UTF-8 for everything outside visible ASCII, and `%`.
pub fn header_value(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, HEADER_ESCAPED).to_string()
}

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
        let body = env.payload_bytes().to_vec();
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            (
                "idempotency-key".to_string(),
                header_value(&env.natural_key().unwrap_or_else(|| env.id.to_string())),
            ),
            ("x-gateway-envelope".to_string(), env.id.to_string()),
            ("x-gateway-kind".to_string(), env.kind.clone()),
            ("x-gateway-key".to_string(), header_value(&env.key)),
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

#[cfg(test)]
mod tests {
    use super::header_value;

    #[test]
    fn ascii_keys_are_sent_as_they_are() {
        assert_eq!(header_value("H14.01-241107-0001"), "H14.01-241107-0001");
        assert_eq!(header_value("dossier/7:v3"), "dossier/7:v3");
    }

    #[test]
    fn other_keys_are_percent_encoded_and_decode_back() {
        let key = "123/QĐ-UBND 50%";
        let sent = header_value(key);
        assert_eq!(sent, "123/Q%C4%90-UBND%2050%25");
        assert!(sent.bytes().all(|b| b.is_ascii_graphic()));
        let back = percent_encoding::percent_decode_str(&sent)
            .decode_utf8()
            .unwrap();
        assert_eq!(back, key);
        assert!(reqwest::header::HeaderValue::from_str(&sent)
            .unwrap()
            .to_str()
            .is_ok());
    }
}
