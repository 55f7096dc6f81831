//! Coalesced acknowledgements of one consumer channel ([`AckBook`]).
//!
//! # Invariants
//!
//! - A tag is acked only after its delivery was settled by the caller; acks go out in tag
//!   order (one flush at a time), the contiguous settled prefix as one `multiple` ack.
//! - Tags settled behind a gap (a delivery still held) are acked one by one once the gap has
//!   lasted [`GAP_GRACE`], so a held delivery never stalls the other prefetch slots.
//! - Shutting a book down flushes its queued acks, then cancels the consumer, then closes the
//!   channel (see invariant 2 of [`super`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use lapin::options::{BasicAckOptions, BasicCancelOptions};
use lapin::types::ShortString;
use lapin::Channel;
use tokio::sync::Notify;
use tracing::debug;

use crate::*;

/// How long acks may wait behind a delivery still held before they are sent one by one.
pub(super) const GAP_GRACE: Duration = Duration::from_millis(100);

/// Completed delivery tags of one consumer channel, waiting to be acked.
pub(super) struct AckBook {
    /// The queue consumed, for [`Broker::stats`]' `unacked`.
    pub(super) queue: String,
    /// The consumer on `channel`, cancelled before the channel is closed.
    pub(super) consumer_tag: ShortString,
    pub(super) channel: Channel,
    pub(super) state: Mutex<AckState>,
    /// Serialises flushes so acks go out in tag order.
    pub(super) flushing: tokio::sync::Mutex<()>,
    pub(super) wake: Notify,
    pub(super) batch: usize,
    pub(super) stopped: AtomicBool,
}

#[derive(Default)]
pub(super) struct AckState {
    /// The highest delivery tag handed to this process (tags count up from 1 per channel).
    pub(super) delivered_upto: u64,
    /// Every tag <= this one is settled (acked, or nacked before).
    pub(super) settled_upto: u64,
    /// Completed tags above `settled_upto`; `true` = still needs its ack sent.
    pub(super) done: BTreeMap<u64, bool>,
    /// How many entries of `done` are `true`.
    pub(super) to_send: usize,
    /// The first unsettled tag at the last flush and since when it has been the first.
    pub(super) gap_since: Option<(u64, Instant)>,
}

impl AckBook {
    pub(super) fn complete(&self, tag: u64, needs_ack: bool) {
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

    pub(super) fn to_send(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).to_send
    }

    /// Send the acks: one `multiple` ack for the contiguous completed prefix; tags completed
    /// behind a gap (a delivery still held) are acked one by one once the gap has lasted
    /// [`GAP_GRACE`], or at once when `force` (closing).
    pub(super) async fn flush(&self, force: bool) {
        let _order = self.flushing.lock().await;
        self.flush_locked(force).await;
    }

    /// Flush every queued ack, cancel the consumer, close the channel. The cancel matters:
    /// on a quorum queue RabbitMQ orders it after the acks (settles) of the channel and
    /// answers once it is applied, whereas closing at once can drop the last acks (their
    /// messages would be delivered again). Runs once; a second caller waits for the first.
    pub(super) async fn shutdown(&self, why: &str) {
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

    pub(super) async fn flush_locked(&self, force: bool) {
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

    pub(super) fn delivered(&self, tag: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.delivered_upto = s.delivered_upto.max(tag);
    }

    /// Deliveries of this channel not yet settled at the broker (0 once the channel is gone:
    /// RabbitMQ has taken them back).
    pub(super) fn unacked(&self) -> u64 {
        if !self.channel.status().connected() {
            return 0;
        }
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let settled_apart = s.done.values().filter(|needs_ack| !**needs_ack).count() as u64;
        s.delivered_upto
            .saturating_sub(s.settled_upto)
            .saturating_sub(settled_apart)
    }

    pub(super) fn idle(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .done
            .values()
            .all(|n| !n)
    }

    /// The per-channel ack task: flush on a short timer or when woken by a full batch.
    pub(super) fn spawn(self: &Arc<Self>, interval: Duration) {
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
