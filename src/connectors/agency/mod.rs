//! The agency push connector: an agency subscription's events, minimised to the fields it
//! named, POSTed to its webhook with Standard Webhooks signatures (and RFC 9421 where asked).
//!
//! # Invariants
//! - **Only the projection is sent.** The body is [`crate::agencies::Subscription::project`]'s,
//!   byte for byte; its SHA-256 is the exchange's request digest in the evidence log, and the
//!   exchange's operation names the subscription, the fields sent and the legal basis.
//! - **`webhook-id` is stable across retries** (the envelope id, or the natural key
//!   `CODE@version` when versioned); `webhook-timestamp` is the attempt's time; one `v1,`
//!   signature per configured secret (several during a rotation).
//! - **Never silent.** A 410, or failing without a success for longer than `disable_after`,
//!   disables the subscription: a row of the store shared by every instance
//!   (`gw_store::subscriptions`), an error log line, the `gateway_subscription_disabled`
//!   gauge (and its alert), and one `subscription.disabled` operational event (told by the
//!   state, [`state::StateEvents`]; enabling tells `subscription.enabled`). While disabled, deliveries are dead-lettered with
//!   reason `subscription_disabled` (no call is made); `gateway agencies enable` clears it and
//!   `gateway agencies replay` (or the ops API) sends what was dead-lettered meanwhile.
//! - The connector decides nothing about retries: it returns an `Attempted` classified by
//!   `model::outcome::classify` (429 + Retry-After honoured by the route's schedule).
//!
//! # Layout
//! `settings.rs` (the push table resolved once: secrets, key, client), `webhook.rs` (the
//! Standard Webhooks headers, pure), `state.rs` (disabled or not, failing since, counters),
//! `connector.rs` (the `Connector`). Imports go down that list.

pub mod connector;
pub mod settings;
pub mod state;
pub mod webhook;

pub use connector::AgencyConnector;
pub use settings::{PushSettings, SettingsError};
pub use state::{Disabled, StateChange, StateEvents, SubscriptionState};
