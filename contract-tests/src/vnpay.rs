//! A strict VNPay sandbox (payment gateway API v2.1.0, CONTRACTS.md §3).
//!
//! - `GET /paymentv2/vpcpay.html?…` — the pay page a citizen opens. Every required parameter
//!   must be present and well formed, `vnp_TmnCode` ours, `vnp_SecureHash` valid (HMAC-SHA512
//!   of the sorted, form-urlencoded query); the same `vnp_TxnRef` opened again with different
//!   content is refused. Accepted → the transaction exists here (pending).
//! - `POST /merchant_webapi/api/transaction` — `querydr` (JSON, checksum over the `|`-joined
//!   fields, `vnp_RequestId` unique): `00` with the signed transaction, `91` unknown, `94`
//!   duplicate request id, `97` bad checksum, `02` wrong merchant.
//! - The citizen ([`VnPaySandbox::pay`], [`VnPaySandbox::abandon`]) settles a transaction here;
//!   [`VnPaySandbox::ipn`] builds its IPN (signed) and [`VnPaySandbox::send_ipn`] sends any
//!   (correct, forged, replayed, late, out of order, wrong amount) to the gateway and checks
//!   the answer is exactly `{"RspCode","Message"}` with a code VNPay knows.
//! - Faults: `query_down` answers the transaction API 503.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gw_crypto::checksum::{form_urlencode, VnPay};
use gw_crypto::keys::Secret;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Why a citizen's step (opening the pay page) or an IPN sent to the gateway failed; one
/// variant per step, so a test's failure says which.
#[derive(Debug, thiserror::Error)]
pub enum CitizenError {
    #[error("pay page not answered: {0}")]
    PayPageUnreachable(#[source] reqwest::Error),
    /// The gateway's pay URL was refused here; the refusal's text.
    #[error("{0}")]
    PayPageRefused(String),
    #[error("IPN not answered: {0}")]
    IpnNotAnswered(#[source] reqwest::Error),
    #[error("IPN answered HTTP {0}")]
    IpnStatus(StatusCode),
    #[error("IPN answer: {0}")]
    IpnNotJson(#[source] reqwest::Error),
    #[error("IPN answer is not an object")]
    IpnNotObject,
    #[error("IPN answer lacks RspCode/Message: {0}")]
    IpnFieldsMissing(serde_json::Value),
    #[error("IPN answer is not VNPay's shape: {0}")]
    IpnShape(serde_json::Value),
}

pub const PAY_PATH: &str = "/paymentv2/vpcpay.html";
pub const API_PATH: &str = "/merchant_webapi/api/transaction";

/// Required pay parameters.
const PAY_REQUIRED: [&str; 13] = [
    "vnp_Version",
    "vnp_Command",
    "vnp_TmnCode",
    "vnp_Amount",
    "vnp_CreateDate",
    "vnp_CurrCode",
    "vnp_IpAddr",
    "vnp_Locale",
    "vnp_OrderInfo",
    "vnp_OrderType",
    "vnp_ReturnUrl",
    "vnp_TxnRef",
    "vnp_SecureHash",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    pub txn_ref: String,
    /// VND × 100, as VNPay carries it.
    pub amount100: i64,
    pub create_date: String,
    pub order_info: String,
    /// `vnp_ResponseCode` / `vnp_TransactionStatus` (`00`/`00` paid, `24`/`02` cancelled,
    /// `""`/`01` pending).
    pub response_code: String,
    pub status: String,
    pub transaction_no: String,
    pub pay_date: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VnPayFaults {
    pub query_down: bool,
}

/// One IPN sent and what the gateway answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpnAnswer {
    pub rsp_code: String,
    pub message: String,
}

#[derive(Default)]
struct Inner {
    txns: BTreeMap<String, Txn>,
    request_ids: HashSet<String>,
    refused: Vec<String>,
    faults: VnPayFaults,
    next_no: u64,
    answers: Vec<(String, IpnAnswer)>,
}

struct Shared {
    tmn_code: String,
    hash: VnPay,
    inner: Mutex<Inner>,
}

/// A running VNPay sandbox.
#[derive(Clone)]
pub struct VnPaySandbox {
    shared: Arc<Shared>,
    pub addr: SocketAddr,
    http: reqwest::Client,
}

impl VnPaySandbox {
    /// Start on `127.0.0.1:<port>` (0 = any free port).
    pub async fn start(port: u16, tmn_code: &str, hash_secret: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            tmn_code: tmn_code.into(),
            hash: VnPay::new(Secret::new(hash_secret)),
            inner: Mutex::new(Inner {
                next_no: 14_000_000,
                ..Default::default()
            }),
        });
        let app = Router::new()
            .route(PAY_PATH, get(pay_page))
            .route(API_PATH, post(transaction_api))
            .with_state(shared.clone());
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = l.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Ok(VnPaySandbox {
            shared,
            addr,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .expect("client"),
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap()
    }

    pub fn pay_url(&self) -> String {
        format!("http://{}{PAY_PATH}", self.addr)
    }

    pub fn api_url(&self) -> String {
        format!("http://{}{API_PATH}", self.addr)
    }

    pub fn set_faults(&self, f: VnPayFaults) {
        self.inner().faults = f;
    }

    pub fn txn(&self, txn_ref: &str) -> Option<Txn> {
        self.inner().txns.get(txn_ref).cloned()
    }

    pub fn txns(&self) -> Vec<Txn> {
        self.inner().txns.values().cloned().collect()
    }

    /// Why pay-page or API requests were refused (strictness failures).
    pub fn refused(&self) -> Vec<String> {
        self.inner().refused.clone()
    }

    /// Every IPN sent, with the answer.
    pub fn answers(&self) -> Vec<(String, IpnAnswer)> {
        self.inner().answers.clone()
    }

    /// The citizen opens the pay URL the gateway gave. `Err` carries the refusal.
    pub async fn open(&self, url: &str) -> Result<(), CitizenError> {
        let r = self
            .http
            .get(url)
            .send()
            .await
            .map_err(CitizenError::PayPageUnreachable)?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(CitizenError::PayPageRefused(
                r.text().await.unwrap_or_default(),
            ))
        }
    }

    /// The citizen pays: the transaction is paid here. Returns false when unknown or settled.
    pub fn pay(&self, txn_ref: &str) -> bool {
        self.settle(txn_ref, "00", "00")
    }

    /// The citizen cancels on the pay page (`24` / `02`).
    pub fn abandon(&self, txn_ref: &str) -> bool {
        self.settle(txn_ref, "24", "02")
    }

    fn settle(&self, txn_ref: &str, code: &str, status: &str) -> bool {
        let mut g = self.inner();
        g.next_no += 1;
        let no = g.next_no.to_string();
        match g.txns.get_mut(txn_ref) {
            Some(t) if t.status == "01" => {
                t.response_code = code.into();
                t.status = status.into();
                t.transaction_no = no;
                t.pay_date = t.create_date.clone();
                true
            }
            _ => false,
        }
    }

    /// The signed IPN of a transaction as it stands.
    pub fn ipn(&self, txn_ref: &str) -> Option<Vec<(String, String)>> {
        let t = self.txn(txn_ref)?;
        Some(self.sign_ipn(&t))
    }

    /// A correctly signed IPN for arbitrary content (an order never created here, a wrong
    /// amount, …).
    pub fn sign_ipn(&self, t: &Txn) -> Vec<(String, String)> {
        let p = |k: &str, v: &str| (k.to_string(), v.to_string());
        let mut params = vec![
            p("vnp_Amount", &t.amount100.to_string()),
            p("vnp_BankCode", "NCB"),
            p("vnp_BankTranNo", "VNP14422574"),
            p("vnp_CardType", "ATM"),
            p("vnp_OrderInfo", &t.order_info),
            p("vnp_PayDate", &t.pay_date),
            p("vnp_ResponseCode", &t.response_code),
            p("vnp_TmnCode", &self.shared.tmn_code),
            p("vnp_TransactionNo", &t.transaction_no),
            p("vnp_TransactionStatus", &t.status),
            p("vnp_TxnRef", &t.txn_ref),
        ];
        let h = self.shared.hash.sign(&params).expect("sign");
        params.push(p("vnp_SecureHashType", "HmacSHA512"));
        params.push(p("vnp_SecureHash", &h));
        params
    }

    /// Send an IPN to the gateway's endpoint and check the answer's shape strictly.
    pub async fn send_ipn(
        &self,
        ipn_url: &str,
        params: &[(String, String)],
    ) -> Result<IpnAnswer, CitizenError> {
        let q = params
            .iter()
            .map(|(k, v)| format!("{}={}", form_urlencode(k), form_urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let r = self
            .http
            .get(format!("{ipn_url}?{q}"))
            .send()
            .await
            .map_err(CitizenError::IpnNotAnswered)?;
        if r.status() != StatusCode::OK {
            return Err(CitizenError::IpnStatus(r.status()));
        }
        let v: serde_json::Value = r.json().await.map_err(CitizenError::IpnNotJson)?;
        let obj = v.as_object().ok_or(CitizenError::IpnNotObject)?;
        let (Some(code), Some(msg)) = (
            obj.get("RspCode").and_then(|c| c.as_str()),
            obj.get("Message").and_then(|c| c.as_str()),
        ) else {
            return Err(CitizenError::IpnFieldsMissing(v));
        };
        if obj.len() != 2 || !["00", "01", "02", "04", "97", "99"].contains(&code) {
            return Err(CitizenError::IpnShape(v));
        }
        let a = IpnAnswer {
            rsp_code: code.into(),
            message: msg.into(),
        };
        let reference = params
            .iter()
            .find(|(k, _)| k == "vnp_TxnRef")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        self.inner().answers.push((reference, a.clone()));
        Ok(a)
    }
}

fn refuse(sh: &Shared, why: String) -> Response {
    sh.inner.lock().unwrap().refused.push(why.clone());
    (StatusCode::BAD_REQUEST, why).into_response()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_date(s: &str) -> bool {
    s.len() == 14 && s.bytes().all(|b| b.is_ascii_digit())
}

async fn pay_page(State(sh): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let params: Vec<(String, String)> = q
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    for k in PAY_REQUIRED {
        if get(k).is_none_or(str::is_empty) {
            return refuse(&sh, format!("pay: {k} is missing"));
        }
    }
    let mut names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return refuse(&sh, "pay: a parameter is repeated".into());
    }
    if sh.hash.verify(&params).is_err() {
        return refuse(&sh, "pay: vnp_SecureHash does not verify".into());
    }
    let g = |k: &str| get(k).unwrap_or_default();
    if g("vnp_Version") != "2.1.0" || g("vnp_Command") != "pay" {
        return refuse(&sh, "pay: version/command".into());
    }
    if g("vnp_TmnCode") != sh.tmn_code {
        return refuse(&sh, "pay: unknown vnp_TmnCode".into());
    }
    if g("vnp_CurrCode") != "VND" {
        return refuse(&sh, "pay: vnp_CurrCode must be VND".into());
    }
    let amount = g("vnp_Amount");
    let amount100: i64 = match amount.parse() {
        Ok(a) if a > 0 && a % 100 == 0 && amount.bytes().all(|b| b.is_ascii_digit()) => a,
        _ => return refuse(&sh, "pay: vnp_Amount must be VND × 100".into()),
    };
    if !is_date(g("vnp_CreateDate")) || get("vnp_ExpireDate").is_some_and(|d| !is_date(d)) {
        return refuse(&sh, "pay: dates must be yyyyMMddHHmmss".into());
    }
    let txn_ref = g("vnp_TxnRef");
    if txn_ref.len() > 100
        || !txn_ref
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return refuse(&sh, "pay: vnp_TxnRef".into());
    }
    if g("vnp_OrderInfo").bytes().any(|b| !b.is_ascii()) {
        return refuse(&sh, "pay: vnp_OrderInfo must have no diacritics".into());
    }
    let t = Txn {
        txn_ref: txn_ref.into(),
        amount100,
        create_date: g("vnp_CreateDate").into(),
        order_info: g("vnp_OrderInfo").into(),
        response_code: String::new(),
        status: "01".into(),
        transaction_no: String::new(),
        pay_date: String::new(),
    };
    let mut inner = sh.inner.lock().unwrap();
    if let Some(existing) = inner.txns.get(txn_ref) {
        if (existing.amount100, &existing.create_date) != (t.amount100, &t.create_date) {
            drop(inner);
            return refuse(&sh, format!("pay: {txn_ref} exists with other content"));
        }
    } else {
        inner.txns.insert(txn_ref.into(), t);
    }
    (StatusCode::OK, "VNPay sandbox: pay page").into_response()
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct QueryDr {
    vnp_RequestId: String,
    vnp_Version: String,
    vnp_Command: String,
    vnp_TmnCode: String,
    vnp_TxnRef: String,
    vnp_OrderInfo: String,
    vnp_TransactionDate: String,
    vnp_CreateDate: String,
    vnp_IpAddr: String,
    vnp_SecureHash: String,
}

async fn transaction_api(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    if sh.inner.lock().unwrap().faults.query_down {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let q: QueryDr = match serde_json::from_slice(&body) {
        Ok(q) => q,
        Err(e) => return refuse(&sh, format!("querydr: {e}")),
    };
    let reply = |code: &str, msg: &str, t: Option<&Txn>| -> Response {
        let s = |x: &str| x.to_string();
        let (amount, bank, pay_date, no, status, info) = match t {
            Some(t) => (
                t.amount100.to_string(),
                s("NCB"),
                t.pay_date.clone(),
                t.transaction_no.clone(),
                t.status.clone(),
                t.order_info.clone(),
            ),
            None => Default::default(),
        };
        let fields = [
            q.vnp_RequestId.clone(),
            s("querydr"),
            s(code),
            s(msg),
            sh.tmn_code.clone(),
            q.vnp_TxnRef.clone(),
            amount.clone(),
            bank.clone(),
            pay_date.clone(),
            no.clone(),
            s("01"),
            status.clone(),
            info.clone(),
            String::new(),
            String::new(),
        ];
        let hash = sh.hash.sign_raw(&fields.join("|")).expect("sign");
        Json(json!({
            "vnp_ResponseId": q.vnp_RequestId, "vnp_Command": "querydr", "vnp_ResponseCode": code,
            "vnp_Message": msg, "vnp_TmnCode": sh.tmn_code, "vnp_TxnRef": q.vnp_TxnRef,
            "vnp_Amount": amount, "vnp_BankCode": bank, "vnp_PayDate": pay_date,
            "vnp_TransactionNo": no, "vnp_TransactionType": "01", "vnp_TransactionStatus": status,
            "vnp_OrderInfo": info, "vnp_PromotionCode": "", "vnp_PromotionAmount": "",
            "vnp_SecureHash": hash,
        }))
        .into_response()
    };
    let data = [
        &q.vnp_RequestId,
        &q.vnp_Version,
        &q.vnp_Command,
        &q.vnp_TmnCode,
        &q.vnp_TxnRef,
        &q.vnp_TransactionDate,
        &q.vnp_CreateDate,
        &q.vnp_IpAddr,
        &q.vnp_OrderInfo,
    ]
    .map(String::as_str)
    .join("|");
    if sh.hash.verify_raw(&data, &q.vnp_SecureHash).is_err() {
        sh.inner
            .lock()
            .unwrap()
            .refused
            .push("querydr: checksum".into());
        return reply("97", "Invalid checksum", None);
    }
    if q.vnp_Command != "querydr"
        || q.vnp_Version != "2.1.0"
        || !is_date(&q.vnp_CreateDate)
        || !is_date(&q.vnp_TransactionDate)
    {
        sh.inner
            .lock()
            .unwrap()
            .refused
            .push("querydr: fields".into());
        return reply("03", "Invalid data format", None);
    }
    if q.vnp_TmnCode != sh.tmn_code {
        return reply("02", "Merchant is not valid", None);
    }
    let mut inner = sh.inner.lock().unwrap();
    if !inner.request_ids.insert(q.vnp_RequestId.clone()) {
        drop(inner);
        return reply("94", "Duplicate request", None);
    }
    let t = inner.txns.get(&q.vnp_TxnRef).cloned();
    drop(inner);
    match t {
        Some(t) if t.create_date == q.vnp_TransactionDate => reply("00", "Success", Some(&t)),
        _ => reply("91", "Transaction not found", None),
    }
}

/// Run the VNPay sandbox standalone until interrupted.
pub async fn run_standalone(port: u16) -> std::io::Result<()> {
    let s = VnPaySandbox::start(port, "GWSANDBX", "SANDBOXSECRET").await?;
    println!("VNPay sandbox listening on http://{}", s.addr);
    println!("  pay page     GET  {}", s.pay_url());
    println!("  querydr      POST {}", s.api_url());
    println!("  credentials  vnp_TmnCode \"GWSANDBX\", hash secret \"SANDBOXSECRET\"");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
