//! Singleton jobs: periodic work that must run on one gateway instance at a time (catalogue
//! sync, online poll, payment notices and reconciliation, evidence retention and
//! time-stamping), however many instances share the broker and the store.
//!
//! # Invariants
//!
//! 1. **A tick runs only under leadership.** [`Singleton::tick`] first keeps or takes the job's
//!    leadership ([`gw_store::Store::try_lead`]: a PostgreSQL advisory lock with a lease, or
//!    always granted on SQLite, whose data directory admits one process). Not leading: the tick
//!    is skipped and counted `skipped_not_leader`.
//! 2. **Lost leadership stops the work.** A guard that reports the loss (its connection died,
//!    its lease was not renewed) is dropped before the next tick, and a tick in progress is
//!    abandoned within [`LOSS_CHECK`] of the loss (counted `failed`): another instance may
//!    already lead. Each job's steps are idempotent (confirmed publishes keyed by the
//!    dossier/notice, archived-then-pruned evidence), so an abandoned tick is finished by the
//!    next leader, never half-applied for good.
//! 3. **One place per fact.** `gateway_job_runs_total{job,outcome}` (outcome `ran`,
//!    `skipped_not_leader`, `failed`) and `gateway_job_leader{job}` (1 while this instance
//!    leads) are set here only; `job` is the job's fixed name, never data.
//! 5. The service-quality index's consumer ([`indicators`]) is not a singleton tick: it
//!    consumes a queue of its own with a single active consumer (the broker picks the one
//!    instance), so it needs no store leadership.
//! 4. Leadership is released when the [`Singleton`] is dropped (the job's task ended, e.g. at
//!    shutdown), so a standby takes over on its next tick.

pub mod agency_replay;
pub mod axis;
pub mod catalogue;
mod error;
pub mod evidence;
pub mod feeds;
pub mod indicators;
pub mod online;
pub mod payments;
pub mod signatures;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gw_store::{LeadGuard, Store};
use tracing::{info, warn};

use crate::telemetry::metrics::Metrics;

pub use error::JobError;

/// Why a tick under leadership failed: the job's own error, or the leadership lost mid-run.
#[derive(Debug, thiserror::Error)]
pub enum TickError<E> {
    /// The job's work failed (its message as is).
    #[error("{0}")]
    Failed(E),
    /// The leadership was lost while the work ran; the work was dropped.
    #[error("leadership lost while the job ran; the tick was abandoned")]
    LeadershipLost,
}

/// The lease a leader holds without renewing (renewed every third of it while the store
/// connection lives). A frozen leader blocks its job at most this long.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// How often a running tick checks that leadership still holds.
pub const LOSS_CHECK: Duration = Duration::from_millis(500);

/// The fixed job names (metric label values).
pub const CATALOGUE_SYNC: &str = "catalogue-sync";
pub const ONLINE_POLL: &str = "online-poll";
pub const PAYMENTS: &str = "payments";
pub const EVIDENCE_RETENTION: &str = "evidence-retention";
pub const EVIDENCE_TIMESTAMP: &str = "evidence-timestamp";
pub const SIGNATURES: &str = "signatures";
pub const FEED_RETENTION: &str = "feed-retention";

/// One singleton job's leadership, held across its ticks.
pub struct Singleton {
    /// The job's name: metric label and, unless [`Singleton::with_key`], the lock's name.
    job: &'static str,
    /// What leadership is taken on (e.g. one evidence chain's time-stamping).
    key: String,
    /// This instance, as operators see it in `pg_stat_activity`.
    holder: String,
    lease: Duration,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    guard: Option<LeadGuard>,
    /// When leadership was last asked for: a standby asks at most once per third of the
    /// lease (each ask is a database connection), so its take-over comes within that.
    last_try: Option<std::time::Instant>,
}

impl Singleton {
    pub fn new(
        job: &'static str,
        holder: &str,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.set_job_leader(job, false);
        Self {
            job,
            key: job.to_string(),
            holder: holder.to_string(),
            lease: DEFAULT_LEASE,
            store,
            metrics,
            state: tokio::sync::Mutex::new(State::default()),
        }
    }

    /// The job of an engine's store and metrics.
    pub fn for_engine(job: &'static str, engine: &crate::runtime::Engine, holder: &str) -> Self {
        Self::new(job, holder, engine.store.clone(), engine.metrics.clone())
    }

    /// Lead on `key` instead of the job's name (several independent instances of one job).
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }

    /// Another lease (tests; at least 3 s on PostgreSQL).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    pub fn job(&self) -> &'static str {
        self.job
    }

    /// Keep or take the leadership; `true` while this instance leads. The leader gauge follows.
    pub async fn lead(&self) -> bool {
        let mut state = self.state.lock().await;
        if state.guard.as_ref().is_some_and(|g| !g.is_leading()) {
            warn!(
                job = self.job,
                "leadership lost; this instance stops running the job"
            );
            state.guard = None;
        }
        let due = state.last_try.is_none_or(|t| t.elapsed() >= self.lease / 3);
        if state.guard.is_none() && due {
            state.last_try = Some(std::time::Instant::now());
            match self
                .store
                .try_lead(&self.key, &self.holder, self.lease)
                .await
            {
                Ok(Some(g)) => {
                    info!(job = self.job, "this instance now runs the job");
                    state.guard = Some(g);
                }
                Ok(None) => {}
                Err(e) => warn!(job = self.job, error = %e, "cannot ask for the job's leadership"),
            }
        }
        let leading = state.guard.is_some();
        self.metrics.set_job_leader(self.job, leading);
        leading
    }

    /// Whether the leadership held now is still valid (without trying to take it).
    async fn still_leading(&self) -> bool {
        self.state
            .lock()
            .await
            .guard
            .as_ref()
            .is_some_and(|g| g.is_leading())
    }

    /// Run one tick under leadership: `None` when skipped (not the leader), else its result.
    /// A tick whose leadership is lost while it runs is abandoned (dropped) and fails.
    pub async fn tick<T, E, Fut>(
        &self,
        work: impl FnOnce() -> Fut,
    ) -> Option<Result<T, TickError<E>>>
    where
        Fut: Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        if !self.lead().await {
            self.metrics.inc_job_run(self.job, "skipped_not_leader");
            return None;
        }
        let run = work();
        tokio::pin!(run);
        let result = loop {
            tokio::select! {
                r = &mut run => break r.map_err(TickError::Failed),
                _ = tokio::time::sleep(LOSS_CHECK) => {
                    if !self.still_leading().await {
                        break Err(TickError::LeadershipLost);
                    }
                }
            }
        };
        let outcome = if result.is_ok() { "ran" } else { "failed" };
        self.metrics.inc_job_run(self.job, outcome);
        if result.is_err() && !self.still_leading().await {
            self.metrics.set_job_leader(self.job, false);
        }
        Some(result)
    }

    /// Give the leadership up now (shutdown); a standby takes it on its next tick.
    pub async fn step_down(&self) {
        self.state.lock().await.guard = None;
        self.metrics.set_job_leader(self.job, false);
    }
}
