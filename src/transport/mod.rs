//! HTTP transport: the one outbound stack (pooled keep-alive over rustls, mTLS, timeouts), the
//! adapters' clients on it, the LGSP token cache.
//! (The inbound server is the edge: [`crate::edge`].)
//!
//! # Invariants
//! - Every outbound call goes through [`stack::Outbound`], built once at start per owner
//!   (adapter, provider, time-stamp authority): connections are pooled and kept alive, so a
//!   TLS handshake is paid per connection, not per message.
//! - Outbound answers are turned into [`crate::model::outcome::Answer`] here and classified in one
//!   place ([`crate::model::outcome::classify`]); this module never decides what an answer means.
//! - Transport never imports the evidence log: exchanges reach it through the observer
//!   [`exchange`] defines.

pub mod client;
pub mod exchange;
pub mod lgsp;
pub mod ratelimit;
pub mod serve;
pub mod stack;
