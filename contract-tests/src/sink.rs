//! A recording HTTP sink: the destination of the generic `http` connector.
//!
//! It records every POST it *accepts* (2xx) with the gateway's headers, and can inject faults:
//! a share of 500s, 429s with `Retry-After`, slow answers, or a permanent 400 for chosen keys
//! (a poison message). Its records answer the questions the tests ask: was every event
//! delivered, how many duplicates, did an older version arrive after a newer one.
//!
//! Endpoints: `POST /deliver` (the destination), `GET /_sink/records` (JSON), and
//! `POST /_sink/faults` (JSON [`Faults`]) to change faults while running.
//!
//! Capture ([`Sink::set_capture`], off by default): every accepted request's headers and exact
//! body bytes are kept too ([`Sink::captured`]), and bodies need not be JSON (a signed body may
//! be a JWS or XML), so a test can check what was signed is what arrived.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// One accepted delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub envelope: String,
    pub idempotency_key: String,
    pub key: String,
    pub version: Option<i64>,
    pub kind: String,
    pub body_len: usize,
    pub seq: u64,
}

/// Faults to inject. Rates are in 0.0..=1.0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Share of requests answered 500.
    pub error_rate: f64,
    /// Share answered 429 with `Retry-After: retry_after_secs`.
    pub rate_limit_rate: f64,
    pub retry_after_secs: u64,
    /// Delay before every answer, in milliseconds.
    pub delay_ms: u64,
    /// Keys always refused with 400 (poison).
    pub poison_keys: BTreeSet<String>,
    /// Keys always answered 500 (a destination that keeps failing on them).
    pub failing_keys: BTreeSet<String>,
    /// Refuse everything with 503 (an outage).
    pub down: bool,
}

/// One accepted request, as received (with capture on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// Header names lower-case, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Captured {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Inner {
    capture: bool,
    captured: Vec<Captured>,
    records: Vec<Record>,
    refused: u64,
    faults: Faults,
    seq: u64,
}

/// A running sink.
#[derive(Clone)]
pub struct Sink {
    inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
}

impl Sink {
    /// Start on `127.0.0.1:<port>` (0 = any free port).
    pub async fn start(port: u16, faults: Faults) -> std::io::Result<Sink> {
        let inner = Arc::new(Mutex::new(Inner {
            faults,
            ..Default::default()
        }));
        let app = Router::new()
            .route("/deliver", post(deliver))
            .route("/_sink/records", get(records))
            .route("/_sink/faults", post(set_faults))
            .with_state(inner.clone());
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = l.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Ok(Sink { inner, addr })
    }

    pub fn url(&self) -> String {
        format!("http://{}/deliver", self.addr)
    }

    pub fn records(&self) -> Vec<Record> {
        self.inner.lock().unwrap().records.clone()
    }

    pub fn refused(&self) -> u64 {
        self.inner.lock().unwrap().refused
    }

    pub fn set_faults(&self, f: Faults) {
        self.inner.lock().unwrap().faults = f;
    }

    /// Keep every accepted request's headers and body, and accept non-JSON bodies.
    pub fn set_capture(&self, on: bool) {
        self.inner.lock().unwrap().capture = on;
    }

    /// The accepted requests, as received (with capture on).
    pub fn captured(&self) -> Vec<Captured> {
        self.inner.lock().unwrap().captured.clone()
    }

    /// Check the records against what was sent: `expected` maps each key to its versions.
    pub fn check(&self, expected: &BTreeMap<String, Vec<i64>>) -> Check {
        check_records(&self.records(), expected)
    }
}

/// What the records say about delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Keys whose newest version never arrived.
    pub missing: Vec<String>,
    /// Deliveries of an idempotency key already delivered.
    pub duplicates: u64,
    /// Arrivals of a version lower than one already delivered for that key.
    pub older_after_newer: u64,
    pub delivered: u64,
}

pub fn check_records(records: &[Record], expected: &BTreeMap<String, Vec<i64>>) -> Check {
    let mut c = Check {
        delivered: records.len() as u64,
        ..Default::default()
    };
    let mut seen = BTreeSet::new();
    let mut newest: BTreeMap<&str, i64> = BTreeMap::new();
    for r in records {
        if !seen.insert(r.idempotency_key.clone()) {
            c.duplicates += 1;
        }
        if let Some(v) = r.version {
            let cur = newest.entry(r.key.as_str()).or_insert(v);
            if v < *cur {
                c.older_after_newer += 1;
            }
            *cur = (*cur).max(v);
        }
    }
    for (key, versions) in expected {
        let want = versions.iter().copied().max();
        let got = newest.get(key.as_str()).copied();
        let by_key = records.iter().any(|r| &r.key == key);
        let ok = match want {
            Some(w) => got == Some(w),
            None => by_key,
        };
        if !ok {
            c.missing.push(key.clone());
        }
    }
    c
}

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// A key header as the gateway sends it: percent-encoded UTF-8 (plain ASCII keys unchanged).
/// A value that does not decode to UTF-8 counts as missing.
fn key_header(h: &HeaderMap, name: &str) -> String {
    percent_encoding::percent_decode_str(&header(h, name))
        .decode_utf8()
        .map(|k| k.into_owned())
        .unwrap_or_default()
}

async fn deliver(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (faults, capture) = {
        let g = inner.lock().unwrap();
        (g.faults.clone(), g.capture)
    };
    if faults.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.delay_ms)).await;
    }
    let key = key_header(&headers, "x-gateway-key");
    let refuse = |inner: &Arc<Mutex<Inner>>, r: Response| {
        inner.lock().unwrap().refused += 1;
        r
    };
    if faults.down {
        return refuse(
            &inner,
            (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response(),
        );
    }
    if !capture
        && headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json")
    {
        return refuse(
            &inner,
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content-type must be application/json",
            )
                .into_response(),
        );
    }
    let idem = key_header(&headers, "idempotency-key");
    if idem.is_empty() || key.is_empty() {
        return refuse(
            &inner,
            (
                StatusCode::BAD_REQUEST,
                "idempotency-key and x-gateway-key are required",
            )
                .into_response(),
        );
    }
    if !capture && serde_json::from_slice::<serde_json::Value>(&body).is_err() {
        return refuse(
            &inner,
            (StatusCode::BAD_REQUEST, "body is not JSON").into_response(),
        );
    }
    if faults.poison_keys.contains(&key) {
        return refuse(
            &inner,
            (StatusCode::BAD_REQUEST, "refused: this dossier is invalid").into_response(),
        );
    }
    if faults.failing_keys.contains(&key) {
        return refuse(
            &inner,
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error for this dossier",
            )
                .into_response(),
        );
    }
    let roll: f64 = rand::rng().random();
    if roll < faults.error_rate {
        return refuse(
            &inner,
            (StatusCode::INTERNAL_SERVER_ERROR, "injected failure").into_response(),
        );
    }
    if roll < faults.error_rate + faults.rate_limit_rate {
        let mut r = (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response();
        r.headers_mut().insert(
            "retry-after",
            faults.retry_after_secs.to_string().parse().unwrap(),
        );
        return refuse(&inner, r);
    }
    let version = header(&headers, "x-gateway-version").parse().ok();
    let mut g = inner.lock().unwrap();
    if capture {
        g.captured.push(Captured {
            headers: headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.to_vec(),
        });
    }
    g.seq += 1;
    let seq = g.seq;
    g.records.push(Record {
        envelope: header(&headers, "x-gateway-envelope"),
        idempotency_key: idem,
        key,
        version,
        kind: header(&headers, "x-gateway-kind"),
        body_len: body.len(),
        seq,
    });
    (StatusCode::OK, Json(serde_json::json!({"ok": true}))).into_response()
}

async fn records(State(inner): State<Arc<Mutex<Inner>>>) -> Json<Vec<Record>> {
    Json(inner.lock().unwrap().records.clone())
}

async fn set_faults(State(inner): State<Arc<Mutex<Inner>>>, Json(f): Json<Faults>) -> StatusCode {
    inner.lock().unwrap().faults = f;
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, v: i64) -> Record {
        Record {
            envelope: String::new(),
            idempotency_key: format!("{key}@{v}"),
            key: key.into(),
            version: Some(v),
            kind: String::new(),
            body_len: 0,
            seq: 0,
        }
    }

    #[test]
    fn checker_finds_missing_duplicates_and_reordering() {
        let records = vec![
            rec("a", 1),
            rec("a", 2),
            rec("a", 2),
            rec("b", 3),
            rec("b", 2),
        ];
        let mut exp = BTreeMap::new();
        exp.insert("a".to_string(), vec![1, 2]);
        exp.insert("b".to_string(), vec![2, 3]);
        exp.insert("c".to_string(), vec![1]);
        let c = check_records(&records, &exp);
        assert_eq!(c.missing, vec!["c".to_string()]);
        assert_eq!(c.duplicates, 1);
        assert_eq!(c.older_after_newer, 1);
    }
}
