//! Settling a delivery of the embedded broker ([`ConsumerSettle`]): ack, retry, reject,
//! requeue.
//!
//! # Invariants
//!
//! - Acks and requeues are queued and committed with the writer's next batch; retry and
//!   reject are one transaction each (copy inserted, original deleted).
//! - A settle renews the leases of the consumer's outstanding deliveries.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::Notify;

use super::shared::{Op, Shared};
use crate::*;

/// Settles the deliveries of one consumer; also its prefetch accounting and lease renewal.
pub(super) struct ConsumerSettle {
    pub(super) shared: Arc<Shared>,
    pub(super) owner: u64,
    pub(super) queue: String,
    /// Tags leased to this consumer and not settled yet (buffered or handed out).
    pub(super) outstanding: Mutex<HashSet<u64>>,
    /// Signalled on each settle: the consumer may have room again.
    pub(super) room: Notify,
    /// When this consumer's leases were last renewed.
    pub(super) last_renew: Mutex<Instant>,
}

impl ConsumerSettle {
    pub(super) fn outstanding_len(&self) -> usize {
        self.outstanding
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub(super) fn settled(&self, tag: u64) {
        self.outstanding
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&tag);
        self.room.notify_one();
        self.renew_if_due();
    }

    /// A sign of life: renew this consumer's leases, at most a few times per lease term.
    ///
    /// Only the deliveries still outstanding are renewed. A settled one whose ack or requeue
    /// was rolled back (a failed batch, e.g. a full disk) is still leased to this owner in the
    /// file but no longer known here: renewing every row of the owner would keep it leased
    /// for the life of the process, never delivered again. Left alone, its lease expires
    /// after `lease_ttl` and it is delivered again.
    pub(super) fn renew_if_due(&self) {
        let mut last = self.last_renew.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= self.shared.opts.lease_ttl / 4 {
            *last = Instant::now();
            let seqs: Vec<u64> = self
                .outstanding
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .copied()
                .collect();
            if !seqs.is_empty() {
                let _ = self.shared.send(Op::Renew {
                    owner: self.owner,
                    seqs,
                });
            }
        }
    }

    /// After a failed retry/reject the delivery cannot be settled again: give it back.
    pub(super) fn give_back(&self, tag: u64) {
        let _ = self.shared.send(Op::Requeue {
            seq: tag,
            owner: self.owner,
            queue: self.queue.clone(),
        });
    }
}

#[async_trait]
impl Settle for ConsumerSettle {
    async fn ack(&self, tag: u64) -> Result<()> {
        let r = self.shared.send(Op::Ack { seq: tag });
        self.settled(tag);
        r
    }

    async fn retry(&self, tag: u64, msg: Message, delay: Duration) -> Result<()> {
        let queue = self.queue.clone();
        let r = self
            .shared
            .call(|reply| Op::Retry {
                seq: tag,
                queue,
                msg,
                delay,
                reply,
            })
            .await;
        if r.is_err() {
            self.give_back(tag);
        }
        self.settled(tag);
        r
    }

    async fn reject(&self, tag: u64, msg: Message, reason: &str) -> Result<()> {
        let queue = self.queue.clone();
        let reason = reason.to_string();
        let r = self
            .shared
            .call(|reply| Op::Reject {
                seq: tag,
                queue,
                msg,
                reason,
                reply,
            })
            .await;
        if r.is_err() {
            self.give_back(tag);
        }
        self.settled(tag);
        r
    }

    async fn requeue(&self, tag: u64) -> Result<()> {
        let r = self.shared.send(Op::Requeue {
            seq: tag,
            owner: self.owner,
            queue: self.queue.clone(),
        });
        self.settled(tag);
        r
    }
}
