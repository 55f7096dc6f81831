//! A strict sandbox of the DVCQG payment platform (CONTRACTS.md §3).
//!
//! - `POST /thanhtoan/khoitao` — initiation: every listed field present, `MaXacThuc` valid
//!   (SHA-256 of the fields joined with `|`, the key last), `MaThamChieu` at most 20
//!   characters, `SoTien` whole VND, `MaTienTe` VND. The same `MaThamChieu` again with the same
//!   content is the same transaction (same answer); with other content, `MaLoi` `02`.
//! - `POST /thanhtoan/tracuu` — the query ([open] shape, mirrored by the gateway).
//! - The citizen pays or abandons ([`PlatformSandbox::pay`] / [`PlatformSandbox::abandon`]);
//!   [`PlatformSandbox::callback`] builds the signed result callback and
//!   [`PlatformSandbox::send_callback`] posts any body to the gateway and checks the reply is
//!   exactly `{MaLoi, MoTaLoi, MaDoiTac, MaThamChieu, ThoiGianGD, MaXacThuc}` with a valid
//!   `MaXacThuc`.
//! - Faults: `down` (503), `slow_ms` (answer after a delay, *after* recording: a lost answer).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use gw_crypto::checksum::{PaymentPlatform, PlatformMessage};
use gw_crypto::keys::Secret;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Why a callback sent to the gateway failed or got a reply off the contract; one variant per
/// check.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("callback not answered: {0}")]
    NotAnswered(#[source] reqwest::Error),
    #[error("callback answered HTTP {0}")]
    Status(StatusCode),
    #[error("reply is not JSON: {0}")]
    NotJson(#[source] reqwest::Error),
    #[error("reply is not an object")]
    NotObject,
    #[error("reply fields {0:?}")]
    Fields(Vec<String>),
    #[error("reply MaLoi {0}")]
    Code(String),
    #[error("reply MaXacThuc does not verify")]
    Signature,
}

pub const INIT_PATH: &str = "/thanhtoan/khoitao";
pub const QUERY_PATH: &str = "/thanhtoan/tracuu";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformTxn {
    pub reference: String,
    pub amount: i64,
    pub dossier: String,
    /// `01` pending, `00` paid, `02` failed.
    pub status: String,
    pub txn_no: String,
    /// How many initiations named it (retries included).
    pub inits: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformFaults {
    pub down: bool,
    /// Delay every initiation answer by this much, after recording it.
    pub slow_ms: u64,
}

#[derive(Default)]
struct Inner {
    txns: BTreeMap<String, PlatformTxn>,
    refused: Vec<String>,
    faults: PlatformFaults,
    next_no: u64,
}

struct Shared {
    partner: String,
    sum: PaymentPlatform,
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
    /// `MaXacThuc` of message `m` over the fields of `v` (field orders: gw-crypto's, shared
    /// with the gateway).
    fn sign(&self, m: PlatformMessage, v: &Value) -> String {
        self.sum.message(m).sign(|k| f(v, k)).expect("hash")
    }
    fn verifies(&self, m: PlatformMessage, v: &Value) -> bool {
        self.sum
            .message(m)
            .verify(|k| f(v, k), &f(v, "MaXacThuc"))
            .is_ok()
    }
    fn refuse(&self, why: &str) {
        self.inner.lock().unwrap().refused.push(why.to_string());
    }
}

/// A running payment platform sandbox.
#[derive(Clone)]
pub struct PlatformSandbox {
    shared: Arc<Shared>,
    pub addr: SocketAddr,
    http: reqwest::Client,
}

impl PlatformSandbox {
    pub async fn start(port: u16, partner: &str, key: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            partner: partner.into(),
            sum: PaymentPlatform::new(Secret::new(key)),
            inner: Mutex::new(Inner {
                next_no: 700_000,
                ..Default::default()
            }),
        });
        let app = Router::new()
            .route(INIT_PATH, post(init))
            .route(QUERY_PATH, post(query))
            .with_state(shared.clone());
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = l.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Ok(PlatformSandbox {
            shared,
            addr,
            http: reqwest::Client::new(),
        })
    }

    pub fn init_url(&self) -> String {
        format!("http://{}{INIT_PATH}", self.addr)
    }
    pub fn query_url(&self) -> String {
        format!("http://{}{QUERY_PATH}", self.addr)
    }
    pub fn set_faults(&self, faults: PlatformFaults) {
        self.shared.inner.lock().unwrap().faults = faults;
    }
    pub fn txn(&self, reference: &str) -> Option<PlatformTxn> {
        self.shared
            .inner
            .lock()
            .unwrap()
            .txns
            .get(reference)
            .cloned()
    }
    pub fn txns(&self) -> Vec<PlatformTxn> {
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

    pub fn pay(&self, reference: &str) -> bool {
        self.settle(reference, "00")
    }
    pub fn abandon(&self, reference: &str) -> bool {
        self.settle(reference, "02")
    }
    fn settle(&self, reference: &str, status: &str) -> bool {
        let mut g = self.shared.inner.lock().unwrap();
        g.next_no += 1;
        let no = format!("PP{}", g.next_no);
        match g.txns.get_mut(reference) {
            Some(t) if t.status == "01" => {
                t.status = status.into();
                t.txn_no = no;
                true
            }
            _ => false,
        }
    }

    /// The signed result callback of a transaction as it stands.
    pub fn callback(&self, reference: &str) -> Option<Value> {
        let t = self.txn(reference)?;
        Some(self.sign_callback(&t))
    }

    /// A correctly signed callback for arbitrary content.
    pub fn sign_callback(&self, t: &PlatformTxn) -> Value {
        let mut v = json!({
            "LoaiBanTin": "KetQuaGiaoDich",
            "MaLoi": if t.status == "00" { "00" } else { "02" },
            "MaDoiTac": self.shared.partner,
            "MaThamChieu": t.reference,
            "SoTien": t.amount.to_string(),
            "MaTienTe": "VND",
            "MaGiaoDich": t.txn_no,
            "MaNganHang": "VCB",
            "ThoiGianGD": "20260101083000",
            "ThongTinGiaoDich": "Thanh toan le phi",
            "MaHoSo": t.dossier,
        });
        v["MaXacThuc"] = self.shared.sign(PlatformMessage::Callback, &v).into();
        v
    }

    /// Post a callback body to the gateway; checks the reply strictly; returns its `MaLoi` and
    /// `MoTaLoi`.
    pub async fn send_callback(
        &self,
        url: &str,
        body: &Value,
    ) -> Result<(String, String), CallbackError> {
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
        let keys: Vec<&str> = a
            .as_object()
            .ok_or(CallbackError::NotObject)?
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec![
            "MaDoiTac",
            "MaLoi",
            "MaThamChieu",
            "MaXacThuc",
            "MoTaLoi",
            "ThoiGianGD",
        ];
        expected.sort_unstable();
        let mut got = keys.clone();
        got.sort_unstable();
        if got != expected {
            return Err(CallbackError::Fields(
                got.iter().map(|k| k.to_string()).collect(),
            ));
        }
        if !["00", "99"].contains(&f(&a, "MaLoi").as_str()) {
            return Err(CallbackError::Code(f(&a, "MaLoi")));
        }
        if !self.shared.verifies(PlatformMessage::CallbackReply, &a) {
            return Err(CallbackError::Signature);
        }
        Ok((f(&a, "MaLoi"), f(&a, "MoTaLoi")))
    }
}

async fn init(State(sh): State<Arc<Shared>>, Json(v): Json<Value>) -> Response {
    let (down, slow) = {
        let g = sh.inner.lock().unwrap();
        (g.faults.down, g.faults.slow_ms)
    };
    if down {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let answer = |code: &str, msg: &str, url: &str| {
        let mut a = json!({"MaLoi": code, "MoTaLoi": msg, "MaThamChieu": f(&v, "MaThamChieu"), "UrlThanhToan": url});
        a["MaXacThuc"] = sh.sign(PlatformMessage::InitAnswer, &a).into();
        Json(a).into_response()
    };
    for k in PlatformMessage::Init.fields() {
        if v.get(k).is_none() {
            sh.refuse(&format!("init: {k} missing"));
            return answer("01", &format!("Thieu {k}"), "");
        }
    }
    if !sh.verifies(PlatformMessage::Init, &v) {
        sh.refuse("init: MaXacThuc");
        return answer("97", "Sai ma xac thuc", "");
    }
    let reference = f(&v, "MaThamChieu");
    let amount = f(&v, "SoTien");
    let t = f(&v, "ThoiGianGD");
    if f(&v, "LoaiBanTin") != "KhoiTaoGiaoDich"
        || f(&v, "MaDoiTac") != sh.partner
        || reference.is_empty()
        || reference.chars().count() > 20
        || amount.is_empty()
        || !amount.bytes().all(|b| b.is_ascii_digit())
        || f(&v, "MaTienTe") != "VND"
        || t.len() != 14
    {
        sh.refuse("init: fields");
        return answer("01", "Du lieu khong hop le", "");
    }
    let amount: i64 = amount.parse().unwrap_or(0);
    let outcome = {
        let mut g = sh.inner.lock().unwrap();
        let e = g.txns.entry(reference.clone()).or_insert(PlatformTxn {
            reference: reference.clone(),
            amount,
            dossier: f(&v, "MaHoSo"),
            status: "01".into(),
            txn_no: String::new(),
            inits: 0,
        });
        e.inits += 1;
        e.amount == amount
    };
    if slow > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(slow)).await;
    }
    if !outcome {
        return answer("02", "MaThamChieu da ton tai", "");
    }
    answer(
        "00",
        "Thanh cong",
        &format!("https://thanhtoan.example/pay/{reference}"),
    )
}

async fn query(State(sh): State<Arc<Shared>>, Json(v): Json<Value>) -> Response {
    if sh.inner.lock().unwrap().faults.down {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let reference = f(&v, "MaThamChieu");
    let reply = |code: &str, t: Option<&PlatformTxn>| {
        let mut a = json!({
            "MaLoi": code,
            "MaDoiTac": sh.partner,
            "MaThamChieu": reference,
            "SoTien": t.map(|t| t.amount.to_string()).unwrap_or_default(),
            "TrangThai": t.map(|t| t.status.clone()).unwrap_or_default(),
            "MaGiaoDich": t.map(|t| t.txn_no.clone()).unwrap_or_default(),
        });
        a["MaXacThuc"] = sh.sign(PlatformMessage::QueryAnswer, &a).into();
        Json(a).into_response()
    };
    if !sh.verifies(PlatformMessage::Query, &v)
        || f(&v, "LoaiBanTin") != "TraCuuGiaoDich"
        || f(&v, "MaDoiTac") != sh.partner
    {
        sh.refuse("query: checksum or fields");
        return reply("97", None);
    }
    let t = sh.inner.lock().unwrap().txns.get(&reference).cloned();
    match t {
        Some(t) => reply("00", Some(&t)),
        None => reply("01", None),
    }
}

/// Run standalone until interrupted.
pub async fn run_standalone(port: u16) -> std::io::Result<()> {
    let s = PlatformSandbox::start(port, "GWDOITAC", "SANDBOXKEY").await?;
    println!(
        "DVCQG payment platform sandbox listening on http://{}",
        s.addr
    );
    println!("  initiation  POST {}", s.init_url());
    println!("  query       POST {}", s.query_url());
    println!("  credentials MaDoiTac \"GWDOITAC\", hash key \"SANDBOXKEY\"");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
