//! The outbound HTTP client of one adapter.
//!
//! # Invariants
//! - Every failure becomes an [`Answer`], never a panic or a hang (the adapter's timeouts).
//! - **A 429 slows the whole adapter down** (additive increase, multiplicative decrease, as
//!   TCP does): every 429 halves the calls the adapter may have in flight (at least one), and
//!   every other answer raises the limit by one call per limit's worth of answers, up to
//!   [`MAX_IN_FLIGHT`]. The call that met the 429 waits its `Retry-After` (its retry delay).
//!   Back-pressure is thus obeyed by every lane, not only the one that met it, the adapter
//!   never stops altogether, and a 429 never counts against the destination's health (see
//!   [`crate::model::outcome::health`]).
//! - The adapter's quota (`rate_limit`) is reserved before each call; the quota wait is not
//!   counted as the party's latency.

use std::path::Path;
use std::time::{Duration, Instant};

use super::ratelimit::RateLimiter;
use super::stack::{Auth, BuildError, Options, Outbound, TransportError};
use crate::config::{AdapterSection, Secret};
use crate::model::outcome::{Answer, TransportFailure};

// Kept reachable at their old paths: the request type is shared with the evidence capture.
pub use super::exchange::OutRequest;
pub use super::stack::snippet;

/// Why an adapter's client could not be built.
pub type ClientError = BuildError;

/// An adapter's client: the stack ([`Outbound`]: pooled, TLS, fixed headers) plus the
/// adapter's bearer, quota and 429 back-off.
#[derive(Clone)]
pub struct HttpClient {
    stack: Outbound,
    bearer: Option<Secret>,
    /// The adapter's call quota (`rate_limit`), shared by every caller of this client.
    limiter: Option<std::sync::Arc<RateLimiter>>,
    /// Calls in flight under the 429 back-off (AIMD).
    window: std::sync::Arc<Window>,
}

/// The most calls an adapter has in flight while no 429 holds it back.
pub const MAX_IN_FLIGHT: usize = 256;

/// The AIMD limit of calls in flight.
#[derive(Debug)]
struct Window {
    state: std::sync::Mutex<WindowState>,
    freed: tokio::sync::Notify,
}

#[derive(Debug)]
struct WindowState {
    limit: f64,
    in_flight: usize,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            state: std::sync::Mutex::new(WindowState {
                limit: MAX_IN_FLIGHT as f64,
                in_flight: 0,
            }),
            freed: tokio::sync::Notify::new(),
        }
    }
}

impl Window {
    fn lock(&self) -> std::sync::MutexGuard<'_, WindowState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait for a slot under the limit.
    async fn enter(self: &std::sync::Arc<Self>) -> Slot {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut g = self.lock();
                if (g.in_flight as f64) < g.limit.floor().max(1.0) {
                    g.in_flight += 1;
                    return Slot(self.clone());
                }
            }
            freed.await;
        }
    }

    /// A 429 halves the limit; any other answer raises it by 1/limit.
    fn answered(&self, too_many: bool) {
        let mut g = self.lock();
        g.limit = if too_many {
            (g.limit / 2.0).max(1.0)
        } else {
            (g.limit + 1.0 / g.limit).min(MAX_IN_FLIGHT as f64)
        };
    }

    /// The current limit (for tests).
    fn limit(&self) -> usize {
        self.lock().limit.floor() as usize
    }
}

/// A call's place in the window; freed when dropped.
struct Slot(std::sync::Arc<Window>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.lock().in_flight -= 1;
        self.0.freed.notify_waiters();
    }
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("bearer", &self.bearer)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// Build the adapter's client. `base` resolves relative file paths and secret files.
    pub fn build(name: &str, a: &AdapterSection, base: &Path) -> Result<Self, ClientError> {
        let stack = Outbound::build(&Options {
            owner: &format!("adapter {name}"),
            timeout: a.timeout.0,
            connect_timeout: Some(a.connect_timeout.0),
            tls: a.tls.as_ref(),
            base,
            user_agent: true,
            headers: Some(&a.headers),
        })?;
        let bearer = match &a.bearer {
            Some(r) => Some(r.resolve(base).map_err(|e| BuildError::Read {
                owner: format!("adapter {name}"),
                what: "bearer".into(),
                detail: e.to_string(),
            })?),
            None => None,
        };
        Ok(HttpClient {
            stack,
            bearer,
            limiter: a
                .rate_limit
                .map(|r| std::sync::Arc::new(RateLimiter::new(r.per_sec, r.burst))),
            window: Default::default(),
        })
    }

    /// The stack under this client, for calls outside the adapter's quota and back-off
    /// (token endpoints).
    pub fn stack(&self) -> &Outbound {
        &self.stack
    }

    /// Wait until the adapter's quota would let a call through at once (no wait without a
    /// `rate_limit`); nothing is reserved.
    pub async fn until_free(&self) {
        if let Some(l) = &self.limiter {
            l.until_free().await;
        }
    }

    /// The calls this adapter may have in flight now (the 429 back-off's limit).
    pub fn in_flight_limit(&self) -> usize {
        self.window.limit()
    }

    /// POST the request; every failure becomes an [`Answer`], never a panic or a hang.
    pub async fn post(&self, req: &OutRequest) -> (Answer, Duration) {
        let (answer, latency, _) = self.post_full(req).await;
        (answer, latency)
    }

    /// [`HttpClient::post`], also returning the whole body when one was read (the
    /// [`Answer`] keeps only its start): for callers that need the data of a large answer.
    pub async fn post_full(&self, req: &OutRequest) -> (Answer, Duration, Option<Vec<u8>>) {
        // The back-off and quota waits are not the party's latency: the clock starts after.
        let _slot = self.window.enter().await;
        if let Some(l) = &self.limiter {
            l.acquire().await;
        }
        let started = Instant::now();
        let auth = match &self.bearer {
            Some(tok) => Auth::Bearer(tok.expose()),
            None => Auth::None,
        };
        let (answer, full) = match self.stack.post(req, auth).await {
            Ok(reply) => {
                self.window.answered(reply.status == 429);
                let answer = Answer::Http {
                    status: reply.status,
                    retry_after: reply.retry_after,
                    body: super::stack::snippet(&reply.body),
                };
                (answer, Some(reply.body))
            }
            Err(e) => {
                if let TransportError::BodyRead { status, .. } = &e {
                    self.window.answered(*status == 429);
                }
                (answer_of(&e), None)
            }
        };
        (answer, started.elapsed(), full)
    }
}

/// A failed call as an [`Answer`] (its meaning for [`crate::model::outcome`] kept).
pub fn answer_of(e: &TransportError) -> Answer {
    match e {
        TransportError::Status { status, body } => Answer::Http {
            status: *status,
            retry_after: None,
            body: body.clone(),
        },
        other => Answer::Transport {
            failure: other.failure().unwrap_or(TransportFailure::Broken),
            detail: other.detail(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_429_halves_the_window_and_answers_open_it_again() {
        let w = Arc::new(Window::default());
        assert_eq!(w.limit(), MAX_IN_FLIGHT);
        for _ in 0..20 {
            w.answered(true);
        }
        assert_eq!(
            w.limit(),
            1,
            "never below one call: the adapter never stops"
        );
        let first = w.enter().await;
        let second = tokio::time::timeout(Duration::from_millis(100), w.enter()).await;
        assert!(second.is_err(), "one call in flight at a limit of one");
        // Answers that are not 429 raise it again, slowly (one per limit's worth).
        for _ in 0..3 {
            w.answered(false);
        }
        assert!(w.limit() >= 2, "{}", w.limit());
        let second = tokio::time::timeout(Duration::from_millis(100), w.enter())
            .await
            .expect("a second slot");
        drop((first, second));
        for _ in 0..100_000 {
            w.answered(false);
        }
        assert_eq!(w.limit(), MAX_IN_FLIGHT, "capped");
    }
}
