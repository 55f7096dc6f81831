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

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::ratelimit::RateLimiter;
use crate::config::{defaults, AdapterSection, Secret};
use crate::model::outcome::{parse_retry_after, Answer, TransportFailure};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("adapter {adapter}: cannot read {what}: {detail}")]
    Read {
        adapter: String,
        what: String,
        detail: String,
    },
    #[error("adapter {adapter}: invalid TLS material in {what}: {detail}")]
    Tls {
        adapter: String,
        what: String,
        detail: String,
    },
    #[error("adapter {adapter}: invalid header {name}: {detail}")]
    Header {
        adapter: String,
        name: String,
        detail: String,
    },
    #[error("adapter {adapter}: cannot build the HTTP client: {detail}")]
    Build { adapter: String, detail: String },
}

/// A pooled client plus the adapter's fixed headers.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    fixed_headers: HeaderMap,
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

/// An outgoing request, after translation and signing.
#[derive(Debug, Clone)]
pub struct OutRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpClient {
    /// Build the adapter's client. `base` resolves relative file paths and secret files.
    pub fn build(name: &str, a: &AdapterSection, base: &Path) -> Result<Self, ClientError> {
        let mut b = reqwest::Client::builder()
            .timeout(a.timeout.0)
            .connect_timeout(a.connect_timeout.0)
            .pool_max_idle_per_host(defaults::HTTP_POOL_IDLE)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .user_agent(concat!("gateway/", env!("CARGO_PKG_VERSION")));
        let read = |what: &str, p: &Path| {
            let p = if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            };
            std::fs::read(&p).map_err(|e| ClientError::Read {
                adapter: name.into(),
                what: what.into(),
                detail: format!("{}: {e}", p.display()),
            })
        };
        if let Some(tls) = &a.tls {
            if let Some(ca) = &tls.ca {
                let pem = read("tls.ca", ca)?;
                for cert in
                    reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ClientError::Tls {
                        adapter: name.into(),
                        what: "tls.ca".into(),
                        detail: e.to_string(),
                    })?
                {
                    b = b.add_root_certificate(cert);
                }
            }
            if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
                let mut pem = read("tls.client_cert", cert)?;
                let key = key.resolve(base).map_err(|e| ClientError::Read {
                    adapter: name.into(),
                    what: "tls.client_key".into(),
                    detail: e.to_string(),
                })?;
                pem.push(b'\n');
                pem.extend_from_slice(key.expose().as_bytes());
                let id = reqwest::Identity::from_pem(&pem).map_err(|e| ClientError::Tls {
                    adapter: name.into(),
                    what: "tls.client_cert/client_key".into(),
                    detail: e.to_string(),
                })?;
                b = b.identity(id);
            }
        }
        let client = b.build().map_err(|e| ClientError::Build {
            adapter: name.into(),
            detail: e.to_string(),
        })?;
        let mut fixed_headers = HeaderMap::new();
        for (k, v) in &a.headers {
            let hn = HeaderName::from_bytes(k.as_bytes()).map_err(|e| ClientError::Header {
                adapter: name.into(),
                name: k.clone(),
                detail: e.to_string(),
            })?;
            let hv = HeaderValue::from_str(v).map_err(|e| ClientError::Header {
                adapter: name.into(),
                name: k.clone(),
                detail: e.to_string(),
            })?;
            fixed_headers.insert(hn, hv);
        }
        let bearer = match &a.bearer {
            Some(r) => Some(r.resolve(base).map_err(|e| ClientError::Read {
                adapter: name.into(),
                what: "bearer".into(),
                detail: e.to_string(),
            })?),
            None => None,
        };
        Ok(HttpClient {
            client,
            fixed_headers,
            bearer,
            limiter: a
                .rate_limit
                .map(|r| std::sync::Arc::new(RateLimiter::new(r.per_sec, r.burst))),
            window: Default::default(),
        })
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
        let mut full = None;
        // The back-off and quota waits are not the party's latency: the clock starts after.
        let _slot = self.window.enter().await;
        if let Some(l) = &self.limiter {
            l.acquire().await;
        }
        let started = Instant::now();
        let mut rb = self
            .client
            .post(&req.url)
            .headers(self.fixed_headers.clone());
        if let Some(tok) = &self.bearer {
            rb = rb.bearer_auth(tok.expose());
        }
        for (k, v) in &req.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        let rb = rb.body(req.body.clone());
        let answer = match rb.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                self.window.answered(status == 429);
                match resp.bytes().await {
                    Ok(body) => {
                        let answer = Answer::Http {
                            status,
                            retry_after,
                            body: snippet(&body),
                        };
                        full = Some(body.to_vec());
                        answer
                    }
                    Err(e) => Answer::Transport {
                        failure: failure_of(&e),
                        detail: e.to_string(),
                    },
                }
            }
            Err(e) => Answer::Transport {
                failure: failure_of(&e),
                detail: error_chain(&e),
            },
        };
        crate::evidence::capture::note(req, answer.status(), full.as_deref());
        (answer, started.elapsed(), full)
    }
}

fn failure_of(e: &reqwest::Error) -> TransportFailure {
    if e.is_timeout() {
        TransportFailure::Timeout
    } else if e.is_connect() {
        TransportFailure::Connect
    } else if e.is_builder() {
        TransportFailure::Request
    } else {
        TransportFailure::Broken
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The first bytes of a body as text, for the ledger.
pub fn snippet(body: &[u8]) -> String {
    let cut = body.len().min(defaults::ANSWER_SNIPPET_BYTES);
    String::from_utf8_lossy(&body[..cut]).into_owned()
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
