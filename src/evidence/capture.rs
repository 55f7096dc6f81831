//! Capturing the exchanges of a delivery: a task-local set of sinks the HTTP stack writes to.
//!
//! # Invariants
//! - This module depends on the transport's shared types ([`crate::transport::exchange`]),
//!   never the other way round: a [`Capture`] is an [`ExchangeObserver`] the stack calls
//!   through the scope [`capture`] and [`within`] open.
//! - Credentials never reach a capture, not even as a digest (bodies pass [`super::redact`]).
//!
//! [`capture`] runs a future with a fresh sink in scope and returns what was noted. [`current`]
//! hands the sinks in scope to another task (the DVCQG batcher), which runs its call inside
//! [`within`] so the exchange lands in every envelope's capture. Outside any capture, the
//! stack's [`crate::transport::exchange::note`] costs one task-local look-up.

use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::model::time::now_ms;
use crate::transport::exchange::{observed, ExchangeObserver, OutRequest};

/// One request/answer with an external party.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub at_ms: i64,
    /// The party's operation, when the request names one (the DVCQG `service` field).
    pub operation: Option<String>,
    pub request_digest: String,
    pub response_digest: Option<String>,
    pub signature_digest: Option<String>,
    pub cert_fingerprint: Option<String>,
    pub status: Option<u16>,
    pub result_code: Option<String>,
    /// Kept only when a capture in scope keeps bodies (`full` mode).
    pub request_body: Option<Arc<Vec<u8>>>,
    pub response_body: Option<Arc<Vec<u8>>>,
}

#[derive(Default)]
struct Sink {
    keep_bodies: bool,
    exchanges: Mutex<Vec<Exchange>>,
}

/// Where exchanges are noted.
#[derive(Clone)]
pub struct Capture(Vec<Arc<Sink>>);

impl Capture {
    pub fn new(keep_bodies: bool) -> Self {
        Capture(vec![Arc::new(Sink {
            keep_bodies,
            exchanges: Mutex::new(Vec::new()),
        })])
    }

    /// One capture writing into all of `captures`.
    pub fn merge(captures: impl IntoIterator<Item = Capture>) -> Self {
        Capture(captures.into_iter().flat_map(|c| c.0).collect())
    }

    fn take(&self) -> Vec<Exchange> {
        self.0
            .iter()
            .flat_map(|s| std::mem::take(&mut *s.exchanges.lock().unwrap()))
            .collect()
    }
}

tokio::task_local! {
    static CAPTURE: Capture;
}

/// Run `f` with `capture` in scope; returns its output and the exchanges it made.
pub async fn capture<F: Future>(
    capture: Option<Capture>,
    f: F,
) -> (F::Output, Vec<crate::evidence::capture::Exchange>) {
    match capture {
        None => (f.await, Vec::new()),
        Some(c) => {
            let out = CAPTURE
                .scope(c.clone(), observed(Arc::new(c.clone()), f))
                .await;
            (out, c.take())
        }
    }
}

/// The capture in scope, to carry into another task.
pub fn current() -> Option<Capture> {
    CAPTURE.try_with(Capture::clone).ok()
}

/// Run `f` writing into `capture` (when there is one).
pub async fn within<F: Future>(capture: Option<Capture>, f: F) -> F::Output {
    match capture {
        Some(c) if !c.0.is_empty() => CAPTURE.scope(c.clone(), observed(Arc::new(c), f)).await,
        _ => f.await,
    }
}

/// Signature header names whose values are the sender's signature.
fn is_signature_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "signature" || n.ends_with("-signature") || n.contains("jws")
}

/// The party's result code in a JSON answer, if it gives one.
fn result_code(body: &[u8]) -> Option<String> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' || body.len() > 1 << 20 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    for k in [
        "error_code",
        "ErrorCode",
        "errorCode",
        "result_code",
        "code",
    ] {
        match v.get(k) {
            Some(serde_json::Value::String(s)) => return Some(s.trim().to_string()),
            Some(serde_json::Value::Number(n)) => return Some(n.to_string()),
            _ => {}
        }
    }
    None
}

/// Header a connector sets to name what one delivery was (an agency push: the subscription,
/// the fields sent, the legal basis; percent-encoded UTF-8): recorded, decoded, as the
/// exchange's operation.
pub const DELIVERY_HEADER: &str = "x-gateway-delivery";

/// The operation a request names in its [`DELIVERY_HEADER`] (at most 1000 bytes, decoded).
fn delivery(req: &OutRequest) -> Option<String> {
    let v = req
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(DELIVERY_HEADER))
        .map(|(_, v)| v.as_bytes())?;
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            v[i],
            v.get(i + 1).copied().and_then(hex),
            v.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().filter(|s| s.len() <= 1000)
}

/// The DVCQG `service` of a JSON request body, if any (looked up without parsing the body).
fn operation(body: &[u8]) -> Option<String> {
    const NEEDLE: &[u8] = b"\"service\":\"";
    let at = body.windows(NEEDLE.len()).position(|w| w == NEEDLE)?;
    let rest = &body[at + NEEDLE.len()..];
    let end = rest.iter().position(|b| *b == b'"')?;
    std::str::from_utf8(&rest[..end])
        .ok()
        .filter(|s| s.len() <= 100)
        .map(str::to_string)
}

impl ExchangeObserver for Capture {
    fn observe(&self, req: &OutRequest, status: Option<u16>, response: Option<&[u8]>) {
        self.note(req, status, response);
    }
}

impl Capture {
    /// Note an exchange into this capture's sinks.
    fn note(&self, req: &OutRequest, status: Option<u16>, response: Option<&[u8]>) {
        let c = self;
        let keep = c.0.iter().any(|s| s.keep_bodies);
        let sig: Vec<&str> = req
            .headers
            .iter()
            .filter(|(n, _)| is_signature_header(n))
            .map(|(_, v)| v.as_str())
            .collect();
        let jose = req
            .headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("content-type") && v.contains("jose"));
        let signature_digest = if !sig.is_empty() {
            Some(gw_crypto::digest::sha256_hex(sig.join("\n").as_bytes()))
        } else if jose {
            // Compact JWS: the signature is the token's last part.
            req.body
                .rsplit(|b| *b == b'.')
                .next()
                .map(gw_crypto::digest::sha256_hex)
        } else {
            None
        };
        // Credentials never reach the evidence, not even as a digest ([`super::redact`]).
        let request = super::redact::redact(&req.body);
        let response = response.map(super::redact::redact);
        let response = response.as_deref();
        let x = Exchange {
            at_ms: now_ms(),
            operation: delivery(req).or_else(|| operation(&request)),
            request_digest: gw_crypto::digest::sha256_hex(&request),
            response_digest: response.map(gw_crypto::digest::sha256_hex),
            signature_digest,
            cert_fingerprint: None,
            status,
            result_code: response.and_then(result_code),
            request_body: keep.then(|| Arc::new(request.to_vec())),
            response_body: if keep {
                response.map(|r| Arc::new(r.to_vec()))
            } else {
                None
            },
        };
        for s in &c.0 {
            s.exchanges.lock().unwrap().push(x.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::exchange::note;

    #[test]
    fn reads_result_codes_and_operations() {
        assert_eq!(
            result_code(br#"{"error_code":"0","x":1}"#).as_deref(),
            Some("0")
        );
        assert_eq!(result_code(br#" {"ErrorCode": -1}"#).as_deref(), Some("-1"));
        assert_eq!(result_code(b"<xml/>"), None);
        assert_eq!(
            operation(br#"{"session":"s","service":"DongBoHoSoMC","data":[]}"#).as_deref(),
            Some("DongBoHoSoMC")
        );
        assert_eq!(operation(b"{}"), None);
    }

    #[tokio::test]
    async fn a_capture_sees_what_its_task_and_carried_tasks_note() {
        let req = OutRequest {
            url: "http://x/".into(),
            headers: vec![("signature".into(), "sig1".into())],
            body: b"{}".to_vec(),
        };
        let (_, none) = capture(None, async { note(&req, Some(200), None) }).await;
        assert!(none.is_empty());
        let (_, got) = capture(Some(Capture::new(true)), async {
            note(&req, Some(200), Some(br#"{"error_code":"0"}"#));
            let carried = current();
            tokio::spawn(within(carried, async move { note(&req, Some(500), None) }))
                .await
                .unwrap();
        })
        .await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].result_code.as_deref(), Some("0"));
        assert_eq!(
            got[0].signature_digest,
            Some(gw_crypto::digest::sha256_hex(b"sig1"))
        );
        assert_eq!(got[1].status, Some(500));
        assert_eq!(
            got[0].request_body.as_deref().map(|b| b.as_slice()),
            Some(&b"{}"[..])
        );
    }
}
