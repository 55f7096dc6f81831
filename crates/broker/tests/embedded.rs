//! The embedded SQLite queue: the shared conformance suite, then what only a file-backed
//! queue must show (durability across reopen and a hard crash, lease expiry, one owner).

use std::sync::Arc;
use std::time::{Duration, Instant};

use gw_broker::conformance::message;
use gw_broker::embedded::{EmbeddedBroker, EmbeddedOptions};
use gw_broker::{Broker, Consumer, Delivery, QueueSpec};
use tempfile::TempDir;

const STEP: Duration = Duration::from_secs(10);

fn opts(lease_ttl: Duration) -> EmbeddedOptions {
    EmbeddedOptions {
        lease_ttl,
        ..EmbeddedOptions::default()
    }
}

/// A fresh broker on a temp dir; the dir lives as long as the test holds the guard.
async fn embedded() -> (Arc<dyn Broker>, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = EmbeddedBroker::open(dir.path().join("queue.db"), opts(Duration::from_secs(2)))
        .expect("open");
    (Arc::new(broker), dir)
}

gw_broker::conformance_tests!(embedded);

async fn next(c: &mut Box<dyn Consumer>, what: &str) -> Delivery {
    match tokio::time::timeout(STEP, c.next()).await {
        Ok(Some(Ok(d))) => d,
        Ok(Some(Err(e))) => panic!("{what}: consumer error: {e}"),
        Ok(None) => panic!("{what}: consumer closed"),
        Err(_) => panic!("{what}: nothing delivered within {STEP:?}"),
    }
}

async fn quiet(c: &mut Box<dyn Consumer>, within: Duration, why: &str) {
    if let Ok(got) = tokio::time::timeout(within, c.next()).await {
        panic!("{why}, yet the consumer returned {got:?}");
    }
}

fn spec(q: &str) -> QueueSpec {
    QueueSpec {
        name: q.to_string(),
        delivery_limit: 5,
    }
}

#[tokio::test]
async fn reopen_after_drop_redelivers_everything_in_order() {
    const N: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    let q = "gw.route.dossier-sync.p0";
    {
        let b = EmbeddedBroker::open(&path, EmbeddedOptions::default()).unwrap();
        b.declare(&[spec(q)]).await.unwrap();
        for i in 0..N {
            b.publish(q, message(&format!("m-{i:03}"), "K"))
                .await
                .unwrap();
        }
        // Lease some without settling, then the whole broker goes away (no close).
        let mut c = b.consume(q, 10).await.unwrap();
        for i in 0..10 {
            let d = next(&mut c, "before the drop").await;
            assert_eq!(d.message.id, format!("m-{i:03}"));
            std::mem::forget(d);
        }
        std::mem::forget(c);
        drop(b);
    }
    let b = EmbeddedBroker::open(&path, EmbeddedOptions::default()).unwrap();
    let s = b.stats(q).await.unwrap();
    assert_eq!(
        (s.ready, s.unacked),
        (N as u64, 0),
        "the previous process's leases were released at open"
    );
    let mut c = b.consume(q, 32).await.unwrap();
    for i in 0..N {
        let d = next(&mut c, "after reopen").await;
        assert_eq!(
            d.message,
            message(&format!("m-{i:03}"), "K"),
            "message #{i} after reopen, in order"
        );
        if i < 10 {
            assert!(
                d.redelivered && d.delivery_count == 2,
                "leased before the drop: {d:?}"
            );
        } else {
            assert!(
                !d.redelivered && d.delivery_count == 1,
                "never delivered before: {d:?}"
            );
        }
        d.ack().await.unwrap();
    }
    quiet(
        &mut c,
        Duration::from_millis(300),
        "every message came back exactly once",
    )
    .await;
    drop(c);
    b.close().await;
    // Acks were flushed by close.
    let b = EmbeddedBroker::open(&path, EmbeddedOptions::default()).unwrap();
    let s = b.stats(q).await.unwrap();
    assert_eq!(
        (s.ready, s.unacked),
        (0, 0),
        "close flushed the acks: {s:?}"
    );
    b.close().await;
}

#[tokio::test]
async fn delayed_retry_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    let q = "retry.restart";
    let asked;
    {
        let b = EmbeddedBroker::open(&path, EmbeddedOptions::default()).unwrap();
        b.declare(&[spec(q)]).await.unwrap();
        b.publish(q, message("r", "K")).await.unwrap();
        let mut c = b.consume(q, 1).await.unwrap();
        let d = next(&mut c, "first attempt").await;
        asked = Instant::now();
        d.retry(Default::default(), Duration::from_millis(800))
            .await
            .unwrap();
        drop(c);
        b.close().await;
    }
    let b = EmbeddedBroker::open(&path, EmbeddedOptions::default()).unwrap();
    let s = b.stats(q).await.unwrap();
    if asked.elapsed() < Duration::from_millis(700) {
        assert_eq!(s.delayed, Some(1), "the retry is scheduled on disk: {s:?}");
    }
    let mut c = b.consume(q, 1).await.unwrap();
    let d = next(&mut c, "the retry after restart").await;
    assert!(
        asked.elapsed() >= Duration::from_millis(780),
        "not before its delay"
    );
    assert_eq!(d.message.attempt, 1);
    d.ack().await.unwrap();
    drop(c);
    b.close().await;
}

#[tokio::test]
async fn expired_lease_of_a_silent_consumer_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_millis(600);
    let b = EmbeddedBroker::open(dir.path().join("q.db"), opts(ttl)).unwrap();
    let q = "lease.expiry";
    b.declare(&[spec(q)]).await.unwrap();
    b.publish(q, message("l", "K")).await.unwrap();
    // A consumer that hangs: alive, holding the delivery, never settling nor asking again.
    let mut hung = b.consume(q, 1).await.unwrap();
    let leased_at = Instant::now();
    let held = next(&mut hung, "the hung consumer's delivery").await;
    let mut other = b.consume(q, 1).await.unwrap();
    let d = next(&mut other, "the expired lease").await;
    assert!(
        leased_at.elapsed() + Duration::from_millis(20) >= ttl,
        "not before the lease expired"
    );
    assert!(d.redelivered && d.delivery_count == 2, "{d:?}");
    d.ack().await.unwrap();
    drop(held);
    drop(hung);
    drop(other);
    b.close().await;
}

/// Found by the model test (tests/model.rs): a consumer whose lease expired and was taken over
/// still holds its delivery; when the new holder acked the message first, the stale holder's
/// retry scheduled a fresh copy (the acked message came back) and its reject dead-lettered an
/// acked message. The first settle wins: later retries and rejects of a gone row do nothing.
#[tokio::test]
async fn settling_after_a_takeover_ack_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_millis(300);
    let b = EmbeddedBroker::open(dir.path().join("q.db"), opts(ttl)).unwrap();
    let q = "lease.stale-settle";
    b.declare(&[spec(q)]).await.unwrap();
    b.publish(q, message("r", "K")).await.unwrap();
    b.publish(q, message("j", "K")).await.unwrap();
    let mut hung = b.consume(q, 2).await.unwrap();
    let stale_r = next(&mut hung, "first delivery of r").await;
    let stale_j = next(&mut hung, "first delivery of j").await;
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    let mut other = b.consume(q, 2).await.unwrap();
    for _ in 0..2 {
        let d = next(&mut other, "the taken-over delivery").await;
        assert!(d.redelivered, "{d:?}");
        d.ack().await.unwrap();
    }
    stale_r
        .retry(Default::default(), Duration::ZERO)
        .await
        .unwrap();
    stale_j.reject("stale holder").await.unwrap();
    quiet(&mut other, Duration::from_millis(300), "both were acked").await;
    let s = b.stats(q).await.unwrap();
    assert_eq!((s.ready, s.unacked), (0, 0), "{s:?}");
    let dlq = b.stats(&gw_broker::dead_letter_queue(q)).await.unwrap();
    assert_eq!(dlq.ready, 0, "an acked message was dead-lettered: {dlq:?}");
    drop(hung);
    drop(other);
    b.close().await;
}

#[tokio::test]
async fn an_active_consumer_keeps_its_leases() {
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_millis(800);
    let b = EmbeddedBroker::open(dir.path().join("q.db"), opts(ttl)).unwrap();
    let q = "lease.renewal";
    b.declare(&[spec(q)]).await.unwrap();
    b.publish(q, message("a", "K")).await.unwrap();
    let mut busy = b.consume(q, 1).await.unwrap();
    let held = next(&mut busy, "the busy consumer's delivery").await;
    let mut other = b.consume(q, 1).await.unwrap();
    // The busy consumer shows life (asks for more, at prefetch) for several lease terms.
    let started = Instant::now();
    while started.elapsed() < ttl * 3 {
        quiet(&mut busy, ttl / 8, "prefetch 1 is in use").await;
        if let Ok(got) = tokio::time::timeout(Duration::from_millis(1), other.next()).await {
            panic!("the busy consumer's lease was taken over: {got:?}");
        }
    }
    held.ack().await.unwrap();
    quiet(
        &mut other,
        Duration::from_millis(300),
        "the busy consumer acked it",
    )
    .await;
    drop(busy);
    drop(other);
    b.close().await;
}

#[tokio::test]
async fn a_second_owner_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let b = EmbeddedBroker::open(&path, EmbeddedOptions::default()).unwrap();
    match EmbeddedBroker::open(&path, EmbeddedOptions::default()) {
        Ok(_) => panic!("a second open of a queue file in use must fail"),
        Err(e) => assert!(e.to_string().contains("in use"), "{e}"),
    }
    b.close().await;
    // Once closed, it can be opened again.
    EmbeddedBroker::open(&path, EmbeddedOptions::default())
        .unwrap()
        .close()
        .await;
}

#[tokio::test]
async fn closed_broker_refuses_and_ends_consumers() {
    let (b, _dir) = embedded().await;
    b.declare(&[spec("c")]).await.unwrap();
    let mut c = b.consume("c", 1).await.unwrap();
    let waiter = tokio::spawn(async move { c.next().await.is_none() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.close().await;
    assert!(
        tokio::time::timeout(STEP, waiter).await.unwrap().unwrap(),
        "a waiting consumer ends on close"
    );
    assert!(matches!(
        b.publish("c", message("x", "K")).await,
        Err(gw_broker::BrokerError::Closed)
    ));
    assert!(!b.ready().await);
}

// --- crash: a child process publishes, leases, then aborts (no destructor runs) ---------------

const CRASH_ENV: &str = "GW_EMBEDDED_CRASH_PATH";
const CRASH_N: usize = 300;
const CRASH_LEASED: usize = 5;

/// The child half of `hard_crash_loses_nothing`; does nothing unless the env var is set.
#[tokio::test]
async fn crash_child() {
    let Ok(path) = std::env::var(CRASH_ENV) else {
        return;
    };
    let b = Arc::new(EmbeddedBroker::open(&path, EmbeddedOptions::default()).unwrap());
    b.declare(&[spec("crash")]).await.unwrap();
    // Concurrent publishers (group commit), each publishing its own key in order.
    let mut tasks = Vec::new();
    for t in 0..3 {
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..CRASH_N / 3 {
                b.publish("crash", message(&format!("t{t}-{i:04}"), &format!("K{t}")))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut c = b.consume("crash", CRASH_LEASED as u16).await.unwrap();
    for _ in 0..CRASH_LEASED {
        let d = next(&mut c, "child lease").await;
        std::mem::forget(d);
    }
    println!("CHILD-PUBLISHED");
    std::process::abort();
}

#[tokio::test]
async fn hard_crash_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CRASH_ENV, &path)
        .output()
        .expect("spawn the child test process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("CHILD-PUBLISHED") && !out.status.success(),
        "the child must publish then abort; status {:?}, stdout {stdout}, stderr {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    let b = EmbeddedBroker::open(&path, EmbeddedOptions::default()).unwrap();
    let s = b.stats("crash").await.unwrap();
    assert_eq!(
        (s.ready, s.unacked),
        (CRASH_N as u64, 0),
        "every confirmed publish survived: {s:?}"
    );
    let mut c = b.consume("crash", 64).await.unwrap();
    let mut next_of_key = [0usize; 3];
    for n in 0..CRASH_N {
        let d = next(&mut c, "after the crash").await;
        let t: usize = d.message.id[1..2].parse().unwrap();
        let i: usize = d.message.id[3..].parse().unwrap();
        assert_eq!(i, next_of_key[t], "per-key order after the crash: {d:?}");
        next_of_key[t] += 1;
        if n < CRASH_LEASED {
            assert!(
                d.redelivered && d.delivery_count == 2,
                "leased by the crashed process: {d:?}"
            );
        } else {
            assert!(!d.redelivered, "{d:?}");
        }
        d.ack().await.unwrap();
    }
    quiet(
        &mut c,
        Duration::from_millis(300),
        "nothing beyond what was published",
    )
    .await;
    drop(c);
    b.close().await;
}

// --- wake-ups: no polling, so a missed notification would show as a lease-term delay -----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_consumer_wakes_on_publish_promptly() {
    let dir = tempfile::tempdir().unwrap();
    // A long lease term: the consumer's fallback timer never fires during this test.
    let b = Arc::new(
        EmbeddedBroker::open(dir.path().join("q.db"), opts(Duration::from_secs(60))).unwrap(),
    );
    let q = "wake";
    b.declare(&[spec(q)]).await.unwrap();
    let mut c = b.consume(q, 4).await.unwrap();
    for i in 0..50 {
        // Publish while the consumer is (about to be) waiting: races registration with commit.
        let publisher = {
            let b = b.clone();
            tokio::spawn(async move {
                if i % 2 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                b.publish(q, message(&format!("w-{i}"), "K")).await.unwrap();
            })
        };
        let asked = Instant::now();
        let d = match tokio::time::timeout(Duration::from_secs(2), c.next()).await {
            Ok(Some(Ok(d))) => d,
            other => {
                panic!("round {i}: a publish did not wake the idle consumer within 2 s: {other:?}")
            }
        };
        assert_eq!(d.message.id, format!("w-{i}"));
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "round {i}: woke late ({:?})",
            asked.elapsed()
        );
        d.ack().await.unwrap();
        publisher.await.unwrap();
    }
    drop(c);
    b.close().await;
}

#[tokio::test]
async fn delayed_message_wakes_its_consumer_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let b = EmbeddedBroker::open(dir.path().join("q.db"), opts(Duration::from_secs(60))).unwrap();
    let q = "delay.timer";
    b.declare(&[spec(q)]).await.unwrap();
    b.publish(q, message("t", "K")).await.unwrap();
    let mut c = b.consume(q, 1).await.unwrap();
    let d = next(&mut c, "first attempt").await;
    let asked = Instant::now();
    d.retry(Default::default(), Duration::from_millis(300))
        .await
        .unwrap();
    let d = next(&mut c, "the retry").await;
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(280) && waited < Duration::from_millis(1500),
        "the retry came after {waited:?}: the consumer must sleep until it is due, not a lease term"
    );
    d.ack().await.unwrap();
    drop(c);
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_consumers_get_each_message_once() {
    const N: usize = 1500;
    let dir = tempfile::tempdir().unwrap();
    let b = Arc::new(
        EmbeddedBroker::open(dir.path().join("q.db"), opts(Duration::from_secs(60))).unwrap(),
    );
    let q = "compete";
    b.declare(&[spec(q)]).await.unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut consumers = Vec::new();
    for _ in 0..3 {
        let mut c = b.consume(q, 16).await.unwrap();
        let seen = seen.clone();
        consumers.push(tokio::spawn(async move {
            loop {
                match tokio::time::timeout(Duration::from_millis(1500), c.next()).await {
                    Ok(Some(Ok(d))) => {
                        assert_eq!(
                            d.delivery_count, 1,
                            "no redelivery without a failure: {d:?}"
                        );
                        seen.lock().unwrap().push(d.message.id.clone());
                        d.ack().await.unwrap();
                    }
                    Ok(other) => panic!("consumer ended: {other:?}"),
                    Err(_) => return, // drained
                }
            }
        }));
    }
    let mut publishers = Vec::new();
    for p in 0..3 {
        let b = b.clone();
        publishers.push(tokio::spawn(async move {
            for i in 0..N / 3 {
                b.publish(q, message(&format!("c{p}-{i}"), "K"))
                    .await
                    .unwrap();
            }
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }
    for c in consumers {
        c.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(
        (seen.len(), unique.len()),
        (N, N),
        "each message delivered exactly once"
    );
    let s = b.stats(q).await.unwrap();
    assert_eq!((s.ready, s.unacked), (0, 0), "{s:?}");
    b.close().await;
}

#[tokio::test]
async fn oldest_ready_age_is_the_wait_of_the_head() {
    let (b, _dir) = embedded().await;
    let q = "gw.route.age.p0";
    b.declare(&[spec(q)]).await.unwrap();
    let s = b.stats(q).await.unwrap();
    assert_eq!(s.oldest_ready_age, Some(Duration::ZERO), "empty queue");
    b.publish(q, message("a-1", "K1")).await.unwrap();
    b.publish(q, message("a-2", "K2")).await.unwrap();
    let waited = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = b.stats(q).await.unwrap();
    let age = s.oldest_ready_age.expect("embedded always tells");
    assert!(age >= Duration::from_millis(300), "{age:?}");
    assert!(
        age <= waited.elapsed() + Duration::from_millis(50),
        "{age:?}"
    );
    // The head taken (leased): the next one is the head now, and it waited as long.
    let mut c = b.consume(q, 1).await.unwrap();
    let d1 = next(&mut c, "head").await;
    assert_eq!(d1.message.id, "a-1");
    let s = b.stats(q).await.unwrap();
    assert_eq!(s.ready, 1);
    assert!(s.oldest_ready_age.unwrap() >= Duration::from_millis(300));
    d1.ack().await.unwrap();
    let d2 = next(&mut c, "second").await;
    d2.ack().await.unwrap();
    let s = b.stats(q).await.unwrap();
    assert_eq!(
        (s.ready, s.oldest_ready_age),
        (0, Some(Duration::ZERO)),
        "nothing waits"
    );
    // A retry scheduled later is not ready, so it does not count until its delay ends.
    b.publish(q, message("a-3", "K3")).await.unwrap();
    let d3 = next(&mut c, "third").await;
    d3.retry(Default::default(), Duration::from_secs(60))
        .await
        .unwrap();
    let s = b.stats(q).await.unwrap();
    assert_eq!((s.ready, s.delayed), (0, Some(1)));
    assert_eq!(s.oldest_ready_age, Some(Duration::ZERO));
}
