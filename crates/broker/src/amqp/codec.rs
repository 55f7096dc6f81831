//! Messages on the wire: a [`Message`] to AMQP properties and headers, and a lapin delivery
//! back to a message (with its delivery count, not-before time and dead-letter reason).
//!
//! # Invariants
//!
//! - Control headers (the gateway's own: id, key, attempt, not-before; RabbitMQ's: delivery
//!   count, `x-death`, …) are never copied into `Message.headers`, so a message republished
//!   after a retry or a replay carries only what its sender set.
//! - A delivery this module cannot decode is an error, never a guess: the consumer
//!   dead-letters it with the reason.
//! - A message RabbitMQ dead-lettered itself gets its reason from the newest `x-death` entry
//!   that is not a delay-tier expiry.

use std::collections::BTreeMap;

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;

use crate::*;

/// Header carrying "not visible before" (unix milliseconds) for delays longer than the
/// largest delay tier.
pub const HDR_NOT_BEFORE: &str = "x-gw-not-before";

/// Headers the gateway or RabbitMQ set for their own use; not copied into `Message.headers`.
pub(super) fn is_control_header(name: &str) -> bool {
    name == HDR_MESSAGE_ID
        || name == HDR_KEY
        || name == HDR_ATTEMPT
        || name == HDR_NOT_BEFORE
        || name == "x-delivery-count"
        || name == "x-death"
        || name.starts_with("x-first-death-")
        || name.starts_with("x-last-death-")
        || name.starts_with("x-opt-")
}

pub(super) fn ss(s: &str) -> Result<ShortString> {
    ShortString::try_new(s)
        .map_err(|_| BrokerError::Malformed(format!("name longer than 255 bytes: {s:.40}…")))
}

pub(super) fn closed_err(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::ChannelClosed(e.to_string())
}

pub(super) fn table(entries: Vec<(&str, AMQPValue)>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(k.into(), v);
    }
    t
}

pub(super) fn lstr(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// AMQP properties of a message: persistent, id/key/attempt as headers, user headers as
/// long strings (the gateway's own headers win over a user header of the same name).
pub(super) fn properties(msg: &Message, extra: Vec<(&str, AMQPValue)>) -> Result<BasicProperties> {
    let mut headers = FieldTable::default();
    for (k, v) in &msg.headers {
        if is_control_header(k) {
            continue;
        }
        headers.insert(ss(k)?, lstr(v));
    }
    headers.insert(HDR_MESSAGE_ID.into(), lstr(&msg.id));
    headers.insert(HDR_KEY.into(), lstr(&msg.key));
    headers.insert(HDR_ATTEMPT.into(), AMQPValue::LongUInt(msg.attempt));
    for (k, v) in extra {
        headers.insert(k.into(), v);
    }
    let mut props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/octet-stream".into())
        .with_timestamp(now_ms() / 1000)
        .with_headers(headers);
    if let Ok(id) = ShortString::try_new(msg.id.as_str()) {
        props = props.with_message_id(id);
    }
    Ok(props)
}

pub(super) fn value_str(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

pub(super) fn value_u64(v: &AMQPValue) -> Option<u64> {
    match *v {
        AMQPValue::ShortShortInt(n) => u64::try_from(n).ok(),
        AMQPValue::ShortShortUInt(n) => Some(n.into()),
        AMQPValue::ShortInt(n) => u64::try_from(n).ok(),
        AMQPValue::ShortUInt(n) => Some(n.into()),
        AMQPValue::LongInt(n) => u64::try_from(n).ok(),
        AMQPValue::LongUInt(n) => Some(n.into()),
        AMQPValue::LongLongInt(n) => u64::try_from(n).ok(),
        AMQPValue::Timestamp(n) => Some(n),
        _ => None,
    }
}

/// Why RabbitMQ itself dead-lettered a message (past the delivery limit: `delivery_limit`),
/// from the newest `x-death` entry that is not the expiry of a delay tier (every retried
/// message carries one of those).
pub(super) fn broker_death_reason(x_death: &AMQPValue) -> Option<String> {
    let AMQPValue::FieldArray(deaths) = x_death else {
        return None;
    };
    deaths.as_slice().iter().find_map(|death| {
        let AMQPValue::FieldTable(t) = death else {
            return None;
        };
        let field = |k: &str| t.inner().get(k).and_then(value_str).unwrap_or_default();
        let reason = field("reason");
        if reason.is_empty() || reason == "expired" {
            return None;
        }
        let count = t.inner().get("count").and_then(value_u64).unwrap_or(1);
        Some(format!(
            "{reason}: dead-lettered by RabbitMQ from queue {} ({count} time(s))",
            field("queue")
        ))
    })
}

/// The latest `time` (unix seconds) among a message's `x-death` entries.
pub(super) fn death_time_s(x_death: &AMQPValue) -> Option<u64> {
    let AMQPValue::FieldArray(deaths) = x_death else {
        return None;
    };
    deaths
        .as_slice()
        .iter()
        .filter_map(|death| match death {
            AMQPValue::FieldTable(t) => t.inner().get("time").and_then(value_u64),
            _ => None,
        })
        .max()
}

/// What a consumer got from the wire, decoded.
pub(super) struct Incoming {
    pub(super) message: Message,
    pub(super) delivery_count: u32,
    pub(super) not_before: Option<u64>,
}

pub(super) fn decode(d: &lapin::message::Delivery) -> Result<Incoming> {
    let empty = BTreeMap::new();
    let table = d
        .properties
        .headers()
        .as_ref()
        .map(|t| t.inner())
        .unwrap_or(&empty);
    let get = |k: &str| table.get(k);
    let id = get(HDR_MESSAGE_ID)
        .and_then(value_str)
        .or_else(|| {
            d.properties
                .message_id()
                .as_ref()
                .map(|s| s.as_str().to_string())
        })
        .ok_or_else(|| {
            BrokerError::Malformed(format!(
                "delivery {} has no {HDR_MESSAGE_ID}",
                d.delivery_tag
            ))
        })?;
    let key = get(HDR_KEY).and_then(value_str).unwrap_or_default();
    let attempt = match get(HDR_ATTEMPT) {
        None => 0,
        Some(v) => value_u64(v)
            .or_else(|| value_str(v).and_then(|s| s.parse().ok()))
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| BrokerError::Malformed(format!("message {id}: bad {HDR_ATTEMPT}")))?,
    };
    let mut headers = BTreeMap::new();
    for (k, v) in table {
        if is_control_header(k.as_str()) {
            continue;
        }
        if let Some(s) = value_str(v) {
            headers.insert(k.as_str().to_string(), s);
        }
    }
    if !headers.contains_key(HDR_DEAD_REASON) {
        if let Some(reason) = get("x-death").and_then(broker_death_reason) {
            headers.insert(HDR_DEAD_REASON.to_string(), reason);
        }
    }
    let returns = get("x-delivery-count").and_then(value_u64).unwrap_or(0);
    Ok(Incoming {
        message: Message {
            id,
            key,
            headers,
            attempt,
            body: Bytes::from(d.data.clone()),
        },
        delivery_count: u32::try_from(returns)
            .unwrap_or(u32::MAX - 1)
            .saturating_add(1),
        not_before: get(HDR_NOT_BEFORE).and_then(value_u64),
    })
}
