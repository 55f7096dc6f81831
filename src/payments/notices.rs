//! `payment.settled` notices: where the notices queued with each settlement are published.
//!
//! # Invariants
//! - A notice is published at least once: the drain marks it published only after the sink
//!   accepted it; the envelope id is the notice id, so consumers deduplicate.
//! - No route taking the notice is a failure (the notice stays queued), never a silent drop.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::model::envelope::Envelope;

/// Why a notice was not published, by step.
#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    /// The broker refused or did not confirm the publish.
    #[error("{0}")]
    Broker(String),
    /// No route takes the notice's kind from its source.
    #[error("no route takes {kind} from source {source_name}")]
    NoRoute { kind: String, source_name: String },
    /// The route runtime could not publish it.
    #[error("{0}")]
    Engine(String),
}

/// The envelope kind of a settlement notice.
pub const SETTLED_KIND: &str = crate::model::events::EventKind::PaymentSettled.as_str();

/// Where `payment.settled` envelopes are published.
#[async_trait]
pub trait NoticeSink: Send + Sync + 'static {
    async fn publish(&self, env: &Envelope) -> Result<(), NoticeError>;
}

/// Publishes notices straight onto a broker queue.
pub struct BrokerSink {
    pub broker: Arc<dyn gw_broker::Broker>,
    pub queue: String,
}

#[async_trait]
impl NoticeSink for BrokerSink {
    async fn publish(&self, env: &Envelope) -> Result<(), NoticeError> {
        let msg = gw_broker::Message {
            id: env.id.to_string(),
            key: env.key.clone(),
            headers: BTreeMap::from([("traceparent".to_string(), env.traceparent.clone())]),
            attempt: 0,
            body: env.encode().into(),
        };
        self.broker
            .publish(&self.queue, msg)
            .await
            .map_err(|e| NoticeError::Broker(e.to_string()))
    }
}
