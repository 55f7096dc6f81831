//! Consuming from the embedded broker ([`EmbeddedConsumer`]).
//!
//! # Invariants
//!
//! - A message is leased durably before the consumer sees it; dropping the consumer releases
//!   its leases at once.
//! - No polling loop: the consumer waits on its queue's notifier, or until the next delayed
//!   message or lease comes due (capped by the lease TTL).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use tokio::sync::{oneshot, Notify};

use super::settle::ConsumerSettle;
use super::shared::{LeaseBatch, Leased, Op, Shared};
use crate::*;

pub(super) struct EmbeddedConsumer {
    pub(super) shared: Arc<Shared>,
    pub(super) queue: String,
    pub(super) owner: u64,
    pub(super) prefetch: usize,
    pub(super) queue_notify: Arc<Notify>,
    pub(super) settle: Arc<ConsumerSettle>,
    /// Leased and not yet handed out, in FIFO order.
    pub(super) buffer: VecDeque<Leased>,
    /// A lease request whose answer is still awaited: kept across a cancelled `next()` so
    /// leased rows are never lost in a dropped future.
    pub(super) pending: Option<oneshot::Receiver<Result<LeaseBatch>>>,
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        // The consumer is gone: whatever it leased and did not settle goes back at once.
        let _ = self.shared.send(Op::Release {
            owner: self.owner,
            queue: self.queue.clone(),
        });
    }
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    async fn next(&mut self) -> Option<Result<Delivery>> {
        loop {
            if let Some(row) = self.buffer.pop_front() {
                let settle: Arc<dyn Settle> = self.settle.clone();
                return Some(Ok(Delivery::new(
                    row.message,
                    row.delivery_count > 1,
                    row.delivery_count,
                    self.queue.clone(),
                    row.seq,
                    settle,
                )));
            }
            let shared = self.shared.clone();
            let closed = shared.closed_notify.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if shared.closed.load(Ordering::Acquire) {
                return None;
            }
            self.settle.renew_if_due();

            let queue_notify = self.queue_notify.clone();
            let woken = queue_notify.notified();
            tokio::pin!(woken);
            // Whether our wake-up registration predates the lease query.
            let registered_before_query = self.pending.is_none();
            if self.pending.is_none() {
                let room = self.prefetch.saturating_sub(self.settle.outstanding_len());
                if room == 0 {
                    tokio::select! {
                        _ = self.settle.room.notified() => {}
                        _ = &mut closed => {}
                    }
                    continue;
                }
                woken.as_mut().enable();
                let (tx, rx) = oneshot::channel();
                let op = Op::Lease {
                    queue: self.queue.clone(),
                    owner: self.owner,
                    max: room,
                    reply: tx,
                };
                if shared.send(op).is_err() {
                    return None;
                }
                self.pending = Some(rx);
            }
            let answer = match self.pending.as_mut() {
                Some(rx) => rx.await,
                None => continue,
            };
            self.pending = None;
            let batch = match answer {
                Err(_) => return None, // the writer stopped: closed
                Ok(Err(e)) => return Some(Err(e)),
                Ok(Ok(b)) => b,
            };
            if !batch.rows.is_empty() {
                let mut outstanding = self
                    .settle
                    .outstanding
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                for row in batch.rows {
                    // A lease of ours that expired and came back to us is still in hand.
                    if outstanding.insert(row.seq) {
                        self.buffer.push_back(row);
                    }
                }
                continue;
            }
            if !registered_before_query {
                // A publish may have been signalled before we listened: ask again.
                continue;
            }
            let cap = shared.opts.lease_ttl;
            let wait = match batch.next_due_ms {
                Some(due) => {
                    Duration::from_millis(due.saturating_sub(now_ms() as i64).max(1) as u64)
                        .min(cap)
                }
                None => cap,
            };
            tokio::select! {
                _ = &mut woken => {}
                _ = &mut closed => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
