//! A strict sandbox of PayGov behind the provincial integration platform (LGSP)
//! (CONTRACTS.md §3).
//!
//! - `POST /token` — OAuth2 client credentials (HTTP Basic): `{access_token, expires_in}`.
//!   [`PayGovSandbox::expire_tokens`] revokes every token (the next call answers 401).
//! - `POST /paygov/create` — bearer token required; every field present, `amount` a string
//!   of digits, `orderInfo` ASCII, `checksum` = SHA-256 hex of
//!   secretKey+accessKey+partnerCode+orderId+requestCode+amount. The same `orderId` with the
//!   same content is the same transaction. `{error_code: "00", data: {url}}`.
//! - `POST /paygov/query` — the query ([open] shape, mirrored by the gateway).
//! - The citizen pays or abandons; [`PayGovSandbox::callback`] builds the callback, its
//!   checksum by the configured [`FieldChecksum`]; [`PayGovSandbox::send_callback`] checks the
//!   reply is exactly `{"error_code": "SUCCESSFUL" | "FAILED", "error_message"}`.
//! - Faults: `down` (503), `slow_ms` (answer creations late, after recording them).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use gw_crypto::checksum::{FieldChecksum, PayGov};
use gw_crypto::keys::Secret;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Why a callback sent to the gateway failed or got a reply off PayGov's contract; one variant
/// per check.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("callback not answered: {0}")]
    NotAnswered(#[source] reqwest::Error),
    #[error("HTTP {0}")]
    Status(StatusCode),
    #[error("reply is not JSON: {0}")]
    NotJson(#[source] reqwest::Error),
    #[error("reply is not an object")]
    NotObject,
    #[error("reply is not PayGov's shape: {0}")]
    Shape(Value),
}

pub const TOKEN_PATH: &str = "/token";
pub const CREATE_PATH: &str = "/paygov/create";
pub const QUERY_PATH: &str = "/paygov/query";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayGovTxn {
    pub order_id: String,
    pub request_code: String,
    pub amount: i64,
    pub order_info: String,
    /// `01` pending, `00` paid, `02` failed.
    pub status: String,
    pub transaction_no: String,
    pub creates: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayGovFaults {
    pub down: bool,
    pub slow_ms: u64,
}

/// Credentials and keys of the sandbox.
#[derive(Clone)]
pub struct PayGovKeys {
    pub client_id: String,
    pub client_secret: String,
    pub partner_code: String,
    pub access_key: String,
    pub secret_key: String,
}

#[derive(Default)]
struct Inner {
    tokens: HashSet<String>,
    txns: BTreeMap<String, PayGovTxn>,
    refused: Vec<String>,
    faults: PayGovFaults,
    next: u64,
    token_calls: u32,
}

struct Shared {
    keys: PayGovKeys,
    request_sum: PayGov,
    callback_sum: FieldChecksum,
    inner: Mutex<Inner>,
}

fn f(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

#[derive(Clone)]
pub struct PayGovSandbox {
    shared: Arc<Shared>,
    pub addr: SocketAddr,
    http: reqwest::Client,
}

impl PayGovSandbox {
    /// Start; `callback_sum` is how this PayGov signs its callbacks.
    pub async fn start(
        port: u16,
        keys: PayGovKeys,
        callback_sum: FieldChecksum,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            request_sum: PayGov::new(
                Secret::new(keys.secret_key.clone()),
                keys.access_key.clone(),
                keys.partner_code.clone(),
            ),
            keys,
            callback_sum,
            inner: Mutex::new(Inner {
                next: 900_000,
                ..Default::default()
            }),
        });
        let app = Router::new()
            .route(TOKEN_PATH, post(token))
            .route(CREATE_PATH, post(create))
            .route(QUERY_PATH, post(query))
            .with_state(shared.clone());
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = l.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Ok(PayGovSandbox {
            shared,
            addr,
            http: reqwest::Client::new(),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    pub fn set_faults(&self, faults: PayGovFaults) {
        self.shared.inner.lock().unwrap().faults = faults;
    }
    pub fn expire_tokens(&self) {
        self.shared.inner.lock().unwrap().tokens.clear();
    }
    pub fn token_calls(&self) -> u32 {
        self.shared.inner.lock().unwrap().token_calls
    }
    pub fn txn(&self, order_id: &str) -> Option<PayGovTxn> {
        self.shared
            .inner
            .lock()
            .unwrap()
            .txns
            .get(order_id)
            .cloned()
    }
    pub fn txns(&self) -> Vec<PayGovTxn> {
        self.shared
            .inner
            .lock()
            .unwrap()
            .txns
            .values()
            .cloned()
            .collect()
    }
    pub fn refused(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().refused.clone()
    }
    pub fn pay(&self, order_id: &str) -> bool {
        self.settle(order_id, "00")
    }
    pub fn abandon(&self, order_id: &str) -> bool {
        self.settle(order_id, "02")
    }
    fn settle(&self, order_id: &str, status: &str) -> bool {
        let mut g = self.shared.inner.lock().unwrap();
        g.next += 1;
        let no = format!("PG{}", g.next);
        match g.txns.get_mut(order_id) {
            Some(t) if t.status == "01" => {
                t.status = status.into();
                t.transaction_no = no;
                true
            }
            _ => false,
        }
    }

    pub fn callback(&self, order_id: &str) -> Option<Value> {
        Some(self.sign_callback(&self.txn(order_id)?))
    }

    /// A callback for arbitrary content, signed with the configured scheme.
    pub fn sign_callback(&self, t: &PayGovTxn) -> Value {
        let mut v = json!({
            "amount": t.amount.to_string(),
            "orderId": t.order_id,
            "orderInfo": t.order_info,
            "requestCode": t.request_code,
            "transactionNo": t.transaction_no,
            "payDate": "20260101083000",
            "errorCode": if t.status == "00" { "00" } else { "24" },
            "transactionCode": format!("TC{}", t.transaction_no),
        });
        let k = &self.shared.keys;
        let sum = self
            .shared
            .callback_sum
            .sign(|name| match name {
                "accessKey" => k.access_key.clone(),
                "partnerCode" => k.partner_code.clone(),
                other => f(&v, other),
            })
            .expect("sign");
        v["checksum"] = sum.into();
        v
    }

    /// Post a callback to the gateway; the reply must be exactly PayGov's shape.
    pub async fn send_callback(&self, url: &str, body: &Value) -> Result<String, CallbackError> {
        let r = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(CallbackError::NotAnswered)?;
        if r.status() != StatusCode::OK {
            return Err(CallbackError::Status(r.status()));
        }
        let a: Value = r.json().await.map_err(CallbackError::NotJson)?;
        let o = a.as_object().ok_or(CallbackError::NotObject)?;
        let code = f(&a, "error_code");
        if o.len() != 2
            || !o.contains_key("error_message")
            || !["SUCCESSFUL", "FAILED"].contains(&code.as_str())
        {
            return Err(CallbackError::Shape(a));
        }
        Ok(code)
    }
}

fn authorized(sh: &Shared, headers: &HeaderMap) -> bool {
    let tok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    sh.inner.lock().unwrap().tokens.contains(tok)
}

async fn token(State(sh): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    use base64_lite::encode;
    let expected = format!(
        "Basic {}",
        encode(format!("{}:{}", sh.keys.client_id, sh.keys.client_secret).as_bytes())
    );
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if given != expected || body != "grant_type=client_credentials" {
        sh.inner
            .lock()
            .unwrap()
            .refused
            .push("token: credentials".into());
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let mut g = sh.inner.lock().unwrap();
    g.next += 1;
    g.token_calls += 1;
    let tok = format!("tok-{}", g.next);
    g.tokens.insert(tok.clone());
    Json(json!({"access_token": tok, "token_type": "Bearer", "expires_in": 3600})).into_response()
}

async fn create(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(v): Json<Value>,
) -> Response {
    let (down, slow) = {
        let g = sh.inner.lock().unwrap();
        (g.faults.down, g.faults.slow_ms)
    };
    if down {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    if !authorized(&sh, &headers) {
        return (StatusCode::UNAUTHORIZED, "token").into_response();
    }
    let refuse = |why: &str| {
        sh.inner
            .lock()
            .unwrap()
            .refused
            .push(format!("create: {why}"));
        Json(json!({"error_code": "01", "error_message": why})).into_response()
    };
    for k in [
        "partnerCode",
        "returnUrl",
        "orderId",
        "amount",
        "orderInfo",
        "requestCode",
        "ipAddress",
        "accessKey",
        "serviceCode",
        "checksum",
    ] {
        if !v.get(k).is_some_and(Value::is_string) {
            return refuse(&format!("{k} missing or not a string"));
        }
    }
    let (order_id, request_code, amount) =
        (f(&v, "orderId"), f(&v, "requestCode"), f(&v, "amount"));
    if sh
        .request_sum
        .verify(&order_id, &request_code, &amount, &f(&v, "checksum"))
        .is_err()
    {
        return refuse("checksum");
    }
    if f(&v, "partnerCode") != sh.keys.partner_code || f(&v, "accessKey") != sh.keys.access_key {
        return refuse("partner");
    }
    if amount.is_empty()
        || !amount.bytes().all(|b| b.is_ascii_digit())
        || !f(&v, "orderInfo").is_ascii()
    {
        return refuse("amount or orderInfo");
    }
    let amount: i64 = amount.parse().unwrap_or(0);
    let same = {
        let mut g = sh.inner.lock().unwrap();
        let t = g.txns.entry(order_id.clone()).or_insert(PayGovTxn {
            order_id: order_id.clone(),
            request_code: request_code.clone(),
            amount,
            order_info: f(&v, "orderInfo"),
            status: "01".into(),
            transaction_no: String::new(),
            creates: 0,
        });
        t.creates += 1;
        t.amount == amount && t.request_code == request_code
    };
    if slow > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(slow)).await;
    }
    if !same {
        return refuse("orderId exists with other content");
    }
    Json(json!({"error_code": "00", "error_message": "success", "data": {"url": format!("https://paygov.example/pay/{order_id}")}}))
        .into_response()
}

async fn query(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(v): Json<Value>,
) -> Response {
    if sh.inner.lock().unwrap().faults.down {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    if !authorized(&sh, &headers) {
        return (StatusCode::UNAUTHORIZED, "token").into_response();
    }
    let (order_id, request_code) = (f(&v, "orderId"), f(&v, "requestCode"));
    if sh
        .request_sum
        .verify(&order_id, &request_code, "", &f(&v, "checksum"))
        .is_err()
    {
        sh.inner
            .lock()
            .unwrap()
            .refused
            .push("query: checksum".into());
        return Json(json!({"error_code": "97", "error_message": "checksum"})).into_response();
    }
    match sh.inner.lock().unwrap().txns.get(&order_id) {
        Some(t) => Json(json!({"error_code": "00", "error_message": "success", "data": {
            "status": t.status, "amount": t.amount.to_string(), "transactionNo": t.transaction_no}}))
        .into_response(),
        None => Json(json!({"error_code": "01", "error_message": "not found"})).into_response(),
    }
}

/// Standard base64 (for the Basic header check), without another dependency.
mod base64_lite {
    pub fn encode(input: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

/// Run standalone until interrupted (callback checksum: the gateway's default scheme).
pub async fn run_standalone(port: u16) -> std::io::Result<()> {
    let keys = PayGovKeys {
        client_id: "gateway".into(),
        client_secret: "lgsp-secret".into(),
        partner_code: "GWPARTNER".into(),
        access_key: "ACCESS".into(),
        secret_key: "PAYGOVSECRET".into(),
    };
    let sum = FieldChecksum::new(
        gw_crypto::checksum::FieldAlgorithm::Sha256,
        gw_crypto::checksum::PAYGOV_CALLBACK_FIELDS
            .map(String::from)
            .to_vec(),
        "",
        Secret::new(keys.secret_key.clone()),
    );
    let s = PayGovSandbox::start(port, keys, sum).await?;
    println!("PayGov (via LGSP) sandbox listening on http://{}", s.addr);
    println!(
        "  token   POST {}  (Basic gateway:lgsp-secret)",
        s.url(TOKEN_PATH)
    );
    println!("  create  POST {}", s.url(CREATE_PATH));
    println!("  query   POST {}", s.url(QUERY_PATH));
    println!("  keys    partnerCode GWPARTNER, accessKey ACCESS, secretKey PAYGOVSECRET");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
