//! `[retry]`: the default retry policy of every route, and a route's overrides.

use std::time::Duration;

use serde::Deserialize;

use super::defaults;
use super::duration::Dur;

/// Capped exponential backoff with full jitter, limited by attempts and by elapsed time.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct RetrySection {
    /// First delay. Default 1s.
    #[serde(default = "d_retry_initial")]
    pub initial: Dur,
    /// Largest delay between attempts. Default 1h.
    #[serde(default = "d_retry_max_delay")]
    pub max_delay: Dur,
    /// Give up after this long since the first attempt. Default 7d.
    #[serde(default = "d_retry_max_elapsed")]
    pub max_elapsed: Dur,
    /// Give up after this many attempts; 0 = no cap (the elapsed limit still applies).
    #[serde(default)]
    pub max_attempts: u32,
}

impl Default for RetrySection {
    fn default() -> Self {
        Self {
            initial: d_retry_initial(),
            max_delay: d_retry_max_delay(),
            max_elapsed: d_retry_max_elapsed(),
            max_attempts: defaults::RETRY_MAX_ATTEMPTS,
        }
    }
}

/// Partial retry settings a route can override.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct RetryOverride {
    pub initial: Option<Dur>,
    pub max_delay: Option<Dur>,
    pub max_elapsed: Option<Dur>,
    pub max_attempts: Option<u32>,
}

fn d_retry_initial() -> Dur {
    Dur(defaults::RETRY_INITIAL)
}
fn d_retry_max_delay() -> Dur {
    Dur(defaults::RETRY_MAX_DELAY)
}
fn d_retry_max_elapsed() -> Dur {
    Dur(defaults::RETRY_MAX_ELAPSED)
}

/// Check a retry policy; `at` is its key (`retry`, `routes[0].retry`).
pub(super) fn validate(r: &RetrySection, at: &str, p: &mut impl FnMut(String, String, &str)) {
    if r.initial.0.is_zero() {
        p(
            format!("{at}.initial"),
            "must be more than 0".into(),
            "set a first delay such as 1s",
        );
    }
    if r.max_delay.0 < r.initial.0 {
        p(
            format!("{at}.max_delay"),
            "is smaller than initial".into(),
            "make max_delay at least initial",
        );
    }
    if r.max_elapsed.0 < Duration::from_secs(1) {
        p(
            format!("{at}.max_elapsed"),
            "must be at least 1s".into(),
            "set how long to keep retrying, such as 7d",
        );
    }
}
