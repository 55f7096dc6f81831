//! Tuning of the RabbitMQ broker and the reconnection backoff.
//!
//! # Invariants
//!
//! - Every default is stated once, in [`AmqpOptions::default`].
//! - [`Backoff`] never waits zero and never longer than its cap ("equal jitter").

use crate::*;

/// Tuning of [`AmqpBroker`](super::AmqpBroker). Every default is stated here.
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
    /// TLS of an `amqps://` URL: the CA the broker's certificate must chain to, and the
    /// client certificate. Required by `amqps://`; refused with `amqp://`. Default none.
    pub tls: Option<super::tls::AmqpTls>,
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
            tls: None,
        }
    }
}

/// Capped exponential backoff with jitter: attempt `n` waits a random time in
/// `[d/2, d]` where `d = min(max, min * 2^n)` ("equal jitter": never zero, never in step
/// with other clients).
#[derive(Debug, Clone)]
pub struct Backoff {
    pub(super) min: Duration,
    pub(super) max: Duration,
    pub(super) attempt: u32,
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
