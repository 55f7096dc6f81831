//! `[[routes]]`: from a source and kind patterns to a destination adapter.
//!
//! The checks of one route's own values are here; its `from` and `to` (names of other
//! sections) and its effective retry policy (over `[retry]`) are checked in `references.rs`,
//! which walks the routes and calls these in between, so each route's problems stay together.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::defaults;
use super::names::valid_name;
use super::retry::{RetryOverride, RetrySection};

/// A route: from a source and kinds to a destination adapter.
#[derive(Debug, Clone, Deserialize)]
pub struct RouteSection {
    /// Unique name; it names the route's queues (`gw.route.<name>.p<N>`).
    pub name: String,
    /// Source name (a key of `[sources]`).
    pub from: String,
    /// Kind patterns (`dossier.*`, `payment.settled`); default: every kind.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Destination adapter (a key of `[adapters]`).
    pub to: String,
    /// Messages processed at once (distinct keys; one key is always one at a time). Default 16.
    #[serde(default = "d_concurrency")]
    pub concurrency: usize,
    /// Retry policy overrides for this route.
    #[serde(default)]
    pub retry: RetryOverride,
}

fn d_concurrency() -> usize {
    defaults::ROUTE_CONCURRENCY
}

impl RouteSection {
    /// This route's effective retry policy.
    pub fn retry_policy(&self, defaults: &RetrySection) -> RetrySection {
        RetrySection {
            initial: self.retry.initial.unwrap_or(defaults.initial),
            max_delay: self.retry.max_delay.unwrap_or(defaults.max_delay),
            max_elapsed: self.retry.max_elapsed.unwrap_or(defaults.max_elapsed),
            max_attempts: self.retry.max_attempts.unwrap_or(defaults.max_attempts),
        }
    }
}

/// Whether a kind list (of a route or a source) admits `kind`: an empty list admits every kind.
pub fn kinds_admit(patterns: &[String], kind: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| kind_matches(p, kind))
}

/// `dossier.*` matches `dossier.upserted`; `*` matches everything; otherwise exact.
pub fn kind_matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => pattern == kind,
    }
}

/// Check a route's name: valid, and not one of `seen` (the names of the routes before it).
pub(super) fn validate_name(
    at: &str,
    r: &RouteSection,
    seen: &mut BTreeSet<String>,
    p: &mut impl FnMut(String, String, &str),
) {
    if !valid_name(&r.name) {
        p(
            format!("{at}.name"),
            format!("`{}` has characters other than a-z, 0-9, - and _", r.name),
            "rename it",
        );
    }
    if !seen.insert(r.name.clone()) {
        p(
            format!("{at}.name"),
            format!("route `{}` is defined twice", r.name),
            "give each route its own name",
        );
    }
}

/// Check a route's concurrency: at least 1.
pub(super) fn validate_concurrency(
    at: &str,
    r: &RouteSection,
    p: &mut impl FnMut(String, String, &str),
) {
    if r.concurrency == 0 {
        p(
            format!("{at}.concurrency"),
            "must be at least 1".into(),
            "set a value such as 16",
        );
    }
}
