//! RabbitMQ implementation of [`Broker`](crate::Broker) on lapin 4 (tokio runtime).
//!
//! # Invariants (how this module keeps the ones of the crate)
//!
//! 1. **A publish is `Ok` only on the broker's confirm.** Every channel that publishes is in
//!    confirm mode (`confirm.select`); every publish is `mandatory` and persistent
//!    (`delivery_mode = 2`). Ack → `Ok`; nack → [`BrokerError::Nack`](crate::BrokerError::Nack); returned
//!    (unroutable) → [`BrokerError::Unroutable`](crate::BrokerError::Unroutable); no confirm within
//!    [`AmqpOptions::confirm_timeout`] → [`BrokerError::ConfirmTimeout`](crate::BrokerError::ConfirmTimeout); a connection lost
//!    with the confirm outstanding → [`BrokerError::ChannelClosed`](crate::BrokerError::ChannelClosed). A publish is never
//!    reported as done without its confirm, so the caller retries (at-least-once).
//! 2. **Manual acks, bounded prefetch.** `basic.qos(prefetch)` precedes `basic.consume`.
//!    Acks are coalesced per channel: completed delivery tags are recorded, and a small
//!    task per channel acks the contiguous completed prefix with one `multiple` ack (on a
//!    short timer, or at once when [`AmqpOptions::ack_batch`] tags wait). Tags completed
//!    behind a gap (a delivery still held) are acked one by one once the gap has lasted
//!    100 ms, so a held delivery never stalls the others' prefetch slots. [`Broker::close`](crate::Broker::close)
//!    and dropping a consumer flush the queued acks, then `basic.cancel` the consumer before
//!    closing its channel: on a quorum queue the cancel-ok comes after the channel's acks
//!    were applied, while a channel closed right after its acks was seen to lose the last
//!    few hundred of them (RabbitMQ 3.10.8; the messages came back as duplicates).
//! 3. **Delayed redelivery is durable without the delayed-message plugin.** A retry is a
//!    confirmed publish of the copy into a delay tier, and only then the original's ack.
//! 4. **One active consumer per work queue.** Work queues are declared with
//!    `x-single-active-consumer = true`: RabbitMQ delivers a queue to one consumer at a time,
//!    across every process, and hands it to the next registered consumer when that one is
//!    cancelled or its channel dies (unacked deliveries are returned first). Several gateway
//!    instances therefore keep per-key order. A queue that exists without the argument makes
//!    RabbitMQ answer PRECONDITION_FAILED; that is [`BrokerError::QueueArgumentsDiffer`](crate::BrokerError::QueueArgumentsDiffer)
//!    (declares run on a channel of their own, so the refusal never closes the publish
//!    channel). A delivery whose channel is gone is no longer [`Delivery::is_live`](crate::Delivery::is_live): whoever
//!    buffered it drops it, the broker gives it to the new active consumer.
//! 5. **Nothing dropped past the delivery limit.** Work queues are quorum queues with
//!    `x-delivery-limit`, dead-lettering `at-least-once` (which needs
//!    `x-overflow: reject-publish` on RabbitMQ 3.10+) to `<queue>.dlq`.
//! 6. **Reconnection.** One connection per broker (a publish channel plus one channel per
//!    consumer). When it dies (broker restart, network), the next publish reconnects (one
//!    attempt, the caller retries), consumers reconnect with capped exponential backoff and
//!    jitter ([`Backoff`]), re-declare the topology and resume. Deliveries of a dead
//!    channel cannot be settled any more: their settle calls return
//!    [`BrokerError::ChannelClosed`](crate::BrokerError::ChannelClosed) and RabbitMQ delivers them again. A consumer never
//!    waits forever on a dead connection (lapin #389): heartbeats are on
//!    ([`AmqpOptions::heartbeat`]) and the consumer checks the connection and channel state
//!    every second while it waits.
//!
//! # Topology (also shipped as `deploy/rabbitmq/definitions.json`)
//!
//! ```text
//! publish(q) ──> gw.work (direct, key = q) ──> q   (quorum, x-delivery-limit,
//!                                                    DLX gw.dlx, at-least-once, reject-publish,
//!                                                    x-single-active-consumer)
//! q past its delivery limit / reject() ──> gw.dlx (direct, key = q) ──> q.dlq (quorum)
//! retry(q, d) ──> gw.retry.<tier> (fanout, key = q) ──> gw.retry.<tier> (quorum,
//!                 x-message-ttl = tier, DLX gw.return, at-least-once, reject-publish)
//!                 ── TTL expires, dead-lettered with its routing key q ──> gw.return ──> q
//! gw.return (direct, alternate exchange gw.orphans): a retry whose queue is gone
//!                 ──> gw.orphans (fanout) ──> gw.orphans (quorum)
//! ```
//!
//! Why `gw.return` and `gw.orphans`: the delay tiers are shared by every queue and dead-letter
//! *at least once*: RabbitMQ keeps an expired message until its dead-lettering is confirmed.
//! A retry whose queue was deleted while it waited is unroutable, never confirmed, and
//! retried for ever; once 32 such messages are pending (the dead-letter worker's prefetch)
//! the tier stops returning anybody's retries. Seen here: a tier holding 607 messages that
//! never came back, after test queues had been deleted with retries pending. The alternate
//! exchange routes what has no queue to `gw.orphans`, where an operator finds it (with its
//! `x-death` naming the queue it was meant for); the tiers keep flowing. Earlier releases
//! used `gw.delay.<tier>` dead-lettering into `gw.work`: those queues still return what
//! they hold (work queues stay bound to `gw.work`) and can be deleted once empty.
//!
//! Tiers: 250ms, 1s, 5s, 30s, 2m, 10m, 1h ([`DELAY_TIERS`]). A retry goes to the smallest
//! tier not shorter than the delay (so it is visible no earlier than asked, and at most one
//! tier step later). A delay longer than the largest tier carries [`HDR_NOT_BEFORE`] (unix
//! ms); a consumer receiving such a message early re-delays it transparently (confirmed
//! publish, then ack) instead of handing it out. Each queue is also bound to `gw.work`
//! under its `.dlq` name, so a dead-letter queue can be consumed and published to like any
//! other queue (for replay tooling).
//!
//! # Choices
//!
//! - `reject` publishes the original message to `gw.dlx` (routing key = queue) with the
//!   [`HDR_DEAD_REASON`](crate::HDR_DEAD_REASON) header, awaits the confirm, then acks. `basic.reject` through the
//!   DLX would carry no reason (only `x-death` with `rejected`).
//! - `requeue` is `basic.nack(requeue = true)`. On a quorum queue this counts toward the
//!   delivery limit.
//! - `delivery_count` is the quorum queue's `x-delivery-count` header + 1. RabbitMQ's
//!   `x-delivery-limit = n` dead-letters a message once it was returned more than `n` times,
//!   i.e. after its `n + 1`-th delivery; we declare `x-delivery-limit = delivery_limit - 1`
//!   so a message is delivered at most `delivery_limit` times, as
//!   [`QueueSpec::delivery_limit`](crate::QueueSpec::delivery_limit) says.
//! - A message RabbitMQ dead-lettered itself (past the delivery limit) carries no
//!   [`HDR_DEAD_REASON`](crate::HDR_DEAD_REASON); the consumer fills it in from the newest `x-death` entry that is not
//!   a delay-tier expiry (`delivery_limit: dead-lettered by RabbitMQ from queue …`).
//! - [`Broker::stats`](crate::Broker::stats) is a passive `queue.declare`: `ready` is its message count. `unacked`
//!   cannot be read over AMQP without the management plugin: it is **best effort**, the
//!   deliveries this process's consumers hold unsettled (pulled from the channel and not yet
//!   acked/nacked at the broker); other processes' are not counted. `delayed` is `None` (the
//!   delay tiers are shared by every queue).
//!
//! # Files (one per role; each imports only files listed above it)
//!
//! - `codec.rs`: a message to AMQP properties and back; control headers.
//! - `tls.rs`: TLS to the broker (`amqps://`, the configured CA only, client certificate).
//! - `options.rs`: tuning and the reconnection backoff.
//! - `heads.rs`: the age of a queue's head (for stats).
//! - `acks.rs`: coalesced acks of one consumer channel.
//! - `connection.rs`: the shared state, the connection and reconnection.
//! - `topology.rs`: exchanges, delay tiers, queues and their arguments.
//! - `publish.rs`: publishes with confirms: work, delayed retries, dead letters.
//! - `settle.rs`: ack, retry, reject, requeue of one delivery.
//! - `consumer.rs`: consuming, manual acks, resubscription.
//! - `broker.rs`: [`AmqpBroker`], the [`Broker`](crate::Broker) face and inspection.

mod acks;
mod broker;
mod codec;
mod connection;
mod consumer;
mod heads;
mod options;
mod publish;
mod settle;
mod tls;
mod topology;

pub use broker::AmqpBroker;
pub use codec::HDR_NOT_BEFORE;
pub use options::{AmqpOptions, Backoff};
pub use tls::{AmqpTls, AmqpTlsError};
pub use topology::DELAY_TIERS;

#[cfg(test)]
mod tests;
