//! The writer thread ([`Writer`]): owns the only connection and runs every waiting request
//! in one transaction, one fsync (group commit).
//!
//! # Invariants
//!
//! - Answers go out after COMMIT; a failed commit turns every answer of the batch into an
//!   error, so no caller hears `Ok` for work that was rolled back.
//! - Consumers of a queue are woken after a commit that added or freed messages there.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::batch::Ctx;
use super::schema::load_limits;
use super::shared::{Op, Shared};
use crate::*;

pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) rx: mpsc::Receiver<Op>,
    pub(super) shared: Arc<Shared>,
    /// Declared queues and their delivery limits (0 = none), mirrored from `queues`.
    pub(super) limits: HashMap<String, u32>,
    /// Consumer ids of this process; leases left by earlier processes were released at open.
    pub(super) next_owner: u64,
    pub(super) lease_ttl_ms: i64,
    pub(super) max_batch: usize,
}

impl Writer {
    pub(super) fn run(mut self) {
        let mut stop_waiters = Vec::new();
        let mut stopping = false;
        while !stopping {
            let Ok(first) = self.rx.recv() else { break };
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.run_batch(batch, &mut stopping, &mut stop_waiters);
        }
        // Requests sent after the shutdown are dropped; their callers see `Closed`.
        self.shared.closed.store(true, Ordering::Release);
        let Writer {
            conn, rx, shared, ..
        } = self;
        drop(rx);
        if let Err((_, e)) = conn.close() {
            tracing::warn!(error = %e, "embedded queue: closing the file failed");
        }
        shared.wake_all();
        for w in stop_waiters {
            let _ = w.send(());
        }
    }

    pub(super) fn run_batch(
        &mut self,
        batch: Vec<Op>,
        stopping: &mut bool,
        stop_waiters: &mut Vec<oneshot::Sender<()>>,
    ) {
        let now = now_ms() as i64;
        let mut replies = Vec::with_capacity(batch.len());
        let mut touched: HashSet<String> = HashSet::new();
        let outcome = (|| -> rusqlite::Result<()> {
            let tx = self.conn.transaction()?;
            let mut ctx = Ctx {
                tx: &tx,
                limits: &mut self.limits,
                next_owner: &mut self.next_owner,
                lease_ttl_ms: self.lease_ttl_ms,
                now,
                touched: &mut touched,
            };
            for op in batch {
                if let Op::Shutdown { reply } = op {
                    *stopping = true;
                    stop_waiters.extend(reply);
                    // Whatever follows in this batch was sent after the shutdown: dropped.
                    break;
                }
                ctx.apply(op, &mut replies)?;
            }
            tx.commit()
        })();
        let failed = match outcome {
            Ok(()) => None,
            Err(e) => {
                tracing::error!(error = %e, "embedded queue: a batch failed and was rolled back");
                // The in-memory mirror may hold declarations that were rolled back.
                if let Ok(limits) = load_limits(&self.conn) {
                    self.limits = limits;
                }
                Some(format!("the embedded queue transaction failed: {e}"))
            }
        };
        for r in replies {
            r.send(failed.as_deref());
        }
        for q in touched {
            self.shared.notifier(&q).notify_waiters();
        }
    }
}
