//! HTTP transport: the outbound client (pooled keep-alive over rustls, mTLS, timeouts) and the
//! inbound server (a source answers 2xx only after the broker confirmed the publish).
//!
//! # Invariants
//! - One [`reqwest::Client`] per adapter, built once at start: connections are pooled and
//!   kept alive, so a TLS handshake is paid per connection, not per message.
//! - Outbound answers are turned into [`crate::model::outcome::Answer`] here and classified in one
//!   place ([`crate::model::outcome::classify`]); this module never decides what an answer means.
//! - The inbound server never answers 2xx for an event that is not durably queued.

pub mod client;
pub mod ratelimit;
pub mod serve;
