//! The agency sandbox: a strict receiver of the gateway's signed pushes (an IOC, a department,
//! a specialised database).
//!
//! # Enforced rules
//! - **Standard Webhooks** ([seen]: standardwebhooks.com): `webhook-id`, `webhook-timestamp`,
//!   `webhook-signature` present (else 400 `missing_header`); the timestamp within 5 minutes
//!   either way (else 401 `stale`); some `v1,` signature of the header equal to
//!   HMAC-SHA256(`id.timestamp.body`) under one of the configured secrets (else 401
//!   `bad_signature`). Verified here with OpenSSL's HMAC directly, not with the gateway's code.
//! - **Replay**: a `webhook-id` seen before with a different body is refused (409 `replayed`);
//!   with the same body it is a duplicate, answered 200 and counted, not recorded twice.
//! - **RFC 9421**, when public keys are configured: `Signature-Input`/`Signature` over
//!   `@method`, `@target-uri`, `content-digest` with `created`, `keyid`, `nonce`, verified
//!   against the keys by `keyid`, 5 minutes old at most; a reused nonce is refused (401
//!   `bad_http_signature: … replay`).
//! - The body is JSON with `type`, `key` and `data` (else 400 `bad_body`).
//!
//! # Faults (`POST /_sandbox/faults`, JSON [`Faults`])
//! `mode`: `none`, `slow` (answer after `delay_ms`), `fail` (500), `429` (with `Retry-After:
//! retry_after_secs`), `410` (gone). Applied before verification, to every request until
//! changed. `GET /_sandbox/records` returns what was accepted and refused ([`Records`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use gw_crypto::httpsig::{verify_request, MemoryNonceStore, RequestParts, VerifyPolicy};
use gw_crypto::keys::VerifyingKey;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use serde::{Deserialize, Serialize};

/// How old (or how far ahead) a timestamp may be.
pub const TOLERANCE: Duration = Duration::from_secs(300);

/// Faults on command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// `none`, `slow`, `fail`, `429`, `410`.
    pub mode: String,
    pub delay_ms: u64,
    pub retry_after_secs: u64,
}

/// One accepted push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accepted {
    pub seq: u64,
    pub webhook_id: String,
    pub timestamp: i64,
    /// The body as JSON.
    pub body: serde_json::Value,
    /// The RFC 9421 key id it verified with, when one was checked.
    pub keyid: Option<String>,
    /// SHA-256 (hex) of the exact body bytes received.
    pub digest: String,
}

/// One refused push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub status: u16,
    pub error: String,
    pub detail: String,
}

/// What the sandbox saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Records {
    pub accepted: Vec<Accepted>,
    pub refused: Vec<Refused>,
    /// Same id, same body: answered 200, not recorded again.
    pub duplicates: u64,
    /// Requests answered by a fault (500, 429, 410) before verification.
    pub faulted: u64,
}

struct Inner {
    secrets: Vec<Vec<u8>>,
    keys: Vec<VerifyingKey>,
    nonces: MemoryNonceStore,
    faults: Faults,
    records: Records,
    /// webhook-id → SHA-256 of the body first accepted with it.
    seen: HashMap<String, Vec<u8>>,
}

/// A running agency sandbox.
#[derive(Clone)]
pub struct AgencySandbox {
    inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
}

/// Why a `whsec_` secret given to the sandbox is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("secret is not whsec_<base64>")]
    Secret,
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
}

impl AgencySandbox {
    /// Start on `127.0.0.1:<port>` (0: any free port), accepting pushes signed with any of
    /// `secrets` (`whsec_…`) and, when `keys` is not empty, an RFC 9421 signature by one of them.
    pub async fn start(
        port: u16,
        secrets: &[&str],
        keys: Vec<VerifyingKey>,
    ) -> Result<AgencySandbox, SandboxError> {
        let secrets = secrets
            .iter()
            .map(|s| {
                s.strip_prefix("whsec_")
                    .and_then(|b| B64.decode(b).ok())
                    .ok_or(SandboxError::Secret)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let inner = Arc::new(Mutex::new(Inner {
            secrets,
            keys,
            nonces: MemoryNonceStore::new(100_000),
            faults: Faults::default(),
            records: Records::default(),
            seen: HashMap::new(),
        }));
        let app = Router::new()
            .route("/_sandbox/records", get(records))
            .route("/_sandbox/faults", post(set_faults))
            .fallback(post(receive))
            .with_state(inner.clone());
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = l.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Ok(AgencySandbox { inner, addr })
    }

    /// The webhook URL.
    pub fn url(&self) -> String {
        format!("http://{}/hooks/gateway", self.addr)
    }

    pub fn records(&self) -> Records {
        self.inner.lock().unwrap().records.clone()
    }

    pub fn set_faults(&self, f: Faults) {
        self.inner.lock().unwrap().faults = f;
    }

    /// How many pushes it accepted (without copying the records: for benchmarks polling it).
    pub fn accepted_count(&self) -> usize {
        self.inner.lock().unwrap().records.accepted.len()
    }
}

fn refuse(inner: &Arc<Mutex<Inner>>, status: StatusCode, error: &str, detail: String) -> Response {
    inner.lock().unwrap().records.refused.push(Refused {
        status: status.as_u16(),
        error: error.into(),
        detail: detail.clone(),
    });
    (
        status,
        Json(serde_json::json!({"error": error, "detail": detail})),
    )
        .into_response()
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn hmac_b64(key: &[u8], content: &[u8]) -> Option<String> {
    let k = PKey::hmac(key).ok()?;
    let mut s = Signer::new(MessageDigest::sha256(), &k).ok()?;
    s.update(content).ok()?;
    Some(B64.encode(s.sign_to_vec().ok()?))
}

/// Constant-time comparison of two strings.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a.as_bytes(), b.as_bytes())
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let faults = inner.lock().unwrap().faults.clone();
    match faults.mode.as_str() {
        "slow" => tokio::time::sleep(Duration::from_millis(faults.delay_ms)).await,
        "fail" | "429" | "410" => {
            inner.lock().unwrap().records.faulted += 1;
            let mut r = match faults.mode.as_str() {
                "fail" => (StatusCode::INTERNAL_SERVER_ERROR, "fault: fail").into_response(),
                "429" => (StatusCode::TOO_MANY_REQUESTS, "fault: 429").into_response(),
                _ => (StatusCode::GONE, "fault: this endpoint is gone").into_response(),
            };
            if faults.mode == "429" {
                r.headers_mut().insert(
                    "retry-after",
                    faults.retry_after_secs.to_string().parse().unwrap(),
                );
            }
            return r;
        }
        _ => {}
    }
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (Some(id), Some(ts), Some(sigs)) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    ) else {
        return refuse(
            &inner,
            StatusCode::BAD_REQUEST,
            "missing_header",
            "webhook-id, webhook-timestamp and webhook-signature are required".into(),
        );
    };
    let Ok(ts) = ts.parse::<i64>() else {
        return refuse(
            &inner,
            StatusCode::BAD_REQUEST,
            "bad_timestamp",
            "webhook-timestamp is not unix seconds".into(),
        );
    };
    if (now_secs() - ts).unsigned_abs() > TOLERANCE.as_secs() {
        return refuse(
            &inner,
            StatusCode::UNAUTHORIZED,
            "stale",
            format!("timestamp {ts} is more than 5 minutes from now"),
        );
    }
    let mut content = format!("{id}.{ts}.").into_bytes();
    content.extend_from_slice(&body);
    let secrets = inner.lock().unwrap().secrets.clone();
    let expected: Vec<String> = secrets
        .iter()
        .filter_map(|k| hmac_b64(k, &content))
        .collect();
    let ok = sigs.split(' ').any(|s| {
        s.strip_prefix("v1,")
            .is_some_and(|v| expected.iter().any(|e| same(e, v)))
    });
    if !ok {
        return refuse(
            &inner,
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "no v1 signature verifies with the configured secrets".into(),
        );
    }
    let pairs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let keyid = {
        let g = inner.lock().unwrap();
        if g.keys.is_empty() {
            None
        } else {
            let host = h("host").unwrap_or_default();
            let target = format!(
                "http://{host}{}",
                uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
            );
            let parts = RequestParts {
                method: method.as_str(),
                target_uri: &target,
                headers: &pairs,
                body: &body,
            };
            match verify_request(&parts, &g.keys, &VerifyPolicy::default(), &g.nonces) {
                Ok(v) => Some(v.key_id),
                Err(e) => {
                    drop(g);
                    return refuse(
                        &inner,
                        StatusCode::UNAUTHORIZED,
                        "bad_http_signature",
                        e.to_string(),
                    );
                }
            }
        }
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return refuse(
            &inner,
            StatusCode::BAD_REQUEST,
            "bad_body",
            "the body is not JSON".into(),
        );
    };
    if !(json["type"].is_string() && json["key"].is_string() && json["data"].is_object()) {
        return refuse(
            &inner,
            StatusCode::BAD_REQUEST,
            "bad_body",
            "type, key and data are required".into(),
        );
    }
    let digest = openssl::sha::sha256(&body).to_vec();
    let mut g = inner.lock().unwrap();
    match g.seen.get(&id) {
        Some(d) if *d != digest => {
            drop(g);
            return refuse(
                &inner,
                StatusCode::CONFLICT,
                "replayed",
                format!("webhook-id {id} was received with another body"),
            );
        }
        Some(_) => {
            g.records.duplicates += 1;
            return (StatusCode::OK, Json(serde_json::json!({"duplicate": true}))).into_response();
        }
        None => {}
    }
    g.seen.insert(id.clone(), digest.clone());
    let seq = g.records.accepted.len() as u64 + 1;
    g.records.accepted.push(Accepted {
        seq,
        webhook_id: id,
        timestamp: ts,
        body: json,
        keyid,
        digest: hex::encode(digest),
    });
    (StatusCode::OK, Json(serde_json::json!({"accepted": seq}))).into_response()
}

async fn records(State(inner): State<Arc<Mutex<Inner>>>) -> Json<Records> {
    Json(inner.lock().unwrap().records.clone())
}

async fn set_faults(State(inner): State<Arc<Mutex<Inner>>>, Json(f): Json<Faults>) -> StatusCode {
    inner.lock().unwrap().faults = f;
    StatusCode::NO_CONTENT
}

/// The secret the standalone sandbox accepts (documented in the README and docs/agencies.md).
pub const STANDALONE_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// `gateway sandbox agency --port N`.
pub async fn run_standalone(port: u16) -> std::io::Result<()> {
    let s = AgencySandbox::start(port, &[STANDALONE_SECRET], Vec::new())
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    println!("agency sandbox listening on http://{}", s.addr);
    println!("  webhook   POST {}", s.url());
    println!("  secret    {STANDALONE_SECRET}");
    println!("  records   GET  http://{}/_sandbox/records", s.addr);
    println!(
        "  faults    POST http://{}/_sandbox/faults  {{\"mode\": \"410\"}}",
        s.addr
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
