//! Publishing with publisher confirms: work, delayed retries and dead letters.
//!
//! # Invariants
//!
//! - Every publish is `mandatory` and persistent, and is `Ok` only on the broker's confirm
//!   (nack, return, timeout and a lost channel are errors the caller retries).
//! - A retry goes to the smallest delay tier not shorter than the delay; a longer delay carries
//!   [`HDR_NOT_BEFORE`].
//! - A dead letter is the original message plus the reason header, published to the
//!   dead-letter exchange and confirmed before the original is acked.

use lapin::options::BasicPublishOptions;
use lapin::types::AMQPValue;
use lapin::Confirmation;

use super::codec::{closed_err, lstr, properties, ss, HDR_NOT_BEFORE};
use super::connection::Inner;
use super::topology::delay_tier;
use crate::*;

impl Inner {
    /// Send one mandatory persistent publish; returns its (not yet awaited) confirm.
    pub(super) async fn send(
        &self,
        exchange: &str,
        routing_key: &str,
        msg: &Message,
        extra: Vec<(&str, AMQPValue)>,
    ) -> Result<lapin::PublisherConfirm> {
        let props = properties(msg, extra)?;
        let link = self.link().await?;
        let opts = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        link.publish
            .basic_publish(ss(exchange)?, ss(routing_key)?, opts, &msg.body, props)
            .await
            .map_err(closed_err)
    }

    /// Await a confirm and map it to the crate's outcome.
    pub(super) async fn confirmed(
        &self,
        queue: &str,
        confirm: lapin::PublisherConfirm,
    ) -> Result<()> {
        match tokio::time::timeout(self.opts.confirm_timeout, confirm).await {
            Err(_) => Err(BrokerError::ConfirmTimeout(self.opts.confirm_timeout)),
            Ok(Err(e)) => Err(closed_err(format!("confirm lost: {e}"))),
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(Confirmation::Ack(Some(_)))) => Err(BrokerError::Unroutable {
                queue: queue.to_string(),
            }),
            Ok(Ok(Confirmation::Nack(_))) => Err(BrokerError::Nack {
                queue: queue.to_string(),
            }),
            Ok(Ok(Confirmation::NotRequested)) => {
                Err(closed_err("the publish channel is not in confirm mode"))
            }
        }
    }

    pub(super) async fn publish_work(&self, queue: &str, msg: &Message) -> Result<()> {
        let c = self
            .send(&self.opts.work_exchange, queue, msg, Vec::new())
            .await?;
        self.confirmed(queue, c).await
    }

    /// Durably schedule `msg` for `queue` no earlier than `delay` from now.
    pub(super) async fn publish_delayed(
        &self,
        queue: &str,
        msg: &Message,
        delay: Duration,
    ) -> Result<()> {
        if delay.is_zero() {
            return self.publish_work(queue, msg).await;
        }
        let (suffix, tier) = delay_tier(delay);
        let mut extra = Vec::new();
        if delay > tier {
            extra.push((
                HDR_NOT_BEFORE,
                AMQPValue::LongLongInt((now_ms() + delay.as_millis() as u64) as i64),
            ));
        }
        let c = self
            .send(&self.tier_name(suffix), queue, msg, extra)
            .await?;
        self.confirmed(queue, c).await
    }

    pub(super) async fn publish_dead(
        &self,
        queue: &str,
        msg: &Message,
        reason: &str,
    ) -> Result<()> {
        let extra = vec![(HDR_DEAD_REASON, lstr(reason))];
        let c = self
            .send(&self.opts.dead_letter_exchange, queue, msg, extra)
            .await?;
        self.confirmed(&dead_letter_queue(queue), c).await
    }
}
