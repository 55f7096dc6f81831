//! Settling one delivery: ack, retry, reject (dead letter), requeue ([`ChannelSettle`]).
//!
//! # Invariants
//!
//! - A retry or a reject publishes (and awaits the confirm of) the copy first, and only then
//!   acks the original: a crash in between duplicates, never loses.
//! - A delivery whose channel is gone cannot be settled: the call returns
//!   [`BrokerError::ChannelClosed`] and RabbitMQ delivers the message again.

use std::sync::atomic::Ordering;

use lapin::options::BasicNackOptions;

use super::acks::AckBook;
use super::codec::closed_err;
use super::connection::Inner;
use crate::*;

/// Settles deliveries of one consumer channel.
pub(super) struct ChannelSettle {
    pub(super) inner: Arc<Inner>,
    pub(super) queue: String,
    pub(super) book: Arc<AckBook>,
}

impl ChannelSettle {
    pub(super) fn ensure_open(&self) -> Result<()> {
        if self.book.channel.status().connected() {
            Ok(())
        } else {
            Err(closed_err(format!(
                "the channel of this delivery from {} is gone; RabbitMQ delivers it again",
                self.queue
            )))
        }
    }
}

#[async_trait]
impl Settle for ChannelSettle {
    /// Live while the channel is open and the consumer was not dropped.
    fn live(&self) -> bool {
        self.book.channel.status().connected() && !self.book.stopped.load(Ordering::SeqCst)
    }

    async fn ack(&self, tag: u64) -> Result<()> {
        self.ensure_open()?;
        self.book.complete(tag, true);
        Ok(())
    }

    async fn retry(&self, tag: u64, msg: Message, delay: Duration) -> Result<()> {
        self.ensure_open()?;
        self.inner.publish_delayed(&self.queue, &msg, delay).await?;
        self.ensure_open()?;
        self.book.complete(tag, true);
        Ok(())
    }

    async fn reject(&self, tag: u64, msg: Message, reason: &str) -> Result<()> {
        self.ensure_open()?;
        self.inner.publish_dead(&self.queue, &msg, reason).await?;
        self.ensure_open()?;
        self.book.complete(tag, true);
        Ok(())
    }

    async fn requeue(&self, tag: u64) -> Result<()> {
        self.ensure_open()?;
        self.book
            .channel
            .basic_nack(
                tag,
                BasicNackOptions {
                    multiple: false,
                    requeue: true,
                },
            )
            .await
            .map_err(closed_err)?;
        self.book.complete(tag, false);
        Ok(())
    }
}
