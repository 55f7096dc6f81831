//! A strict sandbox of MoMo's API v2 (CONTRACTS.md §3 [likely]).
//!
//! - `POST /v2/gateway/api/create` — every field present and of its type (`amount` a whole
//!   number from 1,000 to 50,000,000 VND, the rest strings), `signature` valid (HMAC-SHA256 over
//!   `k=v&…` in gw-crypto's [`MoMoMessage::Create`] order), our `partnerCode`, `orderId` at most
//!   50 characters of `[0-9A-Za-z_.:-]`, `lang` `vi` / `en`, http(s) `redirectUrl` and `ipnUrl`.
//!   The same `requestId` with the same content is the same request (same answer); another
//!   request for an existing `orderId` is `resultCode` 41; a `requestId` reused for other
//!   content is 40. Answer `{partnerCode, requestId, orderId, amount, responseTime, message,
//!   resultCode: 0, payUrl}`.
//! - `POST /v2/gateway/api/query` — signature valid (else 13): `resultCode` 0 paid, 1000
//!   waiting for the citizen, 1006 refused by the citizen, 42 unknown order.
//! - The citizen pays or abandons ([`MoMoSandbox::pay`] / [`MoMoSandbox::abandon`]);
//!   [`MoMoSandbox::ipn`] builds the signed IPN, [`MoMoSandbox::sign_ipn`] one for any content,
//!   and [`MoMoSandbox::send_ipn`] posts a body to the gateway and checks the answer: MoMo takes
//!   only `204` with an empty body as acknowledged (anything else it would send again).
//! - Faults: `down` (503), `slow_ms` (answer creations late, after recording them).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use gw_crypto::checksum::{MoMo, MoMoMessage};
use gw_crypto::keys::Secret;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Why an IPN sent to the gateway failed or got an answer off MoMo's contract; one variant per
/// check.
#[derive(Debug, thiserror::Error)]
pub enum IpnError {
    #[error("IPN not answered: {0}")]
    NotAnswered(#[source] reqwest::Error),
    #[error("IPN answer body: {0}")]
    Body(#[source] reqwest::Error),
    #[error("204 with a body: {0}")]
    NoContentWithBody(String),
    #[error("IPN answered {0}; MoMo expects 204")]
    NotNoContent(StatusCode),
}

pub const CREATE_PATH: &str = "/v2/gateway/api/create";
pub const QUERY_PATH: &str = "/v2/gateway/api/query";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoMoTxn {
    pub order_id: String,
    pub request_id: String,
    pub amount: i64,
    pub order_info: String,
    pub request_type: String,
    pub extra_data: String,
    /// `1000` waiting for the citizen, `0` paid, `1006` refused by the citizen.
    pub result_code: i64,
    pub trans_id: i64,
    /// How many creation requests named it (retries included).
    pub creates: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoMoFaults {
    pub down: bool,
    /// Delay every creation answer by this much, after recording it.
    pub slow_ms: u64,
}

/// Keys of the sandbox.
#[derive(Clone)]
pub struct MoMoKeys {
    pub partner_code: String,
    pub access_key: String,
    pub secret_key: String,
}

#[derive(Default)]
struct Inner {
    txns: BTreeMap<String, MoMoTxn>,
    /// The signed creation body of each `requestId` (idempotency).
    requests: BTreeMap<String, String>,
    refused: Vec<String>,
    faults: MoMoFaults,
    next: i64,
}

struct Shared {
    keys: MoMoKeys,
    sig: MoMo,
    inner: Mutex<Inner>,
}

fn f(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

impl Shared {
    fn value(&self, k: &str, v: &Value) -> String {
        match k {
            "accessKey" => self.keys.access_key.clone(),
            other => f(v, other),
        }
    }
    fn sign(&self, m: MoMoMessage, v: &Value) -> String {
        self.sig
            .sign_message(m, |k| self.value(k, v))
            .expect("sign")
    }
    fn verifies(&self, m: MoMoMessage, v: &Value) -> bool {
        self.sig
            .verify_message(m, |k| self.value(k, v), &f(v, "signature"))
            .is_ok()
    }
    fn refuse(&self, why: String) {
        self.inner.lock().unwrap().refused.push(why);
    }
}

/// A running MoMo sandbox.
#[derive(Clone)]
pub struct MoMoSandbox {
    shared: Arc<Shared>,
    pub addr: SocketAddr,
    http: reqwest::Client,
}

impl MoMoSandbox {
    pub async fn start(port: u16, keys: MoMoKeys) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            sig: MoMo::new(Secret::new(keys.secret_key.clone())),
            keys,
            inner: Mutex::new(Inner {
                next: 3_100_000_000,
                ..Default::default()
            }),
        });
        let app = Router::new()
            .route(CREATE_PATH, post(create))
            .route(QUERY_PATH, post(query))
            .with_state(shared.clone());
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = l.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Ok(MoMoSandbox {
            shared,
            addr,
            http: reqwest::Client::new(),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    pub fn set_faults(&self, faults: MoMoFaults) {
        self.shared.inner.lock().unwrap().faults = faults;
    }
    pub fn txn(&self, order_id: &str) -> Option<MoMoTxn> {
        self.shared
            .inner
            .lock()
            .unwrap()
            .txns
            .get(order_id)
            .cloned()
    }
    pub fn txns(&self) -> Vec<MoMoTxn> {
        self.shared
            .inner
            .lock()
            .unwrap()
            .txns
            .values()
            .cloned()
            .collect()
    }
    /// What the sandbox refused (contract violations by the gateway).
    pub fn refused(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().refused.clone()
    }

    pub fn pay(&self, order_id: &str) -> bool {
        self.settle(order_id, 0)
    }
    pub fn abandon(&self, order_id: &str) -> bool {
        self.settle(order_id, 1006)
    }
    fn settle(&self, order_id: &str, code: i64) -> bool {
        let mut g = self.shared.inner.lock().unwrap();
        g.next += 1;
        let no = g.next;
        match g.txns.get_mut(order_id) {
            Some(t) if t.result_code == 1000 => {
                t.result_code = code;
                t.trans_id = no;
                true
            }
            _ => false,
        }
    }

    /// The signed IPN of a transaction as it stands.
    pub fn ipn(&self, order_id: &str) -> Option<Value> {
        Some(self.sign_ipn(&self.txn(order_id)?))
    }

    /// A correctly signed IPN for arbitrary content.
    pub fn sign_ipn(&self, t: &MoMoTxn) -> Value {
        let mut v = json!({
            "partnerCode": self.shared.keys.partner_code,
            "orderId": t.order_id,
            "requestId": t.request_id,
            "amount": t.amount,
            "orderInfo": t.order_info,
            "orderType": "momo_wallet",
            "transId": t.trans_id,
            "resultCode": t.result_code,
            "message": if t.result_code == 0 { "Successful." } else { "Transaction denied by user." },
            "payType": "qr",
            "responseTime": 1_767_230_000_000_i64,
            "extraData": t.extra_data,
        });
        v["signature"] = self.shared.sign(MoMoMessage::Ipn, &v).into();
        v
    }

    /// Post an IPN body to the gateway; the answer's status. MoMo counts only `204` with an
    /// empty body as acknowledged; a `204` with a body is a contract violation (an error here).
    pub async fn send_ipn(&self, url: &str, body: &Value) -> Result<u16, IpnError> {
        let r = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(IpnError::NotAnswered)?;
        let status = r.status();
        let text = r.text().await.map_err(IpnError::Body)?;
        if status == StatusCode::NO_CONTENT && !text.is_empty() {
            return Err(IpnError::NoContentWithBody(text));
        }
        if status.is_success() && status != StatusCode::NO_CONTENT {
            return Err(IpnError::NotNoContent(status));
        }
        Ok(status.as_u16())
    }
}

fn answer(sh: &Shared, v: &Value, code: i64, message: &str, pay_url: Option<String>) -> Response {
    let mut a = json!({
        "partnerCode": sh.keys.partner_code,
        "requestId": f(v, "requestId"),
        "orderId": f(v, "orderId"),
        "amount": v.get("amount").cloned().unwrap_or(Value::Null),
        "responseTime": 1_767_230_000_000_i64,
        "message": message,
        "resultCode": code,
    });
    if let Some(u) = pay_url {
        a["payUrl"] = u.into();
    }
    Json(a).into_response()
}

async fn create(State(sh): State<Arc<Shared>>, Json(v): Json<Value>) -> Response {
    let (down, slow) = {
        let g = sh.inner.lock().unwrap();
        (g.faults.down, g.faults.slow_ms)
    };
    if down {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    for k in [
        "partnerCode",
        "requestId",
        "orderId",
        "orderInfo",
        "redirectUrl",
        "ipnUrl",
        "requestType",
        "extraData",
        "lang",
        "signature",
    ] {
        if !v.get(k).is_some_and(Value::is_string) {
            sh.refuse(format!("create: {k} missing or not a string"));
            return answer(&sh, &v, 20, &format!("{k} is required"), None);
        }
    }
    let Some(amount) = v.get("amount").and_then(Value::as_i64) else {
        sh.refuse("create: amount is not a whole number".into());
        return answer(&sh, &v, 20, "amount", None);
    };
    if !sh.verifies(MoMoMessage::Create, &v) {
        sh.refuse("create: signature".into());
        return answer(&sh, &v, 13, "Merchant authentication failed", None);
    }
    let (order_id, request_id) = (f(&v, "orderId"), f(&v, "requestId"));
    let url_ok = |k: &str| {
        let u = f(&v, k);
        u.starts_with("https://") || u.starts_with("http://")
    };
    if f(&v, "partnerCode") != sh.keys.partner_code
        || order_id.is_empty()
        || order_id.len() > 50
        || !order_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
        || request_id.is_empty()
        || !["vi", "en"].contains(&f(&v, "lang").as_str())
        || !url_ok("redirectUrl")
        || !url_ok("ipnUrl")
    {
        sh.refuse("create: fields".into());
        return answer(&sh, &v, 20, "Bad format request", None);
    }
    if !(1_000..=50_000_000).contains(&amount) {
        sh.refuse("create: amount out of range".into());
        return answer(&sh, &v, 21, "Invalid amount", None);
    }
    let content = v.to_string();
    let outcome = {
        let mut g = sh.inner.lock().unwrap();
        match g.requests.get(&request_id) {
            Some(c) if *c != content => Err((40, "Duplicated requestId")),
            Some(_) => {
                // The same request again: the same answer.
                if let Some(t) = g.txns.get_mut(&order_id) {
                    t.creates += 1;
                }
                Ok(())
            }
            None if g.txns.contains_key(&order_id) => Err((41, "Duplicated orderId")),
            None => {
                g.requests.insert(request_id.clone(), content);
                g.txns.insert(
                    order_id.clone(),
                    MoMoTxn {
                        order_id: order_id.clone(),
                        request_id: request_id.clone(),
                        amount,
                        order_info: f(&v, "orderInfo"),
                        request_type: f(&v, "requestType"),
                        extra_data: f(&v, "extraData"),
                        result_code: 1000,
                        trans_id: 0,
                        creates: 1,
                    },
                );
                Ok(())
            }
        }
    };
    if slow > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(slow)).await;
    }
    match outcome {
        Ok(()) => answer(
            &sh,
            &v,
            0,
            "Successful.",
            Some(format!("https://test-payment.momo.vn/pay/{order_id}")),
        ),
        Err((code, msg)) => answer(&sh, &v, code, msg, None),
    }
}

async fn query(State(sh): State<Arc<Shared>>, Json(v): Json<Value>) -> Response {
    if sh.inner.lock().unwrap().faults.down {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let reply = |code: i64, t: Option<&MoMoTxn>| {
        Json(json!({
            "partnerCode": sh.keys.partner_code,
            "requestId": f(&v, "requestId"),
            "orderId": f(&v, "orderId"),
            "extraData": t.map(|t| t.extra_data.clone()).unwrap_or_default(),
            "amount": t.map(|t| t.amount).unwrap_or(0),
            "transId": t.map(|t| t.trans_id).unwrap_or(0),
            "payType": "qr",
            "resultCode": code,
            "message": "",
            "responseTime": 1_767_230_000_000_i64,
        }))
        .into_response()
    };
    if !sh.verifies(MoMoMessage::Query, &v)
        || f(&v, "partnerCode") != sh.keys.partner_code
        || f(&v, "requestId").is_empty()
        || !["vi", "en"].contains(&f(&v, "lang").as_str())
    {
        sh.refuse("query: signature or fields".into());
        return reply(13, None);
    }
    let t = sh
        .inner
        .lock()
        .unwrap()
        .txns
        .get(&f(&v, "orderId"))
        .cloned();
    match t {
        Some(t) => reply(t.result_code, Some(&t)),
        None => reply(42, None),
    }
}

/// Run standalone until interrupted.
pub async fn run_standalone(port: u16) -> std::io::Result<()> {
    let keys = MoMoKeys {
        partner_code: "MOMOGW01".into(),
        access_key: "MOMOACCESS".into(),
        secret_key: "MOMOSECRET".into(),
    };
    let s = MoMoSandbox::start(port, keys).await?;
    println!("MoMo sandbox listening on http://{}", s.addr);
    println!("  create  POST {}", s.url(CREATE_PATH));
    println!("  query   POST {}", s.url(QUERY_PATH));
    println!("  keys    partnerCode MOMOGW01, accessKey MOMOACCESS, secretKey MOMOSECRET");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
