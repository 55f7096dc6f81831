//! The recorder: one task that writes the ledger for every lane.
//!
//! # Invariants
//! - A lane's [`Recorder::record`] resolves only when its batch is durable (or failed): the
//!   lane acks after that, never before.
//! - Requests waiting together are merged into one transaction (at most [`MAX_MERGE`]); when a
//!   merged write fails, each request is written alone, so one bad batch never fails its
//!   neighbours.
//! - No batch is copied: the requests' records are moved into the merged batch in arrival
//!   order, the store borrows it ([`Store::record_shared`]), and after a failed merged write
//!   it is split back into the requests by their counts. A failed write hands its batch back
//!   ([`Unrecorded`]), so a caller that tries again needs no copy either.
//! - What it did is counted ([`RecorderStats`]) and rendered as metrics at scrape time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use gw_store::{AcceptedVersion, Batch, Store};
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

/// A write that did not happen: why, and the batch handed back (`None` only when the
/// recorder stopped while holding it).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Unrecorded {
    pub error: RecordError,
    pub batch: Option<Batch>,
}

type Done = oneshot::Sender<Result<(), Unrecorded>>;

struct RecordReq {
    batch: Batch,
    done: Done,
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

    /// Record a batch; resolves when it is durable. On failure the batch comes back.
    pub async fn record(&self, batch: Batch) -> Result<(), Unrecorded> {
        let (done, wait) = oneshot::channel();
        if let Err(refused) = self.tx.send(RecordReq { batch, done }).await {
            return Err(Unrecorded {
                error: RecordError::Stopped,
                batch: Some(refused.0.batch),
            });
        }
        wait.await.unwrap_or(Err(Unrecorded {
            error: RecordError::Stopped,
            batch: None,
        }))
    }

    /// Note the newest accepted versions of keys for coalescing, without waiting for the
    /// write: it only lets older queued snapshots be skipped, so missing it costs a redundant
    /// send, never a loss (a failure is logged at debug).
    pub fn note_accepted(&self, accepted: Vec<AcceptedVersion>) {
        if accepted.is_empty() {
            return;
        }
        let recorder = self.clone();
        tokio::spawn(async move {
            let batch = Batch {
                accepted,
                ..Default::default()
            };
            if let Err(e) = recorder.record(batch).await {
                debug!(error = %e, "noting the accepted version failed");
            }
        });
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

/// How many records of each kind one request put into a merged batch.
#[derive(Clone, Copy)]
struct Counts([usize; 6]);

impl Counts {
    fn of(b: &Batch) -> Self {
        Counts([
            b.outcomes.len(),
            b.attempts.len(),
            b.dead_letters.len(),
            b.accepted.len(),
            b.evidence.len(),
            b.releases.len(),
        ])
    }
}

/// The requests' batches moved into one, in arrival order; their counts and answers beside.
fn merge(reqs: Vec<RecordReq>) -> (Batch, Vec<(Counts, Done)>) {
    let mut merged = Batch::default();
    let mut parts = Vec::with_capacity(reqs.len());
    for RecordReq { mut batch, done } in reqs {
        parts.push((Counts::of(&batch), done));
        merged.outcomes.append(&mut batch.outcomes);
        merged.attempts.append(&mut batch.attempts);
        merged.dead_letters.append(&mut batch.dead_letters);
        merged.accepted.append(&mut batch.accepted);
        merged.evidence.append(&mut batch.evidence);
        merged.releases.append(&mut batch.releases);
    }
    (merged, parts)
}

/// Undo [`merge`]: the batch of each request, in order, by its counts.
fn split(mut merged: Batch, counts: &[Counts]) -> Vec<Batch> {
    fn tail<T>(v: &mut Vec<T>, n: usize) -> Vec<T> {
        v.split_off(v.len().saturating_sub(n))
    }
    let mut out: Vec<Batch> = counts
        .iter()
        .rev()
        .map(|Counts([o, a, d, acc, e, r])| Batch {
            outcomes: tail(&mut merged.outcomes, *o),
            attempts: tail(&mut merged.attempts, *a),
            dead_letters: tail(&mut merged.dead_letters, *d),
            accepted: tail(&mut merged.accepted, *acc),
            evidence: tail(&mut merged.evidence, *e),
            releases: tail(&mut merged.releases, *r),
        })
        .collect();
    out.reverse();
    out
}

/// The batch back from the store after a failed write (the store dropped its reference when
/// its call returned; a copy only if it still holds one).
fn take_back(shared: Arc<Batch>) -> Batch {
    Arc::try_unwrap(shared).unwrap_or_else(|still| (*still).clone())
}

/// Write one request's batch alone; on failure the batch goes back with the error.
async fn write_alone(store: &dyn Store, batch: Batch) -> Result<(), Unrecorded> {
    let shared = Arc::new(batch);
    store
        .record_shared(shared.clone())
        .await
        .map_err(|e| Unrecorded {
            error: RecordError::Store(e.to_string()),
            batch: Some(take_back(shared)),
        })
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
        let merged_count = reqs.len() as u64;
        let (merged, parts) = merge(reqs);
        let merged = Arc::new(merged);
        let started = std::time::Instant::now();
        let result = store.record_shared(merged.clone()).await;
        stats.writes.fetch_add(1, Relaxed);
        stats.merged.fetch_add(merged_count, Relaxed);
        stats
            .micros
            .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
        match result {
            Ok(()) => {
                drop(merged);
                for (_, done) in parts {
                    let _ = done.send(Ok(()));
                }
            }
            Err(e) => {
                let counts: Vec<Counts> = parts.iter().map(|(c, _)| *c).collect();
                let batches = split(take_back(merged), &counts);
                if parts.len() > 1 {
                    // One bad batch must not fail its neighbours: write them one by one.
                    debug!(error = %e, n = parts.len(), "merged ledger write failed; writing one by one");
                    for ((_, done), batch) in parts.into_iter().zip(batches) {
                        let _ = done.send(write_alone(store.as_ref(), batch).await);
                    }
                } else {
                    for ((_, done), batch) in parts.into_iter().zip(batches) {
                        let _ = done.send(Err(Unrecorded {
                            error: RecordError::Store(e.to_string()),
                            batch: Some(batch),
                        }));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gw_store::{AcceptedVersion, ClaimRelease};

    fn accepted(key: &str, version: i64) -> AcceptedVersion {
        AcceptedVersion {
            route: "r".into(),
            key: key.into(),
            version,
        }
    }

    fn release(key: &str) -> ClaimRelease {
        ClaimRelease {
            destination: "d".into(),
            key: key.into(),
            holder: "h".into(),
            ledger_id: key.into(),
            natural_key: None,
            resolution: None,
        }
    }

    #[test]
    fn split_gives_each_request_its_own_records_back_in_order() {
        let a = Batch {
            accepted: vec![accepted("a", 1), accepted("a", 2)],
            releases: vec![release("a")],
            ..Default::default()
        };
        let b = Batch::default();
        let c = Batch {
            accepted: vec![accepted("c", 7)],
            releases: vec![release("c1"), release("c2")],
            ..Default::default()
        };
        let originals = vec![a.clone(), b.clone(), c.clone()];
        let reqs: Vec<RecordReq> = originals
            .iter()
            .cloned()
            .map(|batch| RecordReq {
                batch,
                done: oneshot::channel().0,
            })
            .collect();
        let (merged, parts) = merge(reqs);
        let keys: Vec<&str> = merged.accepted.iter().map(|x| x.key.as_str()).collect();
        assert_eq!(keys, ["a", "a", "c"], "arrival order kept");
        assert_eq!(merged.releases.len(), 3);
        let counts: Vec<Counts> = parts.iter().map(|(c, _)| *c).collect();
        let back = split(merged, &counts);
        assert_eq!(back.len(), 3);
        assert_eq!(back, originals);
    }
}
