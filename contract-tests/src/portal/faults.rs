//! Injected faults ([`Faults`], [`Scripted`]) and the token-bucket [`RateLimit`].
//!
//! # Invariants
//!
//! - Faults apply to the portal endpoints (login included), never to `/_sandbox/*`.
//! - A scripted fault ("the next N calls fail with X") is used before any random one.

use serde::{Deserialize, Serialize};

/// A fault kind, for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// HTTP 500.
    ServerError,
    /// HTTP 200 with the `system_error` code.
    ErrorCode,
    /// HTTP 429 with `Retry-After`.
    TooManyRequests,
    /// Hold the request `hold_ms`, then HTTP 504.
    Timeout,
    /// Reset the TCP connection without answering.
    Reset,
    /// Expire every session, then handle the call (a non-login call answers `session_expired`).
    SessionExpired,
    /// HTTP 503, as in an outage.
    Down,
}

/// "The next `count` calls fail with `kind`".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scripted {
    pub kind: FaultKind,
    pub count: u32,
}

/// Faults to inject. Rates are shares in 0.0..=1.0, rolled once per call in this order: reset,
/// timeout, server error, 429, HTTP 200 with an error. A script, when not exhausted, wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    pub server_error_rate: f64,
    pub error_code_rate: f64,
    pub too_many_rate: f64,
    pub retry_after_secs: u64,
    pub timeout_rate: f64,
    /// How long a "timeout" holds the request (default 30 s).
    pub hold_ms: u64,
    /// Fixed delay before every answer.
    pub delay_ms: u64,
    pub reset_rate: f64,
    /// Full outage: every portal call answers 503.
    pub down: bool,
    pub rate_limit: Option<RateLimit>,
    /// Consumed front to back, one call at a time.
    pub script: Vec<Scripted>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            server_error_rate: 0.0,
            error_code_rate: 0.0,
            too_many_rate: 0.0,
            retry_after_secs: 1,
            timeout_rate: 0.0,
            hold_ms: 30_000,
            delay_ms: 0,
            reset_rate: 0.0,
            down: false,
            rate_limit: None,
            script: Vec::new(),
        }
    }
}

/// A token bucket: `per_sec` tokens a second, at most `burst` saved.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    pub per_sec: f64,
    pub burst: u32,
}
