//! Embedded durable queue on SQLite (placeholder: being written).
use crate::*;

#[derive(Debug, Clone)]
pub struct EmbeddedOptions {}
impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {}
    }
}

pub struct EmbeddedBroker {}

impl EmbeddedBroker {
    pub fn open(_path: &str, _opts: EmbeddedOptions) -> Result<Self> {
        Err(BrokerError::Storage("not yet written".into()))
    }
}

#[async_trait]
impl Broker for EmbeddedBroker {
    fn kind(&self) -> &'static str {
        "embedded"
    }
    async fn declare(&self, _q: &[QueueSpec]) -> Result<()> {
        Err(BrokerError::Closed)
    }
    async fn publish(&self, _queue: &str, _msg: Message) -> Result<()> {
        Err(BrokerError::Closed)
    }
    async fn consume(&self, _queue: &str, _prefetch: u16) -> Result<Box<dyn Consumer>> {
        Err(BrokerError::Closed)
    }
    async fn stats(&self, _queue: &str) -> Result<QueueStats> {
        Err(BrokerError::Closed)
    }
    async fn ready(&self) -> bool {
        false
    }
    async fn close(&self) {}
}
