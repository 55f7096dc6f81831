//! [`AmqpBroker`]: the [`Broker`] on RabbitMQ, and inspection (queue stats, deletion).
//!
//! # Invariants
//!
//! - The broker is a thin face over [`Inner`]: every guarantee is kept by the role files.
//! - `stats` reads `ready` with a passive declare; `unacked` is this process's consumers' held
//!   deliveries only (best effort, see the module doc of [`super`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock, Weak};

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;

use super::acks::AckBook;
use super::codec::{closed_err, ss};
use super::connection::{with_heartbeat, Inner};
use super::consumer::AmqpConsumer;
use super::heads::HeadWatch;
use super::options::{AmqpOptions, Backoff};
use crate::*;

/// The RabbitMQ broker. Cheap to share behind an `Arc`.
pub struct AmqpBroker {
    pub(super) inner: Arc<Inner>,
}

impl AmqpBroker {
    /// Connect to `url` (`amqp://user:pass@host:port/vhost`). Fails if the first connection
    /// cannot be made; later losses are recovered.
    pub async fn connect(url: &str, opts: AmqpOptions) -> Result<Self> {
        match (url.starts_with("amqps://"), opts.tls.is_some()) {
            (true, false) => {
                return Err(BrokerError::ConnectFailed(
                    "an amqps:// URL needs the CA the broker's certificate chains to: set \
                     broker.ca"
                        .into(),
                ))
            }
            (false, true) => {
                return Err(BrokerError::ConnectFailed(
                    "a CA file (broker.ca) is configured but the URL is plain amqp://: write \
                     amqps:// (port 5671), or remove broker.ca"
                        .into(),
                ))
            }
            _ => {}
        }
        let inner = Arc::new(Inner {
            url: with_heartbeat(url, opts.heartbeat),
            opts,
            link: RwLock::new(None),
            reconnect: tokio::sync::Mutex::new(()),
            declared: Mutex::new(BTreeMap::new()),
            books: Mutex::new(Vec::new()),
            heads: HeadWatch::default(),
            closed: AtomicBool::new(false),
        });
        inner.link().await?;
        Ok(Self { inner })
    }

    /// Delete a queue and its dead-letter queue (tests and operators' tooling). Returns
    /// how many messages the two held.
    pub async fn delete_queue(&self, queue: &str) -> Result<u64> {
        let link = self.inner.link().await?;
        let ch = link.conn.create_channel().await.map_err(closed_err)?;
        let mut n = 0u64;
        for q in [queue.to_string(), dead_letter_queue(queue)] {
            n += ch
                .queue_delete(ss(&q)?, QueueDeleteOptions::default())
                .await
                .map_err(|e| BrokerError::Topology(e.to_string()))? as u64;
        }
        self.inner
            .declared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(queue);
        let _ = ch.close(200, "deleted".into()).await;
        Ok(n)
    }
}

#[async_trait]
impl Broker for AmqpBroker {
    fn kind(&self) -> &'static str {
        "rabbitmq"
    }

    fn orphans_queue(&self) -> Option<&str> {
        Some(&self.inner.opts.orphans)
    }

    async fn declare(&self, queues: &[QueueSpec]) -> Result<()> {
        let link = self.inner.link().await?;
        self.inner.declare_on(&link, queues).await?;
        let mut declared = self
            .inner
            .declared
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for q in queues {
            declared.insert(q.name.clone(), q.clone());
        }
        Ok(())
    }

    async fn publish(&self, queue: &str, msg: Message) -> Result<()> {
        self.inner.publish_work(queue, &msg).await
    }

    /// Pipelined: every publish is sent, then every confirm awaited. The first failure in
    /// batch order is returned (after all confirms were awaited).
    async fn publish_batch(&self, queue: &str, msgs: Vec<Message>) -> Result<()> {
        let mut confirms = Vec::with_capacity(msgs.len());
        let mut first_err = None;
        for m in &msgs {
            match self
                .inner
                .send(&self.inner.opts.work_exchange, queue, m, Vec::new())
                .await
            {
                Ok(c) => confirms.push(c),
                Err(e) => {
                    first_err = Some(e);
                    break;
                }
            }
        }
        let outcomes = futures_util::future::join_all(
            confirms.into_iter().map(|c| self.inner.confirmed(queue, c)),
        )
        .await;
        match outcomes.into_iter().find_map(|r| r.err()) {
            Some(e) => Err(e),
            None => first_err.map_or(Ok(()), Err),
        }
    }

    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>> {
        let mut c = AmqpConsumer {
            inner: self.inner.clone(),
            queue: queue.to_string(),
            prefetch: prefetch.max(1),
            state: None,
            backoff: Backoff::new(self.inner.opts.reconnect_min, self.inner.opts.reconnect_max),
        };
        // The first subscription is made here so that a missing queue is an error now.
        c.state = Some(c.subscribe().await?);
        Ok(Box::new(c))
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats> {
        let link = self.inner.link().await?;
        let ch = link.conn.create_channel().await.map_err(closed_err)?;
        let q = ch
            .queue_declare(
                ss(queue)?,
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| BrokerError::Topology(format!("queue {queue}: {e}")))?;
        let _ = ch.close(200, "stats".into()).await;
        let ready = q.message_count() as u64;
        Ok(QueueStats {
            ready,
            unacked: self.inner.unacked(queue),
            delayed: None,
            oldest_ready_age: self.inner.heads.age(queue, ready),
        })
    }

    /// Connected now; a dead connection is re-established here (bounded by 3 s) so that
    /// readiness recovers without waiting for traffic.
    async fn ready(&self) -> bool {
        if self.inner.closed.load(Ordering::SeqCst) {
            return false;
        }
        match tokio::time::timeout(Duration::from_secs(3), self.inner.link()).await {
            Ok(Ok(link)) => link.conn.status().connected(),
            _ => false,
        }
    }

    async fn close(&self) {
        let books: Vec<Arc<AckBook>> = {
            let mut b = self.inner.books.lock().unwrap_or_else(|e| e.into_inner());
            b.retain(|w| w.strong_count() > 0);
            b.iter().filter_map(Weak::upgrade).collect()
        };
        // Closed first, so a consumer whose subscription ends below does not resubscribe.
        self.inner.closed.store(true, Ordering::SeqCst);
        for book in books {
            book.shutdown("gateway closing").await;
        }
        let link = self
            .inner
            .link
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(link) = link {
            let _ = link.publish.wait_for_confirms().await;
            if link.conn.status().connected() {
                let _ = link.conn.close(200, "gateway closing".into()).await;
            }
        }
    }
}
