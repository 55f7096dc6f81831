//! What the broker, its consumers and their settle handles share ([`Shared`]), and the
//! requests they send to the writer thread ([`Op`]) with their answers ([`Reply`]).
//!
//! # Invariants
//!
//! - After close began, every new request fails with [`BrokerError::Closed`].
//! - A caller hears back only after its request's batch committed (or failed as a whole).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;

use tokio::sync::{oneshot, Notify};

use super::options::EmbeddedOptions;
use crate::*;

/// State the broker, its consumers and their settle handles share.
pub(super) struct Shared {
    /// Requests to the writer thread.
    pub(super) tx: mpsc::Sender<Op>,
    /// Set once close began: new requests fail with [`BrokerError::Closed`].
    pub(super) closed: AtomicBool,
    /// Wakes consumers when the broker closes.
    pub(super) closed_notify: Notify,
    /// One wake-up per queue, signalled after a commit adds or frees messages there.
    pub(super) notifiers: Mutex<HashMap<String, Arc<Notify>>>,
    pub(super) opts: EmbeddedOptions,
}

impl Shared {
    pub(super) fn send(&self, op: Op) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(BrokerError::Closed);
        }
        self.tx.send(op).map_err(|_| BrokerError::Closed)
    }

    pub(super) fn notifier(&self, queue: &str) -> Arc<Notify> {
        let mut map = self.notifiers.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(queue.to_string()).or_default().clone()
    }

    pub(super) fn wake_all(&self) {
        self.closed_notify.notify_waiters();
        let map = self.notifiers.lock().unwrap_or_else(|e| e.into_inner());
        for n in map.values() {
            n.notify_waiters();
        }
    }

    /// Send a request and wait for its answer (after COMMIT).
    pub(super) async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Op,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await.map_err(|_| BrokerError::Closed)?
    }
}

/// One leased message, as the writer hands it to a consumer.
pub(super) struct Leased {
    pub(super) seq: u64,
    pub(super) message: Message,
    pub(super) delivery_count: u32,
}

/// What a lease request returns.
pub(super) struct LeaseBatch {
    pub(super) rows: Vec<Leased>,
    /// When nothing was visible: the unix ms at which the next delayed message or lease of
    /// the queue comes due.
    pub(super) next_due_ms: Option<i64>,
}

/// A request to the writer thread.
pub(super) enum Op {
    Declare {
        specs: Vec<QueueSpec>,
        reply: oneshot::Sender<Result<()>>,
    },
    Publish {
        queue: String,
        msgs: Vec<Message>,
        reply: oneshot::Sender<Result<()>>,
    },
    Subscribe {
        queue: String,
        reply: oneshot::Sender<Result<u64>>,
    },
    Lease {
        queue: String,
        owner: u64,
        max: usize,
        reply: oneshot::Sender<Result<LeaseBatch>>,
    },
    Ack {
        seq: u64,
    },
    Retry {
        seq: u64,
        queue: String,
        msg: Message,
        delay: Duration,
        reply: oneshot::Sender<Result<()>>,
    },
    Reject {
        seq: u64,
        queue: String,
        msg: Message,
        reason: String,
        reply: oneshot::Sender<Result<()>>,
    },
    Requeue {
        seq: u64,
        owner: u64,
        queue: String,
    },
    /// Extend the leases of `seqs` still held by `owner` (only those its consumer still
    /// knows: see `ConsumerSettle::renew_if_due`).
    Renew {
        owner: u64,
        seqs: Vec<u64>,
    },
    Release {
        owner: u64,
        queue: String,
    },
    Stats {
        queue: String,
        reply: oneshot::Sender<Result<QueueStats>>,
    },
    Ping {
        reply: oneshot::Sender<Result<()>>,
    },
    Shutdown {
        reply: Option<oneshot::Sender<()>>,
    },
}

pub(super) fn storage(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Storage(e.to_string())
}

/// An answer to send once the batch's fate (commit or rollback) is known.
pub(super) enum Reply {
    Unit(oneshot::Sender<Result<()>>, Result<()>),
    Owner(oneshot::Sender<Result<u64>>, Result<u64>),
    Lease(oneshot::Sender<Result<LeaseBatch>>, Result<LeaseBatch>),
    Stats(oneshot::Sender<Result<QueueStats>>, Result<QueueStats>),
}

impl Reply {
    pub(super) fn send(self, failed: Option<&str>) {
        fn pick<T>(r: Result<T>, failed: Option<&str>) -> Result<T> {
            match (r, failed) {
                (Ok(_), Some(e)) => Err(BrokerError::Storage(e.to_string())),
                (r, _) => r,
            }
        }
        // A caller that gave up (dropped its receiver) is fine: the work is done.
        match self {
            Reply::Unit(tx, r) => drop(tx.send(pick(r, failed))),
            Reply::Owner(tx, r) => drop(tx.send(pick(r, failed))),
            Reply::Lease(tx, r) => drop(tx.send(pick(r, failed))),
            Reply::Stats(tx, r) => drop(tx.send(pick(r, failed))),
        }
    }
}
