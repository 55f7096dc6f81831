//! The gateway's broker abstraction and its two implementations.
//!
//! # Invariants (every implementation keeps them; `tests/conformance.rs` checks both)
//!
//! 1. **Publish is durable when it returns `Ok`.** For RabbitMQ that means the broker's
//!    publisher confirm (ack) was received for a `mandatory`, persistent publish; a nack, a
//!    returned (unroutable) message or a lost connection is an `Err`, never a silent drop.
//!    For the embedded queue it means the SQLite transaction holding the message committed.
//! 2. **At-least-once delivery with manual acknowledgement.** A delivery stays owned by its
//!    consumer until it is acked, retried, rejected or requeued. If the consumer dies (its
//!    channel/connection closes, its process is killed, its lease expires) the message is
//!    delivered again, with `redelivered = true` and a higher `delivery_count`.
//! 3. **Delayed redelivery is durable.** [`Delivery::retry`] first durably schedules a copy
//!    with `attempt + 1` that becomes visible no earlier than `delay` from now, and only then
//!    acknowledges the original. A crash in between yields a duplicate, never a loss.
//! 4. **FIFO per queue in the happy path.** Messages published to one queue are delivered in
//!    publish order to a single consumer (that is how per-key order is kept; keys are
//!    partitioned across queues by the caller).
//! 5. **Nothing is dropped past a delivery limit.** A message redelivered more than the
//!    queue's `delivery_limit` (a crash loop) is moved to the queue's dead-letter queue
//!    (`<queue>.dlq`, see [`dead_letter_queue`]) and not discarded; [`Delivery::reject`]
//!    does the same at once.
//! 6. Acks may be coalesced by the implementation (RabbitMQ: `multiple` acks for the
//!    contiguous completed prefix; embedded: one transaction per batch). `ack` returning
//!    means the ack is queued; [`Broker::close`] flushes every queued ack.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub mod amqp;
#[doc(hidden)]
pub mod conformance;
pub mod embedded;

/// Header carrying the message id (the envelope id).
pub const HDR_MESSAGE_ID: &str = "x-gw-id";
/// Header carrying the ordering key.
pub const HDR_KEY: &str = "x-gw-key";
/// Header carrying the attempt count (0 for the first delivery attempt).
pub const HDR_ATTEMPT: &str = "x-gw-attempt";

/// Now as unix milliseconds (the one clock both brokers read).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The name of the dead-letter queue that belongs to `queue`.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// One message as the broker carries it. The body is opaque to the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Unique id of the message (the envelope's UUIDv7, as text).
    pub id: String,
    /// Ordering key (usually the dossier code).
    pub key: String,
    /// Free-form string headers (the W3C `traceparent` travels here).
    pub headers: BTreeMap<String, String>,
    /// How many delivery attempts were already made and failed (0 on first publish).
    pub attempt: u32,
    /// The payload, opaque bytes.
    pub body: Bytes,
}

/// What [`Broker::declare`] creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// Queue name, e.g. `gw.route.dossier-sync.p0`.
    pub name: String,
    /// After this many deliveries without an ack (a crash loop), the broker moves the
    /// message to `<name>.dlq` instead of delivering it again.
    pub delivery_limit: u32,
}

/// Depth figures of one queue, for metrics and the ops API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages waiting to be delivered (ready now).
    pub ready: u64,
    /// Messages delivered and not yet acked (RabbitMQ: consumer count does not matter).
    pub unacked: u64,
    /// Messages scheduled for a delayed retry, when the implementation can tell.
    pub delayed: Option<u64>,
    /// How long the oldest *ready* message (deliverable, not yet handed to a consumer) has
    /// been waiting since it became deliverable (published, or its retry delay ended).
    /// `Some(ZERO)` when nothing is ready; `None` when the implementation cannot tell yet.
    ///
    /// Embedded: exact, `now - MIN(available_at)` over the queue's ready rows. RabbitMQ: an
    /// upper bound observed by this process's consumer (see `amqp/heads.rs`): FIFO puts
    /// the head behind the last message the consumer took, so the head has waited at most
    /// as long as since that message became deliverable; `None` until a consumer of this
    /// process took a message from the queue.
    pub oldest_ready_age: Option<Duration>,
}

/// Every way a broker operation fails.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot connect to the broker: {0}")]
    ConnectFailed(String),
    #[error("the broker refused the publish (nack) for queue {queue}")]
    Nack { queue: String },
    #[error("the message for queue {queue} was returned as unroutable: is the queue declared?")]
    Unroutable { queue: String },
    #[error("the broker connection or channel closed: {0}")]
    ChannelClosed(String),
    #[error("the publish confirm did not arrive within {0:?}")]
    ConfirmTimeout(Duration),
    #[error("declaring the topology failed: {0}")]
    Topology(String),
    /// RabbitMQ refused a queue declare because the queue exists with other arguments
    /// (PRECONDITION_FAILED, 406): typically a work queue made by a release without
    /// `x-single-active-consumer`. RabbitMQ cannot change a queue's arguments in place.
    #[error(
        "queue {queue} exists with other arguments than this gateway declares ({detail}); \
         RabbitMQ cannot change them in place: stop every gateway instance, let the queue drain \
         (or move its messages with a shovel), delete it (`rabbitmqctl delete_queue {queue}`) \
         and start the gateway again, which re-declares it with single active consumer"
    )]
    QueueArgumentsDiffer { queue: String, detail: String },
    #[error("embedded queue storage failed: {0}")]
    Storage(String),
    #[error("a message on the wire is malformed: {0}")]
    Malformed(String),
    #[error("the broker is closed")]
    Closed,
}

pub type Result<T> = std::result::Result<T, BrokerError>;

/// A message broker: the embedded SQLite queue or RabbitMQ.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// A short name for logs and metrics: `embedded` or `rabbitmq`.
    fn kind(&self) -> &'static str;

    /// Declare queues (and their dead-letter queues and delay machinery) idempotently.
    async fn declare(&self, queues: &[QueueSpec]) -> Result<()>;

    /// Publish durably (see invariant 1). Returns after the confirm.
    async fn publish(&self, queue: &str, msg: Message) -> Result<()>;

    /// Publish a batch durably; returns after every message was confirmed. Order within
    /// the batch is kept. On `Err`, some messages may have been published (at-least-once).
    async fn publish_batch(&self, queue: &str, msgs: Vec<Message>) -> Result<()> {
        for m in msgs {
            self.publish(queue, m).await?;
        }
        Ok(())
    }

    /// Start consuming `queue` with at most `prefetch` unacked deliveries in flight.
    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>>;

    /// Depth figures of a queue.
    async fn stats(&self, queue: &str) -> Result<QueueStats>;

    /// The queue holding retries whose own queue was deleted while they waited, if this broker
    /// has one (RabbitMQ's `gw.orphans`; the embedded queue deletes a queue's retries with it).
    fn orphans_queue(&self) -> Option<&str> {
        None
    }

    /// Whether the broker is reachable now (for `/readyz`).
    async fn ready(&self) -> bool;

    /// Flush queued acks, wait for outstanding confirms, close connections.
    async fn close(&self);
}

/// A stream of deliveries from one queue.
#[async_trait]
pub trait Consumer: Send {
    /// The next delivery, `None` once the consumer is closed for good (broker closed).
    /// Implementations reconnect by themselves on transient failures; unacked deliveries
    /// of a lost connection come back through the broker with `redelivered = true`.
    async fn next(&mut self) -> Option<Result<Delivery>>;
}

/// How an implementation settles one delivery. Implemented by each broker.
#[async_trait]
pub trait Settle: Send + Sync {
    /// Whether a delivery of this handle may still be acted on: `false` once the channel it
    /// came on is gone (the broker has taken it back and may hand it to another consumer).
    fn live(&self) -> bool {
        true
    }
    async fn ack(&self, tag: u64) -> Result<()>;
    async fn retry(&self, tag: u64, msg: Message, delay: Duration) -> Result<()>;
    async fn reject(&self, tag: u64, msg: Message, reason: &str) -> Result<()>;
    async fn requeue(&self, tag: u64) -> Result<()>;
}

/// One delivery. Settle it exactly once; a delivery dropped unsettled stays unacked until
/// its consumer closes (and is then redelivered).
pub struct Delivery {
    /// The message as published (with `attempt` as carried in its headers).
    pub message: Message,
    /// The broker says this message was delivered before.
    pub redelivered: bool,
    /// How many times the broker delivered this copy, including this one (>= 1).
    pub delivery_count: u32,
    /// The queue it came from.
    pub queue: String,
    tag: u64,
    settle: Arc<dyn Settle>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.message.id)
            .field("key", &self.message.key)
            .field("attempt", &self.message.attempt)
            .field("redelivered", &self.redelivered)
            .field("delivery_count", &self.delivery_count)
            .field("queue", &self.queue)
            .field("tag", &self.tag)
            .finish()
    }
}

impl Delivery {
    /// Built by implementations only.
    pub fn new(
        message: Message,
        redelivered: bool,
        delivery_count: u32,
        queue: String,
        tag: u64,
        settle: Arc<dyn Settle>,
    ) -> Self {
        Self {
            message,
            redelivered,
            delivery_count,
            queue,
            tag,
            settle,
        }
    }

    /// The implementation's delivery tag.
    pub fn tag(&self) -> u64 {
        self.tag
    }

    /// Whether this delivery may still be handled. `false` once its consumer's channel is
    /// gone: the broker gives it again (possibly to another instance, the new single active
    /// consumer), so handling it here would race that redelivery and could reorder a key.
    /// Buffered deliveries that are no longer live are to be dropped unhandled.
    pub fn is_live(&self) -> bool {
        self.settle.live()
    }

    /// Done with it: remove from the queue.
    pub async fn ack(self) -> Result<()> {
        self.settle.ack(self.tag).await
    }

    /// Durably schedule a copy with `attempt + 1` (and the given headers, which replace
    /// the original's) no earlier than `delay` from now, then ack this delivery.
    pub async fn retry(self, headers: BTreeMap<String, String>, delay: Duration) -> Result<()> {
        let mut msg = self.message.clone();
        msg.attempt = msg.attempt.saturating_add(1);
        msg.headers = headers;
        self.settle.retry(self.tag, msg, delay).await
    }

    /// Move to `<queue>.dlq` (broker-level dead letter), with a reason header.
    pub async fn reject(self, reason: &str) -> Result<()> {
        let msg = self.message.clone();
        self.settle.reject(self.tag, msg, reason).await
    }

    /// Give it back for immediate redelivery (used on shutdown for unstarted work).
    pub async fn requeue(self) -> Result<()> {
        self.settle.requeue(self.tag).await
    }
}

/// Header set on messages moved to a dead-letter queue, saying why.
pub const HDR_DEAD_REASON: &str = "x-gw-dead-reason";

/// Open a broker from a URL: `amqp://…` for RabbitMQ, `sqlite:PATH` (or a bare path) for the
/// embedded queue.
pub async fn open(url: &str, instance: &str) -> Result<Arc<dyn Broker>> {
    open_tls(url, instance, None).await
}

/// [`open`], with the TLS settings of an `amqps://` URL (required by it, refused otherwise).
pub async fn open_tls(
    url: &str,
    instance: &str,
    tls: Option<amqp::AmqpTls>,
) -> Result<Arc<dyn Broker>> {
    if url.starts_with("amqp://") || url.starts_with("amqps://") {
        let opts = amqp::AmqpOptions {
            tls,
            ..amqp::AmqpOptions::default()
        };
        Ok(Arc::new(amqp::AmqpBroker::connect(url, opts).await?))
    } else if tls.is_some() {
        Err(BrokerError::ConnectFailed(
            "a CA file (broker.ca) is configured but the broker is the embedded queue".into(),
        ))
    } else {
        let path = url.strip_prefix("sqlite:").unwrap_or(url);
        let _ = instance;
        Ok(Arc::new(embedded::EmbeddedBroker::open(
            path,
            embedded::EmbeddedOptions::default(),
        )?))
    }
}
