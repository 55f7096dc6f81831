//! RabbitMQ through lapin (placeholder: being written).
use crate::*;

#[derive(Debug, Clone)]
pub struct AmqpOptions {}
impl Default for AmqpOptions {
    fn default() -> Self {
        Self {}
    }
}

pub struct AmqpBroker {}

impl AmqpBroker {
    pub async fn connect(_url: &str, _opts: AmqpOptions) -> Result<Self> {
        Err(BrokerError::Storage("not yet written".into()))
    }
}

#[async_trait]
impl Broker for AmqpBroker {
    fn kind(&self) -> &'static str {
        "rabbitmq"
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
