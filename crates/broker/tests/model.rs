//! Both brokers against one model of the retry/ack/dead-letter state machine.
//!
//! Random bounded sequences of publish, receive, ack, retry, reject, requeue, consumer crash
//! (the consumer is dropped with unsettled deliveries, whose handles the test keeps) and, on
//! the embedded broker only, lease expiry (a consumer goes silent past the lease term and a
//! new one takes its messages over) drive a real broker: [`EmbeddedBroker`] on a temp file,
//! or [`AmqpBroker`](gw_broker::amqp::AmqpBroker) on RabbitMQ (per case its own uniquely
//! named queue, deleted at the end; retries go through the smallest of the shared delay
//! tiers, `gw.retry.250ms`). The model tracks, per message id, whether it is pending (and
//! which delivered copy is current) or final (acked, dead-lettered), and its attempt count.
//! Checked at every step, on both brokers:
//!
//! - a delivery is of a published id that is not final (nothing comes back after an ack or a
//!   dead-letter), with the attempt count the retries gave it, never while the test holds
//!   the id's current copy under a live consumer, and marked `redelivered` when that copy
//!   was handed out before (a crash, a lease take-over or a requeue brought it back);
//! - settling through a live consumer's handle returns `Ok` and takes effect.
//!
//! Where the brokers differ, the model says exactly what each may do:
//!
//! - **Embedded.** The delivery tag is the copy's row (`seq`), stable across redeliveries:
//!   a redelivered id must come with its current copy's tag. A stale handle (a crashed
//!   consumer, or one whose lease expired and was taken over) still settles by tag: the
//!   first settle of the current copy wins, returns `Ok` and takes effect; a later one
//!   returns `Ok` and changes nothing; a stale requeue changes nothing. The one duplicate
//!   allowed (at-least-once): a copy that a stale holder settled while the current consumer
//!   had already leased it into its prefetch buffer may still be handed out once (a
//!   "ghost"); it never changes the model and settling it does nothing.
//! - **RabbitMQ.** A delivery tag names one delivery on one channel, so a redelivered copy
//!   has a new tag. A crash is the consumer's channel closing: the test waits (at most
//!   [`STEP`]) until the dropped consumer's channel is gone (`stats().unacked` of the queue,
//!   this process's unsettled deliveries, falls to 0), so the outcome of every later settle
//!   is determined. Every settle through the crashed consumer's handles then fails with
//!   [`BrokerError::ChannelClosed`] and changes nothing, and every copy it had not settled
//!   (handed out or still in its prefetch buffer) is delivered again. That redelivery is
//!   the only duplicate allowed: a copy settled through a live handle (ack, retry, reject,
//!   flushed on close before the channel goes) never comes back, and no id is delivered
//!   while its copy is held under the live consumer.
//!
//! And at the end: a fresh consumer drains every pending id (acks it) and then gets
//! nothing; the broker is closed and opened again (the embedded file reopened, a new
//! RabbitMQ connection), and then the queue is empty, a fresh consumer gets nothing (every
//! ack survived the close), every published id ended exactly once, acked or dead-lettered,
//! and the dead-letter queue holds exactly the rejected ids, each with the reject reason.
//!
//! Cases: 24 embedded, 12 RabbitMQ, or `PROPTEST_CASES` for each when set; at most 28 steps
//! each. Without RabbitMQ the RabbitMQ test prints why and passes, except under `CI=true`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gw_broker::amqp::DELAY_TIERS;
use gw_broker::conformance::message;
use gw_broker::embedded::{EmbeddedBroker, EmbeddedOptions};
use gw_broker::{
    dead_letter_queue, Broker, BrokerError, Consumer, Delivery, QueueSpec, HDR_DEAD_REASON,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{TestCaseResult, TestRunner};

/// The longest wait for a delivery that must come, or for a dropped consumer to be gone.
const STEP: Duration = Duration::from_secs(10);
const LEASE_TTL: Duration = Duration::from_millis(120);
const PREFETCH: u16 = 64;
const MAX_IDS: usize = 12;
const MAX_STEPS: usize = 28;
const REJECT_REASON: &str = "model test";

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Publish,
    Receive,
    Ack(Index),
    Retry(Index),
    Reject(Index),
    Requeue(Index),
    /// The consumer dies: dropped with its unsettled deliveries; a new one starts.
    Crash,
    /// The consumer goes silent past the lease term; a new one takes everything over.
    /// Embedded only (RabbitMQ has no lease term: a consumer's deliveries are its own until
    /// its channel closes).
    Expire,
}

fn ops(leases: bool) -> impl Strategy<Value = Vec<Op>> {
    let settle_or_not = prop_oneof![
        4 => Just(Op::Publish),
        6 => Just(Op::Receive),
        4 => any::<Index>().prop_map(Op::Ack),
        2 => any::<Index>().prop_map(Op::Retry),
        1 => any::<Index>().prop_map(Op::Reject),
        1 => any::<Index>().prop_map(Op::Requeue),
        1 => Just(Op::Crash),
    ];
    let op = if leases {
        prop_oneof![19 => settle_or_not, 1 => Just(Op::Expire)].boxed()
    } else {
        settle_or_not.boxed()
    };
    prop::collection::vec(op, 1..MAX_STEPS)
}

/// The broker under test, and what the model expects of it where the two differ.
enum Target {
    /// The embedded queue on a file in this directory.
    Embedded(tempfile::TempDir),
    /// RabbitMQ at [`common::url`], with the default topology.
    Rabbit,
}

impl Target {
    async fn open(&self) -> Arc<dyn Broker> {
        match self {
            Target::Embedded(dir) => {
                let opts = EmbeddedOptions {
                    lease_ttl: LEASE_TTL,
                    ..EmbeddedOptions::default()
                };
                Arc::new(EmbeddedBroker::open(dir.path().join("q.db"), opts).unwrap())
            }
            Target::Rabbit => common::connect().await,
        }
    }

    /// Whether a delivery tag names the copy across its deliveries (embedded: the row's
    /// `seq`) rather than one delivery on one channel (RabbitMQ).
    fn tag_is_copy(&self) -> bool {
        matches!(self, Target::Embedded(_))
    }

    /// Whether a stale handle still settles by tag (embedded) instead of failing with
    /// [`BrokerError::ChannelClosed`] (RabbitMQ).
    fn stale_settles(&self) -> bool {
        matches!(self, Target::Embedded(_))
    }

    /// The model's key for a delivery: the tag where it names the copy, else the tag within
    /// the consumer `generation` (a new consumer is a new channel, whose tags start at 1).
    fn key(&self, generation: u64, d: &Delivery) -> u64 {
        if self.tag_is_copy() {
            d.tag()
        } else {
            (generation << 32) | d.tag()
        }
    }

    /// The delay asked of a retry: none on the embedded queue; on RabbitMQ the smallest
    /// delay tier, so a retry really goes through a `gw.retry.*` queue and back.
    fn retry_delay(&self) -> Duration {
        match self {
            Target::Embedded(_) => Duration::ZERO,
            Target::Rabbit => DELAY_TIERS[0].1,
        }
    }

    /// How long to watch for a delivery that must not come: on RabbitMQ twice the smallest
    /// delay tier, so a stray copy of a retry would be back in time to be seen.
    fn quiet(&self) -> Duration {
        match self {
            Target::Embedded(_) => Duration::from_millis(150),
            Target::Rabbit => DELAY_TIERS[0].1 * 2,
        }
    }

    /// After a consumer was dropped: wait until it is gone. Embedded: at once (the drop
    /// releases its leases). RabbitMQ: its channel closes after flushing its queued acks,
    /// in a task the drop spawned; until then `unacked` counts its unsettled deliveries.
    async fn consumer_gone(&self, broker: &Arc<dyn Broker>, queue: &str) -> TestCaseResult {
        if let Target::Embedded(_) = self {
            return Ok(());
        }
        let deadline = Instant::now() + STEP;
        loop {
            let s = broker
                .stats(queue)
                .await
                .map_err(|e| fail(format!("stats of {queue}: {e}")))?;
            if s.unacked == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(fail(format!(
                    "a dropped consumer still holds {} unsettled deliveries after {STEP:?}",
                    s.unacked
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn fail(why: String) -> TestCaseError {
    TestCaseError::fail(why)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Final {
    Acked,
    Dead,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not final; `Some(key)`: the copy last handed out, `None`: a copy not handed out yet.
    Pending(Option<u64>),
    Final(Final),
}

/// A delivery the test holds; `live` while its consumer is the current one (and, embedded,
/// still owns the lease).
struct Held {
    d: Delivery,
    key: u64,
    live: bool,
}

#[derive(Debug, Clone, Copy)]
enum Settle {
    Ack,
    Retry,
    Reject,
    Requeue,
}

struct Model {
    state: BTreeMap<String, State>,
    /// Embedded: copies settled through a stale handle; each may still come out of a
    /// buffer once.
    ghosts: BTreeSet<u64>,
    attempts: BTreeMap<String, u32>,
    published: usize,
}

impl Model {
    fn pending(&self) -> usize {
        self.state
            .values()
            .filter(|s| matches!(s, State::Pending(_)))
            .count()
    }

    /// Whether this handle holds the current copy of a pending id.
    fn current(&self, h: &Held) -> bool {
        self.state.get(&h.d.message.id) == Some(&State::Pending(Some(h.key)))
    }

    /// Checks one delivery against the model and records it.
    fn delivered(
        &mut self,
        target: &Target,
        d: &Delivery,
        key: u64,
        held: &[Held],
    ) -> TestCaseResult {
        let id = &d.message.id;
        if self.ghosts.remove(&key) {
            return Ok(());
        }
        let state = *self
            .state
            .get(id)
            .ok_or_else(|| fail(format!("delivery of unknown id {id}")))?;
        match state {
            State::Final(f) => {
                return Err(fail(format!(
                    "{id} delivered again after it was {f:?}: {d:?}"
                )))
            }
            State::Pending(Some(t)) if t != key && target.tag_is_copy() => {
                return Err(fail(format!(
                    "{id}: copy {key} delivered, but the current copy is {t}: {d:?}"
                )))
            }
            _ => {}
        }
        if held
            .iter()
            .any(|h| h.live && h.d.message.id == *id && self.current(h))
        {
            return Err(fail(format!(
                "{id} delivered again while its current copy is held under a live consumer: {d:?}"
            )));
        }
        if let State::Pending(Some(_)) = state {
            prop_assert!(
                d.redelivered,
                "{} was handed out before, yet not marked redelivered: {:?}",
                id,
                d
            );
        }
        prop_assert_eq!(d.message.attempt, self.attempts[id], "attempt of {}", id);
        self.state.insert(id.clone(), State::Pending(Some(key)));
        Ok(())
    }

    /// Settles a held delivery as `how`, checks the outcome the broker reports, and records
    /// the effect the settle must have.
    async fn settle(&mut self, target: &Target, h: Held, how: Settle) -> TestCaseResult {
        let id = h.d.message.id.clone();
        let takes_effect = (h.live || target.stale_settles()) && self.current(&h);
        match how {
            // A requeued copy stays the current one: pending, handed out before.
            Settle::Requeue => {}
            _ if !takes_effect => {}
            Settle::Ack | Settle::Retry | Settle::Reject => {
                if !h.live {
                    // Embedded: the current consumer may hold this copy in its buffer.
                    self.ghosts.insert(h.key);
                }
                let next = match how {
                    Settle::Ack => State::Final(Final::Acked),
                    Settle::Reject => State::Final(Final::Dead),
                    _ => {
                        *self.attempts.get_mut(&id).unwrap() += 1;
                        State::Pending(None)
                    }
                };
                self.state.insert(id.clone(), next);
            }
        }
        let what = format!("{how:?} of {:?} (live consumer: {})", h.d, h.live);
        let outcome = match how {
            Settle::Ack => h.d.ack().await,
            Settle::Retry => {
                let headers = h.d.message.headers.clone();
                h.d.retry(headers, target.retry_delay()).await
            }
            Settle::Reject => h.d.reject(REJECT_REASON).await,
            Settle::Requeue => h.d.requeue().await,
        };
        match outcome {
            Ok(()) if h.live || target.stale_settles() => Ok(()),
            Err(BrokerError::ChannelClosed(_)) if !h.live && !target.stale_settles() => Ok(()),
            other => Err(fail(format!("{what}: {other:?}"))),
        }
    }
}

async fn next(c: &mut Box<dyn Consumer>, what: &str) -> Result<Delivery, TestCaseError> {
    match tokio::time::timeout(STEP, c.next()).await {
        Ok(Some(Ok(d))) => Ok(d),
        Ok(Some(Err(e))) => Err(fail(format!("{what}: consumer error: {e}"))),
        Ok(None) => Err(fail(format!("{what}: consumer closed"))),
        Err(_) => Err(fail(format!(
            "{what}: nothing delivered within {STEP:?} (a message was lost)"
        ))),
    }
}

async fn quiet(target: &Target, c: &mut Box<dyn Consumer>, what: &str) -> TestCaseResult {
    match tokio::time::timeout(target.quiet(), c.next()).await {
        Err(_) => Ok(()),
        Ok(Some(Ok(d))) => Err(fail(format!("{what}: unexpected delivery {d:?}"))),
        Ok(other) => Err(fail(format!("{what}: {other:?}"))),
    }
}

async fn consume(
    broker: &Arc<dyn Broker>,
    queue: &str,
) -> Result<Box<dyn Consumer>, TestCaseError> {
    broker
        .consume(queue, PREFETCH)
        .await
        .map_err(|e| fail(format!("consume {queue}: {e}")))
}

fn take(held: &mut Vec<Held>, at: &Index) -> Option<Held> {
    if held.is_empty() {
        None
    } else {
        let i = at.index(held.len());
        Some(held.remove(i))
    }
}

/// One case: `ops` on `queue` (declared here) of the broker `target` opens.
async fn run(target: &Target, queue: &str, ops: Vec<Op>) -> TestCaseResult {
    let broker = target.open().await;
    broker
        .declare(&[QueueSpec {
            name: queue.into(),
            delivery_limit: 1000,
        }])
        .await
        .map_err(|e| fail(format!("declare {queue}: {e}")))?;
    let mut m = Model {
        state: BTreeMap::new(),
        attempts: BTreeMap::new(),
        ghosts: BTreeSet::new(),
        published: 0,
    };
    // Each consumer started is a new generation (RabbitMQ: a new channel).
    let mut generation = 0u64;
    let mut consumer = consume(&broker, queue).await?;
    let mut held: Vec<Held> = Vec::new();

    for op in ops {
        let how = match op {
            Op::Publish => {
                if m.published >= MAX_IDS {
                    continue;
                }
                let id = format!("m{}", m.published);
                m.published += 1;
                broker
                    .publish(queue, message(&id, &format!("K{}", m.published % 3)))
                    .await
                    .map_err(|e| fail(format!("publish {id}: {e}")))?;
                m.state.insert(id.clone(), State::Pending(None));
                m.attempts.insert(id, 0);
                continue;
            }
            Op::Receive => {
                let live_current = held.iter().filter(|h| h.live && m.current(h)).count();
                if m.pending() <= live_current {
                    continue; // nothing may be delivered now
                }
                let d = next(&mut consumer, "receive").await?;
                let key = target.key(generation, &d);
                m.delivered(target, &d, key, &held)?;
                held.push(Held { d, key, live: true });
                continue;
            }
            Op::Crash => {
                drop(consumer);
                for h in &mut held {
                    h.live = false;
                }
                target.consumer_gone(&broker, queue).await?;
                generation += 1;
                consumer = consume(&broker, queue).await?;
                continue;
            }
            Op::Expire => {
                // Silent past the lease term; a new consumer takes every pending copy over.
                tokio::time::sleep(LEASE_TTL + Duration::from_millis(60)).await;
                generation += 1;
                let mut other = consume(&broker, queue).await?;
                for h in &mut held {
                    h.live = false;
                }
                for _ in 0..m.pending() {
                    let d = next(&mut other, "take-over after lease expiry").await?;
                    let key = target.key(generation, &d);
                    m.delivered(target, &d, key, &held)?;
                    held.push(Held { d, key, live: true });
                }
                drop(consumer);
                consumer = other;
                continue;
            }
            Op::Ack(at) => (at, Settle::Ack),
            Op::Retry(at) => (at, Settle::Retry),
            Op::Reject(at) => (at, Settle::Reject),
            Op::Requeue(at) => (at, Settle::Requeue),
        };
        let (at, how) = how;
        if let Some(h) = take(&mut held, &at) {
            m.settle(target, h, how).await?;
        }
    }

    // Final drain: a fresh consumer acks every pending id, then gets nothing more.
    drop(consumer);
    for h in &mut held {
        h.live = false;
    }
    target.consumer_gone(&broker, queue).await?;
    generation += 1;
    let mut consumer = consume(&broker, queue).await?;
    for _ in 0..m.pending() {
        let d = next(&mut consumer, "final drain").await?;
        let key = target.key(generation, &d);
        m.delivered(target, &d, key, &held)?;
        m.state
            .insert(d.message.id.clone(), State::Final(Final::Acked));
        let what = format!("final ack of {d:?}");
        d.ack().await.map_err(|e| fail(format!("{what}: {e}")))?;
    }
    quiet(target, &mut consumer, "after the final drain").await?;
    drop(held);
    drop(consumer);
    prop_assert_eq!(m.pending(), 0);
    prop_assert_eq!(
        m.state.len(),
        m.published,
        "every published id has a final state"
    );

    // Closed and opened again: every ack survived the close.
    broker.close().await;
    drop(broker);
    let broker = target.open().await;
    let stats = broker
        .stats(queue)
        .await
        .map_err(|e| fail(format!("stats of {queue}: {e}")))?;
    prop_assert_eq!(
        (stats.ready, stats.unacked),
        (0, 0),
        "queue empty at the end"
    );
    let mut consumer = consume(&broker, queue).await?;
    quiet(
        target,
        &mut consumer,
        "after closing and opening the broker again",
    )
    .await?;
    drop(consumer);

    let dead: BTreeSet<String> = m
        .state
        .iter()
        .filter(|(_, s)| **s == State::Final(Final::Dead))
        .map(|(id, _)| id.clone())
        .collect();
    let dlq = dead_letter_queue(queue);
    let mut got = BTreeSet::new();
    if !dead.is_empty() {
        let mut c = consume(&broker, &dlq).await?;
        for _ in 0..dead.len() {
            let d = next(&mut c, "dead-letter queue").await?;
            prop_assert!(
                got.insert(d.message.id.clone()),
                "{} dead-lettered twice",
                d.message.id
            );
            prop_assert_eq!(
                d.message.headers.get(HDR_DEAD_REASON).map(String::as_str),
                Some(REJECT_REASON),
                "reason of {:?}",
                d
            );
            let what = format!("ack of {d:?}");
            d.ack().await.map_err(|e| fail(format!("{what}: {e}")))?;
        }
        quiet(target, &mut c, "dead-letter queue after the rejected ids").await?;
    } else if let Ok(s) = broker.stats(&dlq).await {
        prop_assert_eq!(
            s.ready,
            0,
            "nothing was rejected, yet the DLQ holds messages"
        );
    }
    prop_assert_eq!(
        got,
        dead,
        "the dead-letter queue holds exactly the rejected ids"
    );
    broker.close().await;
    Ok(())
}

proptest! {
    #![proptest_config(config(24))]

    #[test]
    fn embedded_broker_matches_the_model(ops in ops(true)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let target = Target::Embedded(tempfile::tempdir().unwrap());
        rt.block_on(run(&target, "model.q", ops))?;
    }
}

/// The same model on RabbitMQ, each case on its own queue (`gw.test.model.<uuid>` and its
/// `.dlq`), deleted when the case ends, pass or fail.
#[test]
fn rabbitmq_broker_matches_the_model() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Skips (printing why) without RabbitMQ, or fails under CI=true.
    let Some(rabbit) = rt.block_on(common::broker()) else {
        return;
    };
    // A failing case costs up to STEP, so shrinking is capped at 90 s: the smallest
    // failing input found by then is reported (within nextest's 5 minute limit).
    let mut runner = TestRunner::new(ProptestConfig {
        max_shrink_time: 90_000,
        ..config(12)
    });
    let outcome = runner.run(&ops(false), |ops| {
        rt.block_on(async {
            let queue = common::unique("model");
            let _cleanup = common::Cleanup(vec![queue.clone()]);
            run(&Target::Rabbit, &queue, ops).await
        })
    });
    rt.block_on(rabbit.close());
    if let Err(e) = outcome {
        panic!("{e}");
    }
}
