//! Lanes: a route queue's deliveries dispatched by key to sequential workers, and how a
//! delivery is settled with the broker.
//!
//! # Invariants
//! - **One key at a time, in order.** A delivery goes to lane `stable_hash(key) % lanes`; a
//!   lane handles its deliveries one after another.
//! - **Record, then ack.** A lane settles a delivery ([`Settlement`]) only after handling has
//!   recorded what it decided ([`super::context`]).
//! - While the route's circuit is open the queue is not read: the backlog stays in the broker.
//! - A panic while handling one message dead-letters that message; the lane goes on.
//! - A delivery of a closed channel is dropped unhandled (the broker redelivers it).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use gw_broker::Delivery;
use tokio::sync::mpsc;
use tracing::{debug, error, warn};

use super::context::{Ctx, Settlement};
use super::route::stable_hash;

/// Read one route queue and dispatch its deliveries to `concurrency` lanes by key.
pub(super) async fn consume_queue(
    ctx: Arc<Ctx>,
    mut consumer: Box<dyn gw_broker::Consumer>,
    concurrency: usize,
) {
    let mut lanes = Vec::with_capacity(concurrency);
    let mut lane_tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (tx, rx) = mpsc::channel::<Delivery>(64);
        lanes.push(tx);
        lane_tasks.spawn(run_lane(ctx.clone(), rx));
    }
    loop {
        // While the destination's circuit is open, take nothing more from the queue: the
        // backlog waits in the broker instead of being leased and deferred.
        let paused = ctx.route.circuit.paused_for();
        if !paused.is_zero() {
            tokio::select! {
                _ = ctx.cancel.cancelled() => break,
                _ = tokio::time::sleep(paused) => {}
            }
            continue;
        }
        let next = tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            n = consumer.next() => n,
        };
        match next {
            Some(Ok(d)) => {
                let lane = (stable_hash(&d.message.key) % lanes.len() as u64) as usize;
                if lanes[lane].send(d).await.is_err() {
                    break;
                }
            }
            Some(Err(e)) => {
                warn!(route = %ctx.route.name, error = %e, "consumer error; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            None => break,
        }
    }
    drop(lanes);
    drop(consumer);
    while lane_tasks.join_next().await.is_some() {}
}

async fn run_lane(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Delivery>) {
    while let Some(d) = rx.recv().await {
        if !d.is_live() {
            // Its consumer's channel is gone: the broker gives it again, maybe to another
            // instance (the queue's new single active consumer). Handling it here would race
            // that copy and could deliver a key's versions out of order.
            debug!(route = %ctx.route.name, envelope = %d.message.id, "delivery of a closed channel dropped unhandled; the broker redelivers it");
            continue;
        }
        if ctx.cancel.is_cancelled() {
            // Shutting down: hand unstarted work back at once.
            let _ = d.requeue().await;
            continue;
        }
        let settlement = match AssertUnwindSafe(super::handle::handle(&ctx, &d))
            .catch_unwind()
            .await
        {
            Ok(s) => s,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                dead_letter_panicked(&ctx, &d, what).await
            }
        };
        let res = match settlement {
            Settlement::Ack => d.ack().await,
            Settlement::Retry(headers, delay) => d.retry(headers, delay).await,
            Settlement::Leave => Ok(()),
        };
        if let Err(e) = res {
            warn!(route = %ctx.route.name, error = %e, "settling a delivery failed; the broker will redeliver it");
        }
    }
}

/// A bug met this message: dead-letter it (so the queue moves on and an operator sees it)
/// instead of crash-looping on it.
async fn dead_letter_panicked(ctx: &Ctx, d: &Delivery, what: String) -> Settlement {
    error!(route = %ctx.route.name, key = %d.message.key, envelope = %d.message.id, "handling panicked: {what}");
    super::dead_letter::dead_letter_at_once(
        ctx,
        d,
        format!("the gateway panicked while handling it: {what}"),
        crate::model::outcome::Reason::Panic,
    )
    .await
}
