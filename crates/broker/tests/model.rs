//! The embedded broker against a model of the retry/ack/dead-letter state machine.
//!
//! Random bounded sequences of publish, receive, ack, retry, reject, requeue, consumer crash
//! (dropped with unsettled deliveries) and lease expiry (a consumer goes silent past the lease
//! term and a new one takes its messages over) drive a real [`EmbeddedBroker`] on a temp file.
//! The model tracks, per message id, whether it is pending (and which delivered copy is
//! current) or final (acked, dead-lettered), and its attempt count. Checked at every step:
//!
//! - a delivery is of a published id that is not final (nothing comes back after an ack or a
//!   dead-letter), of its current copy or of a fresh copy after a retry, with the attempt
//!   count the retries gave it, and never of a copy the test holds under a live lease;
//! - settling a copy that was already settled through another handle (a consumer whose lease
//!   expired and was taken over, or a crashed one) changes nothing: the first settle wins.
//!   The one duplicate allowed (at-least-once): a copy that a stale holder settled while the
//!   current consumer had already leased it into its prefetch buffer may still be handed out
//!   once (a "ghost"); it never changes the model and settling it does nothing.
//!
//! And at the end, after a final drain: every published id ended exactly once, acked or
//! dead-lettered; the queue is empty; the dead-letter queue holds exactly the rejected ids.
//!
//! Cases: 24, or `PROPTEST_CASES` when set; at most 28 steps each.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use gw_broker::conformance::message;
use gw_broker::embedded::{EmbeddedBroker, EmbeddedOptions};
use gw_broker::{dead_letter_queue, Broker, Consumer, Delivery, QueueSpec};
use proptest::prelude::*;
use proptest::sample::Index;

const QUEUE: &str = "model.q";
const STEP: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(150);
const LEASE_TTL: Duration = Duration::from_millis(120);
const PREFETCH: u16 = 64;

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
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Publish),
        6 => Just(Op::Receive),
        4 => any::<Index>().prop_map(Op::Ack),
        2 => any::<Index>().prop_map(Op::Retry),
        1 => any::<Index>().prop_map(Op::Reject),
        1 => any::<Index>().prop_map(Op::Requeue),
        1 => Just(Op::Crash),
        1 => Just(Op::Expire),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Final {
    Acked,
    Dead,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not final; `Some(tag)`: the copy last delivered, `None`: a copy not delivered yet.
    Pending(Option<u64>),
    Final(Final),
}

/// A delivery the test holds; `live` while its consumer still owns the lease.
struct Held {
    d: Delivery,
    live: bool,
}

struct Model {
    state: BTreeMap<String, State>,
    /// Copies settled through a stale handle: each may still come out of a buffer once.
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

    /// Checks one delivery against the model and records it.
    fn delivered(&mut self, d: &Delivery, held: &[Held]) -> Result<(), TestCaseError> {
        let id = &d.message.id;
        let tag = d.tag();
        if self.ghosts.remove(&tag) {
            return Ok(());
        }
        let state = *self
            .state
            .get(id)
            .ok_or_else(|| TestCaseError::fail(format!("delivery of unknown id {id}")))?;
        match state {
            State::Final(f) => {
                return Err(TestCaseError::fail(format!(
                    "{id} delivered again after it was {f:?}: {d:?}"
                )))
            }
            State::Pending(Some(t)) if t != tag => {
                return Err(TestCaseError::fail(format!(
                    "{id}: copy {tag} delivered, but the current copy is {t}: {d:?}"
                )))
            }
            _ => {}
        }
        if held.iter().any(|h| h.live && h.d.tag() == tag) {
            return Err(TestCaseError::fail(format!(
                "{id}: copy {tag} delivered twice under a live lease: {d:?}"
            )));
        }
        prop_assert_eq!(d.message.attempt, self.attempts[id], "attempt of {}", id);
        self.state.insert(id.clone(), State::Pending(Some(tag)));
        Ok(())
    }

    /// A stale holder settles the current copy: a live consumer may have it buffered.
    fn settled_by(&mut self, h: &Held) {
        if !h.live {
            self.ghosts.insert(h.d.tag());
        }
    }

    /// Whether settling this handle takes effect: it holds the current copy of a pending id.
    fn current(&self, d: &Delivery) -> bool {
        self.state.get(&d.message.id) == Some(&State::Pending(Some(d.tag())))
    }
}

async fn next(c: &mut Box<dyn Consumer>, what: &str) -> Result<Delivery, TestCaseError> {
    match tokio::time::timeout(STEP, c.next()).await {
        Ok(Some(Ok(d))) => Ok(d),
        Ok(Some(Err(e))) => Err(TestCaseError::fail(format!("{what}: consumer error: {e}"))),
        Ok(None) => Err(TestCaseError::fail(format!("{what}: consumer closed"))),
        Err(_) => Err(TestCaseError::fail(format!(
            "{what}: nothing delivered within {STEP:?} (a message was lost)"
        ))),
    }
}

async fn quiet(c: &mut Box<dyn Consumer>, what: &str) -> Result<(), TestCaseError> {
    match tokio::time::timeout(QUIET, c.next()).await {
        Err(_) => Ok(()),
        Ok(Some(Ok(d))) => Err(TestCaseError::fail(format!(
            "{what}: unexpected delivery {d:?}"
        ))),
        Ok(other) => Err(TestCaseError::fail(format!("{what}: {other:?}"))),
    }
}

fn take(held: &mut Vec<Held>, at: &Index) -> Option<Held> {
    if held.is_empty() {
        None
    } else {
        let i = at.index(held.len());
        Some(held.remove(i))
    }
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions {
        lease_ttl: LEASE_TTL,
        ..EmbeddedOptions::default()
    };
    let broker: Arc<dyn Broker> =
        Arc::new(EmbeddedBroker::open(dir.path().join("q.db"), opts).unwrap());
    broker
        .declare(&[QueueSpec {
            name: QUEUE.into(),
            delivery_limit: 1000,
        }])
        .await
        .unwrap();
    let mut m = Model {
        state: BTreeMap::new(),
        attempts: BTreeMap::new(),
        ghosts: BTreeSet::new(),
        published: 0,
    };
    let mut consumer = broker.consume(QUEUE, PREFETCH).await.unwrap();
    let mut held: Vec<Held> = Vec::new();

    for op in ops {
        match op {
            Op::Publish => {
                if m.published >= 12 {
                    continue;
                }
                let id = format!("m{}", m.published);
                m.published += 1;
                broker
                    .publish(QUEUE, message(&id, &format!("K{}", m.published % 3)))
                    .await
                    .unwrap();
                m.state.insert(id.clone(), State::Pending(None));
                m.attempts.insert(id, 0);
            }
            Op::Receive => {
                let live_current = held.iter().filter(|h| h.live && m.current(&h.d)).count();
                if m.pending() <= live_current {
                    continue; // nothing may be delivered now
                }
                let d = next(&mut consumer, "receive").await?;
                m.delivered(&d, &held)?;
                held.push(Held { d, live: true });
            }
            Op::Ack(at) => {
                let Some(h) = take(&mut held, &at) else {
                    continue;
                };
                if m.current(&h.d) {
                    m.settled_by(&h);
                    m.state
                        .insert(h.d.message.id.clone(), State::Final(Final::Acked));
                }
                h.d.ack().await.unwrap();
            }
            Op::Retry(at) => {
                let Some(h) = take(&mut held, &at) else {
                    continue;
                };
                let id = h.d.message.id.clone();
                if m.current(&h.d) {
                    m.settled_by(&h);
                    m.state.insert(id.clone(), State::Pending(None));
                    *m.attempts.get_mut(&id).unwrap() += 1;
                }
                let headers = h.d.message.headers.clone();
                h.d.retry(headers, Duration::ZERO).await.unwrap();
            }
            Op::Reject(at) => {
                let Some(h) = take(&mut held, &at) else {
                    continue;
                };
                if m.current(&h.d) {
                    m.settled_by(&h);
                    m.state
                        .insert(h.d.message.id.clone(), State::Final(Final::Dead));
                }
                h.d.reject("model test").await.unwrap();
            }
            Op::Requeue(at) => {
                // A stale holder's requeue does nothing (the lease is not its own any more);
                // either way the copy stays current and pending.
                let Some(h) = take(&mut held, &at) else {
                    continue;
                };
                h.d.requeue().await.unwrap();
            }
            Op::Crash => {
                drop(consumer);
                for h in &mut held {
                    h.live = false;
                }
                consumer = broker.consume(QUEUE, PREFETCH).await.unwrap();
            }
            Op::Expire => {
                // Silent past the lease term; a new consumer takes every pending copy over.
                tokio::time::sleep(LEASE_TTL + Duration::from_millis(60)).await;
                let mut other = broker.consume(QUEUE, PREFETCH).await.unwrap();
                for h in &mut held {
                    h.live = false;
                }
                for _ in 0..m.pending() {
                    let d = next(&mut other, "take-over after lease expiry").await?;
                    m.delivered(&d, &held)?;
                    held.push(Held { d, live: true });
                }
                drop(consumer);
                consumer = other;
            }
        }
    }

    // Final drain: a fresh consumer acks every pending id.
    drop(consumer);
    for h in &mut held {
        h.live = false;
    }
    let mut consumer = broker.consume(QUEUE, PREFETCH).await.unwrap();
    for _ in 0..m.pending() {
        let d = next(&mut consumer, "final drain").await?;
        m.delivered(&d, &held)?;
        m.state
            .insert(d.message.id.clone(), State::Final(Final::Acked));
        d.ack().await.unwrap();
    }
    quiet(&mut consumer, "after the final drain").await?;
    drop(held);
    drop(consumer);
    prop_assert_eq!(m.pending(), 0);
    prop_assert_eq!(
        m.state.len(),
        m.published,
        "every published id has a final state"
    );
    let stats = broker.stats(QUEUE).await.unwrap();
    prop_assert_eq!(
        (stats.ready, stats.unacked),
        (0, 0),
        "queue empty at the end"
    );

    let dead: BTreeSet<String> = m
        .state
        .iter()
        .filter(|(_, s)| **s == State::Final(Final::Dead))
        .map(|(id, _)| id.clone())
        .collect();
    let dlq = dead_letter_queue(QUEUE);
    let mut got = BTreeSet::new();
    if !dead.is_empty() {
        let mut c = broker.consume(&dlq, PREFETCH).await.unwrap();
        for _ in 0..dead.len() {
            let d = next(&mut c, "dead-letter queue").await?;
            prop_assert!(
                got.insert(d.message.id.clone()),
                "{} dead-lettered twice",
                d.message.id
            );
            d.ack().await.unwrap();
        }
        quiet(&mut c, "dead-letter queue after the rejected ids").await?;
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
    fn embedded_broker_matches_the_model(ops in prop::collection::vec(op(), 1..28)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops))?;
    }
}
