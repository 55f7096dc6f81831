//! The raw baselines the gateway is measured against: a lapin publisher and consumers on
//! RabbitMQ, and OpenSSL signatures per second.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;

use super::args::*;
use super::error::BenchError;

pub(super) struct RawBroker {
    pub(super) publish: f64,
    pub(super) ack_each: f64,
    pub(super) ack_batched: f64,
}

pub(super) async fn raw_publish(
    ch: &Channel,
    queue: &str,
    n: usize,
    body: &[u8],
) -> Result<Duration, BenchError> {
    let t = Instant::now();
    let props = BasicProperties::default().with_delivery_mode(2);
    let mut pending = Vec::with_capacity(WINDOW);
    for i in 0..n {
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
            .map_err(BenchError::RawPublish)?;
        pending.push(c);
        if pending.len() == WINDOW || i + 1 == n {
            for c in pending.drain(..) {
                if !c.await.map_err(BenchError::RawConfirm)?.is_ack() {
                    return Err(BenchError::Nacked);
                }
            }
        }
    }
    Ok(t.elapsed())
}

pub(super) async fn raw_consume(
    conn: &Connection,
    queue: &str,
    n: usize,
    batched: bool,
) -> Result<Duration, BenchError> {
    let ch = conn.create_channel().await?;
    ch.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let t = Instant::now();
    for i in 1..=n {
        let d = match tokio::time::timeout(Duration::from_secs(30), consumer.next()).await {
            Ok(Some(Ok(d))) => d,
            _ => return Err(BenchError::NoDelivery { i, n }),
        };
        if !batched {
            d.ack(BasicAckOptions::default()).await?;
        } else if i % ACK_EVERY == 0 || i == n {
            ch.basic_ack(d.delivery_tag, BasicAckOptions { multiple: true })
                .await?;
        }
    }
    let elapsed = t.elapsed();
    // On a quorum queue the cancel is ordered after the settles: once confirmed, every ack
    // was applied.
    let _ = ch
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await;
    let _ = ch.close(200, "bench".into()).await;
    Ok(elapsed)
}

pub(super) async fn raw_broker(url: &str, n: usize) -> Result<RawBroker, BenchError> {
    use gw_broker::amqp::{AmqpBroker, AmqpOptions};
    use gw_broker::{Broker, QueueSpec};
    let queue = format!("gw.bench.raw.{}", uuid::Uuid::now_v7().simple());
    let broker = AmqpBroker::connect(url, AmqpOptions::default())
        .await
        .map_err(BenchError::Connect)?;
    broker
        .declare(&[QueueSpec {
            name: queue.clone(),
            delivery_limit: 10,
        }])
        .await
        .map_err(BenchError::Declare)?;
    let body = vec![b'x'; 1024];
    let result = async {
        let conn = Connection::connect(url, ConnectionProperties::default()).await?;
        let pch = conn.create_channel().await?;
        pch.confirm_select(ConfirmSelectOptions::default()).await?;
        let p = raw_publish(&pch, &queue, n, &body).await?;
        let c1 = raw_consume(&conn, &queue, n, false).await?;
        raw_publish(&pch, &queue, n, &body).await?;
        let c2 = raw_consume(&conn, &queue, n, true).await?;
        let _ = conn.close(200, "bench done".into()).await;
        let r = |d: Duration| n as f64 / d.as_secs_f64();
        Ok(RawBroker {
            publish: r(p),
            ack_each: r(c1),
            ack_batched: r(c2),
        })
    }
    .await;
    let _ = broker.delete_queue(&queue).await;
    broker.close().await;
    result
}

// ---- raw signing ----

pub(super) fn load_key(certs: &Path, name: &str) -> Result<PKey<Private>, BenchError> {
    let path = certs.join(format!("{name}.key"));
    let pem = match std::fs::read(&path) {
        Ok(pem) => pem,
        Err(source) => return Err(BenchError::ReadKey { path, source }),
    };
    PKey::private_key_from_pem(&pem).map_err(|source| BenchError::ParseKey { path, source })
}

/// Signatures per second on this thread (one core): SHA-256 over a 32-byte input.
pub(super) fn raw_sign_rate(key: &PKey<Private>, secs: f64) -> f64 {
    let input = [0x5au8; 32];
    let sign = || {
        let mut s = Signer::new(MessageDigest::sha256(), key).expect("signer");
        s.update(&input).expect("update");
        std::hint::black_box(s.sign_to_vec().expect("sign"));
    };
    for _ in 0..3 {
        sign();
    }
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed().as_secs_f64() < secs {
        sign();
        n += 1;
    }
    n as f64 / t.elapsed().as_secs_f64()
}

// ---- gateway end to end ----
