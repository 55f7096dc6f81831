//! HTTP transport: the one outbound stack (pooled keep-alive over rustls, mTLS, timeouts), the
//! adapters' clients on it, the LGSP token cache, and the inbound server (a source answers 2xx
//! only after the broker confirmed the publish).
//!
//! # Invariants
//! - Every outbound call goes through [`stack::Outbound`], built once at start per owner
//!   (adapter, provider, time-stamp authority): connections are pooled and kept alive, so a
//!   TLS handshake is paid per connection, not per message.
//! - Outbound answers are turned into [`crate::retry::Answer`] here and classified in one
//!   place ([`crate::retry::classify`]); this module never decides what an answer means.
//! - Transport never imports the evidence log: exchanges reach it through the observer
//!   [`exchange`] defines.
//! - The inbound server never answers 2xx for an event that is not durably queued.

pub mod client;
pub mod exchange;
pub mod inbound;
pub mod lgsp;
pub mod ratelimit;
pub mod serve;
pub mod stack;
