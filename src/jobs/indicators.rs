//! The service-quality index's consumer: the live path of `crate::indicators`.
//!
//! # Invariants
//! - **Its own durable queue.** The engine publishes the fact of every event the index reads
//!   to `gw.indicators` ([`crate::runtime::route::INDICATORS_QUEUE`]), confirmed in the same
//!   round as the routes' copies, so the index neither slows nor depends on any route. The
//!   message is the fact alone ([`crate::indicators::live`]), not the envelope, and under load
//!   one message carries the facts of many events ([`crate::indicators::publisher`]); a whole
//!   envelope (an older gateway's, or one whose fact could not be made) is read too.
//! - **Ack after durable, a batch at a time (group commit).** The consumer takes up to
//!   [`Batching::max`] deliveries (the prefetch is two batches; it waits at most
//!   [`Batching::wait`] for a batch to fill once one delivery is in hand) and applies them in
//!   **one** store transaction ([`crate::indicators::history::apply_events`]): facts, the
//!   dossiers' new states and the position. Only after the commit are they acked (the broker
//!   coalesces the acks into one `multiple` ack). A redelivery of an applied event (a crash
//!   between commit and ack re-delivers the whole batch) is recognised by its envelope id and
//!   only acked; an id repeated within a batch is applied once.
//! - **In queue order**: the queue is FIFO with a single active consumer; a batch is folded
//!   in delivery order and batches are handled one after another.
//! - **Nothing dropped, a poison event alone.** An event that cannot be read (a fact message or
//!   an envelope that does not decode, a snapshot that is not a dossier) goes to
//!   `gw.indicators.dlq` with its reason, by itself:
//!   the rest of its batch is applied. If the batch's transaction fails, its deliveries are
//!   applied again one by one ([`handle`]), so a dossier whose stored state is unreadable (or
//!   a store outage) holds back only its own events: each failing delivery is retried after
//!   [`STORE_RETRY`] (durable).
//! - **Gauges are labelled by unit and indicator only**, recomputed every `refresh` for the
//!   current month; never a dossier code or citizen data.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use gw_broker::Broker;
use gw_store::indicators::IndicatorStore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::indicators::history::{self, ApplyOutcome};
use crate::indicators::live;
use crate::indicators::{Level, LiveRules, Report};
use crate::model::time::now_ms;
use crate::runtime::route::INDICATORS_QUEUE;
use crate::telemetry::metrics::{esc, family};

/// How long a delivery waits before a retry after the store failed.
pub const STORE_RETRY: Duration = Duration::from_secs(2);

/// How the consumer groups deliveries into one store transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// The most deliveries in one transaction (the prefetch is twice this). 1 = one commit
    /// per event.
    pub max: u16,
    /// How long a batch may wait to fill once its first delivery is in hand.
    pub wait: Duration,
}

impl Default for Batching {
    /// 64 deliveries or 5 ms (the broker's own ack coalescing window), whichever comes first.
    fn default() -> Self {
        Batching {
            max: 64,
            wait: Duration::from_millis(5),
        }
    }
}

/// Counts of the consumer, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counts {
    pub applied: std::sync::atomic::AtomicU64,
    pub duplicate: std::sync::atomic::AtomicU64,
    pub ignored: std::sync::atomic::AtomicU64,
    pub dead_lettered: std::sync::atomic::AtomicU64,
    pub retried: std::sync::atomic::AtomicU64,
}

/// What one delivery became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    Applied(ApplyOutcome),
    DeadLettered,
    Retried,
}

/// Why the consumer stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("the indicator queue: {0}")]
    Broker(#[from] gw_broker::BrokerError),
}

/// Consume `queue` (the gateway's is [`INDICATORS_QUEUE`]) until `cancel`, in batches of the
/// default [`Batching`]. The queue must be declared (the engine does it when built
/// `with_indicators`).
pub async fn consume(
    broker: Arc<dyn Broker>,
    queue: String,
    store: Arc<dyn IndicatorStore>,
    counts: Arc<Counts>,
    cancel: CancellationToken,
) -> Result<(), ConsumeError> {
    consume_batched(broker, queue, store, counts, Batching::default(), cancel).await
}

/// [`consume`] with the given batching.
pub async fn consume_batched(
    broker: Arc<dyn Broker>,
    queue: String,
    store: Arc<dyn IndicatorStore>,
    counts: Arc<Counts>,
    batching: Batching,
    cancel: CancellationToken,
) -> Result<(), ConsumeError> {
    let max = usize::from(batching.max.max(1));
    // Two batches' worth fetched ahead: the next batch arrives while this one commits (with
    // one batch's worth, the broker would wait for this batch's acks before sending more).
    let prefetch = batching.max.max(1).saturating_mul(2);
    let mut consumer = broker.consume(&queue, prefetch).await?;
    let mut batch = Vec::with_capacity(max);
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            n = consumer.next() => n,
        };
        let Some(delivery) = next else {
            return Ok(());
        };
        batch.push(delivery?);
        // Fill the batch from what is there, waiting at most `wait` (a closed consumer or
        // cancellation ends the filling; what is in hand is still handled).
        let until = tokio::time::Instant::now() + batching.wait;
        let mut closed = false;
        while batch.len() < max && !closed {
            tokio::select! {
                biased;
                n = consumer.next() => match n {
                    Some(d) => batch.push(d?),
                    None => closed = true,
                },
                _ = tokio::time::sleep_until(until) => break,
                _ = cancel.cancelled() => break,
            }
        }
        let live: Vec<_> = batch.drain(..).filter(|d| d.is_live()).collect();
        handle_batch(store.as_ref(), live, &counts).await?;
        if closed {
            return Ok(());
        }
    }
}

/// Apply a batch of deliveries in one store transaction and settle each (see the invariants);
/// one answer per delivery, in order. A delivery may carry several facts (a group,
/// [`live::FACTS_BODY`]): they are applied in the same transaction, in order.
pub async fn handle_batch(
    store: &dyn IndicatorStore,
    deliveries: Vec<gw_broker::Delivery>,
    counts: &Counts,
) -> Result<Vec<Handled>, ConsumeError> {
    let mut reads: Vec<_> = deliveries.iter().map(|d| live::read(&d.message)).collect();
    // One delivery of at most one fact: no batch to fall back from.
    if matches!(&reads[..], [Ok(facts)] if facts.len() <= 1) {
        let delivery = deliveries.into_iter().next().expect("one delivery");
        let read = reads.pop().expect("its read");
        return Ok(vec![handle_read(store, delivery, read, counts).await?]);
    }
    // Every fact of the batch in delivery order, each with the delivery it came in.
    let mut events = Vec::new();
    let mut owner = Vec::new();
    let mut results: Vec<Result<Vec<ApplyOutcome>, live::ReadError>> = reads
        .into_iter()
        .enumerate()
        .map(|(i, read)| {
            read.map(|facts| {
                owner.extend(std::iter::repeat_n(i, facts.len()));
                events.extend(facts);
                Vec::new()
            })
        })
        .collect();
    match history::apply_events(store, events).await {
        Ok(applied) => {
            for (j, a) in applied.into_iter().enumerate() {
                if let Ok(outcomes) = &mut results[owner[j]] {
                    outcomes.push(a);
                }
            }
        }
        Err(e) => {
            // Nothing of the batch was written: one by one, so that only what fails waits.
            debug!(error = %e, "indicators: a batch failed; its events are applied one by one");
            let mut out = Vec::with_capacity(deliveries.len());
            for delivery in deliveries {
                out.push(handle(store, delivery, counts).await?);
            }
            return Ok(out);
        }
    }
    let mut out = Vec::with_capacity(deliveries.len());
    for (delivery, result) in deliveries.into_iter().zip(results) {
        out.push(settle(delivery, result, counts).await?);
    }
    Ok(out)
}

/// Settle a delivery the store did not fail: ack what was applied (or was a duplicate, or is
/// ignored), dead-letter with its reason what cannot be read. Each fact is counted; the
/// answer sums up the delivery: applied if any of its facts was, else duplicate if any was,
/// else ignored (an envelope the index does not read carries none).
async fn settle(
    delivery: gw_broker::Delivery,
    result: Result<Vec<ApplyOutcome>, live::ReadError>,
    counts: &Counts,
) -> Result<Handled, ConsumeError> {
    use std::sync::atomic::Ordering::Relaxed;
    match result {
        Ok(outcomes) => {
            for outcome in &outcomes {
                let c = match outcome {
                    ApplyOutcome::Applied => &counts.applied,
                    ApplyOutcome::Duplicate => &counts.duplicate,
                    ApplyOutcome::Ignored => &counts.ignored,
                };
                c.fetch_add(1, Relaxed);
            }
            let summary = [ApplyOutcome::Applied, ApplyOutcome::Duplicate]
                .into_iter()
                .find(|o| outcomes.contains(o))
                .unwrap_or(ApplyOutcome::Ignored);
            if outcomes.is_empty() {
                counts.ignored.fetch_add(1, Relaxed);
            }
            delivery.ack().await?;
            Ok(Handled::Applied(summary))
        }
        Err(e) => {
            // A fact's reason names the field, never its value's owner (facts hold no personal
            // data); an envelope that does not decode is not quoted (its payload might).
            match &e {
                live::ReadError::Envelope(_) => {
                    warn!("indicators: a message that is no envelope dead-lettered")
                }
                _ => warn!(error = %e, "indicators: event dead-lettered"),
            }
            counts.dead_lettered.fetch_add(1, Relaxed);
            delivery.reject(&e.to_string()).await?;
            Ok(Handled::DeadLettered)
        }
    }
}

/// Apply one delivery's facts one at a time and settle it (see the invariants). If the store
/// fails on one, the whole delivery is retried later: the facts already applied are then
/// recognised by their envelope ids and only counted as duplicates.
pub async fn handle(
    store: &dyn IndicatorStore,
    delivery: gw_broker::Delivery,
    counts: &Counts,
) -> Result<Handled, ConsumeError> {
    let read = live::read(&delivery.message);
    handle_read(store, delivery, read, counts).await
}

/// [`handle`] of a delivery already read.
async fn handle_read(
    store: &dyn IndicatorStore,
    delivery: gw_broker::Delivery,
    read: Result<Vec<live::FactEvent>, live::ReadError>,
    counts: &Counts,
) -> Result<Handled, ConsumeError> {
    use std::sync::atomic::Ordering::Relaxed;
    let applied = match read {
        Err(e) => Err(e),
        Ok(facts) => {
            let mut outcomes = Vec::with_capacity(facts.len());
            for ev in facts {
                match history::apply_event(store, ev).await {
                    Ok(outcome) => outcomes.push(outcome),
                    Err(e) => {
                        warn!(error = %e, "indicators: store failed; the event is retried");
                        counts.retried.fetch_add(1, Relaxed);
                        let headers = delivery.message.headers.clone();
                        delivery.retry(headers, STORE_RETRY).await?;
                        return Ok(Handled::Retried);
                    }
                }
            }
            Ok(outcomes)
        }
    };
    settle(delivery, applied, counts).await
}

/// The month (`YYYY-MM`, Vietnam) of an instant.
pub fn month_of(ms: i64) -> String {
    let d = crate::indicators::calendar::vn_date(ms);
    format!("{:04}-{:02}", d.year(), u8::from(d.month()))
}

/// The gauges of a unit-level report, as OpenMetrics text.
pub fn render_gauges(report: Option<&Report>, counts: &Counts) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let mut out = String::new();
    family(
        &mut out,
        "gateway_indicator_events_total",
        "counter",
        "Events the service-quality index consumed, by result.",
    );
    for (result, c) in [
        ("applied", &counts.applied),
        ("duplicate", &counts.duplicate),
        ("ignored", &counts.ignored),
        ("dead_lettered", &counts.dead_lettered),
        ("retried", &counts.retried),
    ] {
        out.push_str(&format!(
            "gateway_indicator_events_total{{result=\"{result}\"}} {}\n",
            c.load(Relaxed)
        ));
    }
    let Some(r) = report else { return out };
    family(
        &mut out,
        "gateway_indicator_percent",
        "gauge",
        "Decision 766 indicators of the current month so far, per unit (absent: N/A).",
    );
    for row in &r.rows {
        let i = &row.indicators;
        for (name, v) in [
            ("on_time", i.on_time.percent),
            ("online", i.online.percent),
            ("online_payment", i.online_payment.percent),
            ("electronic_result", i.electronic_result.percent),
            ("digitised", i.digitised.percent),
            ("synced", i.synced.percent),
        ] {
            if let Some(v) = v {
                out.push_str(&format!(
                    "gateway_indicator_percent{{unit=\"{}\",indicator=\"{name}\"}} {v}\n",
                    esc(&row.key)
                ));
            }
        }
    }
    out
}

/// Recompute the unit gauges of the current month every `every` until `cancel`.
pub async fn refresh_gauges(
    store: Arc<dyn IndicatorStore>,
    rules: LiveRules,
    synced_to: String,
    every: Duration,
    cache: Arc<RwLock<Option<Report>>>,
    cancel: CancellationToken,
) {
    let every = every.max(Duration::from_secs(1));
    loop {
        let now = now_ms();
        match history::report(
            store.as_ref(),
            &rules.get(),
            &month_of(now),
            Level::Unit,
            now,
            &synced_to,
        )
        .await
        {
            Ok(r) => *cache.write().unwrap_or_else(|p| p.into_inner()) = Some(r),
            Err(e) => debug!(error = %e, "indicator gauges not refreshed"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Everything the running gateway needs for the index: the consumer, the gauges' refresh
/// and their renderer. `None` without an `[indicators]` section.
pub struct Wired {
    pub store: Arc<dyn IndicatorStore>,
    /// The rules in force; the catalogue's terms can be read again while running
    /// (`POST /api/v1/indicators/catalogue/reload`).
    pub rules: LiveRules,
    pub synced_to: String,
    pub at_risk_days: u32,
    /// `[indicators] lowest_min_dossiers`: the lowest-on-time list's minimum sample.
    pub lowest_min_dossiers: u64,
    pub counts: Arc<Counts>,
    pub gauges: Arc<RwLock<Option<Report>>>,
}

impl std::fmt::Debug for Wired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("indicators::Wired")
            .field("synced_to", &self.synced_to)
            .finish()
    }
}

/// Why the index cannot be set up, by step.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("indicators.holidays: {0}")]
    Calendar(#[from] crate::indicators::calendar::CalendarError),
    #[error("the indicator store: {0}")]
    Store(#[from] gw_store::StoreError),
}

impl Wired {
    /// The index of an `[indicators]` section over the store at `store_url`.
    pub async fn open(
        section: &crate::config::IndicatorsSection,
        store_url: &str,
        tls: Option<gw_store::PgTls>,
    ) -> Result<Wired, WireError> {
        Ok(Wired {
            store: gw_store::indicators::open_tls(store_url, tls).await?,
            rules: LiveRules::new(crate::indicators::rules(Some(section))?, None),
            synced_to: section.synced_to.clone(),
            at_risk_days: section.at_risk_days,
            lowest_min_dossiers: section.lowest_min_dossiers,
            counts: Arc::default(),
            gauges: Arc::default(),
        })
    }

    /// Spawn the consumer and the refresh; register the gauges' renderer.
    pub fn spawn(
        &self,
        engine: &crate::runtime::Engine,
        refresh: Duration,
        cancel: &CancellationToken,
        tasks: &mut tokio::task::JoinSet<()>,
    ) {
        let (gauges, counts) = (self.gauges.clone(), self.counts.clone());
        engine.metrics.add_renderer(Arc::new(move || {
            let g = gauges.read().unwrap_or_else(|p| p.into_inner());
            render_gauges(g.as_ref(), &counts)
        }));
        let (broker, store, counts, c) = (
            engine.broker.clone(),
            self.store.clone(),
            self.counts.clone(),
            cancel.clone(),
        );
        tasks.spawn(async move {
            if let Err(e) = consume(broker, INDICATORS_QUEUE.to_string(), store, counts, c).await {
                warn!(error = %e, "the indicator consumer stopped");
            }
        });
        tasks.spawn(refresh_gauges(
            self.store.clone(),
            self.rules.clone(),
            self.synced_to.clone(),
            refresh,
            self.gauges.clone(),
            cancel.clone(),
        ));
    }
}

/// A per-unit map of the at-risk list, for the API and the CLI.
pub type AtRiskByUnit = BTreeMap<String, Vec<crate::indicators::AtRisk>>;
