//! The lane's context, shared by every step of handling a delivery, and what handling
//! decides for the broker.
//!
//! # Invariants
//! - **Record, then ack.** [`Ctx::settle`] answers [`Settlement::Ack`] only once the batch is
//!   durable; a store outage delays the ack ([`Ctx::record_patiently`]), never loses an
//!   outcome. Only a shutdown (or a recorder that stopped) gives up, and then the delivery is
//!   left unsettled ([`Settlement::Leave`]): the broker gives it back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gw_store::{Batch, Claim, ClaimRequest, Store, StoreError, Versions, VersionsAsk};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::batcher::Batcher;
use super::recorder::{Recorder, Unrecorded};
use super::route::Route;
use crate::telemetry::metrics::Metrics;

/// What to do with a delivery once handling is over. Handling borrows the delivery; the lane
/// settles it, so even a panic in handling leaves the lane able to settle.
pub(super) enum Settlement {
    Ack,
    Retry(BTreeMap<String, String>, Duration),
    /// Leave it unsettled (shutdown during a store outage): it comes back.
    Leave,
}

/// Everything a lane needs.
pub(super) struct Ctx {
    pub route: Arc<Route>,
    pub store: Arc<dyn Store>,
    pub recorder: Recorder,
    /// The lanes' versions reads, merged ([`gw_store::Store::versions_many`]).
    pub versions: Batcher<VersionsAsk, Versions>,
    /// The lanes' claims, merged ([`gw_store::Store::claim_many`]).
    pub claims: Batcher<ClaimRequest, Claim>,
    pub metrics: Arc<Metrics>,
    pub cancel: CancellationToken,
    pub evidence: Option<Arc<crate::evidence::EvidenceLog>>,
    /// This instance's name, the prefix of its claim holders.
    pub instance: String,
    pub claim_lease: Duration,
}

impl Ctx {
    /// Record with patience: a store outage delays the ack, never loses the outcome. Gives up
    /// only on shutdown (the delivery then stays unacked and comes back).
    /// The batch is not copied: a failed write hands it back for the next try. A recorder
    /// that stopped while holding it gives up at once (the delivery stays unacked).
    pub async fn record_patiently(&self, batch: Batch) -> bool {
        let mut wait = Duration::from_millis(50);
        let mut batch = batch;
        loop {
            match self.recorder.record(batch).await {
                Ok(()) => return true,
                Err(Unrecorded { error, batch: back }) => {
                    warn!(route = %self.route.name, error = %error, "ledger write failed; will retry");
                    let Some(back) = back else {
                        return false;
                    };
                    batch = back;
                    if self.cancel.is_cancelled() {
                        return false;
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Record `batch`, then count the outcome: `Ack` once durable, `Leave` on shutdown.
    pub async fn settle(&self, batch: Batch, outcome: &str, reason: &str) -> Settlement {
        if self.record_patiently(batch).await {
            self.metrics.inc_outcome(&self.route.name, outcome, reason);
            Settlement::Ack
        } else {
            Settlement::Leave
        }
    }

    /// A store read with the same patience; `None` only on shutdown.
    pub async fn store_read<T>(
        &self,
        f: impl Fn() -> futures::future::BoxFuture<'static, Result<T, StoreError>>,
    ) -> Option<T> {
        let mut wait = Duration::from_millis(50);
        loop {
            match f().await {
                Ok(v) => return Some(v),
                Err(e) => {
                    warn!(route = %self.route.name, error = %e, "store read failed; will retry");
                    if self.cancel.is_cancelled() {
                        return None;
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
