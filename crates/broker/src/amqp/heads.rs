//! The age of a queue's head as this process's consumers observe it ([`HeadWatch`]).
//!
//! # Invariants
//!
//! - The figure is an upper bound: it never says the head is younger than it is.

use std::collections::HashMap;
use std::sync::Mutex;

use super::codec::death_time_s;
use crate::*;

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
pub(super) struct HeadWatch(Mutex<HashMap<String, u64>>);

impl HeadWatch {
    pub(super) fn took(
        &self,
        queue: &str,
        d: &lapin::message::Delivery,
        not_before_ms: Option<u64>,
    ) {
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
    pub(super) fn age(&self, queue: &str, ready: u64) -> Option<Duration> {
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
