//! The route runtime: consume → skip if already settled → supersede if older → translate, sign,
//! deliver (the connector) → classify → record → ack, retry or dead-letter.
//!
//! # Invariants
//! - **Record, then ack.** A delivery is acked only after its outcome (or, for a retry, the
//!   attempt and the durable re-publish) is stored. A crash anywhere before the ack redelivers
//!   the message; the ledger then recognises it, so the only duplicates a destination can see
//!   are those delivered and not yet recorded when the process died.
//! - **One key at a time, in order.** Deliveries are dispatched to `concurrency` lanes by a
//!   stable hash of their key; a lane handles its messages one after another, so two messages
//!   of one key never run at once and keep their queue order.
//! - **No older after newer.** A versioned envelope whose version is not above the version
//!   already delivered to the destination is recorded as *superseded* and not sent. (A retry
//!   that comes back after a newer version was delivered is therefore superseded too.) The
//!   check that counts is made under a **claim** on (destination, key) taken in the store
//!   before the send ([`gw_store::claims`]): held through the send (a heartbeat extends it every
//!   third of the lease), released in the transaction that records the outcome. So even two
//!   instances handed one dossier's versions during a take-over never send an older one after a
//!   newer one. A delivery that finds another holder's lease live is *deferred* (not an
//!   attempt, not seen by the circuit).
//! - **In doubt.** A claim found expired after its holder stamped the send's start means an
//!   exchange was sent and never recorded. Before sending it again the connector's look-up
//!   decides ([`crate::connectors::Connector::resolve_in_doubt`]): already there → recorded as
//!   delivered without a send; not there → sent; look-up failed → retried later (never sent
//!   blindly); no look-up → sent again and shown as `unverified` in the dossier's trail.
//! - **Natural keys.** A claim for an effect whose natural key is delivered (`CODE@version`, a
//!   progress step's `CODE#step-…`) is refused: what was sent and recorded is never sent twice.
//! - **A poison message never blocks its queue.** Permanent failures go to the dead letters at
//!   once; retryable ones are re-published with a delay (the queue moves on) until the route's
//!   budget runs out; a panic while handling one message dead-letters that message; a message
//!   that crash-loops the process is moved aside by the broker's delivery limit and drained
//!   into the dead letters here.
//! - **Ledger ids.** The ledger is keyed by (route, envelope id). A replay of a dead letter gets
//!   the ledger id `<envelope id>/replay/<dead letter id>`, so it is a new delivery whose own
//!   duplicates are still recognised.
//! - **Stale deliveries are dropped.** A delivery buffered in a lane whose consumer channel died
//!   meanwhile ([`gw_broker::Delivery::is_live`]) is not handled: the broker redelivers it,
//!   possibly to another instance that became the queue's single active consumer.
//! - Ledger writes from all lanes are merged into short transactions by one recorder task.

pub mod circuit;
pub mod retry;

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use gw_broker::{dead_letter_queue, Broker, Delivery, Message, QueueSpec, HDR_DEAD_REASON};
use gw_store::{
    AcceptedVersion, AttemptRecord, Batch, ClaimRelease, NewDeadLetter, Outcome, OutcomeRecord,
    Store, StoreError,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn, Instrument};
use uuid::Uuid;

use crate::connectors::{Attempted, Connector};
use crate::metrics::Metrics;
use crate::model::envelope::{trace_id, Envelope};
use crate::model::outcome::{Decision, Reason};
use crate::model::time::now_ms;
use crate::runtime::retry::Policy;
use rand::Rng;

/// Header: unix ms of the first delivery attempt (for the elapsed retry budget).
pub const HDR_FIRST_MS: &str = "x-gw-first-ms";
/// Header: the dead letter this message replays.
pub const HDR_REPLAY_OF: &str = "x-gw-replay-of";
/// Header: why the last attempt failed (for the trail; bounded reason label).
pub const HDR_LAST_REASON: &str = "x-gw-last-reason";
/// Header: how many of the message's redeliveries were circuit-breaker deferrals, not failed
/// attempts (the broker's attempt count includes them; the retry budget does not).
pub const HDR_DEFERRED: &str = "x-gw-deferred";

/// A configured route, ready to run.
pub struct Route {
    pub name: String,
    pub source: String,
    pub kinds: Vec<String>,
    pub destination: String,
    pub partitions: u16,
    pub connector: Arc<dyn Connector>,
    pub policy: Policy,
    pub concurrency: usize,
    /// The route's circuit breaker ([`crate::runtime::circuit`]).
    pub circuit: crate::runtime::circuit::Circuit,
}

impl Route {
    /// The queue of partition `p`.
    pub fn queue(&self, p: u16) -> String {
        route_queue(&self.name, p)
    }
    /// Every queue of this route.
    pub fn queues(&self) -> Vec<String> {
        (0..self.partitions).map(|p| self.queue(p)).collect()
    }
    /// The queue a key goes to.
    pub fn queue_for_key(&self, key: &str) -> String {
        self.queue((stable_hash(key) % self.partitions as u64) as u16)
    }
    pub fn matches(&self, source: &str, kind: &str) -> bool {
        self.source == source && crate::config::kinds_admit(&self.kinds, kind)
    }
}

pub fn route_queue(route: &str, partition: u16) -> String {
    format!("gw.route.{route}.p{partition}")
}

/// FNV-1a: stable across processes, versions and machines (partitioning must not move keys).
pub fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// The broker message for an envelope on its first publish.
pub fn message_for(env: &Envelope) -> Message {
    let mut headers = BTreeMap::new();
    headers.insert("traceparent".to_string(), env.traceparent.clone());
    Message {
        id: env.id.to_string(),
        key: env.key.clone(),
        headers,
        attempt: 0,
        body: env.encode().into(),
    }
}

struct RecordReq {
    batch: Batch,
    done: oneshot::Sender<Result<(), String>>,
}

fn batch(
    outcomes: Vec<OutcomeRecord>,
    attempts: Vec<AttemptRecord>,
    dead_letters: Vec<NewDeadLetter>,
) -> Batch {
    Batch {
        outcomes,
        attempts,
        dead_letters,
        accepted: vec![],
        evidence: vec![],
        releases: vec![],
    }
}

/// `b` with the evidence records of the attempt it settles (same transaction).
fn with_evidence(mut b: Batch, evidence: &[gw_store::EvidenceRecord]) -> Batch {
    b.evidence = evidence.to_vec();
    b
}

/// Merges ledger writes of all lanes into short transactions.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<RecordReq>,
    stats: Arc<RecorderStats>,
}

impl Recorder {
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::channel::<RecordReq>(4096);
        let stats = Arc::new(RecorderStats::default());
        tokio::spawn(recorder_loop(store, rx, stats.clone()));
        Recorder { tx, stats }
    }

    /// Record a batch; resolves when it is durable.
    pub async fn record(&self, batch: Batch) -> Result<(), String> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(RecordReq { batch, done })
            .await
            .map_err(|_| "recorder stopped".to_string())?;
        wait.await.map_err(|_| "recorder stopped".to_string())?
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
    fn render(&self) -> String {
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
            crate::metrics::family(&mut out, name, "counter", help);
            out.push_str(&format!("{name} {value}\n"));
        }
        out
    }
}

async fn recorder_loop(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<RecordReq>,
    stats: Arc<RecorderStats>,
) {
    const MAX_MERGE: usize = 512;
    while let Some(first) = rx.recv().await {
        let mut reqs = vec![first];
        while reqs.len() < MAX_MERGE {
            match rx.try_recv() {
                Ok(r) => reqs.push(r),
                Err(_) => break,
            }
        }
        let mut merged = Batch::default();
        for r in &reqs {
            merged.outcomes.extend(r.batch.outcomes.iter().cloned());
            merged.attempts.extend(r.batch.attempts.iter().cloned());
            merged
                .dead_letters
                .extend(r.batch.dead_letters.iter().cloned());
            merged.accepted.extend(r.batch.accepted.iter().cloned());
            merged.evidence.extend(r.batch.evidence.iter().cloned());
            merged.releases.extend(r.batch.releases.iter().cloned());
        }
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
                    let res = store.record(r.batch).await.map_err(|e| e.to_string());
                    let _ = r.done.send(res);
                }
            }
            Err(e) => {
                for r in reqs {
                    let _ = r.done.send(Err(e.to_string()));
                }
            }
        }
    }
}

/// What to do with a delivery once handling is over. Handling borrows the delivery; the lane
/// settles it, so even a panic in handling leaves the lane able to settle.
enum Settlement {
    Ack,
    Retry(BTreeMap<String, String>, Duration),
    /// Leave it unsettled (shutdown during a store outage): it comes back.
    Leave,
}

/// Everything a lane needs.
struct Ctx {
    route: Arc<Route>,
    store: Arc<dyn Store>,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    evidence: Option<Arc<crate::evidence::EvidenceLog>>,
    /// This instance's name, the prefix of its claim holders.
    instance: String,
    claim_lease: Duration,
}

/// The running engine of all routes.
pub struct Engine {
    pub broker: Arc<dyn Broker>,
    pub store: Arc<dyn Store>,
    pub routes: Vec<Arc<Route>>,
    pub metrics: Arc<Metrics>,
    pub prefetch: u16,
    pub delivery_limit: u32,
    recorder: Recorder,
    /// The evidence log (absent: nothing recorded), see [`Engine::with_evidence`].
    pub evidence: Option<Arc<crate::evidence::EvidenceLog>>,
    /// Claim holders are `<instance>/<fresh id>`, see [`Engine::with_claims`].
    pub instance: String,
    /// How long a delivery claim lasts without a heartbeat.
    pub claim_lease: Duration,
}

impl Engine {
    pub fn new(
        broker: Arc<dyn Broker>,
        store: Arc<dyn Store>,
        routes: Vec<Arc<Route>>,
        metrics: Arc<Metrics>,
        prefetch: u16,
        delivery_limit: u32,
    ) -> Self {
        let recorder = Recorder::start(store.clone());
        let stats = recorder.stats.clone();
        metrics.add_renderer(Arc::new(move || stats.render()));
        for r in &routes {
            metrics.register_route(&r.name, &r.destination);
        }
        Engine {
            broker,
            store,
            routes,
            metrics,
            prefetch,
            delivery_limit,
            recorder,
            evidence: None,
            instance: format!("gw-{}", std::process::id()),
            claim_lease: crate::config::defaults::CLAIM_LEASE,
        }
    }

    /// Name this instance's claim holders and set the claims' lease (`[gateway] instance`,
    /// `claim_lease`). A process id is added to the name: two processes configured with one
    /// name still hold distinct claims.
    pub fn with_claims(mut self, instance: &str, lease: Duration) -> Self {
        self.instance = format!("{instance}-{}", std::process::id());
        self.claim_lease = lease;
        self
    }

    /// Record every exchange of the routes' connectors in `log`.
    pub fn with_evidence(mut self, log: Arc<crate::evidence::EvidenceLog>) -> Self {
        self.evidence = Some(log);
        self
    }

    /// Declare every route queue (idempotent).
    pub async fn declare(&self) -> Result<(), gw_broker::BrokerError> {
        let specs: Vec<QueueSpec> = self
            .routes
            .iter()
            .flat_map(|r| r.queues())
            .map(|name| QueueSpec {
                name,
                delivery_limit: self.delivery_limit,
            })
            .collect();
        self.broker.declare(&specs).await
    }

    /// Publish an accepted envelope to every route that takes it. Returns the routes' names.
    /// `Ok` only when every publish was confirmed.
    pub async fn publish(&self, env: &Envelope) -> Result<Vec<String>, gw_broker::BrokerError> {
        let mut routed = Vec::new();
        let msg = message_for(env);
        for r in self
            .routes
            .iter()
            .filter(|r| r.matches(&env.source, &env.kind))
        {
            self.broker
                .publish(&r.queue_for_key(&env.key), msg.clone())
                .await?;
            self.metrics.inc_in(&r.name);
            routed.push(r.name.clone());
        }
        if let Some(version) = env.version {
            // Note the newest queued version for coalescing. Not awaited: it only lets older
            // queued snapshots be skipped; missing it costs a redundant send, never a loss.
            let accepted = routed
                .iter()
                .map(|r| AcceptedVersion {
                    route: r.clone(),
                    key: env.key.clone(),
                    version,
                })
                .collect();
            let recorder = self.recorder.clone();
            tokio::spawn(async move {
                if let Err(e) = recorder
                    .record(Batch {
                        accepted,
                        ..Default::default()
                    })
                    .await
                {
                    debug!(error = %e, "noting the accepted version failed");
                }
            });
        }
        Ok(routed)
    }

    /// Routes that would take an envelope of this source and kind.
    pub fn routes_for(&self, source: &str, kind: &str) -> Vec<Arc<Route>> {
        self.routes
            .iter()
            .filter(|r| r.matches(source, kind))
            .cloned()
            .collect()
    }

    /// Run every route until `cancel`; returns after in-flight work finished.
    pub async fn run(&self, cancel: CancellationToken) -> Result<(), gw_broker::BrokerError> {
        let mut tasks = tokio::task::JoinSet::new();
        for route in &self.routes {
            for queue in route.queues() {
                let consumer = self.broker.consume(&queue, self.prefetch).await?;
                let ctx = Arc::new(Ctx {
                    route: route.clone(),
                    store: self.store.clone(),
                    recorder: self.recorder.clone(),
                    metrics: self.metrics.clone(),
                    cancel: cancel.clone(),
                    evidence: self.evidence.clone(),
                    instance: self.instance.clone(),
                    claim_lease: self.claim_lease,
                });
                tasks.spawn(consume_queue(ctx.clone(), consumer, route.concurrency));
                let dlq = self.broker.consume(&dead_letter_queue(&queue), 16).await?;
                tasks.spawn(drain_broker_dead_letters(ctx, dlq, queue.clone()));
            }
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

async fn consume_queue(
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
        let settlement = match AssertUnwindSafe(handle(&ctx, &d)).catch_unwind().await {
            Ok(s) => s,
            Err(panic) => {
                // A bug met this message: dead-letter it (so the queue moves on and an operator
                // sees it) instead of crash-looping on it.
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let (id, key, attempts) = (
                    d.message.id.clone(),
                    d.message.key.clone(),
                    d.message.attempt + 1,
                );
                error!(route = %ctx.route.name, key = %key, envelope = %id, "handling panicked: {what}");
                let dl = dead_letter(
                    &ctx.route,
                    &d.queue,
                    &id,
                    &key,
                    "",
                    d.message.body.to_vec(),
                    format!("the gateway panicked while handling it: {what}"),
                    attempts,
                    None,
                    String::new(),
                    now_ms(),
                );
                let outcome = outcome_record(
                    &ctx.route,
                    &id,
                    &key,
                    "",
                    None,
                    None,
                    Outcome::DeadLettered,
                    attempts,
                    None,
                    "panic".into(),
                );
                if record_patiently(&ctx, batch(vec![outcome], vec![], vec![dl])).await {
                    ctx.metrics
                        .inc_outcome(&ctx.route.name, "dead_lettered", "panic");
                    Settlement::Ack
                } else {
                    Settlement::Leave
                }
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

#[allow(clippy::too_many_arguments)]
fn outcome_record(
    route: &Route,
    ledger_id: &str,
    key: &str,
    kind: &str,
    natural_key: Option<String>,
    version: Option<i64>,
    outcome: Outcome,
    attempts: u32,
    status: Option<u16>,
    detail: String,
) -> OutcomeRecord {
    OutcomeRecord {
        route: route.name.clone(),
        destination: route.destination.clone(),
        envelope_id: ledger_id.to_string(),
        key: key.to_string(),
        kind: kind.to_string(),
        natural_key,
        version,
        outcome,
        attempts,
        status,
        detail,
        at_ms: now_ms(),
    }
}

#[allow(clippy::too_many_arguments)]
fn dead_letter(
    route: &Route,
    queue: &str,
    envelope_id: &str,
    key: &str,
    kind: &str,
    envelope: Vec<u8>,
    reason: String,
    attempts: u32,
    last_status: Option<u16>,
    last_answer: String,
    first_ms: i64,
) -> NewDeadLetter {
    NewDeadLetter {
        id: Uuid::now_v7().to_string(),
        route: route.name.clone(),
        queue: queue.to_string(),
        envelope_id: envelope_id.to_string(),
        key: key.to_string(),
        kind: kind.to_string(),
        envelope,
        reason,
        attempts,
        last_status,
        last_answer,
        first_attempt_ms: first_ms,
        dead_at_ms: now_ms(),
    }
}

/// Record with patience: a store outage delays the ack, never loses the outcome. Gives up only
/// on shutdown (the delivery then stays unacked and comes back).
async fn record_patiently(ctx: &Ctx, batch: Batch) -> bool {
    let mut wait = Duration::from_millis(50);
    loop {
        match ctx.recorder.record(batch.clone()).await {
            Ok(()) => return true,
            Err(e) => {
                warn!(route = %ctx.route.name, error = %e, "ledger write failed; will retry");
                if ctx.cancel.is_cancelled() {
                    return false;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn store_read<T>(
    ctx: &Ctx,
    f: impl Fn() -> futures::future::BoxFuture<'static, Result<T, StoreError>>,
) -> Option<T> {
    let mut wait = Duration::from_millis(50);
    loop {
        match f().await {
            Ok(v) => return Some(v),
            Err(e) => {
                warn!(route = %ctx.route.name, error = %e, "store read failed; will retry");
                if ctx.cancel.is_cancelled() {
                    return None;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn handle(ctx: &Ctx, d: &Delivery) -> Settlement {
    let route = &ctx.route;
    let env = match Envelope::decode(&d.message.body) {
        Ok(e) => e,
        Err(e) => {
            let id = d.message.id.clone();
            let key = d.message.key.clone();
            let dl = dead_letter(
                route,
                &d.queue,
                &id,
                &key,
                "",
                d.message.body.to_vec(),
                format!("malformed envelope: {e}"),
                d.message.attempt + 1,
                None,
                String::new(),
                now_ms(),
            );
            let out = outcome_record(
                route,
                &id,
                &key,
                "",
                None,
                None,
                Outcome::DeadLettered,
                d.message.attempt + 1,
                None,
                Reason::MalformedEnvelope.as_str().into(),
            );
            if record_patiently(ctx, batch(vec![out], vec![], vec![dl])).await {
                ctx.metrics.inc_outcome(
                    &route.name,
                    "dead_lettered",
                    Reason::MalformedEnvelope.as_str(),
                );
                return Settlement::Ack;
            }
            return Settlement::Leave;
        }
    };
    // The span continues the envelope's W3C trace: its trace id, and the span that accepted
    // the message as parent. From here the envelope's traceparent names this span, so the
    // `send` span (and the `traceparent` sent downstream) are its children.
    let mut env = env;
    let parent_span = crate::telemetry::span_id(&env.traceparent).to_string();
    let deliver_span = crate::telemetry::new_span_id();
    env.traceparent = crate::telemetry::with_span(&env.traceparent, &deliver_span);
    let span = tracing::info_span!("deliver", route = %route.name, key = %env.key, envelope = %env.id, kind = %env.kind, trace_id = %trace_id(&env.traceparent), span_id = %deliver_span, parent_span_id = %parent_span, attempt = d.message.attempt);
    handle_envelope(ctx, d, env).instrument(span).await
}

async fn handle_envelope(ctx: &Ctx, d: &Delivery, mut env: Envelope) -> Settlement {
    let route = &ctx.route;
    let replay_of = d.message.headers.get(HDR_REPLAY_OF).cloned();
    let ledger_id = match &replay_of {
        Some(dl) => format!("{}/replay/{dl}", env.id),
        None => env.id.to_string(),
    };
    let first_ms: i64 = d
        .message
        .headers
        .get(HDR_FIRST_MS)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(now_ms);
    let deferred: u32 = d
        .message
        .headers
        .get(HDR_DEFERRED)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let failed_before = d.message.attempt.saturating_sub(deferred);
    ctx.metrics.observe_age(
        &route.name,
        Duration::from_millis(now_ms().saturating_sub(env.created_ms).max(0) as u64),
    );

    // 1. Already settled? Only a copy that may have been seen before needs the look-up.
    if d.redelivered || failed_before > 0 || d.delivery_count > 1 || replay_of.is_some() {
        let store = ctx.store.clone();
        let (r, id) = (route.name.clone(), ledger_id.clone());
        let Some(done) = store_read(ctx, || {
            let (store, r, id) = (store.clone(), r.clone(), id.clone());
            Box::pin(async move { store.outcome(&r, &id).await })
        })
        .await
        else {
            return Settlement::Leave;
        };
        if let Some(prev) = done {
            debug!(
                outcome = prev.outcome.as_str(),
                "already settled; acking the duplicate"
            );
            ctx.metrics
                .inc_outcome(&route.name, "duplicate_skipped", prev.outcome.as_str());
            return Settlement::Ack;
        }
    }

    // 2. Superseded (the destination has this version or newer), or coalesced (a newer
    //    version of this key is already queued for this route: send that one instead)?
    let mut prior = None;
    let acts_on_snapshot = env.version.is_none() && route.connector.acts_on_snapshot(&env.kind);
    let mut versions = gw_store::Versions::default();
    if env.version.is_some() || acts_on_snapshot {
        let store = ctx.store.clone();
        let (r, dest, key) = (
            route.name.clone(),
            route.destination.clone(),
            env.key.clone(),
        );
        let Some(v) = store_read(ctx, || {
            let (store, r, dest, key) = (store.clone(), r.clone(), dest.clone(), key.clone());
            Box::pin(async move { store.versions(&r, &dest, &key).await })
        })
        .await
        else {
            return Settlement::Leave;
        };
        versions = v;
        prior = versions.delivered;
    }
    if let Some(version) = env.version {
        let why = match (versions.delivered, versions.accepted) {
            (Some(cur), _) if cur >= version => {
                Some(format!("destination already has version {cur}"))
            }
            // Coalesce only once the destination has the dossier: its first snapshot goes
            // through, so what depends on the dossier existing there (progress steps at the
            // portal) does not bounce while the newest snapshot waits its turn.
            (Some(_), Some(newer)) if newer > version => {
                Some(format!("coalesced: version {newer} is queued"))
            }
            _ => None,
        };
        if let Some(detail) = why {
            let out = outcome_record(
                route,
                &ledger_id,
                &env.key,
                &env.kind,
                env.natural_key(),
                Some(version),
                Outcome::Superseded,
                failed_before,
                None,
                detail,
            );
            let att = attempt_record(
                route,
                &ledger_id,
                &env.key,
                failed_before + 1,
                "superseded",
                None,
                Reason::Superseded.as_str(),
                Duration::ZERO,
            );
            // An in-doubt note of this exchange (its earlier send died unrecorded) is settled:
            // the destination has something at least as new. Holds no claim: the release
            // deletes nothing.
            let mut b = batch(vec![out], vec![att], vec![]);
            b.releases = vec![release(route, &env, &ledger_id, "", Some("superseded"))];
            if record_patiently(ctx, b).await {
                ctx.metrics
                    .inc_outcome(&route.name, "superseded", Reason::Superseded.as_str());
                return Settlement::Ack;
            }
            return Settlement::Leave;
        }
    }

    // 2b. What acts on the destination's copy of the dossier (a progress step) waits while
    //     the dossier's snapshot is on its way there, and goes to the dead letters with it.
    if acts_on_snapshot && versions.delivered.is_none() {
        if let Some(s) =
            snapshot_gate(ctx, d, &env, &ledger_id, first_ms, deferred, &versions).await
        {
            return s;
        }
    }

    // 3. Deliver, unless the destination's circuit is open: then wait for it in the lane
    //    (not an attempt: no ledger record, no budget used), and past `MAX_HOLD` hand the
    //    delivery back to the broker's durable retry path.
    let held = std::time::Instant::now();
    let mut waited = false;
    let permit = loop {
        match route.circuit.admit() {
            Ok(p) => break p,
            Err(wait) if held.elapsed() + wait <= crate::runtime::circuit::MAX_HOLD => {
                if !waited {
                    waited = true;
                    ctx.metrics
                        .inc_outcome(&route.name, "deferred", Reason::CircuitOpen.as_str());
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = route.circuit.changed() => {}
                    _ = ctx.cancel.cancelled() => return Settlement::Leave,
                }
            }
            Err(wait) => {
                debug!(
                    delay_ms = wait.as_millis() as u64,
                    "circuit open: delivery handed back to the retry path"
                );
                if !waited {
                    ctx.metrics
                        .inc_outcome(&route.name, "deferred", Reason::CircuitOpen.as_str());
                }
                // Spread over a quarter of the cool-down, so the deferred ones do not all
                // come back at the probes' moment.
                let spread = rand::rng().random_range(0..=(wait.as_millis() as u64 / 4).max(1));
                return defer(d, first_ms, deferred, wait + Duration::from_millis(spread));
            }
        }
    };
    // 4. Claim (destination, key) in the store: the version check that counts is the one made
    //    under the claim (see `gw_store::claims`), and an earlier send of this exchange that was
    //    never recorded (in doubt) is resolved with the party's look-up before any re-send.
    let holder = format!("{}/{}", ctx.instance, Uuid::now_v7().simple());
    let lease_ms = ctx.claim_lease.as_millis().max(1) as i64;
    let req = gw_store::ClaimRequest {
        destination: route.destination.clone(),
        key: env.key.clone(),
        ledger_id: ledger_id.clone(),
        natural_key: env.natural_key(),
        version: env.version,
        holder: holder.clone(),
        lease_ms,
        // Stamped with the grant: the send follows at once (after a look-up, when in doubt:
        // then the exchange is in doubt anyway until recorded).
        sending: true,
    };
    let claim = {
        let store = ctx.store.clone();
        store_read(ctx, || {
            let (store, req) = (store.clone(), req.clone());
            Box::pin(async move { store.claim(&req).await })
        })
        .await
    };
    let Some(claim) = claim else {
        return Settlement::Leave;
    };
    let in_doubt = match claim {
        gw_store::Claim::Granted { in_doubt } => in_doubt,
        gw_store::Claim::Busy { expires_at_ms, .. } => {
            drop(permit);
            // Another lane or instance is sending for this dossier: wait for it (a deferral,
            // not an attempt; the circuit saw nothing).
            // Until the lease would run out, but at most 2 s: the holder usually releases
            // long before (the claim lasts one send).
            let wait = (expires_at_ms - now_ms()).clamp(50, lease_ms.clamp(50, 2_000)) as u64;
            let spread = rand::rng().random_range(0..=wait / 4);
            debug!(delay_ms = wait + spread, "claim busy: deferred");
            ctx.metrics
                .inc_outcome(&route.name, "deferred", Reason::ClaimBusy.as_str());
            return defer(d, first_ms, deferred, Duration::from_millis(wait + spread));
        }
        gw_store::Claim::Older { newest, in_doubt } => {
            drop(permit);
            let detail = if in_doubt {
                format!("version {newest} may already be at the destination (in doubt)")
            } else {
                format!("destination already has version {newest}")
            };
            // This exchange's own in-doubt note (if any) is settled: something newer counts.
            let settle = release(route, &env, &ledger_id, &holder, Some("superseded"));
            return record_unsent_superseded(
                ctx,
                &env,
                &ledger_id,
                failed_before,
                detail,
                Some(settle),
            )
            .await;
        }
        gw_store::Claim::Done => {
            drop(permit);
            let detail = "the destination already has this effect (natural key delivered)".into();
            let settle = release(route, &env, &ledger_id, &holder, Some("already_delivered"));
            return record_unsent_superseded(
                ctx,
                &env,
                &ledger_id,
                failed_before,
                detail,
                Some(settle),
            )
            .await;
        }
    };
    let mut resolution: Option<&'static str> = None;
    if let Some(doubt) = &in_doubt {
        let check = route.connector.resolve_in_doubt(&env).await;
        let how = check.resolution();
        warn!(
            resolution = how,
            sent_at_ms = doubt.sent_at_ms,
            "exchange in doubt (sent, never recorded)"
        );
        ctx.metrics.inc_outcome(&route.name, "in_doubt", how);
        match check {
            crate::connectors::InDoubtCheck::AlreadyThere => {
                drop(permit);
                let out = outcome_record(
                    route,
                    &ledger_id,
                    &env.key,
                    &env.kind,
                    env.natural_key(),
                    env.version,
                    Outcome::Delivered,
                    failed_before + 1,
                    None,
                    "in doubt: already_there (the party's look-up shows it; not sent again)".into(),
                );
                let att = attempt_record(
                    route,
                    &ledger_id,
                    &env.key,
                    failed_before + 1,
                    "in_doubt_already_there",
                    None,
                    Reason::Accepted.as_str(),
                    Duration::ZERO,
                );
                let mut b = batch(vec![out], vec![att], vec![]);
                b.releases = vec![release(route, &env, &ledger_id, &holder, Some(how))];
                if record_patiently(ctx, b).await {
                    ctx.metrics
                        .inc_outcome(&route.name, "delivered", "in_doubt_already_there");
                    return Settlement::Ack;
                }
                return Settlement::Leave;
            }
            crate::connectors::InDoubtCheck::LookupFailed(attempted) => {
                // Never send blindly: retry the look-up later. The in-doubt note stays open.
                permit.report(attempted.health);
                let now = now_ms();
                let this_attempt = failed_before + 1;
                if route.policy.exhausted(this_attempt, first_ms, now) {
                    let rel = release(route, &env, &ledger_id, &holder, None);
                    return dead_letter_now(
                        ctx,
                        d,
                        &env,
                        &ledger_id,
                        Reason::RetriesExhausted,
                        this_attempt,
                        first_ms,
                        &attempted,
                        Reason::LookupFailed.as_str(),
                        vec![],
                        Some(rel),
                    )
                    .await;
                }
                let delay = route.policy.delay(this_attempt, None, &mut rand::rng());
                let att = attempt_record(
                    route,
                    &ledger_id,
                    &env.key,
                    this_attempt,
                    "retry",
                    attempted.answer.status(),
                    Reason::LookupFailed.as_str(),
                    attempted.latency,
                );
                let mut b = batch(vec![], vec![att], vec![]);
                b.releases = vec![release(route, &env, &ledger_id, &holder, None)];
                if !record_patiently(ctx, b).await {
                    return Settlement::Leave;
                }
                let mut headers = d.message.headers.clone();
                headers.insert(HDR_FIRST_MS.into(), first_ms.to_string());
                headers.insert(HDR_LAST_REASON.into(), Reason::LookupFailed.as_str().into());
                ctx.metrics
                    .inc_outcome(&route.name, "retried", Reason::LookupFailed.as_str());
                return Settlement::Retry(headers, delay);
            }
            crate::connectors::InDoubtCheck::NotThere
            | crate::connectors::InDoubtCheck::Unverifiable(_) => resolution = Some(how),
        }
    }
    let claim_release = release(route, &env, &ledger_id, &holder, resolution);
    let deliver_span = crate::telemetry::span_id(&env.traceparent).to_string();
    let send_span_id = crate::telemetry::new_span_id();
    env.traceparent = crate::telemetry::with_span(&env.traceparent, &send_span_id);
    let send_span = tracing::info_span!("send", route = %route.name, destination = %route.destination, key = %env.key, envelope = %env.id, trace_id = %trace_id(&env.traceparent), span_id = %send_span_id, parent_span_id = %deliver_span, http_status = tracing::field::Empty, outcome = tracing::field::Empty);
    // The exchanges are captured for the evidence log (recorded with the outcome).
    let this_attempt = failed_before + 1;
    let evidence_log = ctx.evidence.as_deref();
    let capture = evidence_log.and_then(|e| e.capture_for(&route.destination));
    let send = crate::evidence::capture::capture(
        capture,
        route
            .connector
            .deliver(&env, prior)
            .instrument(send_span.clone()),
    );
    // Heartbeat: keep the claim while the send lasts (a third of the lease at a time).
    let heartbeat = async {
        let every = Duration::from_millis((lease_ms as u64 / 3).max(1));
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = ctx
                .store
                .extend_claim(&route.destination, &env.key, &holder, lease_ms, false)
                .await
            {
                debug!(error = %e, "claim heartbeat failed");
            }
        }
    };
    let (attempted, exchanges): (Attempted, _) = tokio::select! {
        sent = send => sent,
        never = heartbeat => never,
    };
    if let Some(s) = attempted.answer.status() {
        send_span.record("http_status", s);
    }
    let outcome = match &attempted.decision {
        Decision::Delivered => "delivered",
        Decision::Superseded => "superseded",
        Decision::Permanent { .. } => "refused",
        Decision::Retry { .. } => "retry",
    };
    send_span.record("outcome", outcome);
    drop(send_span);
    permit.report(attempted.health);
    let evidence = evidence_log
        .map(|e| {
            let exchange = format!("{}/{ledger_id}/{this_attempt}", route.name);
            let id = env.id.to_string();
            e.records(
                &route.destination,
                "out",
                &route.name,
                &exchange,
                &id,
                &env.key,
                &env.kind,
                exchanges,
            )
        })
        .unwrap_or_default();
    let status = attempted.answer.status();
    ctx.metrics.observe_latency(&route.name, attempted.latency);
    match attempted.decision.clone() {
        Decision::Delivered => {
            let out = outcome_record(
                route,
                &ledger_id,
                &env.key,
                &env.kind,
                env.natural_key(),
                env.version,
                Outcome::Delivered,
                this_attempt,
                status,
                match resolution {
                    Some(how) => format!(
                        "digest sha256:{} (in doubt before: {how})",
                        attempted.request_digest
                    ),
                    None => format!("digest sha256:{}", attempted.request_digest),
                },
            );
            let att = attempt_record(
                route,
                &ledger_id,
                &env.key,
                this_attempt,
                "delivered",
                status,
                Reason::Accepted.as_str(),
                attempted.latency,
            );
            let mut b = with_evidence(batch(vec![out], vec![att], vec![]), &evidence);
            b.releases = vec![claim_release.clone()];
            if record_patiently(ctx, b).await {
                ctx.metrics
                    .inc_outcome(&route.name, "delivered", Reason::Accepted.as_str());
                return Settlement::Ack;
            }
            Settlement::Leave
        }
        Decision::Superseded => {
            let out = outcome_record(
                route,
                &ledger_id,
                &env.key,
                &env.kind,
                env.natural_key(),
                env.version,
                Outcome::Superseded,
                this_attempt,
                status,
                attempted.answer.summary(),
            );
            let att = attempt_record(
                route,
                &ledger_id,
                &env.key,
                this_attempt,
                "superseded",
                status,
                Reason::Superseded.as_str(),
                attempted.latency,
            );
            let mut b = with_evidence(batch(vec![out], vec![att], vec![]), &evidence);
            b.releases = vec![claim_release.clone()];
            if record_patiently(ctx, b).await {
                ctx.metrics
                    .inc_outcome(&route.name, "superseded", Reason::Superseded.as_str());
                return Settlement::Ack;
            }
            Settlement::Leave
        }
        Decision::Permanent { reason } => {
            dead_letter_now(
                ctx,
                d,
                &env,
                &ledger_id,
                reason,
                this_attempt,
                first_ms,
                &attempted,
                "permanent",
                evidence,
                Some(claim_release.clone()),
            )
            .await
        }
        Decision::Retry { reason, not_before } => {
            let now = now_ms();
            if route.policy.exhausted(this_attempt, first_ms, now) {
                return dead_letter_now(
                    ctx,
                    d,
                    &env,
                    &ledger_id,
                    Reason::RetriesExhausted,
                    this_attempt,
                    first_ms,
                    &attempted,
                    reason.as_str(),
                    evidence,
                    Some(claim_release.clone()),
                )
                .await;
            }
            let delay = route
                .policy
                .delay(this_attempt, not_before, &mut rand::rng());
            let att = attempt_record(
                route,
                &ledger_id,
                &env.key,
                this_attempt,
                "retry",
                status,
                reason.as_str(),
                attempted.latency,
            );
            // A retry leaves the exchange unsettled: its in-doubt note (if any) stays open.
            let mut b = with_evidence(batch(vec![], vec![att], vec![]), &evidence);
            b.releases = vec![ClaimRelease {
                resolution: None,
                ..claim_release.clone()
            }];
            if !record_patiently(ctx, b).await {
                return Settlement::Leave;
            }
            let mut headers = d.message.headers.clone();
            headers.insert(HDR_FIRST_MS.into(), first_ms.to_string());
            headers.insert(HDR_LAST_REASON.into(), reason.as_str().into());
            debug!(reason = reason.as_str(), status = ?status, delay_ms = delay.as_millis() as u64, "retry scheduled");
            ctx.metrics
                .inc_outcome(&route.name, "retried", reason.as_str());
            Settlement::Retry(headers, delay)
        }
    }
}

/// The release of a claim, recorded with its exchange's outcome (same transaction).
fn release(
    route: &Route,
    env: &Envelope,
    ledger_id: &str,
    holder: &str,
    resolution: Option<&str>,
) -> ClaimRelease {
    ClaimRelease {
        destination: route.destination.clone(),
        key: env.key.clone(),
        holder: holder.to_string(),
        ledger_id: ledger_id.to_string(),
        natural_key: env.natural_key(),
        resolution: resolution.map(str::to_owned),
    }
}

/// Record a delivery that was not sent because the destination has it or something newer.
async fn record_unsent_superseded(
    ctx: &Ctx,
    env: &Envelope,
    ledger_id: &str,
    failed_before: u32,
    detail: String,
    release: Option<ClaimRelease>,
) -> Settlement {
    let route = &ctx.route;
    let out = outcome_record(
        route,
        ledger_id,
        &env.key,
        &env.kind,
        env.natural_key(),
        env.version,
        Outcome::Superseded,
        failed_before,
        None,
        detail,
    );
    let att = attempt_record(
        route,
        ledger_id,
        &env.key,
        failed_before + 1,
        "superseded",
        None,
        Reason::Superseded.as_str(),
        Duration::ZERO,
    );
    let mut b = batch(vec![out], vec![att], vec![]);
    b.releases = release.into_iter().collect();
    if record_patiently(ctx, b).await {
        ctx.metrics
            .inc_outcome(&route.name, "superseded", Reason::Superseded.as_str());
        return Settlement::Ack;
    }
    Settlement::Leave
}

/// Hand a delivery back to the broker's retry path without an attempt: a deferral (the
/// broker counts it as a redelivery; `x-gw-deferred` keeps it out of the retry budget).
fn defer(d: &Delivery, first_ms: i64, deferred: u32, delay: Duration) -> Settlement {
    let mut headers = d.message.headers.clone();
    headers.insert(HDR_FIRST_MS.into(), first_ms.to_string());
    headers.insert(HDR_DEFERRED.into(), (deferred + 1).to_string());
    Settlement::Retry(headers, delay.max(Duration::from_millis(1)))
}

/// The gate of an envelope that acts on the destination's copy of its dossier (a progress
/// step), when the ledger has no version of the dossier delivered there: `Some` settles it —
/// dead-lettered with its dossier when the dossier's snapshot is in the dead letters, deferred
/// (waiting, not an attempt) while a snapshot is queued for the route, dead-lettered when the
/// wait outlives the route's budget — and `None` sends it (no snapshot is known on this
/// route: the destination may have the dossier from elsewhere, and decides).
async fn snapshot_gate(
    ctx: &Ctx,
    d: &Delivery,
    env: &Envelope,
    ledger_id: &str,
    first_ms: i64,
    deferred: u32,
    versions: &gw_store::Versions,
) -> Option<Settlement> {
    let route = &ctx.route;
    let store = ctx.store.clone();
    let (r, key) = (route.name.clone(), env.key.clone());
    let dead = store_read(ctx, || {
        let (store, r, key) = (store.clone(), r.clone(), key.clone());
        Box::pin(async move {
            store
                .dead_letters(&gw_store::DeadLetterFilter {
                    route: Some(r),
                    key: Some(key),
                    state: Some(gw_store::DeadLetterState::Open),
                    limit: 100,
                })
                .await
        })
    })
    .await;
    let Some(dead) = dead else {
        return Some(Settlement::Leave);
    };
    let unsent = |reason: Reason, why: String| {
        dead_letter_unsent(ctx, d, env, ledger_id, reason, why, first_ms)
    };
    if let Some(snapshot) = dead
        .iter()
        .find(|dl| !route.connector.acts_on_snapshot(&dl.letter.kind))
    {
        let why = format!(
            "{}: its dossier's snapshot is in the dead letters ({}); replay them together",
            Reason::DossierDeadLettered.as_str(),
            snapshot.letter.id
        );
        return Some(unsent(Reason::DossierDeadLettered, why).await);
    }
    versions.accepted?;
    let failed_before = d.message.attempt.saturating_sub(deferred);
    if route.policy.exhausted(failed_before, first_ms, now_ms()) {
        let why = format!(
            "{}: its dossier's snapshot did not reach {} within the route's retry budget",
            Reason::RetriesExhausted.as_str(),
            route.destination
        );
        return Some(unsent(Reason::RetriesExhausted, why).await);
    }
    let delay = route
        .policy
        .delay(deferred.saturating_add(1), None, &mut rand::rng());
    debug!(
        delay_ms = delay.as_millis() as u64,
        "waiting for the dossier's snapshot"
    );
    ctx.metrics
        .inc_outcome(&route.name, "deferred", Reason::AwaitingDossier.as_str());
    Some(defer(d, first_ms, deferred, delay))
}

/// Dead-letter a delivery that was never sent (decided before calling the destination).
async fn dead_letter_unsent(
    ctx: &Ctx,
    d: &Delivery,
    env: &Envelope,
    ledger_id: &str,
    reason: Reason,
    why: String,
    first_ms: i64,
) -> Settlement {
    let route = &ctx.route;
    let attempts = d.message.attempt + 1;
    let dl = dead_letter(
        route,
        &d.queue,
        &env.id.to_string(),
        &env.key,
        &env.kind,
        d.message.body.to_vec(),
        why.clone(),
        attempts,
        None,
        String::new(),
        first_ms,
    );
    let out = outcome_record(
        route,
        ledger_id,
        &env.key,
        &env.kind,
        env.natural_key(),
        env.version,
        Outcome::DeadLettered,
        attempts,
        None,
        why,
    );
    if record_patiently(ctx, batch(vec![out], vec![], vec![dl])).await {
        warn!(reason = reason.as_str(), "dead-lettered");
        ctx.metrics
            .inc_outcome(&route.name, "dead_lettered", reason.as_str());
        return Settlement::Ack;
    }
    Settlement::Leave
}

#[allow(clippy::too_many_arguments)]
async fn dead_letter_now(
    ctx: &Ctx,
    d: &Delivery,
    env: &Envelope,
    ledger_id: &str,
    reason: Reason,
    attempts: u32,
    first_ms: i64,
    attempted: &Attempted,
    last_reason: &str,
    evidence: Vec<gw_store::EvidenceRecord>,
    release: Option<ClaimRelease>,
) -> Settlement {
    let route = &ctx.route;
    let status = attempted.answer.status();
    let why = format!(
        "{}: last answer was {} ({last_reason})",
        reason.as_str(),
        status
            .map(|s| format!("HTTP {s}"))
            .unwrap_or_else(|| "no HTTP answer".into())
    );
    let dl = dead_letter(
        route,
        &d.queue,
        &env.id.to_string(),
        &env.key,
        &env.kind,
        d.message.body.to_vec(),
        why.clone(),
        attempts,
        status,
        attempted.answer.summary(),
        first_ms,
    );
    let out = outcome_record(
        route,
        ledger_id,
        &env.key,
        &env.kind,
        env.natural_key(),
        env.version,
        Outcome::DeadLettered,
        attempts,
        status,
        why,
    );
    let att = attempt_record(
        route,
        ledger_id,
        &env.key,
        attempts,
        "dead_lettered",
        status,
        reason.as_str(),
        attempted.latency,
    );
    let mut b = with_evidence(batch(vec![out], vec![att], vec![dl]), &evidence);
    b.releases = release.into_iter().collect();
    if record_patiently(ctx, b).await {
        warn!(reason = reason.as_str(), attempts, "dead-lettered");
        ctx.metrics
            .inc_outcome(&route.name, "dead_lettered", reason.as_str());
        return Settlement::Ack;
    }
    Settlement::Leave
}

#[allow(clippy::too_many_arguments)]
fn attempt_record(
    route: &Route,
    ledger_id: &str,
    key: &str,
    attempt: u32,
    result: &str,
    status: Option<u16>,
    reason: &str,
    latency: Duration,
) -> AttemptRecord {
    AttemptRecord {
        route: route.name.clone(),
        envelope_id: ledger_id.to_string(),
        key: key.to_string(),
        attempt,
        result: result.to_string(),
        status,
        reason: reason.to_string(),
        latency_ms: latency.as_millis().min(u32::MAX as u128) as u32,
        at_ms: now_ms(),
    }
}

/// Messages the broker moved aside (delivery limit, reject) become store dead letters.
async fn drain_broker_dead_letters(
    ctx: Arc<Ctx>,
    mut consumer: Box<dyn gw_broker::Consumer>,
    queue: String,
) {
    loop {
        let next = tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            n = consumer.next() => n,
        };
        let d = match next {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                warn!(queue = %queue, error = %e, "dead-letter queue consumer error");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            None => break,
        };
        let reason = d
            .message
            .headers
            .get(HDR_DEAD_REASON)
            .cloned()
            .unwrap_or_else(|| {
                format!(
                    "{}: redelivered past the broker's delivery limit (a crash loop?)",
                    Reason::BrokerDeliveryLimit.as_str()
                )
            });
        let (kind, first_ms) = match Envelope::decode(&d.message.body) {
            Ok(e) => (e.kind, e.created_ms),
            Err(_) => (String::new(), now_ms()),
        };
        let dl = dead_letter(
            &ctx.route,
            &queue,
            &d.message.id,
            &d.message.key,
            &kind,
            d.message.body.to_vec(),
            reason.clone(),
            d.message.attempt + 1,
            None,
            String::new(),
            first_ms,
        );
        let out = outcome_record(
            &ctx.route,
            &d.message.id,
            &d.message.key,
            &kind,
            None,
            None,
            Outcome::DeadLettered,
            d.message.attempt + 1,
            None,
            reason,
        );
        if record_patiently(&ctx, batch(vec![out], vec![], vec![dl])).await {
            ctx.metrics.inc_outcome(
                &ctx.route.name,
                "dead_lettered",
                Reason::BrokerDeliveryLimit.as_str(),
            );
            let _ = d.ack().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_hash_is_stable() {
        // FNV-1a reference values: partitioning must never move keys between releases.
        assert_eq!(stable_hash(""), 0xcbf29ce484222325);
        assert_eq!(stable_hash("a"), 0xaf63dc4c8601ec8c);
        assert_eq!(route_queue("sync", 3), "gw.route.sync.p3");
    }
}
