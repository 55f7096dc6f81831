//! `[subscriptions.NAME.pull]`: how an agency that cannot be called fetches its feed
//! (`GET /feeds/{subscription}`). Present iff the subscription's `delivery = "pull"`.
//!
//! This struct is the pull feed's own: its fields (token, retention, …) are added here by the
//! feed's work, and checked by [`validate`], which sees this table alone.

use serde::Deserialize;

/// The pull side of a subscription.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PullSection {}

/// Check a subscription's `pull` table; `at` is its key (`subscriptions.NAME.pull`).
pub(super) fn validate(_at: &str, _pull: &PullSection, _p: &mut impl FnMut(String, String, &str)) {}
