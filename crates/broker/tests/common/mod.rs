//! Shared helpers of the broker crate's RabbitMQ tests (`rabbitmq.rs`, `model.rs`, `orphans.rs`): how to
//! reach RabbitMQ (skip with a printed reason, or fail loudly under `CI=true`), unique queue
//! names, and a guard that deletes a test's queues.
#![allow(dead_code)] // each test binary uses a part

use std::sync::Arc;
use std::time::Duration;

use gw_broker::amqp::{AmqpBroker, AmqpOptions};
use gw_broker::Broker;

pub fn url() -> String {
    std::env::var("GW_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Tests that disrupt the broker for everyone (stop/start, closing every connection) hold
/// this exclusively; every other test holds it shared, so they never overlap in this binary.
pub static GATE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

#[allow(dead_code)] // the guards are held for their Drop
pub enum Gate {
    Shared(tokio::sync::RwLockReadGuard<'static, ()>),
    Exclusive(tokio::sync::RwLockWriteGuard<'static, ()>),
}

/// A connected broker plus this test's hold on [`GATE`]. Take one per test only (a second
/// shared hold can deadlock behind a waiting exclusive one).
pub struct Rabbit {
    pub broker: Arc<AmqpBroker>,
    _gate: Gate,
}

impl std::ops::Deref for Rabbit {
    type Target = Arc<AmqpBroker>;
    fn deref(&self) -> &Arc<AmqpBroker> {
        &self.broker
    }
}

/// `Some` when RabbitMQ answers; `None` (with a printed reason) when it does not, unless
/// `CI=true`, where a missing RabbitMQ is a failure.
pub async fn broker() -> Option<Rabbit> {
    rabbit(false).await
}

/// Like [`broker`], for a test that disrupts the broker.
pub async fn broker_exclusive() -> Option<Rabbit> {
    rabbit(true).await
}

/// Whether RabbitMQ answers (or `GW_TEST_AMQP_URL` names one); `false` with a printed reason,
/// or a panic under `CI=true`.
pub fn reachable() -> bool {
    let up = std::net::TcpStream::connect_timeout(
        &"127.0.0.1:5672".parse().unwrap(),
        Duration::from_secs(2),
    )
    .is_ok();
    if !up && std::env::var("GW_TEST_AMQP_URL").is_err() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("RabbitMQ does not answer on 127.0.0.1:5672 and CI=true: start it (rabbitmq-server -detached)");
        }
        eprintln!("skipping: RabbitMQ does not answer on 127.0.0.1:5672 (start it with `rabbitmq-server -detached`)");
        return false;
    }
    true
}

pub async fn rabbit(exclusive: bool) -> Option<Rabbit> {
    if !reachable() {
        return None;
    }
    let gate = if exclusive {
        Gate::Exclusive(GATE.write().await)
    } else {
        Gate::Shared(GATE.read().await)
    };
    Some(Rabbit {
        broker: connect().await,
        _gate: gate,
    })
}

pub async fn connect() -> Arc<AmqpBroker> {
    Arc::new(
        AmqpBroker::connect(&url(), AmqpOptions::default())
            .await
            .expect("connect to RabbitMQ"),
    )
}

pub fn unique(name: &str) -> String {
    format!("gw.test.{name}.{}", uuid::Uuid::now_v7().simple())
}

/// Deletes the test's queues (and their `.dlq`) when the test ends, pass or fail.
pub struct Cleanup(pub Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let queues = std::mem::take(&mut self.0);
        // A fresh runtime on its own thread: the test's runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let Ok(Ok(b)) = tokio::time::timeout(
                    Duration::from_secs(10),
                    AmqpBroker::connect(&url(), AmqpOptions::default()),
                )
                .await
                else {
                    return;
                };
                for q in queues {
                    let _ = b.delete_queue(&q).await;
                }
                b.close().await;
            });
        })
        .join();
    }
}
