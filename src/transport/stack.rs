//! The one outbound HTTP stack: every call the gateway makes to a party (connectors, payment
//! providers, token endpoints, the time-stamp authority) goes through an [`Outbound`].
//!
//! # Invariants
//! - One builder ([`Outbound::builder`]) decides the client's TLS roots and client certificate
//!   (as configured), its timeouts and its connection pool; a client is built once at start
//!   and shared, so a TLS handshake is paid per connection, not per call.
//! - What goes on the wire is exactly what the caller asked for: the configured fixed headers
//!   first, then the credential ([`Auth`]), then the request's own headers, then its body. A
//!   `traceparent` is added only when the caller gives one ([`Outbound::post`]'s request
//!   carries it in its headers; [`Call::traceparent`] for the others).
//! - Every failure is one [`TransportError`] variant per failing step (building, connecting,
//!   timing out, the exchange breaking, a status the caller does not accept, reading the body,
//!   decoding it); [`TransportError::failure`] keeps the meaning [`crate::model::outcome`] classifies.
//! - Every exchange is handed to the observer in scope ([`super::exchange::note`]: the
//!   evidence capture) unless the call says it carries credentials ([`Call::unobserved`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;

use super::exchange::{note, OutRequest};
use crate::config::{defaults, TlsSection};
use crate::model::outcome::{parse_retry_after, TransportFailure};

/// Why building a client failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{owner}: cannot read {what}: {detail}")]
    Read {
        owner: String,
        what: String,
        detail: String,
    },
    #[error("{owner}: invalid TLS material in {what}: {detail}")]
    Tls {
        owner: String,
        what: String,
        detail: String,
    },
    #[error("{owner}: invalid header {name}: {detail}")]
    Header {
        owner: String,
        name: String,
        detail: String,
    },
    #[error("{owner}: cannot build the HTTP client: {detail}")]
    Client { owner: String, detail: String },
}

/// Why one call failed, by step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The request could not be built (a bad URL or header: a bug or a bad setting).
    #[error("building the request: {0}")]
    Request(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    /// No answer (or no whole body) within the timeout.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The connection broke mid-exchange (reset, closed).
    #[error("the exchange broke: {0}")]
    Broken(String),
    /// The party answered with a status the caller does not accept ([`Reply::success`]).
    #[error("HTTP {status}")]
    Status { status: u16, body: String },
    /// The answer's head came, its body could not be read.
    #[error("reading the answer (HTTP {status}): {detail}")]
    BodyRead { status: u16, detail: String },
    /// The body is not what the caller expected (JSON of a shape, a content type).
    #[error("decoding the answer: {0}")]
    Decode(String),
}

impl TransportError {
    /// What [`crate::model::outcome`] makes of a failure before any usable answer (`None` for a status
    /// or a body that did come: those are answers, classified as such).
    pub fn failure(&self) -> Option<TransportFailure> {
        match self {
            TransportError::Request(_) => Some(TransportFailure::Request),
            TransportError::Connect(_) => Some(TransportFailure::Connect),
            TransportError::Timeout(_) => Some(TransportFailure::Timeout),
            TransportError::Broken(_) | TransportError::BodyRead { .. } => {
                Some(TransportFailure::Broken)
            }
            TransportError::Status { .. } | TransportError::Decode(_) => None,
        }
    }

    /// The failure's text without the step's prefix (what the ledger kept before).
    pub fn detail(&self) -> String {
        match self {
            TransportError::Request(d)
            | TransportError::Connect(d)
            | TransportError::Timeout(d)
            | TransportError::Broken(d)
            | TransportError::Decode(d) => d.clone(),
            TransportError::BodyRead { detail, .. } => detail.clone(),
            TransportError::Status { status, .. } => format!("HTTP {status}"),
        }
    }
}

/// A party's answer, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Parsed `Retry-After` (seconds or HTTP date).
    pub retry_after: Option<Duration>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The reply when its status is 2xx, else [`TransportError::Status`].
    pub fn success(self) -> Result<Reply, TransportError> {
        if (200..300).contains(&self.status) {
            Ok(self)
        } else {
            Err(TransportError::Status {
                status: self.status,
                body: snippet(&self.body),
            })
        }
    }

    /// The body as JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, TransportError> {
        serde_json::from_slice(&self.body).map_err(|e| TransportError::Decode(e.to_string()))
    }
}

/// The credential a call carries.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(&'a str),
    /// `Authorization: Basic` of a client id and secret.
    Basic(&'a str, &'a str),
}

/// Where a client's settings come from.
pub struct Options<'a> {
    /// Named in errors (the adapter, `payments.paygov`, `evidence.tsa`).
    pub owner: &'a str,
    /// The whole call's timeout.
    pub timeout: Duration,
    /// The connect timeout, when set apart from the whole call's.
    pub connect_timeout: Option<Duration>,
    /// Extra roots and a client certificate.
    pub tls: Option<&'a TlsSection>,
    /// Resolves relative paths and secret files of the TLS material.
    pub base: &'a Path,
    /// Send `User-Agent: gateway/<version>` (the adapters do; providers never got one).
    pub user_agent: bool,
    /// Headers sent with every call.
    pub headers: Option<&'a BTreeMap<String, String>>,
}

impl<'a> Options<'a> {
    /// A client with only a timeout: no extra roots, no client certificate, no fixed headers.
    pub fn plain(owner: &'a str, timeout: Duration) -> Self {
        Options {
            owner,
            timeout,
            connect_timeout: None,
            tls: None,
            base: Path::new("."),
            user_agent: false,
            headers: None,
        }
    }
}

/// A pooled client plus its fixed headers: the one outbound HTTP stack.
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    fixed_headers: HeaderMap,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound").finish_non_exhaustive()
    }
}

impl Outbound {
    /// Build a client from `o` (the one client builder of the gateway).
    pub fn build(o: &Options<'_>) -> Result<Self, BuildError> {
        let owner = o.owner;
        let mut b = reqwest::Client::builder()
            .timeout(o.timeout)
            .pool_max_idle_per_host(defaults::HTTP_POOL_IDLE)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true);
        if let Some(t) = o.connect_timeout {
            b = b.connect_timeout(t);
        }
        if o.user_agent {
            b = b.user_agent(concat!("gateway/", env!("CARGO_PKG_VERSION")));
        }
        let read = |what: &str, p: &Path| {
            let p = if p.is_absolute() {
                p.to_path_buf()
            } else {
                o.base.join(p)
            };
            std::fs::read(&p).map_err(|e| BuildError::Read {
                owner: owner.into(),
                what: what.into(),
                detail: format!("{}: {e}", p.display()),
            })
        };
        if let Some(tls) = o.tls {
            if let Some(ca) = &tls.ca {
                let pem = read("tls.ca", ca)?;
                for cert in
                    reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| BuildError::Tls {
                        owner: owner.into(),
                        what: "tls.ca".into(),
                        detail: e.to_string(),
                    })?
                {
                    b = b.add_root_certificate(cert);
                }
            }
            if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
                let mut pem = read("tls.client_cert", cert)?;
                let key = key.resolve(o.base).map_err(|e| BuildError::Read {
                    owner: owner.into(),
                    what: "tls.client_key".into(),
                    detail: e.to_string(),
                })?;
                pem.push(b'\n');
                pem.extend_from_slice(key.expose().as_bytes());
                let id = reqwest::Identity::from_pem(&pem).map_err(|e| BuildError::Tls {
                    owner: owner.into(),
                    what: "tls.client_cert/client_key".into(),
                    detail: e.to_string(),
                })?;
                b = b.identity(id);
            }
        }
        let client = b.build().map_err(|e| BuildError::Client {
            owner: owner.into(),
            detail: e.to_string(),
        })?;
        let mut fixed_headers = HeaderMap::new();
        for (k, v) in o.headers.into_iter().flatten() {
            let bad = |e: String| BuildError::Header {
                owner: owner.into(),
                name: k.clone(),
                detail: e,
            };
            let hn = HeaderName::from_bytes(k.as_bytes()).map_err(|e| bad(e.to_string()))?;
            let hv = HeaderValue::from_str(v).map_err(|e| bad(e.to_string()))?;
            fixed_headers.insert(hn, hv);
        }
        Ok(Outbound {
            client,
            fixed_headers,
        })
    }

    /// POST a request as sent by a connector (headers and body as given, signed), observed.
    pub async fn post(&self, req: &OutRequest, auth: Auth<'_>) -> Result<Reply, TransportError> {
        let mut rb = self.start(&req.url, auth);
        for (k, v) in &req.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        exchange(rb.body(req.body.clone()), Some(req)).await
    }

    /// A POST of `body` as JSON (`Content-Type: application/json`), observed.
    pub fn post_json(&self, url: &str, body: &serde_json::Value) -> Call<'_> {
        Call {
            stack: self,
            req: OutRequest {
                url: url.to_string(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: serde_json::to_vec(body).expect("JSON values serialize"),
            },
            form: None,
            auth: Auth::None,
            observed: true,
        }
    }

    /// A POST of an `application/x-www-form-urlencoded` form. Forms carry credentials (the
    /// token endpoints): unobserved unless [`Call::observed`] says otherwise.
    pub fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Call<'_> {
        Call {
            stack: self,
            req: OutRequest {
                url: url.to_string(),
                headers: Vec::new(),
                body: Vec::new(),
            },
            form: Some(
                form.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            auth: Auth::None,
            observed: false,
        }
    }

    /// A POST of raw bytes with a content type, observed.
    pub fn post_bytes(&self, url: &str, content_type: &str, body: Vec<u8>) -> Call<'_> {
        Call {
            stack: self,
            req: OutRequest {
                url: url.to_string(),
                headers: vec![("content-type".into(), content_type.into())],
                body,
            },
            form: None,
            auth: Auth::None,
            observed: true,
        }
    }

    fn start(&self, url: &str, auth: Auth<'_>) -> reqwest::RequestBuilder {
        let rb = self.client.post(url).headers(self.fixed_headers.clone());
        match auth {
            Auth::None => rb,
            Auth::Bearer(t) => rb.bearer_auth(t),
            Auth::Basic(id, secret) => rb.basic_auth(id, Some(secret)),
        }
    }
}

/// One call being prepared ([`Outbound::post_json`], [`Outbound::post_form`],
/// [`Outbound::post_bytes`]); [`Call::send`] makes it.
pub struct Call<'s> {
    stack: &'s Outbound,
    req: OutRequest,
    form: Option<Vec<(String, String)>>,
    auth: Auth<'s>,
    observed: bool,
}

impl<'s> Call<'s> {
    pub fn auth(mut self, auth: Auth<'s>) -> Self {
        self.auth = auth;
        self
    }

    /// Add `traceparent`: the party's spans become children of ours.
    pub fn traceparent(mut self, tp: &str) -> Self {
        self.req.headers.push(("traceparent".into(), tp.into()));
        self
    }

    /// Not handed to the evidence capture (the call carries credentials).
    pub fn unobserved(mut self) -> Self {
        self.observed = false;
        self
    }

    /// Make the call; any status is a [`Reply`] (see [`Reply::success`]).
    pub async fn send(self) -> Result<Reply, TransportError> {
        let mut rb = self.stack.start(&self.req.url, self.auth);
        for (k, v) in &self.req.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        let rb = match &self.form {
            Some(form) => rb.form(form),
            None => rb.body(self.req.body.clone()),
        };
        exchange(rb, self.observed.then_some(&self.req)).await
    }
}

/// Send, read the whole answer, and hand the exchange to the observer in scope.
async fn exchange(
    rb: reqwest::RequestBuilder,
    observed: Option<&OutRequest>,
) -> Result<Reply, TransportError> {
    let res = match rb.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let header = |name| {
                resp.headers()
                    .get(name)
                    .and_then(|v: &HeaderValue| v.to_str().ok())
                    .map(str::to_string)
            };
            let retry_after = header(reqwest::header::RETRY_AFTER)
                .as_deref()
                .and_then(parse_retry_after);
            let content_type = header(reqwest::header::CONTENT_TYPE);
            match resp.bytes().await {
                Ok(body) => Ok(Reply {
                    status,
                    retry_after,
                    content_type,
                    body: body.to_vec(),
                }),
                Err(e) if e.is_timeout() => Err(TransportError::Timeout(e.to_string())),
                Err(e) => Err(TransportError::BodyRead {
                    status,
                    detail: e.to_string(),
                }),
            }
        }
        Err(e) => {
            let detail = error_chain(&e);
            Err(if e.is_timeout() {
                TransportError::Timeout(detail)
            } else if e.is_connect() {
                TransportError::Connect(detail)
            } else if e.is_builder() {
                TransportError::Request(detail)
            } else {
                TransportError::Broken(detail)
            })
        }
    };
    if let Some(req) = observed {
        match &res {
            Ok(r) => note(req, Some(r.status), Some(&r.body)),
            Err(_) => note(req, None, None),
        }
    }
    res
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
    use crate::transport::exchange::{observed, ExchangeObserver};
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Seen(Mutex<Vec<(String, Option<u16>)>>);

    impl ExchangeObserver for Seen {
        fn observe(&self, req: &OutRequest, status: Option<u16>, _: Option<&[u8]>) {
            self.0.lock().unwrap().push((req.url.clone(), status));
        }
    }

    fn closed_url() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/x", l.local_addr().unwrap());
        drop(l);
        url
    }

    /// A refused connection is `Connect` (retried, says the destination is down); the
    /// observer in scope sees the exchange without an answer, and a credential form is never
    /// shown to it.
    #[tokio::test]
    async fn failures_by_step_and_the_observer_sees_exchanges() {
        let stack = Outbound::build(&Options::plain("test", Duration::from_secs(2))).unwrap();
        let url = closed_url();
        let seen = Arc::new(Seen::default());
        let (json, form) = observed(seen.clone(), async {
            let json = stack
                .post_json(&url, &serde_json::json!({"a": 1}))
                .send()
                .await;
            let form = stack
                .post_form(&url, &[("client_secret", "s")])
                .send()
                .await;
            (json, form)
        })
        .await;
        let e = json.unwrap_err();
        assert!(matches!(e, TransportError::Connect(_)), "{e:?}");
        assert_eq!(e.failure(), Some(TransportFailure::Connect));
        assert!(form.is_err());
        assert_eq!(
            *seen.0.lock().unwrap(),
            vec![(url, None)],
            "the form is unobserved"
        );
        let status = TransportError::Status {
            status: 503,
            body: String::new(),
        };
        assert_eq!(status.failure(), None, "an answer, classified as such");
    }
}
