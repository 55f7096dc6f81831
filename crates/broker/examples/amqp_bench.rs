//! Baselines for RabbitMQ throughput on this machine, the figures the gateway is measured
//! against: raw lapin publish-with-confirms, raw consume with one awaited ack per message,
//! raw consume with `multiple` batched acks, and the same through [`AmqpBroker`]
//! (`publish_batch` + `consume` + `ack`).
//!
//! Bounded: `BENCH_N` persistent messages (default 50,000) of `BENCH_SIZE` bytes (default
//! 1 KiB) per phase, on a fresh quorum queue deleted at the end. RabbitMQ from
//! `GW_BENCH_AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`).
//!
//! ```text
//! cargo run --release -p gw-broker --example amqp_bench
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use gw_broker::amqp::{AmqpBroker, AmqpOptions};
use gw_broker::{Broker, Message, QueueSpec};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

const WINDOW: usize = 1000;
const PREFETCH: u16 = 1000;
const ACK_EVERY: usize = 100;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rate(n: usize, d: Duration) -> String {
    format!(
        "{:>9.0} msg/s  ({n} in {:.2} s)",
        n as f64 / d.as_secs_f64(),
        d.as_secs_f64()
    )
}

/// Publish `n` persistent messages with confirms, `WINDOW` outstanding at a time.
async fn raw_publish(ch: &Channel, queue: &str, n: usize, body: &[u8]) -> Duration {
    let t = Instant::now();
    let props = BasicProperties::default().with_delivery_mode(2);
    let mut pending = Vec::with_capacity(WINDOW);
    for _ in 0..n {
        let c = ch
            .basic_publish(
                "gw.work".into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                body,
                props.clone(),
            )
            .await
            .expect("publish");
        pending.push(c);
        if pending.len() == WINDOW {
            for c in pending.drain(..) {
                assert!(c.await.expect("confirm").is_ack());
            }
        }
    }
    for c in pending {
        assert!(c.await.expect("confirm").is_ack());
    }
    t.elapsed()
}

/// Consume `n` messages; ack each and await it, or ack `multiple` every `ACK_EVERY`.
async fn raw_consume(conn: &Connection, queue: &str, n: usize, batched: bool) -> Duration {
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let t = Instant::now();
    for i in 1..=n {
        let d = consumer
            .next()
            .await
            .expect("stream open")
            .expect("delivery");
        if !batched {
            d.ack(BasicAckOptions::default()).await.expect("ack");
        } else if i % ACK_EVERY == 0 || i == n {
            ch.basic_ack(d.delivery_tag, BasicAckOptions { multiple: true })
                .await
                .expect("ack");
        }
    }
    let elapsed = t.elapsed();
    // Cancel before closing: on a quorum queue the cancel is ordered after the settles, so
    // once it is confirmed every ack was applied (closing at once can lose the last acks).
    let _ = ch
        .basic_cancel(
            consumer.tag(),
            lapin::options::BasicCancelOptions::default(),
        )
        .await;
    let _ = ch.close(200, "bench".into()).await;
    elapsed
}

#[tokio::main]
async fn main() {
    let url = std::env::var("GW_BENCH_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let n = env_usize("BENCH_N", 50_000);
    let size = env_usize("BENCH_SIZE", 1024);
    let body = vec![b'x'; size];
    let queue = format!("gw.bench.{}", uuid::Uuid::now_v7().simple());

    let broker = Arc::new(
        AmqpBroker::connect(&url, AmqpOptions::default())
            .await
            .expect("connect"),
    );
    broker
        .declare(&[QueueSpec {
            name: queue.clone(),
            delivery_limit: 10,
        }])
        .await
        .expect("declare");
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("connect");
    let pch = conn.create_channel().await.expect("channel");
    pch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm_select");

    println!("RabbitMQ baselines: {n} persistent messages of {size} B on quorum queue {queue}");
    let d = raw_publish(&pch, &queue, n, &body).await;
    println!(
        "raw publish with confirms ({WINDOW} in flight):   {}",
        rate(n, d)
    );
    let d = raw_consume(&conn, &queue, n, false).await;
    println!(
        "raw consume, each ack awaited (prefetch {PREFETCH}): {}",
        rate(n, d)
    );
    raw_publish(&pch, &queue, n, &body).await;
    let d = raw_consume(&conn, &queue, n, true).await;

    println!(
        "raw consume, multiple ack every {ACK_EVERY}:        {}",
        rate(n, d)
    );

    // Through the gateway's broker.
    let t = Instant::now();
    let mut i = 0;
    while i < n {
        let batch: Vec<Message> = (i..(i + WINDOW).min(n))
            .map(|j| Message {
                id: format!("bench-{j}"),
                key: format!("K-{}", j % 16),
                headers: [("traceparent".to_string(), "00-bench-01".to_string())].into(),
                attempt: 0,
                body: Bytes::from(body.clone()),
            })
            .collect();
        i += batch.len();
        broker
            .publish_batch(&queue, batch)
            .await
            .expect("publish_batch");
    }
    let dp = t.elapsed();
    println!(
        "AmqpBroker publish_batch ({WINDOW} a batch):      {}",
        rate(n, dp)
    );
    let mut consumer = broker.consume(&queue, PREFETCH).await.expect("consume");
    let t = Instant::now();
    for _ in 0..n {
        let d = consumer.next().await.expect("open").expect("delivery");
        d.ack().await.expect("ack");
    }
    let dc = t.elapsed();

    // One publish at a time, each awaiting its confirm (the latency-bound path).
    let single = (n / 10).max(1);
    let t = Instant::now();
    for j in 0..single {
        let m = Message {
            id: format!("single-{j}"),
            key: "K".into(),
            headers: Default::default(),
            attempt: 0,
            body: Bytes::from(body.clone()),
        };
        broker.publish(&queue, m).await.expect("publish");
    }
    println!(
        "AmqpBroker publish, one at a time awaited:    {}",
        rate(single, t.elapsed())
    );
    for _ in 0..single {
        let d = consumer.next().await.expect("open").expect("delivery");
        d.ack().await.expect("ack");
    }
    println!(
        "AmqpBroker consume + ack (prefetch {PREFETCH}):   {}",
        rate(n, dc)
    );
    println!(
        "AmqpBroker end to end (publish, then consume):  {}",
        rate(n, dp + dc)
    );
    drop(consumer);
    broker.close().await;

    let cleanup = AmqpBroker::connect(&url, AmqpOptions::default())
        .await
        .expect("connect");
    let left = cleanup
        .delete_queue(&queue)
        .await
        .expect("delete the bench queue");
    if left > 0 {
        println!("note: {left} message(s) were left in the queue");
    }
    cleanup.close().await;
    let _ = conn.close(200, "bench done".into()).await;
}
