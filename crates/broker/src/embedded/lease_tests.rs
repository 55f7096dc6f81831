//! Lease renewal after a rolled-back batch (found by `tests/faults.rs`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::Notify;

use super::broker::EmbeddedBroker;
use super::options::EmbeddedOptions;
use super::settle::ConsumerSettle;
use super::shared::Op;
use crate::*;

/// A settle lost in a rolled-back batch (a full disk) leaves the row leased to a consumer
/// that no longer knows it. Its renewals must not keep that lease alive: the message comes
/// back after `lease_ttl` while the consumer lives on. (Found by `tests/faults.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_lease_is_not_renewed_and_the_message_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_millis(400);
    let b = EmbeddedBroker::open(
        dir.path().join("q.db"),
        EmbeddedOptions {
            lease_ttl: ttl,
            ..EmbeddedOptions::default()
        },
    )
    .unwrap();
    let spec = QueueSpec {
        name: "q".into(),
        delivery_limit: 10,
    };
    b.declare(std::slice::from_ref(&spec)).await.unwrap();
    let msg = Message {
        id: "m1".into(),
        key: "k".into(),
        headers: Default::default(),
        attempt: 0,
        body: bytes::Bytes::from_static(b"x"),
    };
    b.publish("q", msg).await.unwrap();

    // A consumer leases the message, then forgets it as a rolled-back requeue would.
    let shared = b.shared.clone();
    let owner = shared
        .call(|reply| Op::Subscribe {
            queue: "q".into(),
            reply,
        })
        .await
        .unwrap();
    let leased = shared
        .call(|reply| Op::Lease {
            queue: "q".into(),
            owner,
            max: 1,
            reply,
        })
        .await
        .unwrap();
    assert_eq!(leased.rows.len(), 1);
    let settle = Arc::new(ConsumerSettle {
        shared: shared.clone(),
        owner,
        queue: "q".into(),
        outstanding: Mutex::new(HashSet::new()),
        room: Notify::new(),
        last_renew: Mutex::new(Instant::now()),
    });

    // It keeps showing signs of life, all along.
    let alive = Arc::new(AtomicBool::new(true));
    let renewer = {
        let (settle, alive) = (settle.clone(), alive.clone());
        tokio::spawn(async move {
            while alive.load(Ordering::Relaxed) {
                *settle.last_renew.lock().unwrap() = Instant::now() - ttl;
                settle.renew_if_due();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // Another consumer gets the message: the forgotten lease expired.
    let mut c = b.consume("q", 1).await.unwrap();
    let d = tokio::time::timeout(ttl * 10, c.next())
        .await
        .expect("the message comes back after its lease expired")
        .unwrap()
        .unwrap();
    alive.store(false, Ordering::Relaxed);
    renewer.await.unwrap();
    assert_eq!(d.message.id, "m1");
    d.ack().await.unwrap();
    drop(c);
    b.close().await;
}
