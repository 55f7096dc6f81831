//! The [`Store`] trait both backends implement, and [`LeadGuard`], the leadership it hands out.
//!
//! # Invariants
//! - The trait's contract is the crate doc's list (one outcome per (route, envelope id),
//!   natural-key idempotency, versions only move forward, dead letters keep their bytes,
//!   claims, evidence chains, one leader per singleton job); [`crate::suite`] checks it on both
//!   backends.
//! - This file imports the row types ([`crate::records`], [`crate::claims`],
//!   [`crate::evidence_records`]), the error and the clock; never a backend, so the backends
//!   may import it.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::claims::{Claim, ClaimRequest, InDoubtRow};
use crate::clock::now_ms;
use crate::error::Result;
use crate::evidence_records::{ChainHead, StoredEvidence, TimeStampRow};
use crate::feeds::FeedStore;
use crate::records::{
    AttemptRecord, Batch, DeadLetter, DeadLetterFilter, OutcomeRecord, Settled, Versions,
    VersionsAsk,
};

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn kind(&self) -> &'static str;

    /// The pull feeds ([`crate::feeds`]) kept in this store, over the same connections.
    fn feeds(self: Arc<Self>) -> Arc<dyn FeedStore>;

    /// The push subscriptions' shared state ([`crate::subscriptions`]), over the same
    /// connections.
    fn subscription_states(self: Arc<Self>) -> Arc<dyn crate::subscriptions::SubscriptionStates>;

    /// Write a batch in one transaction (see invariants 1-3 and 6), accepted versions included.
    async fn record(&self, batch: Batch) -> Result<()> {
        self.record_shared(Arc::new(batch)).await
    }

    /// [`Store::record`] of a shared batch: the caller keeps its reference, so after a failure
    /// it still has the batch (the runtime's recorder splits a failed merged batch back into
    /// its requests without having copied them first).
    async fn record_shared(&self, batch: Arc<Batch>) -> Result<()>;

    /// The final outcome already recorded for (route, envelope id), if any.
    async fn outcome(&self, route: &str, envelope_id: &str) -> Result<Option<OutcomeRecord>>;

    /// Whether an effect with this natural key was already delivered to `destination`; for a
    /// version's key (`KEY@v`), whether version v or a newer one was ([`crate::natural_keys`]).
    async fn natural_key_done(&self, destination: &str, natural_key: &str) -> Result<bool>;

    /// The highest version delivered to `destination` for `key`.
    async fn delivered_version(&self, destination: &str, key: &str) -> Result<Option<i64>>;

    /// The delivered version (for `destination`) and the accepted version (for `route`) of a
    /// key, in one read. The default reads only the delivered version; both stores override it.
    async fn versions(&self, route: &str, destination: &str, key: &str) -> Result<Versions> {
        let _ = route;
        Ok(Versions {
            delivered: self.delivered_version(destination, key).await?,
            accepted: None,
        })
    }

    /// [`Store::versions`] of many keys in one read (the runtime merges its lanes' reads):
    /// the answers in the order asked. The default asks one by one; both stores override it.
    async fn versions_many(&self, asks: &[VersionsAsk]) -> Result<Vec<Versions>> {
        let mut out = Vec::with_capacity(asks.len());
        for a in asks {
            out.push(self.versions(&a.route, &a.destination, &a.key).await?);
        }
        Ok(out)
    }

    /// [`Store::claim`] of many requests (the runtime merges its lanes' claims): the answers
    /// in the order asked, each the one that request would get if the requests were made one
    /// after another in that order (two for one (destination, key): the second is
    /// [`Claim::Busy`] behind the first). On `Err` some claims may have been granted: asking
    /// again with the same holders grants them again (a holder's own claim). The default asks
    /// one by one; both stores override it with one transaction.
    async fn claim_many(&self, reqs: &[ClaimRequest]) -> Result<Vec<Claim>> {
        let mut out = Vec::with_capacity(reqs.len());
        for r in reqs {
            out.push(self.claim(r).await?);
        }
        Ok(out)
    }

    /// Hold (destination, key) for one exchange before sending it: a conditional write under a
    /// row lock that refuses while another holder's lease is live ([`Claim::Busy`]), when the
    /// destination already has this version or newer ([`Claim::Older`]) or the natural key is
    /// delivered ([`Claim::Done`]), and reports an earlier send of this very exchange that was
    /// never recorded ([`Claim::Granted::in_doubt`]). See [`claims`](crate::claims).
    async fn claim(&self, req: &ClaimRequest) -> Result<Claim>;

    /// Heartbeat: push the caller's lease `lease_ms` further; `sending: true` also stamps the
    /// moment the send starts (once). `false` when the caller no longer holds the claim (its
    /// lease ran out and someone took over): it must not send.
    async fn extend_claim(
        &self,
        destination: &str,
        key: &str,
        holder: &str,
        lease_ms: i64,
        sending: bool,
    ) -> Result<bool>;

    /// Every exchange of a key found in doubt, resolved or not, oldest first (for operators).
    async fn in_doubt_by_key(&self, key: &str) -> Result<Vec<InDoubtRow>>;

    /// Every outcome recorded for a key (a dossier's trail), oldest first.
    async fn outcomes_by_key(&self, key: &str) -> Result<Vec<OutcomeRecord>>;

    /// Every attempt recorded for a key, oldest first.
    async fn attempts_by_key(&self, key: &str) -> Result<Vec<AttemptRecord>>;

    async fn dead_letters(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>>;
    async fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>>;
    /// Mark open → replayed by `who`. Only the call that changes the state gets `Changed`.
    async fn mark_replayed(&self, id: &str, who: &str, at_ms: i64) -> Result<Settled>;
    /// Mark open → dropped by `who`.
    async fn mark_dropped(&self, id: &str, who: &str, at_ms: i64) -> Result<Settled>;
    /// Count of open dead letters (for metrics).
    async fn open_dead_letters(&self) -> Result<u64>;

    /// Whether the store answers now (for `/readyz`).
    async fn ready(&self) -> bool;

    /// Remember an accepted signature until `expires_ms`: `true` when it was not already
    /// remembered (or its entry had expired by `now_ms`), `false` for a replay. Atomic across
    /// instances ([`replay`](crate::replay)).
    async fn remember_signature(
        &self,
        scope: &str,
        id: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<bool>;
    /// Forget one remembered signature (its request was not accepted after all, so the
    /// sender's retry with the same signature must pass).
    async fn release_signature(&self, scope: &str, id: &str) -> Result<()>;
    /// Remove remembered signatures that expired before `now_ms`; how many.
    async fn forget_signatures(&self, now_ms: i64) -> Result<u64>;

    /// Every evidence chain's head and anchor, by chain name.
    async fn evidence_heads(&self) -> Result<Vec<ChainHead>>;
    /// Up to `limit` records of `chain` with seq > `after_seq`, in seq order.
    async fn evidence_chain(
        &self,
        chain: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvidence>>;
    /// Every evidence record of a dossier, oldest first (chain, then seq).
    async fn evidence_by_dossier(&self, dossier: &str) -> Result<Vec<StoredEvidence>>;
    /// Store a time-stamp token over a chain head (a second one for the same (chain, seq) is
    /// ignored).
    async fn add_timestamp(&self, ts: TimeStampRow) -> Result<()>;
    /// The time-stamps of a chain, by seq.
    async fn timestamps(&self, chain: &str) -> Result<Vec<TimeStampRow>>;
    /// Retention: remove the records of `chain` up to `through_seq` (which the caller archived
    /// first) and make record `through_seq` the chain's anchor, in one transaction; time-stamps
    /// below the anchor go too. Returns the number of records removed.
    async fn evidence_prune(&self, chain: &str, through_seq: i64) -> Result<u64>;

    /// Try to become the one instance running the singleton job `job` (invariant 8):
    /// `Some(guard)` while this caller leads, `None` when another holder does. `holder` names
    /// this instance for operators; `lease` bounds how long a holder that stopped renewing
    /// (frozen, cut off) still counts as leading. Leadership ends when the guard is dropped.
    async fn try_lead(&self, job: &str, holder: &str, lease: Duration)
        -> Result<Option<LeadGuard>>;
}

/// Leadership of one singleton job, from [`Store::try_lead`]. Dropping it steps down.
///
/// [`LeadGuard::is_leading`] turns `false` for good when leadership was lost (the store
/// connection that held it died, or it was not renewed within the lease); the job must then
/// stop acting and try to lead again later.
pub struct LeadGuard {
    job: String,
    lost: Arc<AtomicBool>,
    /// Unix ms until which the lease is known held (renewed by the backend's keeper).
    until_ms: Arc<AtomicI64>,
    /// Whatever keeps the leadership (PostgreSQL: the session holding the advisory lock and
    /// its keeper task); dropped with the guard, which releases it.
    _hold: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for LeadGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeadGuard")
            .field("job", &self.job)
            .field("leading", &self.is_leading())
            .finish()
    }
}

impl LeadGuard {
    /// Built by store implementations: `lost` is set by whatever notices the loss, `until_ms`
    /// is moved forward on each renewal.
    pub fn new(
        job: &str,
        lost: Arc<AtomicBool>,
        until_ms: Arc<AtomicI64>,
        hold: Box<dyn Send + Sync>,
    ) -> Self {
        Self {
            job: job.to_string(),
            lost,
            until_ms,
            _hold: hold,
        }
    }

    /// A guard that leads for as long as it lives (a store that only one process can open).
    pub fn sole(job: &str) -> Self {
        Self::new(
            job,
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicI64::new(i64::MAX)),
            Box::new(()),
        )
    }

    /// The job led.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// Whether this instance still leads: not lost, and the lease renewed until later than now.
    pub fn is_leading(&self) -> bool {
        !self.lost.load(Ordering::SeqCst) && now_ms() < self.until_ms.load(Ordering::SeqCst)
    }
}
