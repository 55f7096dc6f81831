//! [`AxisConnector`]: the axis as a route destination. `document.send` becomes a signed
//! edXML envelope (`sendEdoc`), `document.status` an `updateStatus`; any other kind is refused.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gw_edxml::write::{AttachmentSource, Outgoing};
use sha2::{Digest, Sha256};

use super::client::AxisClient;
use super::request::EDOC;
use super::response::verdict;
use super::settings::SettingsError;
use super::translate::{document_to_send, status_to_send};
use crate::config::AdapterSection;
use crate::connectors::connector::{Attempted, Connector};
use crate::connectors::error::ConnectorError;
use crate::model::envelope::Envelope;
use crate::model::events::EventKind;
use crate::model::outcome::{classify, health, Answer, Decision, Health, Reason, TransportFailure};
use crate::signing::SigningProfile;

pub struct AxisConnector {
    name: String,
    client: AxisClient,
    signing: Arc<dyn SigningProfile>,
}

impl AxisConnector {
    pub fn new(
        name: &str,
        a: &AdapterSection,
        base: &Path,
        signing: Arc<dyn SigningProfile>,
    ) -> Result<Self, ConnectorError> {
        let wrap = |source| ConnectorError::Axis {
            adapter: name.to_string(),
            source,
        };
        let client = AxisClient::new(name, a, base).map_err(|e| match e {
            super::client::BuildError::Settings(s) => wrap(s),
            super::client::BuildError::Client(c) => ConnectorError::Client(c),
        })?;
        if signing.signing_key().is_none() {
            return Err(wrap(SettingsError::NoKey));
        }
        Ok(AxisConnector {
            name: name.into(),
            client,
            signing,
        })
    }

    /// Build and sign the envelope of a `document.send` payload (on the blocking pool).
    pub async fn build_envelope(&self, env: &Envelope) -> Result<Vec<u8>, String> {
        let (description, atts) =
            document_to_send(&env.payload_value(), &self.client.settings.organ_id)
                .map_err(|e| e.to_string())?;
        let signing = self.signing.clone();
        tokio::task::spawn_blocking(move || {
            let key = signing
                .signing_key()
                .ok_or_else(|| SettingsError::NoKey.to_string())?;
            let sources: Vec<(String, &dyn AttachmentSource)> = atts
                .iter()
                .map(|(id, b)| (id.clone(), b as &dyn AttachmentSource))
                .collect();
            let out = Outgoing::new(description, sources).map_err(|e| e.to_string())?;
            let mut buf = Vec::new();
            out.sign_to(key, &mut buf).map_err(|e| e.to_string())?;
            Ok(buf)
        })
        .await
        .map_err(|e| format!("signing task: {e}"))?
    }

    async fn exchange(&self, req: crate::transport::client::OutRequest) -> Attempted {
        let request_digest = hex::encode(Sha256::digest(&req.body));
        let (answer, latency, body) = self.client.post(&req).await;
        let retryable = &self.client.settings.retryable;
        let decision = classify(&answer, |_| match &body {
            Some(b) => verdict(b, retryable),
            None => Some(Decision::Permanent {
                reason: Reason::BodyErrorPermanent,
            }),
        });
        Attempted {
            health: health(&answer),
            answer,
            decision,
            latency,
            request_digest,
        }
    }
}

/// An attempt refused before anything was sent (the payload cannot become what the axis
/// takes): dead-lettered with `detail`.
fn refused(detail: String) -> Attempted {
    Attempted {
        answer: Answer::Transport {
            failure: TransportFailure::Request,
            detail,
        },
        decision: Decision::Permanent {
            reason: Reason::RequestBuild,
        },
        latency: Duration::ZERO,
        request_digest: String::new(),
        health: Health::Silent,
    }
}

#[async_trait]
impl Connector for AxisConnector {
    fn adapter(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, env: &Envelope, _prior: Option<i64>) -> Attempted {
        match EventKind::parse(&env.kind) {
            Some(EventKind::DocumentSend) => match self.build_envelope(env).await {
                Ok(xml) => self.exchange(self.client.send_request(xml, EDOC)).await,
                Err(e) => refused(e),
            },
            Some(EventKind::DocumentStatus) => match status_to_send(&env.payload_value()) {
                Ok((axis_id, st)) => {
                    let word = st.word().expect("status_to_send keeps worded statuses");
                    self.exchange(self.client.update_request(&axis_id, word))
                        .await
                }
                Err(e) => refused(e.to_string()),
            },
            _ => refused(format!(
                "the axis takes {} and {}, not {}",
                EventKind::DocumentSend,
                EventKind::DocumentStatus,
                env.kind
            )),
        }
    }
}
