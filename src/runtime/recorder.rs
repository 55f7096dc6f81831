//! The recorder: one task that writes the ledger for every lane.
//!
//! # Invariants
//! - A lane's [`Recorder::record`] resolves only when its batch is durable (or failed): the
//!   lane acks after that, never before.
//! - Requests waiting together are merged into one transaction (at most [`MAX_MERGE`]); when a
//!   merged write fails, each request is written alone, so one bad batch never fails its
//!   neighbours.
//! - What it did is counted ([`RecorderStats`]) and rendered as metrics at scrape time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use gw_store::{Batch, Store};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

/// Most lane requests merged into one transaction.
const MAX_MERGE: usize = 512;

/// Why a ledger write did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RecordError {
    /// The recorder task is gone (shutdown).
    #[error("recorder stopped")]
    Stopped,
    /// The store refused or failed the transaction.
    #[error("{0}")]
    Store(String),
}

struct RecordReq {
    batch: Batch,
    done: oneshot::Sender<Result<(), RecordError>>,
}

/// Merges ledger writes of all lanes into short transactions.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<RecordReq>,
    pub(super) stats: Arc<RecorderStats>,
}

impl Recorder {
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::channel::<RecordReq>(4096);
        let stats = Arc::new(RecorderStats::default());
        tokio::spawn(recorder_loop(store, rx, stats.clone()));
        Recorder { tx, stats }
    }

    /// Record a batch; resolves when it is durable.
    pub async fn record(&self, batch: Batch) -> Result<(), RecordError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(RecordReq { batch, done })
            .await
            .map_err(|_| RecordError::Stopped)?;
        wait.await.map_err(|_| RecordError::Stopped)?
    }
}

/// What the recorder did: its transactions, the lane requests they merged, the time spent.
/// Rendered as `gateway_ledger_writes_total`, `gateway_ledger_write_requests_total` and
/// `gateway_ledger_write_seconds_total`: their ratios are the mean merge size and write time,
/// and the seconds' rate is how busy the single writer is (near 1: the store is the limit).
#[derive(Default)]
pub struct RecorderStats {
    writes: AtomicU64,
    merged: AtomicU64,
    micros: AtomicU64,
}

impl RecorderStats {
    pub(super) fn render(&self) -> String {
        let mut out = String::new();
        for (name, help, value) in [
            (
                "gateway_ledger_writes_total",
                "Ledger transactions written by the recorder.",
                self.writes.load(Relaxed) as f64,
            ),
            (
                "gateway_ledger_write_requests_total",
                "Lane requests merged into those transactions.",
                self.merged.load(Relaxed) as f64,
            ),
            (
                "gateway_ledger_write_seconds_total",
                "Time spent writing them (one writer: a rate near 1 means the store is the limit).",
                self.micros.load(Relaxed) as f64 / 1e6,
            ),
        ] {
            crate::telemetry::metrics::family(&mut out, name, "counter", help);
            out.push_str(&format!("{name} {value}\n"));
        }
        out
    }
}

/// All batches of `reqs` as one.
fn merge(reqs: &[RecordReq]) -> Batch {
    let mut merged = Batch::default();
    for r in reqs {
        merged.outcomes.extend(r.batch.outcomes.iter().cloned());
        merged.attempts.extend(r.batch.attempts.iter().cloned());
        merged
            .dead_letters
            .extend(r.batch.dead_letters.iter().cloned());
        merged.accepted.extend(r.batch.accepted.iter().cloned());
        merged.evidence.extend(r.batch.evidence.iter().cloned());
        merged.releases.extend(r.batch.releases.iter().cloned());
    }
    merged
}

async fn recorder_loop(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<RecordReq>,
    stats: Arc<RecorderStats>,
) {
    while let Some(first) = rx.recv().await {
        let mut reqs = vec![first];
        while reqs.len() < MAX_MERGE {
            match rx.try_recv() {
                Ok(r) => reqs.push(r),
                Err(_) => break,
            }
        }
        let merged = merge(&reqs);
        let started = std::time::Instant::now();
        let merged_count = reqs.len() as u64;
        let result = store.record(merged).await;
        stats.writes.fetch_add(1, Relaxed);
        stats.merged.fetch_add(merged_count, Relaxed);
        stats
            .micros
            .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
        match result {
            Ok(()) => {
                for r in reqs {
                    let _ = r.done.send(Ok(()));
                }
            }
            Err(e) if reqs.len() > 1 => {
                // One bad batch must not fail its neighbours: write them one by one.
                debug!(error = %e, n = reqs.len(), "merged ledger write failed; writing one by one");
                for r in reqs {
                    let res = store
                        .record(r.batch)
                        .await
                        .map_err(|e| RecordError::Store(e.to_string()));
                    let _ = r.done.send(res);
                }
            }
            Err(e) => {
                for r in reqs {
                    let _ = r.done.send(Err(RecordError::Store(e.to_string())));
                }
            }
        }
    }
}
