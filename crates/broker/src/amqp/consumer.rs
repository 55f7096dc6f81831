//! Consuming with manual acks and bounded prefetch, resubscribing after failures.
//!
//! # Invariants
//!
//! - `basic.qos(prefetch)` precedes `basic.consume`.
//! - A consumer never waits forever on a dead connection: it checks the connection and the
//!   channel every second while it waits, and resubscribes with [`Backoff`].
//! - A delivery that arrives before its not-before time is re-delayed (confirmed publish,
//!   then ack), never handed out; one that cannot be decoded is dead-lettered with the reason.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::Connection;
use tokio::sync::Notify;
use tracing::{debug, warn};

use super::acks::{AckBook, AckState};
use super::codec::{closed_err, decode, ss};
use super::connection::Inner;
use super::options::Backoff;
use super::settle::ChannelSettle;
use crate::*;

/// One subscription: a channel, its lapin consumer and its settle handle.
pub(super) struct Subscription {
    pub(super) conn: Arc<Connection>,
    pub(super) stream: lapin::Consumer,
    pub(super) settle: Arc<ChannelSettle>,
}

impl Subscription {
    pub(super) fn alive(&self) -> bool {
        self.conn.status().connected() && self.settle.book.channel.status().connected()
    }
}

impl Drop for Subscription {
    /// Flush the queued acks, then close the channel so RabbitMQ hands the unacked
    /// deliveries to another consumer.
    fn drop(&mut self) {
        let book = self.settle.book.clone();
        book.stopped.store(true, Ordering::SeqCst);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { book.shutdown("consumer closed").await });
        }
    }
}

pub(super) struct AmqpConsumer {
    pub(super) inner: Arc<Inner>,
    pub(super) queue: String,
    pub(super) prefetch: u16,
    pub(super) state: Option<Subscription>,
    pub(super) backoff: Backoff,
}

impl AmqpConsumer {
    pub(super) async fn subscribe(&self) -> Result<Subscription> {
        let link = self.inner.link().await?;
        let ch = link.conn.create_channel().await.map_err(closed_err)?;
        ch.basic_qos(self.prefetch, BasicQosOptions::default())
            .await
            .map_err(closed_err)?;
        let stream = ch
            .basic_consume(
                ss(&self.queue)?,
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| BrokerError::Topology(format!("cannot consume {}: {e}", self.queue)))?;
        let book = Arc::new(AckBook {
            queue: self.queue.clone(),
            consumer_tag: stream.tag(),
            channel: ch,
            state: Mutex::new(AckState::default()),
            flushing: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            batch: self.inner.opts.ack_batch.max(1),
            stopped: AtomicBool::new(false),
        });
        book.spawn(self.inner.opts.ack_interval);
        {
            let mut books = self.inner.books.lock().unwrap_or_else(|e| e.into_inner());
            books.retain(|w| w.strong_count() > 0);
            books.push(Arc::downgrade(&book));
        }
        let settle = Arc::new(ChannelSettle {
            inner: self.inner.clone(),
            queue: self.queue.clone(),
            book,
        });
        Ok(Subscription {
            conn: link.conn.clone(),
            stream,
            settle,
        })
    }

    /// Turn a wire delivery into a [`Delivery`], or `None` when it was handled here (a
    /// message that arrived before its not-before time is re-delayed).
    pub(super) async fn accept(
        &self,
        sub: &Subscription,
        d: lapin::message::Delivery,
    ) -> Result<Option<Delivery>> {
        let tag = d.delivery_tag;
        sub.settle.book.delivered(tag);
        let incoming = match decode(&d) {
            Ok(i) => i,
            Err(e) => {
                // Not ours to interpret: dead-letter it with the reason rather than loop.
                warn!(queue = %self.queue, tag, error = %e, "rabbitmq: malformed delivery moved to the dead-letter queue");
                let msg = Message {
                    id: String::new(),
                    key: String::new(),
                    headers: BTreeMap::new(),
                    attempt: 0,
                    body: Bytes::from(d.data.clone()),
                };
                sub.settle.reject(tag, msg, &e.to_string()).await?;
                return Ok(None);
            }
        };
        self.inner.heads.took(&self.queue, &d, incoming.not_before);
        if let Some(nb) = incoming.not_before {
            let now = now_ms();
            if nb > now + 20 {
                let rest = Duration::from_millis(nb - now);
                debug!(queue = %self.queue, id = %incoming.message.id, ?rest, "rabbitmq: early delivery re-delayed");
                sub.settle.retry(tag, incoming.message, rest).await?;
                return Ok(None);
            }
        }
        let settle: Arc<dyn Settle> = sub.settle.clone();
        Ok(Some(Delivery::new(
            incoming.message,
            d.redelivered || incoming.delivery_count > 1,
            incoming.delivery_count,
            self.queue.clone(),
            tag,
            settle,
        )))
    }
}

#[async_trait]
impl Consumer for AmqpConsumer {
    async fn next(&mut self) -> Option<Result<Delivery>> {
        loop {
            if self.inner.closed.load(Ordering::SeqCst) {
                self.state = None;
                return None;
            }
            let Some(sub) = self.state.as_mut() else {
                match self.subscribe().await {
                    Ok(s) => {
                        self.backoff.reset();
                        self.state = Some(s);
                    }
                    Err(BrokerError::Closed) => return None,
                    Err(e) => {
                        let wait = self.backoff.next_delay();
                        warn!(queue = %self.queue, error = %e, ?wait, "rabbitmq: consumer cannot subscribe, retrying");
                        tokio::time::sleep(wait).await;
                    }
                }
                continue;
            };
            let item = tokio::select! {
                item = sub.stream.next() => item,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if !sub.alive() {
                        warn!(queue = %self.queue, "rabbitmq: consumer connection is gone, reconnecting");
                        self.state = None;
                    }
                    continue;
                }
            };
            match item {
                Some(Ok(d)) => {
                    let sub = self.state.as_ref().expect("subscription present");
                    match self.accept(sub, d).await {
                        Ok(Some(delivery)) => return Some(Ok(delivery)),
                        Ok(None) => continue,
                        Err(e) => {
                            // The delivery stays unacked; a fresh channel gets it again.
                            warn!(queue = %self.queue, error = %e, "rabbitmq: handling a delivery failed, resubscribing");
                            self.state = None;
                        }
                    }
                }
                Some(Err(e)) => {
                    warn!(queue = %self.queue, error = %e, "rabbitmq: consumer channel failed, reconnecting");
                    self.state = None;
                }
                None => {
                    if !self.inner.closed.load(Ordering::SeqCst) {
                        warn!(queue = %self.queue, "rabbitmq: consumer cancelled by the broker, resubscribing");
                    }
                    self.state = None;
                }
            }
        }
    }
}
