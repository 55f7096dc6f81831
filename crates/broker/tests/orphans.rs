//! Retries whose queue was deleted while they waited in a delay tier go to the orphans queue,
//! and the tier keeps returning everybody else's retries.
//!
//! The delay tiers are shared and dead-letter *at least once*: RabbitMQ keeps an expired
//! message until its dead-lettering is confirmed. Without somewhere to route a retry whose
//! queue is gone, more than 32 of them (the dead-letter worker's prefetch) stopped the tier
//! for every queue (seen: a tier holding 607 messages that never came back, and the gateway's
//! RabbitMQ tests timing out). This test orphans 40 retries, then checks that a live queue's
//! retry through the same tier still comes back (within a bounded wait) and that the 40 are
//! in the orphans queue, each naming the queue it was meant for.
//!
//! It runs on a topology of its own (unique exchange, tier and queue names), deleted at the
//! end, so it neither sees nor leaves anything in the gateway's shared `gw.*` topology.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{reachable, unique, url};
use gw_broker::amqp::{AmqpBroker, AmqpOptions, DELAY_TIERS};
use gw_broker::{dead_letter_queue, Broker, Consumer, Message, QueueSpec};

mod common;

const DOOMED: usize = 40;

fn msg(id: &str) -> Message {
    Message {
        id: id.to_string(),
        key: id.to_string(),
        headers: Default::default(),
        attempt: 0,
        body: Bytes::from_static(b"{}"),
    }
}

async fn next(c: &mut Box<dyn Consumer>, within: Duration) -> Option<gw_broker::Delivery> {
    match tokio::time::timeout(within, c.next()).await {
        Ok(Some(Ok(d))) => Some(d),
        _ => None,
    }
}

/// Deletes the test's own queues and exchanges, pass or fail.
struct Teardown {
    queues: Vec<String>,
    exchanges: Vec<String>,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        let (queues, exchanges) = (
            std::mem::take(&mut self.queues),
            std::mem::take(&mut self.exchanges),
        );
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let Ok(Ok(conn)) = tokio::time::timeout(
                    Duration::from_secs(10),
                    lapin::Connection::connect(&url(), lapin::ConnectionProperties::default()),
                )
                .await
                else {
                    return;
                };
                let Ok(ch) = conn.create_channel().await else {
                    return;
                };
                for q in queues {
                    let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
                }
                for e in exchanges {
                    let _ = ch
                        .exchange_delete(e.as_str().into(), Default::default())
                        .await;
                }
                let _ = conn.close(200, "done".into()).await;
            });
        })
        .join();
    }
}

#[tokio::test]
async fn orphaned_retries_go_to_the_orphans_queue_and_the_tier_keeps_flowing() {
    if !reachable() {
        return;
    }
    let p = unique("orphans");
    let opts = AmqpOptions {
        work_exchange: format!("{p}.work"),
        dead_letter_exchange: format!("{p}.dlx"),
        delay_prefix: format!("{p}.retry"),
        return_exchange: format!("{p}.return"),
        orphans: format!("{p}.orphans"),
        connection_name: "gw-orphans-test".into(),
        ..AmqpOptions::default()
    };
    let live = format!("{p}.live");
    let doomed: Vec<String> = (0..DOOMED).map(|i| format!("{p}.doomed.{i}")).collect();
    let mut queues: Vec<String> = doomed
        .iter()
        .chain(std::iter::once(&live))
        .flat_map(|q| [q.clone(), dead_letter_queue(q)])
        .collect();
    queues.extend(
        DELAY_TIERS
            .iter()
            .map(|(s, _)| format!("{}.{s}", opts.delay_prefix)),
    );
    queues.push(opts.orphans.clone());
    let mut exchanges = vec![
        opts.work_exchange.clone(),
        opts.dead_letter_exchange.clone(),
        opts.return_exchange.clone(),
        opts.orphans.clone(),
    ];
    exchanges.extend(
        DELAY_TIERS
            .iter()
            .map(|(s, _)| format!("{}.{s}", opts.delay_prefix)),
    );
    let _teardown = Teardown { queues, exchanges };

    let b = AmqpBroker::connect(&url(), opts.clone())
        .await
        .expect("connect to RabbitMQ");
    let specs: Vec<QueueSpec> = doomed
        .iter()
        .chain(std::iter::once(&live))
        .map(|q| QueueSpec {
            name: q.clone(),
            delivery_limit: 5,
        })
        .collect();
    b.declare(&specs).await.expect("declare");

    // 40 retries into the 5 s tier, then their queues are deleted while they wait.
    let retry_delay = Duration::from_secs(5);
    for (i, q) in doomed.iter().enumerate() {
        b.publish(q, msg(&format!("doomed-{i}"))).await.unwrap();
        let mut c = b.consume(q, 1).await.unwrap();
        let d = next(&mut c, Duration::from_secs(10))
            .await
            .expect("the doomed message");
        d.retry(Default::default(), retry_delay).await.unwrap();
        drop(c);
    }
    let deleting = Instant::now();
    for q in &doomed {
        b.delete_queue(q).await.expect("delete a doomed queue");
    }
    assert!(
        deleting.elapsed() < retry_delay,
        "the doomed queues must be gone before their retries expire (took {:?})",
        deleting.elapsed()
    );

    // A live queue's retry through the same tier, behind the 40 orphans.
    b.publish(&live, msg("live")).await.unwrap();
    let mut c = b.consume(&live, 1).await.unwrap();
    let d = next(&mut c, Duration::from_secs(10))
        .await
        .expect("the live message");
    d.retry(Default::default(), retry_delay).await.unwrap();
    // Stalled, the tier would hold it until RabbitMQ's dead-letter confirm timeout (3 min).
    let back = next(&mut c, Duration::from_secs(60))
        .await
        .expect("the live queue's retry came back through the tier the orphans went through");
    assert_eq!(back.message.id, "live");
    assert_eq!(back.message.attempt, 1);
    back.ack().await.unwrap();
    drop(c);

    // Every orphan is in the orphans queue, none lost; the broker names that queue (the ops
    // listener renders its depth as gateway_broker_orphaned_retries) and counts them there.
    assert_eq!(b.orphans_queue(), Some(opts.orphans.as_str()));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = b.stats(&opts.orphans).await.unwrap().ready;
        if ready == DOOMED as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ready} of {DOOMED} orphans counted in {}",
            opts.orphans
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut o = b.consume(&opts.orphans, 64).await.unwrap();
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < DOOMED && Instant::now() < deadline {
        let Some(d) = next(&mut o, Duration::from_secs(5)).await else {
            continue;
        };
        seen.insert(d.message.id.clone());
        d.ack().await.unwrap();
    }
    let want: BTreeSet<String> = (0..DOOMED).map(|i| format!("doomed-{i}")).collect();
    assert_eq!(seen, want, "every orphaned retry is in {}", opts.orphans);
    drop(o);
    b.close().await;
}
