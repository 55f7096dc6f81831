//! The gateway's durable store: delivery ledger, per-destination dossier versions, the
//! attempt trail and the dead letters. SQLite (the default, one file under the data
//! directory) and PostgreSQL (when several gateway instances share the work).
//!
//! # Invariants ([`suite`] holds the checks; `tests/sqlite.rs` and `tests/postgres.rs` run them)
//!
//! 1. **One outcome per (route, envelope id).** [`Store::record`] writes a whole batch in one
//!    transaction: either every row of the batch is durable or none is. Recording the same
//!    (route, envelope id) twice keeps the first final outcome (idempotent).
//! 2. **Natural-key idempotency.** When an outcome carries a natural key (e.g. dossier code +
//!    version), [`Store::natural_key_done`] answers `true` for it afterwards, whatever the
//!    envelope id was (two envelopes carrying the same effect are delivered once).
//! 3. **Versions only move forward.** The version stored for (destination, key) is the maximum
//!    of every delivered version; a lower one never overwrites a higher one.
//!    Likewise the **accepted version** stored for (route, key) is the maximum of every
//!    [`AcceptedVersion`] recorded (several for one key in one batch: the highest wins); it is
//!    written in the same transaction as the rest of the batch. [`Store::versions`] reads both
//!    (delivered for the destination, accepted for the route) in one round trip.
//! 4. **Dead letters keep the original envelope bytes** exactly as received, with the reason,
//!    the attempts, the last answer and timestamps. Replay and drop are recorded with who did it;
//!    replaying an already replayed (or dropped) dead letter is a no-op that says so.
//! 5. Migrations are idempotent and run at open.
//! 6. **Recording the same batch twice is the same as once** (a retry after a commit whose
//!    answer was lost): attempts are unique per (route, envelope id, attempt, at_ms), and a dead
//!    letter identical to the stored one is skipped. A *different* dead letter under an existing
//!    id is a bug upstream (ids are UUIDv7): [`Store::record`] returns [`StoreError::Query`] and
//!    no row of that batch is written.
//!
//! 8. **Claims** ([`claims`], migration 6): [`Store::claim`] holds (destination, key) for one
//!    exchange, checks the delivered version *after* taking the row lock, and notes an exchange
//!    whose holder died mid-send as *in doubt*; [`Batch::releases`] release claims in the same
//!    transaction as their outcome. See [`claims`] for the full list.
//!
//! 7. **Evidence records** ([`evidence`], migration 4) are appended to their hash chain in the
//!    same transaction as the rest of the batch, once per exchange key; see
//!    [`evidence::verify_chains`] for what verification detects.
//!
//! 8. **One leader per singleton job.** [`Store::try_lead`] hands a job's [`LeadGuard`] to one
//!    caller at a time across every process sharing the store. PostgreSQL: a session-level
//!    advisory lock held by a dedicated connection (see [`postgres`]); SQLite: the process
//!    is alone on its data directory (the gateway's data-directory lock), so it always leads.
//!
//! Orders: trails ([`Store::outcomes_by_key`], [`Store::attempts_by_key`]) are oldest first by
//! `at_ms`, then insertion order; [`Store::dead_letters`] is oldest first by `dead_at_ms`, then id.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub mod claims;
mod error;
pub mod evidence;
mod evidence_sql;
#[doc(hidden)]
pub mod evidence_suite;
pub mod payments;
pub mod postgres;
pub mod replay;
mod sql;
pub mod sqlite;

pub use claims::{Claim, ClaimRelease, ClaimRequest, InDoubt, InDoubtRow};
pub use error::{Result, StoreError};
pub use evidence::{ChainHead, EvidenceRecord, StoredEvidence, TimeStampRow};
#[doc(hidden)]
pub mod suite;

/// Final outcome of one envelope on one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The destination accepted it.
    Delivered,
    /// Not sent: the destination already has this dossier at the same or a newer version.
    Superseded,
    /// Moved to the dead letters (permanent refusal or retry budget exhausted).
    DeadLettered,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Superseded => "superseded",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "delivered" => Some(Outcome::Delivered),
            "superseded" => Some(Outcome::Superseded),
            "dead_lettered" => Some(Outcome::DeadLettered),
            _ => None,
        }
    }
}

/// A final outcome to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    pub route: String,
    /// The destination adapter (versions are tracked per destination).
    pub destination: String,
    pub envelope_id: String,
    /// Ordering key (dossier code).
    pub key: String,
    /// Envelope kind, e.g. `dossier.upserted`.
    pub kind: String,
    /// The party's natural key of the effect, e.g. `DOSSIER-CODE@7`.
    pub natural_key: Option<String>,
    /// Dossier version delivered (moves the destination's version forward when delivered).
    pub version: Option<i64>,
    pub outcome: Outcome,
    /// Attempts made, including the last one.
    pub attempts: u32,
    /// HTTP status of the last answer, if there was one.
    pub status: Option<u16>,
    /// Reason / last answer summary (no personal data).
    pub detail: String,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// One attempt (for the trail): every try, failed or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub route: String,
    pub envelope_id: String,
    pub key: String,
    pub attempt: u32,
    /// `delivered`, `retry`, `permanent`, `superseded`, `skipped_duplicate` …
    pub result: String,
    pub status: Option<u16>,
    pub reason: String,
    pub latency_ms: u32,
    pub at_ms: i64,
}

/// A dead letter to store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDeadLetter {
    /// Dead-letter id (a UUIDv7 as text).
    pub id: String,
    pub route: String,
    /// The queue the original came from (replay publishes there).
    pub queue: String,
    pub envelope_id: String,
    pub key: String,
    pub kind: String,
    /// The original envelope, byte for byte.
    pub envelope: Vec<u8>,
    pub reason: String,
    pub attempts: u32,
    pub last_status: Option<u16>,
    /// The last answer, truncated by the caller, no personal data.
    pub last_answer: String,
    pub first_attempt_ms: i64,
    pub dead_at_ms: i64,
}

/// State of a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterState {
    Open,
    Replayed,
    Dropped,
}

impl DeadLetterState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterState::Open => "open",
            DeadLetterState::Replayed => "replayed",
            DeadLetterState::Dropped => "dropped",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "replayed" => Some(Self::Replayed),
            "dropped" => Some(Self::Dropped),
            _ => None,
        }
    }
}

/// A stored dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    #[serde(flatten)]
    pub letter: NewDeadLetter,
    pub state: DeadLetterState,
    /// Who replayed or dropped it, and when (unix ms).
    pub settled_by: Option<String>,
    pub settled_at_ms: Option<i64>,
}

/// Filter for listing dead letters. Empty fields match everything; `limit: 0` means no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    pub route: Option<String>,
    pub key: Option<String>,
    pub state: Option<DeadLetterState>,
    pub limit: u32,
}

/// What happened when settling (replay / drop) a dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// This call changed the state; the caller must now do the effect (publish for replay).
    Changed(DeadLetter),
    /// It was already replayed or dropped: nothing changed.
    AlreadySettled(DeadLetter),
    NotFound,
}

/// A ledger row as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRow {
    #[serde(flatten)]
    pub record: OutcomeRecord,
}

/// A version of a key that was accepted (durably queued) for a route: the newest one queued.
/// Used to coalesce a backlog: an older queued snapshot is superseded by a newer one that is
/// already queued for the same route, without being sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedVersion {
    pub route: String,
    pub key: String,
    pub version: i64,
}

/// What is known of a key's versions for one route and its destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Versions {
    /// The highest version delivered to the destination.
    pub delivered: Option<i64>,
    /// The highest version accepted (queued) for the route.
    pub accepted: Option<i64>,
}

/// Everything recorded in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub outcomes: Vec<OutcomeRecord>,
    pub attempts: Vec<AttemptRecord>,
    pub dead_letters: Vec<NewDeadLetter>,
    /// Accepted versions: each raises (route, key) to max(old, new), like delivered versions.
    pub accepted: Vec<AcceptedVersion>,
    /// Evidence records, appended to their chains in the same transaction (see [`evidence`]).
    pub evidence: Vec<EvidenceRecord>,
    /// Claims to release (and their exchanges' in-doubt rows to settle), in the same
    /// transaction as the outcomes (see [`claims`]).
    pub releases: Vec<ClaimRelease>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
            && self.attempts.is_empty()
            && self.dead_letters.is_empty()
            && self.accepted.is_empty()
            && self.evidence.is_empty()
            && self.releases.is_empty()
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn kind(&self) -> &'static str;

    /// Write a batch in one transaction (see invariants 1-3 and 6), accepted versions included.
    async fn record(&self, batch: Batch) -> Result<()>;

    /// The final outcome already recorded for (route, envelope id), if any.
    async fn outcome(&self, route: &str, envelope_id: &str) -> Result<Option<OutcomeRecord>>;

    /// Whether an effect with this natural key was already delivered to `destination`.
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

    /// Hold (destination, key) for one exchange before sending it: a conditional write under a
    /// row lock that refuses while another holder's lease is live ([`Claim::Busy`]), when the
    /// destination already has this version or newer ([`Claim::Older`]) or the natural key is
    /// delivered ([`Claim::Done`]), and reports an earlier send of this very exchange that was
    /// never recorded ([`Claim::Granted::in_doubt`]). See [`claims`].
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
    /// instances ([`replay`]).
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

/// Open a store from a URL: `postgres://…` / `postgresql://…` for PostgreSQL, `sqlite:PATH`
/// (or a bare path) for SQLite. Runs migrations.
///
/// A PostgreSQL URL may carry `schema=NAME` among its query parameters: the store then lives in
/// that schema (created if missing), see [`postgres::PgStore::connect`].
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::connect(url).await?))
    } else {
        let path = url.strip_prefix("sqlite:").unwrap_or(url).to_owned();
        // Opening creates the file and migrates it: keep that disk work off the async threads.
        let store = tokio::task::spawn_blocking(move || sqlite::SqliteStore::open(path))
            .await
            .map_err(|e| StoreError::Open(format!("sqlite open task failed: {e}")))??;
        Ok(Arc::new(store))
    }
}

/// Now as unix milliseconds (for `applied_at_ms` in the migration tables).
pub(crate) fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}
