//! Push subscriptions' shared state: whether each is disabled (why, since when) and since when
//! it has been failing, on SQLite and PostgreSQL (schema version 13), so every gateway instance
//! on one store sees the same state and a restart forgets nothing.
//!
//! # Invariants ([`suite`] checks them on both stores)
//!
//! 1. **Disabling is idempotent and keeps the first reason.** [`SubscriptionStates::disable`]
//!    writes only when the subscription is not disabled already and answers whether this call
//!    disabled it, so two instances disabling at once log and count one disabling.
//! 2. **Enabling clears the failure clock.** [`SubscriptionStates::enable`] answers the state
//!    it cleared (`None`: it was not disabled) and resets `failing_since`, so the next failure
//!    starts a new `disable_after` period instead of disabling at once.
//! 3. **The failure clock keeps the first failure.** [`SubscriptionStates::failing`] sets
//!    `failing_since` only when it is unset and answers the stored value: a restart or a second
//!    instance failing later does not reset it, so `disable_after` counts from the first
//!    failure any instance saw. [`SubscriptionStates::succeeded`] clears it.
//! 4. Rows hold a subscription's configured name and times only, never a person's data.
//!
//! A store's subscription states are reached through [`crate::Store::subscription_states`] (the
//! same connections).
//!
//! Schema (version 13; its statements are `IF NOT EXISTS`):
//! ```text
//! subscription_state  subscription PK, disabled_since_ms?, disabled_reason?,
//!                     failing_since_ms?, updated_ms
//! ```

use async_trait::async_trait;

use crate::error::Result;

/// Why and since when a subscription is disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disabled {
    pub since_ms: i64,
    /// `gone` (the agency answered 410), `failing` (no success for `disable_after`), or what an
    /// operator gave.
    pub reason: String,
}

/// One subscription's stored state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscriptionRow {
    pub subscription: String,
    pub disabled: Option<Disabled>,
    /// The first failure since the last success (`None`: not failing).
    pub failing_since_ms: Option<i64>,
    pub updated_ms: i64,
}

/// The subscription-state store (see the invariants above).
#[async_trait]
pub trait SubscriptionStates: Send + Sync {
    /// The stored state of `subscription` (`None`: never written, so enabled and not failing).
    async fn state(&self, subscription: &str) -> Result<Option<SubscriptionRow>>;

    /// Every stored state, by name.
    async fn states(&self) -> Result<Vec<SubscriptionRow>>;

    /// Disable it at `at_ms` unless it is disabled already; `true` when this call did
    /// (invariant 1).
    async fn disable(&self, subscription: &str, reason: &str, at_ms: i64) -> Result<bool>;

    /// Enable it: the disabled state cleared (`None`: it was enabled), the failure clock reset
    /// (invariant 2).
    async fn enable(&self, subscription: &str, at_ms: i64) -> Result<Option<Disabled>>;

    /// A failure at `at_ms`: since when it has been failing (invariant 3).
    async fn failing(&self, subscription: &str, at_ms: i64) -> Result<i64>;

    /// A success at `at_ms`: not failing any more.
    async fn succeeded(&self, subscription: &str, at_ms: i64) -> Result<()>;
}

fn row_of(
    subscription: String,
    since: Option<i64>,
    reason: Option<String>,
    failing: Option<i64>,
    updated_ms: i64,
) -> SubscriptionRow {
    SubscriptionRow {
        subscription,
        disabled: since.map(|since_ms| Disabled {
            since_ms,
            reason: reason.unwrap_or_default(),
        }),
        failing_since_ms: failing,
        updated_ms,
    }
}

mod postgres;
pub(crate) mod schema;
mod sqlite;

/// The shared checks, run on both stores by `tests/subscriptions.rs`.
#[doc(hidden)]
pub mod suite;
