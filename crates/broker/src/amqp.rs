//! RabbitMQ implementation of [`Broker`] on lapin 4 (tokio runtime).
//!
//! # Invariants (how this module keeps the ones of the crate)
//!
//! 1. **A publish is `Ok` only on the broker's confirm.** Every channel that publishes is in
//!    confirm mode (`confirm.select`); every publish is `mandatory` and persistent
//!    (`delivery_mode = 2`). Ack → `Ok`; nack → [`BrokerError::Nack`]; returned
//!    (unroutable) → [`BrokerError::Unroutable`]; no confirm within
//!    [`AmqpOptions::confirm_timeout`] → [`BrokerError::ConfirmTimeout`]; a connection lost
//!    with the confirm outstanding → [`BrokerError::ChannelClosed`]. A publish is never
//!    reported as done without its confirm, so the caller retries (at-least-once).
//! 2. **Manual acks, bounded prefetch.** `basic.qos(prefetch)` precedes `basic.consume`.
//!    Acks are coalesced per channel: completed delivery tags are recorded, and a small
//!    task per channel acks the contiguous completed prefix with one `multiple` ack (on a
//!    short timer, or at once when [`AmqpOptions::ack_batch`] tags wait). Tags completed
//!    behind a gap (a delivery still held) are acked one by one once the gap has lasted
//!    100 ms, so a held delivery never stalls the others' prefetch slots. [`Broker::close`]
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
//!    RabbitMQ answer PRECONDITION_FAILED; that is [`BrokerError::QueueArgumentsDiffer`]
//!    (declares run on a channel of their own, so the refusal never closes the publish
//!    channel). A delivery whose channel is gone is no longer [`Delivery::is_live`]: whoever
//!    buffered it drops it, the broker gives it to the new active consumer.
//! 5. **Nothing dropped past the delivery limit.** Work queues are quorum queues with
//!    `x-delivery-limit`, dead-lettering `at-least-once` (which needs
//!    `x-overflow: reject-publish` on RabbitMQ 3.10+) to `<queue>.dlq`.
//! 6. **Reconnection.** One connection per broker (a publish channel plus one channel per
//!    consumer). When it dies (broker restart, network), the next publish reconnects (one
//!    attempt, the caller retries), consumers reconnect with capped exponential backoff and
//!    jitter ([`Backoff`]), re-declare the topology and resume. Deliveries of a dead
//!    channel cannot be settled any more: their settle calls return
//!    [`BrokerError::ChannelClosed`] and RabbitMQ delivers them again. A consumer never
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
//!   [`HDR_DEAD_REASON`] header, awaits the confirm, then acks. `basic.reject` through the
//!   DLX would carry no reason (only `x-death` with `rejected`).
//! - `requeue` is `basic.nack(requeue = true)`. On a quorum queue this counts toward the
//!   delivery limit.
//! - `delivery_count` is the quorum queue's `x-delivery-count` header + 1. RabbitMQ's
//!   `x-delivery-limit = n` dead-letters a message once it was returned more than `n` times,
//!   i.e. after its `n + 1`-th delivery; we declare `x-delivery-limit = delivery_limit - 1`
//!   so a message is delivered at most `delivery_limit` times, as
//!   [`QueueSpec::delivery_limit`] says.
//! - A message RabbitMQ dead-lettered itself (past the delivery limit) carries no
//!   [`HDR_DEAD_REASON`]; the consumer fills it in from the newest `x-death` entry that is not
//!   a delay-tier expiry (`delivery_limit: dead-lettered by RabbitMQ from queue …`).
//! - [`Broker::stats`] is a passive `queue.declare`: `ready` is its message count. `unacked`
//!   cannot be read over AMQP without the management plugin: it is **best effort**, the
//!   deliveries this process's consumers hold unsettled (pulled from the channel and not yet
//!   acked/nacked at the broker); other processes' are not counted. `delayed` is `None` (the
//!   delay tiers are shared by every queue).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock, Weak};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::*;

/// Header carrying "not visible before" (unix milliseconds) for delays longer than the
/// largest delay tier.
pub const HDR_NOT_BEFORE: &str = "x-gw-not-before";

/// The delay tiers: name suffix and TTL. Keep in sync with `deploy/rabbitmq/definitions.json`.
pub const DELAY_TIERS: &[(&str, Duration)] = &[
    ("250ms", Duration::from_millis(250)),
    ("1s", Duration::from_secs(1)),
    ("5s", Duration::from_secs(5)),
    ("30s", Duration::from_secs(30)),
    ("2m", Duration::from_secs(120)),
    ("10m", Duration::from_secs(600)),
    ("1h", Duration::from_secs(3600)),
];

/// The smallest tier not shorter than `delay`, or the largest one (the caller then adds
/// [`HDR_NOT_BEFORE`]).
fn delay_tier(delay: Duration) -> (&'static str, Duration) {
    DELAY_TIERS
        .iter()
        .find(|(_, d)| *d >= delay)
        .copied()
        .unwrap_or(DELAY_TIERS[DELAY_TIERS.len() - 1])
}

/// Headers the gateway or RabbitMQ set for their own use; not copied into `Message.headers`.
fn is_control_header(name: &str) -> bool {
    name == HDR_MESSAGE_ID
        || name == HDR_KEY
        || name == HDR_ATTEMPT
        || name == HDR_NOT_BEFORE
        || name == "x-delivery-count"
        || name == "x-death"
        || name.starts_with("x-first-death-")
        || name.starts_with("x-last-death-")
        || name.starts_with("x-opt-")
}

/// Tuning of [`AmqpBroker`]. Every default is stated here.
#[derive(Debug, Clone)]
pub struct AmqpOptions {
    /// Direct exchange every work queue is bound to by its name. Default `gw.work`.
    pub work_exchange: String,
    /// Direct exchange routing dead letters to `<queue>.dlq` by queue name. Default `gw.dlx`.
    pub dead_letter_exchange: String,
    /// Prefix of the delay tier exchanges and queues. Default `gw.retry`.
    pub delay_prefix: String,
    /// Direct exchange the delay tiers dead-letter into; every queue is bound to it by its
    /// name. Default `gw.return`.
    pub return_exchange: String,
    /// Alternate exchange of `return_exchange`, and the queue it fills: retries whose queue
    /// no longer exists. Default `gw.orphans`.
    pub orphans: String,
    /// How long a publish waits for its confirm. Default 15 s.
    pub confirm_timeout: Duration,
    /// How long one connection attempt may take. Default 10 s.
    pub connect_timeout: Duration,
    /// AMQP heartbeat asked for, in seconds, unless the URL sets `heartbeat=`. Default 10.
    pub heartbeat: u16,
    /// How long the first queued ack of a channel waits for others to join its `multiple`
    /// ack. Default 5 ms.
    pub ack_interval: Duration,
    /// Flush queued acks at once when this many wait. Default 64.
    pub ack_batch: usize,
    /// Reconnection backoff: first delay. Default 100 ms.
    pub reconnect_min: Duration,
    /// Reconnection backoff: cap. Default 10 s.
    pub reconnect_max: Duration,
    /// Connection name shown by `rabbitmqctl list_connections`. Default `gateway`.
    pub connection_name: String,
}

impl Default for AmqpOptions {
    fn default() -> Self {
        Self {
            work_exchange: "gw.work".into(),
            dead_letter_exchange: "gw.dlx".into(),
            delay_prefix: "gw.retry".into(),
            return_exchange: "gw.return".into(),
            orphans: "gw.orphans".into(),
            confirm_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(10),
            heartbeat: 10,
            ack_interval: Duration::from_millis(5),
            ack_batch: 64,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            connection_name: "gateway".into(),
        }
    }
}

/// Capped exponential backoff with jitter: attempt `n` waits a random time in
/// `[d/2, d]` where `d = min(max, min * 2^n)` ("equal jitter": never zero, never in step
/// with other clients).
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The delay before the next attempt; each call doubles the ceiling up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        let ceiling = self.min.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let jitter_ms = rand::random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// The RabbitMQ broker. Cheap to share behind an `Arc`.
pub struct AmqpBroker {
    inner: Arc<Inner>,
}

/// State shared by the broker, its consumers and their settle handles.
struct Inner {
    /// The URL with the heartbeat query set.
    url: String,
    opts: AmqpOptions,
    /// The live connection and its publish channel; replaced on reconnect.
    link: RwLock<Option<Arc<Link>>>,
    /// Serialises reconnects so one dead connection is replaced once.
    reconnect: tokio::sync::Mutex<()>,
    /// Every queue declared so far, re-declared after a reconnect.
    declared: Mutex<BTreeMap<String, QueueSpec>>,
    /// Ack books of live consumer channels, flushed by `close`.
    books: Mutex<Vec<Weak<AckBook>>>,
    /// Per queue, when the last message a consumer of this process took from it became
    /// deliverable (unix ms): the age watermark of the queue's head (see [`HeadWatch`]).
    heads: HeadWatch,
    closed: AtomicBool,
}

/// The age of a RabbitMQ queue's head, as its consumer observes it.
///
/// RabbitMQ tells a queue's depth (passive declare) but not how old its head is, and peeking
/// (`basic.get` + requeue) would reorder the queue and mark the head redelivered. So each
/// consumer notes, for every message it takes, when that message became deliverable: the
/// latest of its publish `timestamp`, the `x-death` time of its delay tier's expiry (a
/// retry enters the queue then; both whole seconds, rounded down) and its not-before time
/// (delays past the largest tier). The queue is FIFO, so
/// whatever is ready now entered the queue after that message: while `ready > 0`, the head
/// has been waiting **at most** `now - watermark`. The figure is an upper bound, exact to
/// about a second when the consumer keeps up, and it grows while the consumer is stalled
/// (prefetch full, destination slow) — which is when the head really does wait.
#[derive(Default)]
struct HeadWatch(Mutex<HashMap<String, u64>>);

impl HeadWatch {
    fn took(&self, queue: &str, d: &lapin::message::Delivery, not_before_ms: Option<u64>) {
        let now = now_ms();
        // A retry comes back from its delay tier when the tier's TTL expires: RabbitMQ's
        // `x-death` time of that expiry is when it entered this queue.
        let died_s = d
            .properties
            .headers()
            .as_ref()
            .and_then(|t| t.inner().get("x-death"))
            .and_then(death_time_s);
        let since = (*d.properties.timestamp())
            .max(died_s)
            .map(|s| s.saturating_mul(1000))
            .max(not_before_ms)
            .unwrap_or(now)
            .min(now);
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(queue.to_string(), since);
    }

    /// The head's age bound when `ready` messages wait (zero when none do).
    fn age(&self, queue: &str, ready: u64) -> Option<Duration> {
        if ready == 0 {
            return Some(Duration::ZERO);
        }
        let since = *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(queue)?;
        Some(Duration::from_millis(now_ms().saturating_sub(since)))
    }
}

/// One connection with its confirm-mode publish channel.
struct Link {
    conn: Arc<Connection>,
    publish: Channel,
}

impl Link {
    fn alive(&self) -> bool {
        self.conn.status().connected() && self.publish.status().connected()
    }
}

fn ss(s: &str) -> Result<ShortString> {
    ShortString::try_new(s)
        .map_err(|_| BrokerError::Malformed(format!("name longer than 255 bytes: {s:.40}…")))
}

/// A refused work-queue declare: PRECONDITION_FAILED (406, the queue exists with other
/// arguments) is [`BrokerError::QueueArgumentsDiffer`], anything else a topology error.
fn declare_refused(queue: &str, e: lapin::Error) -> BrokerError {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    match e.kind() {
        lapin::ErrorKind::ProtocolError(a)
            if matches!(
                a.kind(),
                AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
            ) =>
        {
            BrokerError::QueueArgumentsDiffer {
                queue: queue.to_string(),
                detail: a.get_message().as_str().to_string(),
            }
        }
        _ => BrokerError::Topology(format!("queue {queue}: {e}")),
    }
}

fn closed_err(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::ChannelClosed(e.to_string())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn with_heartbeat(url: &str, heartbeat: u16) -> String {
    if url.contains("heartbeat=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&heartbeat={heartbeat}")
    } else {
        format!("{url}?heartbeat={heartbeat}")
    }
}

fn table(entries: Vec<(&str, AMQPValue)>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(k.into(), v);
    }
    t
}

fn lstr(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

impl Inner {
    /// Deliveries of `queue` held unsettled by this process's consumers.
    fn unacked(&self, queue: &str) -> u64 {
        let books = self.books.lock().unwrap_or_else(|e| e.into_inner());
        books
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|b| b.queue == queue)
            .map(|b| b.unacked())
            .sum()
    }

    fn current(&self) -> Option<Arc<Link>> {
        self.link.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The live link, reconnecting once if it is dead. Never loops: callers that must
    /// persist (consumers) loop with [`Backoff`] around it.
    async fn link(&self) -> Result<Arc<Link>> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(BrokerError::Closed);
        }
        if let Some(l) = self.current().filter(|l| l.alive()) {
            return Ok(l);
        }
        let _guard = self.reconnect.lock().await;
        if let Some(l) = self.current().filter(|l| l.alive()) {
            return Ok(l);
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(BrokerError::Closed);
        }
        let old = self.current();
        let conn = match old.as_ref().filter(|l| l.conn.status().connected()) {
            // Only the publish channel died (a channel-level error): keep the connection.
            Some(l) => l.conn.clone(),
            None => Arc::new(self.connect().await?),
        };
        let publish = conn.create_channel().await.map_err(closed_err)?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(closed_err)?;
        let link = Arc::new(Link { conn, publish });
        if old.is_some() {
            // Re-declare before the link is handed out: a broker that lost non-durable state
            // (or a new node) gets the topology back before the first publish.
            let specs: Vec<QueueSpec> = self
                .declared
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned()
                .collect();
            match self.declare_on(&link, &specs).await {
                Ok(()) => info!(
                    queues = specs.len(),
                    "rabbitmq: reconnected and re-declared the topology"
                ),
                // Refused (e.g. an operator changed a queue's arguments): the topology that
                // exists is used; reconnecting again would not change the answer.
                Err(e @ (BrokerError::Topology(_) | BrokerError::QueueArgumentsDiffer { .. })) => {
                    warn!(error = %e, "rabbitmq: reconnected; re-declaring the topology was refused")
                }
                Err(e) => return Err(e),
            }
        }
        *self.link.write().unwrap_or_else(|e| e.into_inner()) = Some(link.clone());
        Ok(link)
    }

    async fn connect(&self) -> Result<Connection> {
        let props = ConnectionProperties::default()
            .with_connection_name(LongString::from(self.opts.connection_name.as_str()));
        match tokio::time::timeout(
            self.opts.connect_timeout,
            Connection::connect(&self.url, props),
        )
        .await
        {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(BrokerError::ConnectFailed(e.to_string())),
            Err(_) => Err(BrokerError::ConnectFailed(format!(
                "no connection within {:?}",
                self.opts.connect_timeout
            ))),
        }
    }

    fn tier_name(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.opts.delay_prefix)
    }

    /// Declare the shared exchanges, the delay tiers and the given queues on a fresh
    /// channel (a refused declare closes its channel; the publish channel must survive).
    async fn declare_on(&self, link: &Link, specs: &[QueueSpec]) -> Result<()> {
        let ch = link.conn.create_channel().await.map_err(closed_err)?;
        let topo = |e: lapin::Error| BrokerError::Topology(e.to_string());
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let work = ss(&self.opts.work_exchange)?;
        let dlx = ss(&self.opts.dead_letter_exchange)?;
        ch.exchange_declare(
            work.clone(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(topo)?;
        ch.exchange_declare(
            dlx.clone(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(topo)?;
        let orphans = ss(&self.opts.orphans)?;
        ch.exchange_declare(
            orphans.clone(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(topo)?;
        ch.queue_declare(
            orphans.clone(),
            QueueDeclareOptions::durable(),
            table(vec![("x-queue-type", lstr("quorum"))]),
        )
        .await
        .map_err(topo)?;
        ch.queue_bind(
            orphans.clone(),
            orphans,
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(topo)?;
        let ret = ss(&self.opts.return_exchange)?;
        ch.exchange_declare(
            ret.clone(),
            ExchangeKind::Direct,
            durable,
            table(vec![("alternate-exchange", lstr(&self.opts.orphans))]),
        )
        .await
        .map_err(topo)?;
        for (suffix, ttl) in DELAY_TIERS {
            let name = ss(&self.tier_name(suffix))?;
            ch.exchange_declare(
                name.clone(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(topo)?;
            let args = table(vec![
                ("x-queue-type", lstr("quorum")),
                (
                    "x-message-ttl",
                    AMQPValue::LongLongInt(ttl.as_millis() as i64),
                ),
                ("x-dead-letter-exchange", lstr(&self.opts.return_exchange)),
                ("x-dead-letter-strategy", lstr("at-least-once")),
                ("x-overflow", lstr("reject-publish")),
            ]);
            ch.queue_declare(name.clone(), QueueDeclareOptions::durable(), args)
                .await
                .map_err(topo)?;
            ch.queue_bind(
                name.clone(),
                name,
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(topo)?;
        }
        for spec in specs {
            let q = ss(&spec.name)?;
            let dlq = ss(&dead_letter_queue(&spec.name))?;
            let args = table(vec![
                ("x-queue-type", lstr("quorum")),
                (
                    "x-delivery-limit",
                    AMQPValue::LongLongInt(spec.delivery_limit.saturating_sub(1) as i64),
                ),
                (
                    "x-dead-letter-exchange",
                    lstr(&self.opts.dead_letter_exchange),
                ),
                ("x-dead-letter-strategy", lstr("at-least-once")),
                ("x-overflow", lstr("reject-publish")),
                ("x-single-active-consumer", AMQPValue::Boolean(true)),
            ]);
            ch.queue_declare(q.clone(), QueueDeclareOptions::durable(), args)
                .await
                .map_err(|e| declare_refused(&spec.name, e))?;
            let dlq_args = table(vec![("x-queue-type", lstr("quorum"))]);
            ch.queue_declare(dlq.clone(), QueueDeclareOptions::durable(), dlq_args)
                .await
                .map_err(topo)?;
            let none = FieldTable::default;
            let opts = QueueBindOptions::default();
            ch.queue_bind(q.clone(), work.clone(), q.clone(), opts, none())
                .await
                .map_err(topo)?;
            ch.queue_bind(dlq.clone(), dlx.clone(), q.clone(), opts, none())
                .await
                .map_err(topo)?;
            ch.queue_bind(dlq.clone(), work.clone(), dlq.clone(), opts, none())
                .await
                .map_err(topo)?;
            ch.queue_bind(q.clone(), ret.clone(), q.clone(), opts, none())
                .await
                .map_err(topo)?;
            ch.queue_bind(dlq.clone(), ret.clone(), dlq.clone(), opts, none())
                .await
                .map_err(topo)?;
        }
        let _ = ch.close(200, "declared".into()).await;
        Ok(())
    }

    /// Send one mandatory persistent publish; returns its (not yet awaited) confirm.
    async fn send(
        &self,
        exchange: &str,
        routing_key: &str,
        msg: &Message,
        extra: Vec<(&str, AMQPValue)>,
    ) -> Result<lapin::PublisherConfirm> {
        let props = properties(msg, extra)?;
        let link = self.link().await?;
        let opts = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        link.publish
            .basic_publish(ss(exchange)?, ss(routing_key)?, opts, &msg.body, props)
            .await
            .map_err(closed_err)
    }

    /// Await a confirm and map it to the crate's outcome.
    async fn confirmed(&self, queue: &str, confirm: lapin::PublisherConfirm) -> Result<()> {
        match tokio::time::timeout(self.opts.confirm_timeout, confirm).await {
            Err(_) => Err(BrokerError::ConfirmTimeout(self.opts.confirm_timeout)),
            Ok(Err(e)) => Err(closed_err(format!("confirm lost: {e}"))),
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(Confirmation::Ack(Some(_)))) => Err(BrokerError::Unroutable {
                queue: queue.to_string(),
            }),
            Ok(Ok(Confirmation::Nack(_))) => Err(BrokerError::Nack {
                queue: queue.to_string(),
            }),
            Ok(Ok(Confirmation::NotRequested)) => {
                Err(closed_err("the publish channel is not in confirm mode"))
            }
        }
    }

    async fn publish_work(&self, queue: &str, msg: &Message) -> Result<()> {
        let c = self
            .send(&self.opts.work_exchange, queue, msg, Vec::new())
            .await?;
        self.confirmed(queue, c).await
    }

    /// Durably schedule `msg` for `queue` no earlier than `delay` from now.
    async fn publish_delayed(&self, queue: &str, msg: &Message, delay: Duration) -> Result<()> {
        if delay.is_zero() {
            return self.publish_work(queue, msg).await;
        }
        let (suffix, tier) = delay_tier(delay);
        let mut extra = Vec::new();
        if delay > tier {
            extra.push((
                HDR_NOT_BEFORE,
                AMQPValue::LongLongInt((now_ms() + delay.as_millis() as u64) as i64),
            ));
        }
        let c = self
            .send(&self.tier_name(suffix), queue, msg, extra)
            .await?;
        self.confirmed(queue, c).await
    }

    async fn publish_dead(&self, queue: &str, msg: &Message, reason: &str) -> Result<()> {
        let extra = vec![(HDR_DEAD_REASON, lstr(reason))];
        let c = self
            .send(&self.opts.dead_letter_exchange, queue, msg, extra)
            .await?;
        self.confirmed(&dead_letter_queue(queue), c).await
    }
}

/// AMQP properties of a message: persistent, id/key/attempt as headers, user headers as
/// long strings (the gateway's own headers win over a user header of the same name).
fn properties(msg: &Message, extra: Vec<(&str, AMQPValue)>) -> Result<BasicProperties> {
    let mut headers = FieldTable::default();
    for (k, v) in &msg.headers {
        if is_control_header(k) {
            continue;
        }
        headers.insert(ss(k)?, lstr(v));
    }
    headers.insert(HDR_MESSAGE_ID.into(), lstr(&msg.id));
    headers.insert(HDR_KEY.into(), lstr(&msg.key));
    headers.insert(HDR_ATTEMPT.into(), AMQPValue::LongUInt(msg.attempt));
    for (k, v) in extra {
        headers.insert(k.into(), v);
    }
    let mut props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/octet-stream".into())
        .with_timestamp(now_ms() / 1000)
        .with_headers(headers);
    if let Ok(id) = ShortString::try_new(msg.id.as_str()) {
        props = props.with_message_id(id);
    }
    Ok(props)
}

fn value_str(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

fn value_u64(v: &AMQPValue) -> Option<u64> {
    match *v {
        AMQPValue::ShortShortInt(n) => u64::try_from(n).ok(),
        AMQPValue::ShortShortUInt(n) => Some(n.into()),
        AMQPValue::ShortInt(n) => u64::try_from(n).ok(),
        AMQPValue::ShortUInt(n) => Some(n.into()),
        AMQPValue::LongInt(n) => u64::try_from(n).ok(),
        AMQPValue::LongUInt(n) => Some(n.into()),
        AMQPValue::LongLongInt(n) => u64::try_from(n).ok(),
        AMQPValue::Timestamp(n) => Some(n),
        _ => None,
    }
}

/// Why RabbitMQ itself dead-lettered a message (past the delivery limit: `delivery_limit`),
/// from the newest `x-death` entry that is not the expiry of a delay tier (every retried
/// message carries one of those).
fn broker_death_reason(x_death: &AMQPValue) -> Option<String> {
    let AMQPValue::FieldArray(deaths) = x_death else {
        return None;
    };
    deaths.as_slice().iter().find_map(|death| {
        let AMQPValue::FieldTable(t) = death else {
            return None;
        };
        let field = |k: &str| t.inner().get(k).and_then(value_str).unwrap_or_default();
        let reason = field("reason");
        if reason.is_empty() || reason == "expired" {
            return None;
        }
        let count = t.inner().get("count").and_then(value_u64).unwrap_or(1);
        Some(format!(
            "{reason}: dead-lettered by RabbitMQ from queue {} ({count} time(s))",
            field("queue")
        ))
    })
}

/// The latest `time` (unix seconds) among a message's `x-death` entries.
fn death_time_s(x_death: &AMQPValue) -> Option<u64> {
    let AMQPValue::FieldArray(deaths) = x_death else {
        return None;
    };
    deaths
        .as_slice()
        .iter()
        .filter_map(|death| match death {
            AMQPValue::FieldTable(t) => t.inner().get("time").and_then(value_u64),
            _ => None,
        })
        .max()
}

/// What a consumer got from the wire, decoded.
struct Incoming {
    message: Message,
    delivery_count: u32,
    not_before: Option<u64>,
}

fn decode(d: &lapin::message::Delivery) -> Result<Incoming> {
    let empty = BTreeMap::new();
    let table = d
        .properties
        .headers()
        .as_ref()
        .map(|t| t.inner())
        .unwrap_or(&empty);
    let get = |k: &str| table.get(k);
    let id = get(HDR_MESSAGE_ID)
        .and_then(value_str)
        .or_else(|| {
            d.properties
                .message_id()
                .as_ref()
                .map(|s| s.as_str().to_string())
        })
        .ok_or_else(|| {
            BrokerError::Malformed(format!(
                "delivery {} has no {HDR_MESSAGE_ID}",
                d.delivery_tag
            ))
        })?;
    let key = get(HDR_KEY).and_then(value_str).unwrap_or_default();
    let attempt = match get(HDR_ATTEMPT) {
        None => 0,
        Some(v) => value_u64(v)
            .or_else(|| value_str(v).and_then(|s| s.parse().ok()))
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| BrokerError::Malformed(format!("message {id}: bad {HDR_ATTEMPT}")))?,
    };
    let mut headers = BTreeMap::new();
    for (k, v) in table {
        if is_control_header(k.as_str()) {
            continue;
        }
        if let Some(s) = value_str(v) {
            headers.insert(k.as_str().to_string(), s);
        }
    }
    if !headers.contains_key(HDR_DEAD_REASON) {
        if let Some(reason) = get("x-death").and_then(broker_death_reason) {
            headers.insert(HDR_DEAD_REASON.to_string(), reason);
        }
    }
    let returns = get("x-delivery-count").and_then(value_u64).unwrap_or(0);
    Ok(Incoming {
        message: Message {
            id,
            key,
            headers,
            attempt,
            body: Bytes::from(d.data.clone()),
        },
        delivery_count: u32::try_from(returns)
            .unwrap_or(u32::MAX - 1)
            .saturating_add(1),
        not_before: get(HDR_NOT_BEFORE).and_then(value_u64),
    })
}

impl AmqpBroker {
    /// Connect to `url` (`amqp://user:pass@host:port/vhost`). Fails if the first connection
    /// cannot be made; later losses are recovered.
    pub async fn connect(url: &str, opts: AmqpOptions) -> Result<Self> {
        let inner = Arc::new(Inner {
            url: with_heartbeat(url, opts.heartbeat),
            opts,
            link: RwLock::new(None),
            reconnect: tokio::sync::Mutex::new(()),
            declared: Mutex::new(BTreeMap::new()),
            books: Mutex::new(Vec::new()),
            heads: HeadWatch::default(),
            closed: AtomicBool::new(false),
        });
        inner.link().await?;
        Ok(Self { inner })
    }

    /// Delete a queue and its dead-letter queue (tests and operators' tooling). Returns
    /// how many messages the two held.
    pub async fn delete_queue(&self, queue: &str) -> Result<u64> {
        let link = self.inner.link().await?;
        let ch = link.conn.create_channel().await.map_err(closed_err)?;
        let mut n = 0u64;
        for q in [queue.to_string(), dead_letter_queue(queue)] {
            n += ch
                .queue_delete(ss(&q)?, QueueDeleteOptions::default())
                .await
                .map_err(|e| BrokerError::Topology(e.to_string()))? as u64;
        }
        self.inner
            .declared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(queue);
        let _ = ch.close(200, "deleted".into()).await;
        Ok(n)
    }
}

#[async_trait]
impl Broker for AmqpBroker {
    fn kind(&self) -> &'static str {
        "rabbitmq"
    }

    fn orphans_queue(&self) -> Option<&str> {
        Some(&self.inner.opts.orphans)
    }

    async fn declare(&self, queues: &[QueueSpec]) -> Result<()> {
        let link = self.inner.link().await?;
        self.inner.declare_on(&link, queues).await?;
        let mut declared = self
            .inner
            .declared
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for q in queues {
            declared.insert(q.name.clone(), q.clone());
        }
        Ok(())
    }

    async fn publish(&self, queue: &str, msg: Message) -> Result<()> {
        self.inner.publish_work(queue, &msg).await
    }

    /// Pipelined: every publish is sent, then every confirm awaited. The first failure in
    /// batch order is returned (after all confirms were awaited).
    async fn publish_batch(&self, queue: &str, msgs: Vec<Message>) -> Result<()> {
        let mut confirms = Vec::with_capacity(msgs.len());
        let mut first_err = None;
        for m in &msgs {
            match self
                .inner
                .send(&self.inner.opts.work_exchange, queue, m, Vec::new())
                .await
            {
                Ok(c) => confirms.push(c),
                Err(e) => {
                    first_err = Some(e);
                    break;
                }
            }
        }
        let outcomes = futures_util::future::join_all(
            confirms.into_iter().map(|c| self.inner.confirmed(queue, c)),
        )
        .await;
        match outcomes.into_iter().find_map(|r| r.err()) {
            Some(e) => Err(e),
            None => first_err.map_or(Ok(()), Err),
        }
    }

    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>> {
        let mut c = AmqpConsumer {
            inner: self.inner.clone(),
            queue: queue.to_string(),
            prefetch: prefetch.max(1),
            state: None,
            backoff: Backoff::new(self.inner.opts.reconnect_min, self.inner.opts.reconnect_max),
        };
        // The first subscription is made here so that a missing queue is an error now.
        c.state = Some(c.subscribe().await?);
        Ok(Box::new(c))
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats> {
        let link = self.inner.link().await?;
        let ch = link.conn.create_channel().await.map_err(closed_err)?;
        let q = ch
            .queue_declare(
                ss(queue)?,
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| BrokerError::Topology(format!("queue {queue}: {e}")))?;
        let _ = ch.close(200, "stats".into()).await;
        let ready = q.message_count() as u64;
        Ok(QueueStats {
            ready,
            unacked: self.inner.unacked(queue),
            delayed: None,
            oldest_ready_age: self.inner.heads.age(queue, ready),
        })
    }

    /// Connected now; a dead connection is re-established here (bounded by 3 s) so that
    /// readiness recovers without waiting for traffic.
    async fn ready(&self) -> bool {
        if self.inner.closed.load(Ordering::SeqCst) {
            return false;
        }
        match tokio::time::timeout(Duration::from_secs(3), self.inner.link()).await {
            Ok(Ok(link)) => link.conn.status().connected(),
            _ => false,
        }
    }

    async fn close(&self) {
        let books: Vec<Arc<AckBook>> = {
            let mut b = self.inner.books.lock().unwrap_or_else(|e| e.into_inner());
            b.retain(|w| w.strong_count() > 0);
            b.iter().filter_map(Weak::upgrade).collect()
        };
        // Closed first, so a consumer whose subscription ends below does not resubscribe.
        self.inner.closed.store(true, Ordering::SeqCst);
        for book in books {
            book.shutdown("gateway closing").await;
        }
        let link = self
            .inner
            .link
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(link) = link {
            let _ = link.publish.wait_for_confirms().await;
            if link.conn.status().connected() {
                let _ = link.conn.close(200, "gateway closing".into()).await;
            }
        }
    }
}

/// How long acks may wait behind a delivery still held before they are sent one by one.
const GAP_GRACE: Duration = Duration::from_millis(100);

/// Completed delivery tags of one consumer channel, waiting to be acked.
struct AckBook {
    /// The queue consumed, for [`Broker::stats`]' `unacked`.
    queue: String,
    /// The consumer on `channel`, cancelled before the channel is closed.
    consumer_tag: ShortString,
    channel: Channel,
    state: Mutex<AckState>,
    /// Serialises flushes so acks go out in tag order.
    flushing: tokio::sync::Mutex<()>,
    wake: Notify,
    batch: usize,
    stopped: AtomicBool,
}

#[derive(Default)]
struct AckState {
    /// The highest delivery tag handed to this process (tags count up from 1 per channel).
    delivered_upto: u64,
    /// Every tag <= this one is settled (acked, or nacked before).
    settled_upto: u64,
    /// Completed tags above `settled_upto`; `true` = still needs its ack sent.
    done: BTreeMap<u64, bool>,
    /// How many entries of `done` are `true`.
    to_send: usize,
    /// The first unsettled tag at the last flush and since when it has been the first.
    gap_since: Option<(u64, Instant)>,
}

impl AckBook {
    fn complete(&self, tag: u64, needs_ack: bool) {
        let to_send = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if tag > s.settled_upto && s.done.insert(tag, needs_ack).is_none() && needs_ack {
                s.to_send += 1;
            }
            s.to_send
        };
        // Wake the ack task for the first ack to send (it then waits `ack_interval` for
        // more) and again when a full batch waits.
        if to_send == 1 || to_send >= self.batch {
            self.wake.notify_one();
        }
    }

    fn to_send(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).to_send
    }

    /// Send the acks: one `multiple` ack for the contiguous completed prefix; tags completed
    /// behind a gap (a delivery still held) are acked one by one once the gap has lasted
    /// [`GAP_GRACE`], or at once when `force` (closing).
    async fn flush(&self, force: bool) {
        let _order = self.flushing.lock().await;
        self.flush_locked(force).await;
    }

    /// Flush every queued ack, cancel the consumer, close the channel. The cancel matters:
    /// on a quorum queue RabbitMQ orders it after the acks (settles) of the channel and
    /// answers once it is applied, whereas closing at once can drop the last acks (their
    /// messages would be delivered again). Runs once; a second caller waits for the first.
    async fn shutdown(&self, why: &str) {
        let _order = self.flushing.lock().await;
        if !self.channel.status().connected() {
            return;
        }
        self.flush_locked(true).await;
        let cancel = self
            .channel
            .basic_cancel(self.consumer_tag.clone(), BasicCancelOptions::default());
        if let Err(e) = cancel.await {
            debug!(error = %e, "rabbitmq: cancelling the consumer failed");
        }
        let _ = self.channel.close(200, why.into()).await;
    }

    async fn flush_locked(&self, force: bool) {
        let (multiple, singles) = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let mut last_ack = None;
            while let Some((&tag, &needs)) = s.done.first_key_value() {
                if tag != s.settled_upto + 1 {
                    break;
                }
                s.done.pop_first();
                s.settled_upto = tag;
                if needs {
                    last_ack = Some(tag);
                }
            }
            let gap = s.settled_upto + 1;
            let stale = match s.gap_since {
                Some((g, since)) if g == gap => since.elapsed() >= GAP_GRACE,
                _ => {
                    s.gap_since = Some((gap, Instant::now()));
                    false
                }
            };
            let singles: Vec<u64> = if s.done.is_empty() || !(force || stale) {
                Vec::new()
            } else {
                s.done
                    .iter()
                    .filter(|(_, n)| **n)
                    .map(|(t, _)| *t)
                    .collect()
            };
            for t in &singles {
                s.done.insert(*t, false);
            }
            s.to_send = s.done.values().filter(|n| **n).count();
            (last_ack, singles)
        };
        if let Some(tag) = multiple {
            if let Err(e) = self
                .channel
                .basic_ack(tag, BasicAckOptions { multiple: true })
                .await
            {
                debug!(tag, error = %e, "rabbitmq: ack lost with its channel (the broker redelivers)");
            }
        }
        for tag in singles {
            if let Err(e) = self
                .channel
                .basic_ack(tag, BasicAckOptions { multiple: false })
                .await
            {
                debug!(tag, error = %e, "rabbitmq: ack lost with its channel (the broker redelivers)");
            }
        }
    }

    fn delivered(&self, tag: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.delivered_upto = s.delivered_upto.max(tag);
    }

    /// Deliveries of this channel not yet settled at the broker (0 once the channel is gone:
    /// RabbitMQ has taken them back).
    fn unacked(&self) -> u64 {
        if !self.channel.status().connected() {
            return 0;
        }
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let settled_apart = s.done.values().filter(|needs_ack| !**needs_ack).count() as u64;
        s.delivered_upto
            .saturating_sub(s.settled_upto)
            .saturating_sub(settled_apart)
    }

    fn idle(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .done
            .values()
            .all(|n| !n)
    }

    /// The per-channel ack task: flush on a short timer or when woken by a full batch.
    fn spawn(self: &Arc<Self>, interval: Duration) {
        let book = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(b) = book.upgrade() else { return };
                // Idle channels cost one wake-up a second (to notice a dead channel); acks
                // waiting behind a held delivery are looked at again after `GAP_GRACE`.
                let wait = if b.idle() {
                    Duration::from_secs(1)
                } else {
                    GAP_GRACE
                };
                tokio::select! {
                    _ = b.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                if !b.channel.status().connected() || (b.stopped.load(Ordering::SeqCst) && b.idle())
                {
                    return;
                }
                if b.idle() {
                    continue;
                }
                if b.to_send() < b.batch {
                    // Let more acks join this one.
                    tokio::time::sleep(interval).await;
                }
                b.flush(false).await;
            }
        });
    }
}

/// Settles deliveries of one consumer channel.
struct ChannelSettle {
    inner: Arc<Inner>,
    queue: String,
    book: Arc<AckBook>,
}

impl ChannelSettle {
    fn ensure_open(&self) -> Result<()> {
        if self.book.channel.status().connected() {
            Ok(())
        } else {
            Err(closed_err(format!(
                "the channel of this delivery from {} is gone; RabbitMQ delivers it again",
                self.queue
            )))
        }
    }
}

#[async_trait]
impl Settle for ChannelSettle {
    /// Live while the channel is open and the consumer was not dropped.
    fn live(&self) -> bool {
        self.book.channel.status().connected() && !self.book.stopped.load(Ordering::SeqCst)
    }

    async fn ack(&self, tag: u64) -> Result<()> {
        self.ensure_open()?;
        self.book.complete(tag, true);
        Ok(())
    }

    async fn retry(&self, tag: u64, msg: Message, delay: Duration) -> Result<()> {
        self.ensure_open()?;
        self.inner.publish_delayed(&self.queue, &msg, delay).await?;
        self.ensure_open()?;
        self.book.complete(tag, true);
        Ok(())
    }

    async fn reject(&self, tag: u64, msg: Message, reason: &str) -> Result<()> {
        self.ensure_open()?;
        self.inner.publish_dead(&self.queue, &msg, reason).await?;
        self.ensure_open()?;
        self.book.complete(tag, true);
        Ok(())
    }

    async fn requeue(&self, tag: u64) -> Result<()> {
        self.ensure_open()?;
        self.book
            .channel
            .basic_nack(
                tag,
                BasicNackOptions {
                    multiple: false,
                    requeue: true,
                },
            )
            .await
            .map_err(closed_err)?;
        self.book.complete(tag, false);
        Ok(())
    }
}

/// One subscription: a channel, its lapin consumer and its settle handle.
struct Subscription {
    conn: Arc<Connection>,
    stream: lapin::Consumer,
    settle: Arc<ChannelSettle>,
}

impl Subscription {
    fn alive(&self) -> bool {
        self.conn.status().connected() && self.settle.book.channel.status().connected()
    }
}

impl Drop for Subscription {
    /// Flush the queued acks, then close the channel so RabbitMQ hands the unacked
    /// deliveries to another consumer.
    fn drop(&mut self) {
        let book = self.settle.book.clone();
        book.stopped.store(true, Ordering::SeqCst);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { book.shutdown("consumer closed").await });
        }
    }
}

struct AmqpConsumer {
    inner: Arc<Inner>,
    queue: String,
    prefetch: u16,
    state: Option<Subscription>,
    backoff: Backoff,
}

impl AmqpConsumer {
    async fn subscribe(&self) -> Result<Subscription> {
        let link = self.inner.link().await?;
        let ch = link.conn.create_channel().await.map_err(closed_err)?;
        ch.basic_qos(self.prefetch, BasicQosOptions::default())
            .await
            .map_err(closed_err)?;
        let stream = ch
            .basic_consume(
                ss(&self.queue)?,
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| BrokerError::Topology(format!("cannot consume {}: {e}", self.queue)))?;
        let book = Arc::new(AckBook {
            queue: self.queue.clone(),
            consumer_tag: stream.tag(),
            channel: ch,
            state: Mutex::new(AckState::default()),
            flushing: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            batch: self.inner.opts.ack_batch.max(1),
            stopped: AtomicBool::new(false),
        });
        book.spawn(self.inner.opts.ack_interval);
        {
            let mut books = self.inner.books.lock().unwrap_or_else(|e| e.into_inner());
            books.retain(|w| w.strong_count() > 0);
            books.push(Arc::downgrade(&book));
        }
        let settle = Arc::new(ChannelSettle {
            inner: self.inner.clone(),
            queue: self.queue.clone(),
            book,
        });
        Ok(Subscription {
            conn: link.conn.clone(),
            stream,
            settle,
        })
    }

    /// Turn a wire delivery into a [`Delivery`], or `None` when it was handled here (a
    /// message that arrived before its not-before time is re-delayed).
    async fn accept(
        &self,
        sub: &Subscription,
        d: lapin::message::Delivery,
    ) -> Result<Option<Delivery>> {
        let tag = d.delivery_tag;
        sub.settle.book.delivered(tag);
        let incoming = match decode(&d) {
            Ok(i) => i,
            Err(e) => {
                // Not ours to interpret: dead-letter it with the reason rather than loop.
                warn!(queue = %self.queue, tag, error = %e, "rabbitmq: malformed delivery moved to the dead-letter queue");
                let msg = Message {
                    id: String::new(),
                    key: String::new(),
                    headers: BTreeMap::new(),
                    attempt: 0,
                    body: Bytes::from(d.data.clone()),
                };
                sub.settle.reject(tag, msg, &e.to_string()).await?;
                return Ok(None);
            }
        };
        self.inner.heads.took(&self.queue, &d, incoming.not_before);
        if let Some(nb) = incoming.not_before {
            let now = now_ms();
            if nb > now + 20 {
                let rest = Duration::from_millis(nb - now);
                debug!(queue = %self.queue, id = %incoming.message.id, ?rest, "rabbitmq: early delivery re-delayed");
                sub.settle.retry(tag, incoming.message, rest).await?;
                return Ok(None);
            }
        }
        let settle: Arc<dyn Settle> = sub.settle.clone();
        Ok(Some(Delivery::new(
            incoming.message,
            d.redelivered || incoming.delivery_count > 1,
            incoming.delivery_count,
            self.queue.clone(),
            tag,
            settle,
        )))
    }
}

#[async_trait]
impl Consumer for AmqpConsumer {
    async fn next(&mut self) -> Option<Result<Delivery>> {
        loop {
            if self.inner.closed.load(Ordering::SeqCst) {
                self.state = None;
                return None;
            }
            let Some(sub) = self.state.as_mut() else {
                match self.subscribe().await {
                    Ok(s) => {
                        self.backoff.reset();
                        self.state = Some(s);
                    }
                    Err(BrokerError::Closed) => return None,
                    Err(e) => {
                        let wait = self.backoff.next_delay();
                        warn!(queue = %self.queue, error = %e, ?wait, "rabbitmq: consumer cannot subscribe, retrying");
                        tokio::time::sleep(wait).await;
                    }
                }
                continue;
            };
            let item = tokio::select! {
                item = sub.stream.next() => item,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if !sub.alive() {
                        warn!(queue = %self.queue, "rabbitmq: consumer connection is gone, reconnecting");
                        self.state = None;
                    }
                    continue;
                }
            };
            match item {
                Some(Ok(d)) => {
                    let sub = self.state.as_ref().expect("subscription present");
                    match self.accept(sub, d).await {
                        Ok(Some(delivery)) => return Some(Ok(delivery)),
                        Ok(None) => continue,
                        Err(e) => {
                            // The delivery stays unacked; a fresh channel gets it again.
                            warn!(queue = %self.queue, error = %e, "rabbitmq: handling a delivery failed, resubscribing");
                            self.state = None;
                        }
                    }
                }
                Some(Err(e)) => {
                    warn!(queue = %self.queue, error = %e, "rabbitmq: consumer channel failed, reconnecting");
                    self.state = None;
                }
                None => {
                    if !self.inner.closed.load(Ordering::SeqCst) {
                        warn!(queue = %self.queue, "rabbitmq: consumer cancelled by the broker, resubscribing");
                    }
                    self.state = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..40 {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(50) && d <= Duration::from_secs(2),
                "{d:?}"
            );
        }
        let late = b.next_delay();
        assert!(
            late >= Duration::from_secs(1),
            "capped ceiling, equal jitter: {late:?}"
        );
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn delay_picks_the_smallest_tier_not_shorter() {
        assert_eq!(delay_tier(Duration::from_millis(1)).0, "250ms");
        assert_eq!(delay_tier(Duration::from_millis(250)).0, "250ms");
        assert_eq!(delay_tier(Duration::from_millis(251)).0, "1s");
        assert_eq!(delay_tier(Duration::from_secs(2)).0, "5s");
        assert_eq!(delay_tier(Duration::from_secs(3600)).0, "1h");
        // Longer than the largest tier: the largest, plus a not-before header.
        assert_eq!(delay_tier(Duration::from_secs(7200)).0, "1h");
    }

    #[test]
    fn message_survives_the_wire_format() {
        let mut headers = BTreeMap::new();
        headers.insert("traceparent".to_string(), "00-abc-01".to_string());
        // A user header named like a control header does not override the real one.
        headers.insert(HDR_ATTEMPT.to_string(), "99".to_string());
        let msg = Message {
            id: "01J".into(),
            key: "DOSSIER-1".into(),
            headers,
            attempt: 2,
            body: Bytes::from_static(b"payload"),
        };
        let props = properties(&msg, Vec::new()).unwrap();
        assert_eq!(props.delivery_mode(), &Some(2));
        let mut d = lapin::message::Delivery::mock(
            7,
            "gw.work".into(),
            "q".into(),
            false,
            b"payload".to_vec(),
        );
        d.properties = props;
        let got = decode(&d).unwrap();
        assert_eq!(got.message.id, "01J");
        assert_eq!(got.message.key, "DOSSIER-1");
        assert_eq!(got.message.attempt, 2);
        assert_eq!(got.message.body, msg.body);
        assert_eq!(got.message.headers.len(), 1);
        assert_eq!(got.message.headers["traceparent"], "00-abc-01");
        assert_eq!(got.delivery_count, 1);
        assert_eq!(got.not_before, None);
    }

    #[test]
    fn broker_dead_letters_get_a_reason_but_delay_expiries_do_not() {
        let death = |reason: &str, queue: &str| {
            AMQPValue::FieldTable(table(vec![
                ("reason", lstr(reason)),
                ("queue", lstr(queue)),
                ("count", AMQPValue::LongLongInt(1)),
            ]))
        };
        let expired_only = AMQPValue::FieldArray(vec![death("expired", "gw.delay.1s")].into());
        assert_eq!(broker_death_reason(&expired_only), None);
        let limit = AMQPValue::FieldArray(
            vec![
                death("delivery_limit", "q"),
                death("expired", "gw.delay.1s"),
            ]
            .into(),
        );
        let reason = broker_death_reason(&limit).unwrap();
        assert!(reason.starts_with("delivery_limit"), "{reason}");
        assert!(reason.contains("queue q"), "{reason}");
    }

    #[test]
    fn heartbeat_is_added_to_the_url_once() {
        assert_eq!(
            with_heartbeat("amqp://h:5672/%2f", 10),
            "amqp://h:5672/%2f?heartbeat=10"
        );
        assert_eq!(
            with_heartbeat("amqp://h/%2f?frame_max=8192", 5),
            "amqp://h/%2f?frame_max=8192&heartbeat=5"
        );
        assert_eq!(
            with_heartbeat("amqp://h/%2f?heartbeat=30", 5),
            "amqp://h/%2f?heartbeat=30"
        );
    }
}
