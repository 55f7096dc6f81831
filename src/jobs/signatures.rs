//! The signing flow's singleton job: every tick, one [`SignatureService::round`] (overdue
//! requests expired, sends in doubt resolved, due work done, due polls made per service,
//! outcomes published).
//!
//! # Invariants
//! - Runs on the instance leading the `signatures` job only ([`super::Singleton`]); the store's
//!   leases keep two instances off the same row anyway (a leader that lost its lease mid-round
//!   only repeats idempotent steps; the send guard keeps the submit single).
//! - The state is the store's: a round holds at most `batch` rows of each kind in memory and
//!   no task per request. A failed round is logged and the next tick starts from the store.
//! - A round that found a full batch of anything runs again at once (bounded by
//!   [`MAX_ROUNDS_PER_TICK`]), so a backlog drains without waiting a tick per batch.

use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::payments::NoticeSink;
use crate::signatures::{RoundReport, SignatureService};

/// Rounds run back to back in one tick while batches come back full.
pub const MAX_ROUNDS_PER_TICK: usize = 20;

/// One tick: rounds until one is not full (at most [`MAX_ROUNDS_PER_TICK`]).
pub async fn tick(
    service: &SignatureService,
    sink: &dyn NoticeSink,
) -> Result<RoundReport, gw_store::StoreError> {
    let batch = service.settings().batch as usize;
    let mut total = RoundReport::default();
    for _ in 0..MAX_ROUNDS_PER_TICK {
        let r = service.round(sink).await?;
        let full = [r.expired, r.in_doubt, r.worked, r.published, r.cancels]
            .into_iter()
            .any(|n| n >= batch);
        total.expired += r.expired;
        total.in_doubt += r.in_doubt;
        total.worked += r.worked;
        total.polled += r.polled;
        total.published += r.published;
        total.cancels += r.cancels;
        if !full {
            break;
        }
    }
    Ok(total)
}

/// Every `every`, a tick under leadership, until `cancel`.
pub async fn run(
    service: Arc<SignatureService>,
    sink: Arc<dyn NoticeSink>,
    every: Duration,
    lead: super::Singleton,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        let ran = lead.tick(|| tick(&service, sink.as_ref())).await;
        if let Some(Err(e)) = ran {
            warn!(error = %e, "signing round failed; the next tick resumes from the store");
        }
    }
    lead.step_down().await;
}
