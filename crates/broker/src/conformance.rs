//! The conformance suite every [`Broker`] implementation passes (the embedded SQLite queue and
//! RabbitMQ alike): one `pub async fn` per scenario of the invariants stated in the crate doc.
//!
//! # Contract of a scenario
//!
//! - It takes the broker under test and a `queue` name that no other test uses (build one with
//!   [`unique_queue`]). It declares exactly that queue (and so its `<queue>.dlq`) and no other,
//!   so a caller that must clean up deletes `queue` and [`dead_letter_queue`]`(queue)`.
//! - It panics with a message naming the scenario and the broken expectation.
//! - It is bounded in time: every wait for a delivery is under a timeout ([`STEP`] when a
//!   delivery is expected, [`QUIET`] when none may come), and polling for statistics gives up
//!   after [`STEP`].
//! - It leaves the broker open and the queue empty (every delivery it takes is settled).
//! - "A dead consumer" is simulated by dropping the [`Consumer`] and its unsettled
//!   [`Delivery`]s: implementations redeliver them once the consumer is closed (RabbitMQ: the
//!   channel closes; embedded: the consumer's leases are released).
//!
//! [`conformance_tests!`](crate::conformance_tests) turns the whole list into `#[tokio::test]`s.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::time::timeout;

use crate::{
    dead_letter_queue, Broker, BrokerError, Consumer, Delivery, Message, QueueSpec, QueueStats,
    HDR_DEAD_REASON,
};

/// How long a scenario waits for a delivery that must come (or for statistics to settle).
pub const STEP: Duration = Duration::from_secs(10);
/// How long a scenario watches for a delivery that must not come.
pub const QUIET: Duration = Duration::from_millis(600);
/// The delay used by the retry scenario.
pub const RETRY_DELAY: Duration = Duration::from_millis(300);
/// Timer slack allowed when checking "not before `RETRY_DELAY`" (clock granularity: the
/// embedded queue counts whole milliseconds of wall-clock time).
const TIMER_SLACK: Duration = Duration::from_millis(20);
/// "Gives it back at once": a requeued message must come back within this.
const REQUEUE_WITHIN: Duration = Duration::from_secs(2);

/// A queue name no other test (nor an earlier run) uses: `gw.conformance.<scenario>.<uuid>`.
pub fn unique_queue(scenario: &str) -> String {
    format!(
        "gw.conformance.{scenario}.{}",
        uuid::Uuid::now_v7().simple()
    )
}

/// Every scenario, by name, in a stable order.
pub const SCENARIOS: &[&str] = &[
    "publish_consume_ack",
    "publish_to_undeclared_queue_fails",
    "publish_batch_keeps_order",
    "fifo_single_key",
    "fifo_interleaved_keys",
    "retry_redelivers_after_delay",
    "reject_moves_to_dead_letter_queue",
    "dead_consumer_redelivers",
    "delivery_limit_dead_letters",
    "prefetch_bounds_unacked",
    "requeue_redelivers_at_once",
];

/// Run one scenario by its name in [`SCENARIOS`].
pub async fn run(name: &str, broker: Arc<dyn Broker>, queue: &str) {
    match name {
        "publish_consume_ack" => publish_consume_ack(broker, queue).await,
        "publish_to_undeclared_queue_fails" => {
            publish_to_undeclared_queue_fails(broker, queue).await
        }
        "publish_batch_keeps_order" => publish_batch_keeps_order(broker, queue).await,
        "fifo_single_key" => fifo_single_key(broker, queue).await,
        "fifo_interleaved_keys" => fifo_interleaved_keys(broker, queue).await,
        "retry_redelivers_after_delay" => retry_redelivers_after_delay(broker, queue).await,
        "reject_moves_to_dead_letter_queue" => {
            reject_moves_to_dead_letter_queue(broker, queue).await
        }
        "dead_consumer_redelivers" => dead_consumer_redelivers(broker, queue).await,
        "delivery_limit_dead_letters" => delivery_limit_dead_letters(broker, queue).await,
        "prefetch_bounds_unacked" => prefetch_bounds_unacked(broker, queue).await,
        "requeue_redelivers_at_once" => requeue_redelivers_at_once(broker, queue).await,
        other => panic!("unknown conformance scenario {other:?}"),
    }
}

/// Run every scenario in turn, each on its own fresh queue.
pub async fn run_all(broker: Arc<dyn Broker>) {
    for name in SCENARIOS {
        run(name, broker.clone(), &unique_queue(name)).await;
    }
}

/// Expands to one `#[tokio::test]` per scenario. `$make` is an async fn (or closure returning
/// a future) giving `(Arc<dyn Broker>, guard)`; the guard (e.g. a temp dir) lives until the
/// test ends, after which the broker is closed.
///
/// ```ignore
/// async fn embedded() -> (Arc<dyn Broker>, tempfile::TempDir) { ... }
/// gw_broker::conformance_tests!(embedded);
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@each $make;
            publish_consume_ack,
            publish_to_undeclared_queue_fails,
            publish_batch_keeps_order,
            fifo_single_key,
            fifo_interleaved_keys,
            retry_redelivers_after_delay,
            reject_moves_to_dead_letter_queue,
            dead_consumer_redelivers,
            delivery_limit_dead_letters,
            prefetch_bounds_unacked,
            requeue_redelivers_at_once
        );
    };
    (@each $make:path; $($name:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (broker, _guard) = $make().await;
                let queue = $crate::conformance::unique_queue(stringify!($name));
                $crate::conformance::$name(broker.clone(), &queue).await;
                broker.close().await;
            }
        )+
    };
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A message with a recognisable id, key, header and body.
pub fn message(id: &str, key: &str) -> Message {
    let mut headers = BTreeMap::new();
    headers.insert("traceparent".to_string(), format!("00-{id}-01"));
    Message {
        id: id.to_string(),
        key: key.to_string(),
        headers,
        attempt: 0,
        body: Bytes::from(format!("body of {id}")),
    }
}

async fn declare(broker: &Arc<dyn Broker>, scenario: &str, queue: &str, delivery_limit: u32) {
    let spec = QueueSpec {
        name: queue.to_string(),
        delivery_limit,
    };
    broker
        .declare(std::slice::from_ref(&spec))
        .await
        .unwrap_or_else(|e| panic!("{scenario}: declare {queue}: {e}"));
}

async fn consume(
    broker: &Arc<dyn Broker>,
    scenario: &str,
    queue: &str,
    prefetch: u16,
) -> Box<dyn Consumer> {
    match timeout(STEP, broker.consume(queue, prefetch)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!("{scenario}: consume {queue}: {e}"),
        Err(_) => panic!("{scenario}: consume {queue} did not return within {STEP:?}"),
    }
}

async fn publish(broker: &Arc<dyn Broker>, scenario: &str, queue: &str, msg: Message) {
    let id = msg.id.clone();
    match timeout(STEP, broker.publish(queue, msg)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{scenario}: publish {id} to {queue}: {e}"),
        Err(_) => panic!("{scenario}: publish {id} to {queue} was not confirmed within {STEP:?}"),
    }
}

/// The next delivery, which must come within `within`.
async fn next_within(
    c: &mut Box<dyn Consumer>,
    within: Duration,
    scenario: &str,
    what: &str,
) -> Delivery {
    match timeout(within, c.next()).await {
        Ok(Some(Ok(d))) => d,
        Ok(Some(Err(e))) => panic!("{scenario}: waiting for {what}: consumer error: {e}"),
        Ok(None) => panic!("{scenario}: waiting for {what}: the consumer closed"),
        Err(_) => panic!("{scenario}: {what} was not delivered within {within:?}"),
    }
}

async fn next(c: &mut Box<dyn Consumer>, scenario: &str, what: &str) -> Delivery {
    next_within(c, STEP, scenario, what).await
}

/// No delivery may come within `within`.
async fn expect_quiet(c: &mut Box<dyn Consumer>, within: Duration, scenario: &str, why: &str) {
    match timeout(within, c.next()).await {
        Err(_) => {}
        Ok(Some(Ok(d))) => panic!("{scenario}: {why}, yet {d:?} was delivered"),
        Ok(Some(Err(e))) => panic!("{scenario}: {why}; instead the consumer failed: {e}"),
        Ok(None) => panic!("{scenario}: {why}; instead the consumer closed"),
    }
}

async fn settle<F, Fut>(scenario: &str, what: &str, f: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), BrokerError>>,
{
    match timeout(STEP, f()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{scenario}: {what} failed: {e}"),
        Err(_) => panic!("{scenario}: {what} did not return within {STEP:?}"),
    }
}

async fn ack(d: Delivery, scenario: &str) {
    let what = format!("ack of {}", d.message.id);
    settle(scenario, &what, || d.ack()).await;
}

/// Poll [`Broker::stats`] until `want` holds (acks may be coalesced, so figures settle late).
async fn stats_until(
    broker: &Arc<dyn Broker>,
    scenario: &str,
    queue: &str,
    what: &str,
    want: impl Fn(&QueueStats) -> bool,
) -> QueueStats {
    let deadline = Instant::now() + STEP;
    loop {
        let s = match timeout(STEP, broker.stats(queue)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => panic!("{scenario}: stats of {queue}: {e}"),
            Err(_) => panic!("{scenario}: stats of {queue} did not return within {STEP:?}"),
        };
        if want(&s) {
            return s;
        }
        if Instant::now() >= deadline {
            panic!("{scenario}: stats of {queue} never showed {what} within {STEP:?}; last: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn stats_empty(broker: &Arc<dyn Broker>, scenario: &str, queue: &str) {
    stats_until(broker, scenario, queue, "ready = 0 and unacked = 0", |s| {
        s.ready == 0 && s.unacked == 0
    })
    .await;
}

fn assert_delivery(d: &Delivery, want: &Message, queue: &str, scenario: &str, what: &str) {
    assert_eq!(
        &d.message, want,
        "{scenario}: {what}: the delivered message differs from the published one"
    );
    assert_eq!(
        d.queue, queue,
        "{scenario}: {what}: Delivery::queue names the wrong queue"
    );
    assert!(
        d.delivery_count >= 1,
        "{scenario}: {what}: delivery_count must be >= 1, got {}",
        d.delivery_count
    );
}

fn assert_first_delivery(d: &Delivery, want: &Message, queue: &str, scenario: &str, what: &str) {
    assert_delivery(d, want, queue, scenario, what);
    assert!(
        !d.redelivered,
        "{scenario}: {what}: a first delivery has redelivered = false, got {d:?}"
    );
    assert_eq!(
        d.delivery_count, 1,
        "{scenario}: {what}: a first delivery has delivery_count = 1, got {d:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// Publish, consume, ack: the message arrives intact, stats follow it, nothing comes back.
pub async fn publish_consume_ack(broker: Arc<dyn Broker>, queue: &str) {
    const S: &str = "publish_consume_ack";
    declare(&broker, S, queue, 5).await;
    // Declaring again is idempotent.
    declare(&broker, S, queue, 5).await;
    let m = message("m-1", "K-1");
    publish(&broker, S, queue, m.clone()).await;
    stats_until(&broker, S, queue, "ready = 1 after one publish", |s| {
        s.ready == 1 && s.unacked == 0
    })
    .await;

    let mut c = consume(&broker, S, queue, 10).await;
    let d = next(&mut c, S, "the published message").await;
    assert_first_delivery(&d, &m, queue, S, "the published message");
    stats_until(
        &broker,
        S,
        queue,
        "ready = 0, unacked = 1 while the delivery is held",
        |s| s.ready == 0 && s.unacked == 1,
    )
    .await;

    ack(d, S).await;
    expect_quiet(&mut c, QUIET, S, "nothing may come back after the ack").await;
    stats_empty(&broker, S, queue).await;
    drop(c);

    // And not to a new consumer either.
    let mut c = consume(&broker, S, queue, 10).await;
    expect_quiet(
        &mut c,
        QUIET,
        S,
        "an acked message may not come back to a new consumer",
    )
    .await;
}

/// Publishing to a queue that was never declared is an error, never a silent drop.
pub async fn publish_to_undeclared_queue_fails(broker: Arc<dyn Broker>, queue: &str) {
    const S: &str = "publish_to_undeclared_queue_fails";
    // `queue` itself is left undeclared on purpose.
    match timeout(STEP, broker.publish(queue, message("lost", "K"))).await {
        Ok(Err(BrokerError::Unroutable { queue: q })) => {
            assert_eq!(q, queue, "{S}: Unroutable names the wrong queue")
        }
        Ok(other) => {
            panic!("{S}: publish to an undeclared queue must be Err(Unroutable), got {other:?}")
        }
        Err(_) => panic!("{S}: publish to an undeclared queue did not return within {STEP:?}"),
    }
}

/// `publish_batch` keeps the order of the batch.
pub async fn publish_batch_keeps_order(broker: Arc<dyn Broker>, queue: &str) {
    const S: &str = "publish_batch_keeps_order";
    declare(&broker, S, queue, 5).await;
    let batch: Vec<Message> = (0..50)
        .map(|i| message(&format!("b-{i:03}"), "K-1"))
        .collect();
    match timeout(STEP, broker.publish_batch(queue, batch.clone())).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{S}: publish_batch: {e}"),
        Err(_) => panic!("{S}: publish_batch was not confirmed within {STEP:?}"),
    }
    stats_until(&broker, S, queue, "ready = 50 after the batch", |s| {
        s.ready == 50
    })
    .await;
    let mut c = consume(&broker, S, queue, 20).await;
    for (i, want) in batch.iter().enumerate() {
        let d = next(&mut c, S, &format!("batch message #{i}")).await;
        assert_first_delivery(
            &d,
            want,
            queue,
            S,
            &format!("batch message #{i} (order of the batch)"),
        );
        ack(d, S).await;
    }
    expect_quiet(&mut c, QUIET, S, "the batch was fully consumed").await;
    stats_empty(&broker, S, queue).await;
}

async fn publish_then_expect_fifo(
    broker: Arc<dyn Broker>,
    queue: &str,
    scenario: &str,
    msgs: Vec<Message>,
) {
    declare(&broker, scenario, queue, 5).await;
    for m in &msgs {
        publish(&broker, scenario, queue, m.clone()).await;
    }
    let mut c = consume(&broker, scenario, queue, 32).await;
    let mut last_of_key: BTreeMap<String, usize> = BTreeMap::new();
    for (i, want) in msgs.iter().enumerate() {
        let d = next(&mut c, scenario, &format!("message #{i} ({})", want.id)).await;
        assert_first_delivery(
            &d,
            want,
            queue,
            scenario,
            &format!("message #{i} in publish order"),
        );
        if let Some(prev) = last_of_key.insert(d.message.key.clone(), i) {
            assert!(prev < i, "{scenario}: key {} went backwards", d.message.key);
        }
        ack(d, scenario).await;
    }
    expect_quiet(&mut c, QUIET, scenario, "every message was consumed once").await;
    stats_empty(&broker, scenario, queue).await;
}

/// Many messages of one key come out in publish order.
pub async fn fifo_single_key(broker: Arc<dyn Broker>, queue: &str) {
    let msgs = (0..200)
        .map(|i| message(&format!("s-{i:04}"), "DOSSIER-1"))
        .collect();
    publish_then_expect_fifo(broker, queue, "fifo_single_key", msgs).await;
}

/// Interleaved keys on one queue: the queue order is the publish order (so each key's too).
pub async fn fifo_interleaved_keys(broker: Arc<dyn Broker>, queue: &str) {
    let keys = ["DOSSIER-A", "DOSSIER-B", "DOSSIER-C"];
    let msgs = (0..180)
        .map(|i| message(&format!("i-{i:04}"), keys[i % keys.len()]))
        .collect();
    publish_then_expect_fifo(broker, queue, "fifo_interleaved_keys", msgs).await;
}

/// `Delivery::retry` schedules a copy with `attempt + 1` and the new headers that is not
/// delivered before the delay and is delivered after it; the original is gone.
pub async fn retry_redelivers_after_delay(broker: Arc<dyn Broker>, queue: &str) {
    const S: &str = "retry_redelivers_after_delay";
    declare(&broker, S, queue, 5).await;
    let m = message("r-1", "K-1");
    publish(&broker, S, queue, m.clone()).await;
    let mut c = consume(&broker, S, queue, 10).await;
    let d = next(&mut c, S, "the first attempt").await;
    assert_first_delivery(&d, &m, queue, S, "the first attempt");

    let mut headers = BTreeMap::new();
    headers.insert("traceparent".to_string(), "00-retry-01".to_string());
    headers.insert("x-last-error".to_string(), "HTTP 503".to_string());
    let asked = Instant::now();
    settle(S, "retry", || d.retry(headers.clone(), RETRY_DELAY)).await;

    // While the delay runs the queue shows nothing ready or unacked (the original is gone,
    // the copy waits). Once the delay is over the copy may legitimately be ready, so a slow
    // machine that could not look in time skips the check rather than fail it.
    loop {
        let s = match timeout(STEP, broker.stats(queue)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => panic!("{S}: stats of {queue}: {e}"),
            Err(_) => panic!("{S}: stats of {queue} did not return within {STEP:?}"),
        };
        if asked.elapsed() + TIMER_SLACK >= RETRY_DELAY {
            break;
        }
        if s.ready == 0 && s.unacked == 0 {
            if let Some(delayed) = s.delayed {
                assert_eq!(
                    delayed, 1,
                    "{S}: stats.delayed counts the scheduled retry: {s:?}"
                );
            }
            break;
        }
        assert_eq!(
            s.ready, 0,
            "{S}: the retried copy is ready before its delay: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let d = next(&mut c, S, "the retried copy").await;
    let waited = asked.elapsed();
    assert!(
        waited + TIMER_SLACK >= RETRY_DELAY,
        "{S}: the retried copy came after {waited:?}, before its delay of {RETRY_DELAY:?}"
    );
    let want = Message {
        attempt: 1,
        headers: headers.clone(),
        ..m.clone()
    };
    assert_delivery(
        &d,
        &want,
        queue,
        S,
        "the retried copy (attempt + 1, headers replaced)",
    );
    ack(d, S).await;
    expect_quiet(
        &mut c,
        QUIET,
        S,
        "the original was acked by the retry and the copy by us",
    )
    .await;
    stats_empty(&broker, S, queue).await;
}

/// `Delivery::reject` moves the message to `<queue>.dlq` with the reason header, at once.
pub async fn reject_moves_to_dead_letter_queue(broker: Arc<dyn Broker>, queue: &str) {
    const S: &str = "reject_moves_to_dead_letter_queue";
    declare(&broker, S, queue, 5).await;
    let m = message("x-1", "K-1");
    publish(&broker, S, queue, m.clone()).await;
    let mut c = consume(&broker, S, queue, 10).await;
    let d = next(&mut c, S, "the message to reject").await;
    assert_first_delivery(&d, &m, queue, S, "the message to reject");
    let reason = "validation refused: field maHoSo missing";
    settle(S, "reject", || d.reject(reason)).await;
    expect_quiet(
        &mut c,
        QUIET,
        S,
        "a rejected message is not redelivered on its queue",
    )
    .await;
    stats_empty(&broker, S, queue).await;

    let dlq = dead_letter_queue(queue);
    let mut dc = consume(&broker, S, &dlq, 10).await;
    let d = next(&mut dc, S, "the rejected message on the dead-letter queue").await;
    assert_dead_letter(&d, &m, &dlq, S);
    assert_eq!(
        d.message.headers.get(HDR_DEAD_REASON).map(String::as_str),
        Some(reason),
        "{S}: the dead letter carries the reject reason in {HDR_DEAD_REASON}"
    );
    ack(d, S).await;
    expect_quiet(&mut dc, QUIET, S, "the dead-letter queue held one message").await;
    stats_empty(&broker, S, &dlq).await;
}

/// The original message (id, key, body, attempt and headers) plus a non-empty reason.
fn assert_dead_letter(d: &Delivery, original: &Message, dlq: &str, scenario: &str) {
    let what = "the dead letter";
    assert_eq!(
        d.queue, dlq,
        "{scenario}: {what} comes from the wrong queue"
    );
    assert_eq!(
        d.message.id, original.id,
        "{scenario}: {what} keeps the message id"
    );
    assert_eq!(
        d.message.key, original.key,
        "{scenario}: {what} keeps the key"
    );
    assert_eq!(
        d.message.body, original.body,
        "{scenario}: {what} keeps the original body"
    );
    assert_eq!(
        d.message.attempt, original.attempt,
        "{scenario}: {what} keeps the attempt count"
    );
    for (k, v) in &original.headers {
        assert_eq!(
            d.message.headers.get(k),
            Some(v),
            "{scenario}: {what} keeps the original header {k}; got headers {:?}",
            d.message.headers
        );
    }
    let reason = d.message.headers.get(HDR_DEAD_REASON);
    assert!(
        reason.is_some_and(|r| !r.is_empty()),
        "{scenario}: {what} says why in {HDR_DEAD_REASON}; got headers {:?}",
        d.message.headers
    );
}

/// A consumer that dies (dropped with unsettled deliveries) gets nothing lost: a new consumer
/// receives every message again with `redelivered = true` and `delivery_count >= 2`.
pub async fn dead_consumer_redelivers(broker: Arc<dyn Broker>, queue: &str) {
    const S: &str = "dead_consumer_redelivers";
    declare(&broker, S, queue, 5).await;
    let msgs: Vec<Message> = (0..3).map(|i| message(&format!("d-{i}"), "K-1")).collect();
    for m in &msgs {
        publish(&broker, S, queue, m.clone()).await;
    }
    let mut c = consume(&broker, S, queue, 10).await;
    let mut held = Vec::new();
    for (i, want) in msgs.iter().enumerate() {
        let d = next(&mut c, S, &format!("message #{i} before the consumer dies")).await;
        assert_first_delivery(
            &d,
            want,
            queue,
            S,
            &format!("message #{i} before the consumer dies"),
        );
        held.push(d);
    }
    // The consumer dies: neither it nor its deliveries settle anything.
    drop(held);
    drop(c);

    let mut c = consume(&broker, S, queue, 10).await;
    let mut seen = BTreeSet::new();
    for i in 0..msgs.len() {
        let d = next(
            &mut c,
            S,
            &format!("redelivery #{i} after the consumer died"),
        )
        .await;
        let want = msgs
            .iter()
            .find(|m| m.id == d.message.id)
            .unwrap_or_else(|| panic!("{S}: redelivered an unknown message {d:?}"));
        assert_delivery(&d, want, queue, S, "a redelivered message");
        assert!(
            d.redelivered,
            "{S}: a redelivery says redelivered = true: {d:?}"
        );
        assert!(
            d.delivery_count >= 2,
            "{S}: a redelivery has delivery_count >= 2: {d:?}"
        );
        assert!(
            seen.insert(d.message.id.clone()),
            "{S}: {} redelivered twice to one consumer",
            d.message.id
        );
        ack(d, S).await;
    }
    expect_quiet(
        &mut c,
        QUIET,
        S,
        "each message was redelivered once and acked",
    )
    .await;
    stats_empty(&broker, S, queue).await;
}

/// A message delivered `delivery_limit` times without an ack (a crash loop) is moved to
/// `<queue>.dlq` instead of being delivered again, and not lost.
pub async fn delivery_limit_dead_letters(broker: Arc<dyn Broker>, queue: &str) {
    const S: &str = "delivery_limit_dead_letters";
    const LIMIT: u32 = 3;
    declare(&broker, S, queue, LIMIT).await;
    let m = message("p-1", "POISON");
    publish(&broker, S, queue, m.clone()).await;
    for n in 1..=LIMIT {
        let mut c = consume(&broker, S, queue, 10).await;
        let d = next(&mut c, S, &format!("delivery #{n} of {LIMIT}")).await;
        assert_delivery(&d, &m, queue, S, &format!("delivery #{n}"));
        assert_eq!(
            d.delivery_count, n,
            "{S}: delivery #{n} has delivery_count = {n}: {d:?}"
        );
        assert_eq!(
            d.redelivered,
            n > 1,
            "{S}: delivery #{n}: redelivered is wrong: {d:?}"
        );
        // The consumer crashes with the message in hand.
        drop(d);
        drop(c);
    }
    let mut c = consume(&broker, S, queue, 10).await;
    expect_quiet(
        &mut c,
        QUIET,
        S,
        &format!("after {LIMIT} deliveries without an ack, no further delivery"),
    )
    .await;
    drop(c);
    stats_empty(&broker, S, queue).await;

    let dlq = dead_letter_queue(queue);
    let mut dc = consume(&broker, S, &dlq, 10).await;
    let d = next(
        &mut dc,
        S,
        "the crash-looping message on the dead-letter queue",
    )
    .await;
    assert_dead_letter(&d, &m, &dlq, S);
    ack(d, S).await;
    expect_quiet(&mut dc, QUIET, S, "the dead-letter queue held one message").await;
}

/// A consumer never holds more than `prefetch` unsettled deliveries.
pub async fn prefetch_bounds_unacked(broker: Arc<dyn Broker>, queue: &str) {
    const S: &str = "prefetch_bounds_unacked";
    const PREFETCH: u16 = 3;
    declare(&broker, S, queue, 5).await;
    let msgs: Vec<Message> = (0..10)
        .map(|i| message(&format!("f-{i:02}"), "K-1"))
        .collect();
    for m in &msgs {
        publish(&broker, S, queue, m.clone()).await;
    }
    let mut c = consume(&broker, S, queue, PREFETCH).await;
    let mut held = std::collections::VecDeque::new();
    for (i, want) in msgs.iter().take(PREFETCH as usize).enumerate() {
        let d = next(&mut c, S, &format!("message #{i} within the prefetch")).await;
        assert_first_delivery(
            &d,
            want,
            queue,
            S,
            &format!("message #{i} within the prefetch"),
        );
        held.push_back(d);
    }
    expect_quiet(
        &mut c,
        QUIET,
        S,
        &format!("{PREFETCH} deliveries are unacked and prefetch is {PREFETCH}"),
    )
    .await;
    stats_until(&broker, S, queue, "unacked = prefetch", |s| {
        s.unacked == u64::from(PREFETCH)
    })
    .await;

    // Each ack makes room for exactly one more, in order.
    for (i, want) in msgs.iter().enumerate().skip(PREFETCH as usize) {
        ack(held.pop_front().expect("held"), S).await;
        let d = next(&mut c, S, &format!("message #{i} after an ack made room")).await;
        assert_first_delivery(
            &d,
            want,
            queue,
            S,
            &format!("message #{i} after an ack made room"),
        );
        held.push_back(d);
        if i == PREFETCH as usize {
            expect_quiet(&mut c, QUIET, S, "one ack makes room for one delivery only").await;
        }
    }
    for d in held {
        ack(d, S).await;
    }
    expect_quiet(&mut c, QUIET, S, "every message was consumed").await;
    stats_empty(&broker, S, queue).await;
}

/// `Delivery::requeue` gives the message back for immediate redelivery.
pub async fn requeue_redelivers_at_once(broker: Arc<dyn Broker>, queue: &str) {
    const S: &str = "requeue_redelivers_at_once";
    declare(&broker, S, queue, 5).await;
    let m = message("q-1", "K-1");
    publish(&broker, S, queue, m.clone()).await;
    let mut c = consume(&broker, S, queue, 1).await;
    let d = next(&mut c, S, "the message to requeue").await;
    assert_first_delivery(&d, &m, queue, S, "the message to requeue");
    settle(S, "requeue", || d.requeue()).await;
    let d = next_within(&mut c, REQUEUE_WITHIN, S, "the requeued message").await;
    assert_delivery(&d, &m, queue, S, "the requeued message");
    assert!(
        d.redelivered,
        "{S}: a requeued message comes back with redelivered = true: {d:?}"
    );
    assert!(
        d.delivery_count >= 2,
        "{S}: a requeued message comes back with delivery_count >= 2: {d:?}"
    );
    ack(d, S).await;
    expect_quiet(&mut c, QUIET, S, "the requeued message was acked").await;
    stats_empty(&broker, S, queue).await;
}
