//! The outbound HTTP client of one adapter.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::ratelimit::RateLimiter;
use crate::config::{defaults, AdapterSection, Secret};
use crate::retry::{parse_retry_after, Answer, TransportFailure};

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
                    detail: e,
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
                detail: e,
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
        })
    }

    /// Wait until the adapter's quota would let a call through at once (no wait without a
    /// `rate_limit`); nothing is reserved.
    pub async fn until_free(&self) {
        if let Some(l) = &self.limiter {
            l.until_free().await;
        }
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
        // The quota wait is not the party's latency: the clock starts after it.
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
