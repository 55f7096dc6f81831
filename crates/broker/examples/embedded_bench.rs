//! Throughput of the embedded queue with 1 KiB messages, `synchronous = FULL`.
//!
//! ```text
//! cargo run --release -p gw-broker --example embedded_bench [-- COUNT [DIR]]
//! ```
//!
//! COUNT (default 50 000) messages per phase; DIR (default a temp dir) holds the file, so
//! the disk under test can be chosen. Phases: sequential publishes (one fsync each, bounded
//! to COUNT / 25), concurrent publishers (group commit), `publish_batch` of 100, then one
//! consumer taking and acking everything (prefetch 256).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gw_broker::embedded::{EmbeddedBroker, EmbeddedOptions};
use gw_broker::{Broker, Message, QueueSpec};

const PUBLISHERS: usize = 64;
const BATCH: usize = 100;
const PREFETCH: u16 = 256;

fn message(i: usize, body: &Bytes) -> Message {
    let mut headers = BTreeMap::new();
    headers.insert(
        "traceparent".to_string(),
        format!("00-{i:032x}-{i:016x}-01"),
    );
    Message {
        id: format!("m-{i}"),
        key: format!("K-{}", i % 97),
        headers,
        attempt: 0,
        body: body.clone(),
    }
}

fn rate(n: usize, d: Duration) -> String {
    format!(
        "{n:>7} msgs in {:>7.3} s = {:>9.0} msg/s",
        d.as_secs_f64(),
        n as f64 / d.as_secs_f64()
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let count: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(50_000);
    let tmp = tempfile::tempdir()?;
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let path = dir.join(format!("embedded-bench-{}.db", std::process::id()));
    let broker = Arc::new(EmbeddedBroker::open(&path, EmbeddedOptions::default())?);
    let q = "bench";
    broker
        .declare(&[QueueSpec {
            name: q.into(),
            delivery_limit: 5,
        }])
        .await?;
    let body = Bytes::from(vec![b'x'; 1024]);
    println!(
        "embedded queue bench: 1 KiB bodies, synchronous=FULL, file {}",
        path.display()
    );

    // 1. One publisher, one publish at a time: one transaction and one fsync per message.
    let seq_n = (count / 25).max(1);
    let t = Instant::now();
    for i in 0..seq_n {
        broker.publish(q, message(i, &body)).await?;
    }
    println!("publish, sequential        {}", rate(seq_n, t.elapsed()));

    // 2. Concurrent publishers: the writer commits whatever is waiting in one transaction.
    let t = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let (b, body) = (broker.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = p;
            while i < count {
                b.publish(q, message(i, &body)).await?;
                i += PUBLISHERS;
            }
            Ok::<_, gw_broker::BrokerError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    println!(
        "publish, {PUBLISHERS} concurrent      {}",
        rate(count, t.elapsed())
    );

    // 3. publish_batch: one transaction per batch.
    let t = Instant::now();
    for chunk in (0..count).collect::<Vec<_>>().chunks(BATCH) {
        broker
            .publish_batch(q, chunk.iter().map(|&i| message(i, &body)).collect())
            .await?;
    }
    println!(
        "publish_batch of {BATCH}       {}",
        rate(count, t.elapsed())
    );

    // 4. One consumer takes and acks everything.
    let total = seq_n + 2 * count;
    let t = Instant::now();
    let mut consumer = broker.consume(q, PREFETCH).await?;
    for _ in 0..total {
        let d = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .map_err(|_| "no delivery within 30 s")?
            .ok_or("consumer closed")??;
        d.ack().await?;
    }
    drop(consumer);
    broker.close().await;
    println!(
        "consume + ack, prefetch {PREFETCH} {}",
        rate(total, t.elapsed())
    );
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "file size after close: {:.1} MiB",
        size as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}
