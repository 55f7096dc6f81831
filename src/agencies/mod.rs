//! Agencies: who is entitled to which events and which fields of them.
//!
//! # Invariants
//! - **A subscription never receives a field it did not name.** What an agency is sent is
//!   built by [`Subscription::project`] and only there: a fresh object holding exactly the
//!   paths of the canonical fields the subscription names (`crate::model::fields::FIELDS`),
//!   never the payload with fields removed. Personal fields (the one list in
//!   `crate::model::fields`) are sent only when named in `personal`, which requires a legal
//!   basis; the configuration refuses unknown names and personal names in `fields`, and
//!   [`Subscription::from_section`] refuses them again (a subscription is never built from an
//!   unchecked section).
//! - **Filters fail closed.** A non-empty procedure or unit list takes only events whose
//!   payload names a matching code; an event naming none is not taken.
//! - **What was sent is identified.** Every projection carries the names of the fields it
//!   actually holds, the legal basis, and the SHA-256 of the exact body bytes, so that the
//!   evidence of a delivery says who received which data.
//! - No personal value is ever logged here: errors name fields, never values.
//!
//! # Layout
//! `subscription.rs`: [`Subscription`] (built from `[subscriptions.NAME]`), its filter and its
//! projection. Imports: `model`, `config`. [`schema`]: the JSON Schemas receivers validate
//! against, generated from the field table and the model (imports `model`, `config`). [`feed`]: the pull feed's pages, signatures, queries,
//! wakeups and metrics (imports `config`, `telemetry` too).

pub mod feed;
pub mod schema;
pub mod subscription;

pub use subscription::{Delivery, Filter, Projected, Subscription, SubscriptionError};

/// The route name (and destination adapter name) of a push subscription: `agency.<name>`. A
/// configured route cannot take it (route names have no `.`).
pub fn push_route_name(subscription: &str) -> String {
    format!("agency.{subscription}")
}

/// A replay's `since`: an RFC 3339 time, or a duration before `now_ms` (`2h`, `3d`); `None`
/// for anything else (never guessed).
pub fn parse_since(text: &str, now_ms: i64) -> Option<i64> {
    if let Ok(d) = crate::config::parse_duration(text) {
        return Some(now_ms - d.as_millis() as i64);
    }
    time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}
