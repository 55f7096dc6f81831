//! Topology: the shared exchanges, the delay tiers and the work queues with their arguments.
//!
//! # Invariants
//!
//! - Declares run on a channel of their own: a refused declare closes that channel, never the
//!   publish channel.
//! - A work queue that exists with other arguments is
//!   [`BrokerError::QueueArgumentsDiffer`], never silently used as is.
//! - Every declared queue is remembered, so a reconnect declares it again.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::ExchangeKind;

use super::codec::{closed_err, lstr, ss, table};
use super::connection::{Inner, Link};
use crate::*;

/// The delay tiers: name suffix and TTL. Keep in sync with `deploy/rabbitmq/definitions.json`.
pub const DELAY_TIERS: &[(&str, Duration)] = &[
    ("250ms", Duration::from_millis(250)),
    ("1s", Duration::from_secs(1)),
    ("5s", Duration::from_secs(5)),
    ("30s", Duration::from_secs(30)),
    ("2m", Duration::from_secs(120)),
    ("10m", Duration::from_secs(600)),
    ("1h", Duration::from_secs(3600)),
];

/// The smallest tier not shorter than `delay`, or the largest one (the caller then adds
/// [`HDR_NOT_BEFORE`](super::HDR_NOT_BEFORE)).
pub(super) fn delay_tier(delay: Duration) -> (&'static str, Duration) {
    DELAY_TIERS
        .iter()
        .find(|(_, d)| *d >= delay)
        .copied()
        .unwrap_or(DELAY_TIERS[DELAY_TIERS.len() - 1])
}

/// A refused work-queue declare: PRECONDITION_FAILED (406, the queue exists with other
/// arguments) is [`BrokerError::QueueArgumentsDiffer`], anything else a topology error.
pub(super) fn declare_refused(queue: &str, e: lapin::Error) -> BrokerError {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    match e.kind() {
        lapin::ErrorKind::ProtocolError(a)
            if matches!(
                a.kind(),
                AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
            ) =>
        {
            BrokerError::QueueArgumentsDiffer {
                queue: queue.to_string(),
                detail: a.get_message().as_str().to_string(),
            }
        }
        _ => BrokerError::Topology(format!("queue {queue}: {e}")),
    }
}

impl Inner {
    pub(super) fn tier_name(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.opts.delay_prefix)
    }

    /// Declare the shared exchanges, the delay tiers and the given queues on a fresh
    /// channel (a refused declare closes its channel; the publish channel must survive).
    pub(super) async fn declare_on(&self, link: &Link, specs: &[QueueSpec]) -> Result<()> {
        let ch = link.conn.create_channel().await.map_err(closed_err)?;
        let topo = |e: lapin::Error| BrokerError::Topology(e.to_string());
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let work = ss(&self.opts.work_exchange)?;
        let dlx = ss(&self.opts.dead_letter_exchange)?;
        ch.exchange_declare(
            work.clone(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(topo)?;
        ch.exchange_declare(
            dlx.clone(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(topo)?;
        let orphans = ss(&self.opts.orphans)?;
        ch.exchange_declare(
            orphans.clone(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(topo)?;
        ch.queue_declare(
            orphans.clone(),
            QueueDeclareOptions::durable(),
            table(vec![("x-queue-type", lstr("quorum"))]),
        )
        .await
        .map_err(topo)?;
        ch.queue_bind(
            orphans.clone(),
            orphans,
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(topo)?;
        let ret = ss(&self.opts.return_exchange)?;
        ch.exchange_declare(
            ret.clone(),
            ExchangeKind::Direct,
            durable,
            table(vec![("alternate-exchange", lstr(&self.opts.orphans))]),
        )
        .await
        .map_err(topo)?;
        for (suffix, ttl) in DELAY_TIERS {
            let name = ss(&self.tier_name(suffix))?;
            ch.exchange_declare(
                name.clone(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(topo)?;
            let args = table(vec![
                ("x-queue-type", lstr("quorum")),
                (
                    "x-message-ttl",
                    AMQPValue::LongLongInt(ttl.as_millis() as i64),
                ),
                ("x-dead-letter-exchange", lstr(&self.opts.return_exchange)),
                ("x-dead-letter-strategy", lstr("at-least-once")),
                ("x-overflow", lstr("reject-publish")),
            ]);
            ch.queue_declare(name.clone(), QueueDeclareOptions::durable(), args)
                .await
                .map_err(topo)?;
            ch.queue_bind(
                name.clone(),
                name,
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(topo)?;
        }
        for spec in specs {
            let q = ss(&spec.name)?;
            let dlq = ss(&dead_letter_queue(&spec.name))?;
            let args = table(vec![
                ("x-queue-type", lstr("quorum")),
                (
                    "x-delivery-limit",
                    AMQPValue::LongLongInt(spec.delivery_limit.saturating_sub(1) as i64),
                ),
                (
                    "x-dead-letter-exchange",
                    lstr(&self.opts.dead_letter_exchange),
                ),
                ("x-dead-letter-strategy", lstr("at-least-once")),
                ("x-overflow", lstr("reject-publish")),
                ("x-single-active-consumer", AMQPValue::Boolean(true)),
            ]);
            ch.queue_declare(q.clone(), QueueDeclareOptions::durable(), args)
                .await
                .map_err(|e| declare_refused(&spec.name, e))?;
            let dlq_args = table(vec![("x-queue-type", lstr("quorum"))]);
            ch.queue_declare(dlq.clone(), QueueDeclareOptions::durable(), dlq_args)
                .await
                .map_err(topo)?;
            let none = FieldTable::default;
            let opts = QueueBindOptions::default();
            ch.queue_bind(q.clone(), work.clone(), q.clone(), opts, none())
                .await
                .map_err(topo)?;
            ch.queue_bind(dlq.clone(), dlx.clone(), q.clone(), opts, none())
                .await
                .map_err(topo)?;
            ch.queue_bind(dlq.clone(), work.clone(), dlq.clone(), opts, none())
                .await
                .map_err(topo)?;
            ch.queue_bind(q.clone(), ret.clone(), q.clone(), opts, none())
                .await
                .map_err(topo)?;
            ch.queue_bind(dlq.clone(), ret.clone(), dlq.clone(), opts, none())
                .await
                .map_err(topo)?;
        }
        let _ = ch.close(200, "declared".into()).await;
        Ok(())
    }
}
