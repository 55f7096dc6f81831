//! A strict sandbox of the national public service portal (DVCQG), CONTRACTS.md section 1.
//!
//! # Enforced strictly ([seen])
//!
//! - **Transport**: JSON over HTTP `POST` to the integration endpoint (login and the sync
//!   operations) and the sharing endpoint (catalogue and look-ups); the operation is the body's
//!   `service` field, never the path. A service sent to the wrong endpoint is refused.
//!   Every call needs `Content-Type: application/json` (HTTP 415 otherwise) and a `dstcode`
//!   header naming a configured unit (missing: HTTP 400; unknown: HTTP 200 + `unknown_unit`).
//!   A body that is not a JSON object: HTTP 400 + `malformed`. (Serving each service on its
//!   own endpoint only is the default; `strict_endpoints: false` accepts either.)
//! - **Session**: every non-login body carries `session`, `madonvi` (a configured unit code) and
//!   `service`. An unknown or expired session answers HTTP 200 with `error_code`
//!   `session_expired` (default `-2`) and a message; a fresh login then works.
//! - **Answers**: `{"error_code": 0 | "00" | <code>, "message": "…", "result": …}`, HTTP 200 for
//!   every refusal decided by the portal's rules (only transport violations and injected faults
//!   use other HTTP statuses).
//! - **Items**: the dossier item (`DongBoHoSoMC`) and the progress item (`CapNhatTienDoHoSoMC`)
//!   with exactly the contract's field names; required fields present and non-empty, dates
//!   `yyyyMMddHHmmss` that exist in the calendar, `TrangThaiHoSo` in the status table,
//!   `LoaiDoiTuong` "1" or "2", `MaTTHC` in the sandbox's catalogue, sub-item arrays validated
//!   item by item. `isUpdating` must be a boolean.
//! - **Batches**: a `data` array is validated item by item and **one bad item refuses the whole
//!   batch**; nothing of it is stored. The message names each bad item's index and field
//!   (`data[2].NgayTiepNhan: …`), `result.errors` lists them all.
//!
//! # Configurable ([open] / [likely]) — see [`PortalConfig`]
//!
//! - **Login** [open]: the contract only says "a login call with `{username, password}` answers
//!   `{session, error_code: 0}`". The sandbox accepts both
//!   `POST {integration_path}` with `{"service": "DangNhap", "username": "…", "password": "…"}`
//!   and `POST {login_path}` (default `/api/login`) with `{"username": "…", "password": "…"}`
//!   (a `service` field there is ignored); the login service name is also accepted on the
//!   sharing endpoint. All need the `dstcode` header and count in [`Records::logins`] when
//!   they succeed (so a test can check a client renews once, not in a loop). The answer is
//!   `{"session": "<token>", "error_code": 0, "message": "…"}` (session at top level).
//! - **Error codes** [open]: [`ErrorCodes`], default `-1` malformed, `-2` session expired,
//!   `-3` login failed, `-4` unknown unit, `-5` unknown service, `-6` invalid data,
//!   `-7` duplicate dossier, `-8` dossier not found, `-9` unknown procedure, `-10` system error
//!   (the injected "HTTP 200 with an error"). Success is `0` or `"00"`.
//! - **Code style** [seen that both exist]: [`CodeStyle`]: numbers, strings, or mixed (numbers on
//!   the integration endpoint, strings on the sharing endpoint).
//! - **Status table** [likely]: [`default_statuses`], codes 1..=10, replaceable.
//! - **Sub-item types** [likely]: `IsDeleted` boolean, `Gia`/`SoLuong` numbers, codes strings or
//!   integers. The sub-item arrays themselves are optional; `DanhSachHoSoBoSung` items only have
//!   to be objects (their fields are not public). `TrangThaiHoSo` may be `"4"` or `4`.
//! - **Existence rules** (on by default): `isUpdating=false` for a dossier code already stored →
//!   `duplicate`; `isUpdating=true` for one not stored → `not_found`; progress and status for an
//!   unknown dossier → `not_found`.
//! - **Unknown fields**: always reported (answer's `result.unknown_fields`, and
//!   [`Records::unknown_fields`]); refused as `invalid` when `strict_unknown_fields` is set.
//! - **`DongBoTrangThaiHoSo`** [likely]: the body is not public. The sandbox takes
//!   `{session, madonvi, service, data: [{MaHoSo, TrangThaiHoSo, NgayCapNhat, GhiChu?}]}`,
//!   `NgayCapNhat` a `yyyyMMddHHmmss` date. `TraCuuHoSo` then shows the newer status.
//! - **Look-ups**: `TraCuuHoSo` `{mahoso}` answers the stored dossier (last accepted version) as
//!   `result` or `not_found`; `result.TienDoXuLy` lists the accepted progress items (the list's
//!   name is an **assumption**, not in the public contract: see [`LOOKUP_PROGRESS`]); `LayThuTuc` `{MaTTHC}` answers the procedure record or
//!   `unknown_procedure`; `LayDanhSachTTHC` answers every full procedure record (so a client
//!   can detect changes), `LayDanhMucCoQuan` the agencies, `LayDanhMucLinhVuc` the fields.
//! - **Online dossiers** [open] (no operation is public): `LayDanhSachHoSoTrucTuyen`
//!   `{tuNgay?}` on the sharing endpoint lists the dossiers seeded with
//!   [`Portal::add_online_dossier`] from `NgayTiepNhan >= tuNgay` (see `online.rs`).
//!
//! # Records, faults, sandbox endpoints
//!
//! [`Records`] keep every accepted dossier version in arrival order (`seq` is one counter
//! across all requests, `index` the item's place in its batch), progress steps and status updates
//! per dossier, every refusal with its reason, unknown fields, calls per service, logins and
//! rate-limited requests. The portal cannot tell versions apart (the gateway cannot add fields),
//! so [`Records::check_sent`] and [`Records::ordering_violations`] compare the arrival order to
//! what the test sent.
//!
//! [`Faults`] inject, by rate or by script ([`Scripted`]: "the next N calls fail with X"):
//! 5xx, timeouts (the request is held `hold_ms`, then 504), HTTP 200 with `system_error`,
//! 429 with `Retry-After`, a fixed delay, connection resets (a real TCP RST: see `net.rs`),
//! session expiry, and a full outage (`down`: 503). A token-bucket [`RateLimit`] answers 429
//! beyond its rate and counts the excess. Faults apply to the portal endpoints (login
//! included), never to `/_sandbox/*`.
//!
//! Sandbox endpoints: `GET /_sandbox/records`, `GET|POST /_sandbox/faults` (JSON [`Faults`]),
//! `POST /_sandbox/expire-sessions`, `GET|POST /_sandbox/catalogue` (JSON [`Catalogue`]).

mod catalogue;
mod net;
mod online;
mod validate;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

pub use catalogue::{builtin as builtin_catalogue, Catalogue};
pub use online::SVC_ONLINE_DOSSIERS;
pub use validate::is_portal_date;

use net::{Conn, KillableListener};
use validate::{check_object, Issues, DOSSIER, PROGRESS, STATUS};

/// The default unit code (`madonvi` / `dstcode`).
pub const DEFAULT_UNIT: &str = "000.00.01.H22";

pub const SVC_SYNC_DOSSIER: &str = "DongBoHoSoMC";
pub const SVC_PROGRESS: &str = "CapNhatTienDoHoSoMC";
pub const SVC_STATUS: &str = "DongBoTrangThaiHoSo";
pub const SVC_LOOKUP: &str = "TraCuuHoSo";
pub const SVC_PROCEDURE: &str = "LayThuTuc";
pub const SVC_PROCEDURES: &str = "LayDanhSachTTHC";
pub const SVC_AGENCIES: &str = "LayDanhMucCoQuan";
pub const SVC_FIELDS: &str = "LayDanhMucLinhVuc";

const INTEGRATION_SERVICES: &[&str] = &[SVC_SYNC_DOSSIER, SVC_PROGRESS, SVC_STATUS];
const SHARING_SERVICES: &[&str] = &[
    SVC_LOOKUP,
    SVC_PROCEDURE,
    SVC_PROCEDURES,
    SVC_AGENCIES,
    SVC_FIELDS,
    SVC_ONLINE_DOSSIERS,
];

/// How `error_code` is written in answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeStyle {
    /// `0` and numbers (a non-numeric configured code stays a string).
    #[default]
    Number,
    /// `"00"` and strings.
    String,
    /// Numbers on the integration and login endpoints, strings on the sharing endpoint.
    Mixed,
}

/// The error codes the sandbox answers with ([open]: the real list is not public).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorCodes {
    pub malformed: String,
    pub session_expired: String,
    pub login_failed: String,
    pub unknown_unit: String,
    pub unknown_service: String,
    pub invalid: String,
    pub duplicate: String,
    pub not_found: String,
    pub unknown_procedure: String,
    pub system_error: String,
}

impl Default for ErrorCodes {
    fn default() -> Self {
        let s = |c: &str| c.to_string();
        ErrorCodes {
            malformed: s("-1"),
            session_expired: s("-2"),
            login_failed: s("-3"),
            unknown_unit: s("-4"),
            unknown_service: s("-5"),
            invalid: s("-6"),
            duplicate: s("-7"),
            not_found: s("-8"),
            unknown_procedure: s("-9"),
            system_error: s("-10"),
        }
    }
}

/// The dossier status table [likely] (CONTRACTS.md section 1), the one place it is kept.
pub fn default_statuses() -> BTreeMap<u32, String> {
    [
        "Mới đăng ký",
        "Được tiếp nhận",
        "Không được tiếp nhận",
        "Đang xử lý",
        "Yêu cầu bổ sung giấy tờ",
        "Yêu cầu thực hiện nghĩa vụ tài chính",
        "Công dân yêu cầu rút hồ sơ",
        "Dừng xử lý",
        "Đã xử lý xong",
        "Đã trả kết quả",
    ]
    .iter()
    .enumerate()
    .map(|(i, s)| (i as u32 + 1, s.to_string()))
    .collect()
}

/// The sandbox's settings. Every field has a default (`PortalConfig::default()`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PortalConfig {
    /// Unit codes accepted in `dstcode` and `madonvi`.
    pub units: Vec<String>,
    pub username: String,
    pub password: String,
    /// The login `service` name on the integration endpoint ([open], default `DangNhap`).
    pub login_service: String,
    /// A dedicated login path ([open], default `/api/login`).
    pub login_path: String,
    pub integration_path: String,
    pub sharing_path: String,
    /// Session lifetime in milliseconds (default one hour).
    pub session_ttl_ms: u64,
    pub code_style: CodeStyle,
    pub codes: ErrorCodes,
    /// Dossier status codes and their names.
    pub statuses: BTreeMap<u32, String>,
    /// Refuse (not only report) fields the contract does not know.
    pub strict_unknown_fields: bool,
    /// Refuse a service sent to the other endpoint (a look-up on the integration endpoint, a
    /// sync on the sharing one) with `unknown_service` (default true).
    pub strict_endpoints: bool,
    /// `isUpdating=false` for a stored dossier code → `duplicate`.
    pub refuse_duplicate_create: bool,
    /// `isUpdating=true` for an unknown dossier code → `not_found`.
    pub refuse_update_unknown: bool,
    /// Progress or status for an unknown dossier code → `not_found`.
    pub refuse_progress_unknown: bool,
    pub faults: Faults,
    /// The catalogue at start; `None` = [`builtin_catalogue`].
    pub catalogue: Option<Catalogue>,
    /// LGSP mode [seen in CONTRACTS.md §2]: when set, calls are authorized by
    /// `Authorization: Bearer <token>` from `POST {token_path}` (OAuth2 client credentials)
    /// instead of a session in the body.
    pub oauth2: Option<OAuth2Clients>,
    /// Path of the OAuth2 token endpoint (LGSP mode), default `/token`.
    pub token_path: String,
}

/// The client allowed to get tokens in LGSP mode, and how long tokens live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuth2Clients {
    pub client_id: String,
    pub client_secret: String,
    pub token_ttl_secs: u64,
}

impl Default for PortalConfig {
    fn default() -> Self {
        PortalConfig {
            units: vec![DEFAULT_UNIT.to_string()],
            username: "sandbox".into(),
            password: "sandbox-password".into(),
            login_service: "DangNhap".into(),
            login_path: "/api/login".into(),
            integration_path: "/api/integration".into(),
            sharing_path: "/api/sharing".into(),
            session_ttl_ms: 3_600_000,
            code_style: CodeStyle::Number,
            codes: ErrorCodes::default(),
            statuses: default_statuses(),
            strict_unknown_fields: false,
            strict_endpoints: true,
            refuse_duplicate_create: true,
            refuse_update_unknown: true,
            refuse_progress_unknown: true,
            faults: Faults::default(),
            catalogue: None,
            oauth2: None,
            token_path: "/token".into(),
        }
    }
}

/// A token bucket: `per_sec` tokens a second, at most `burst` saved.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    pub per_sec: f64,
    pub burst: u32,
}

/// A fault kind, for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// HTTP 500.
    ServerError,
    /// HTTP 200 with the `system_error` code.
    ErrorCode,
    /// HTTP 429 with `Retry-After`.
    TooManyRequests,
    /// Hold the request `hold_ms`, then HTTP 504.
    Timeout,
    /// Reset the TCP connection without answering.
    Reset,
    /// Expire every session, then handle the call (a non-login call answers `session_expired`).
    SessionExpired,
    /// HTTP 503, as in an outage.
    Down,
}

/// "The next `count` calls fail with `kind`".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scripted {
    pub kind: FaultKind,
    pub count: u32,
}

/// Faults to inject. Rates are shares in 0.0..=1.0, rolled once per call in this order: reset,
/// timeout, server error, 429, HTTP 200 with an error. A script, when not exhausted, wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    pub server_error_rate: f64,
    pub error_code_rate: f64,
    pub too_many_rate: f64,
    pub retry_after_secs: u64,
    pub timeout_rate: f64,
    /// How long a "timeout" holds the request (default 30 s).
    pub hold_ms: u64,
    /// Fixed delay before every answer.
    pub delay_ms: u64,
    pub reset_rate: f64,
    /// Full outage: every portal call answers 503.
    pub down: bool,
    pub rate_limit: Option<RateLimit>,
    /// Consumed front to back, one call at a time.
    pub script: Vec<Scripted>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            server_error_rate: 0.0,
            error_code_rate: 0.0,
            too_many_rate: 0.0,
            retry_after_secs: 1,
            timeout_rate: 0.0,
            hold_ms: 30_000,
            delay_ms: 0,
            reset_rate: 0.0,
            down: false,
            rate_limit: None,
            script: Vec::new(),
        }
    }
}

/// One accepted version of a dossier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DossierVersion {
    /// The request's arrival number (one counter for every request).
    pub seq: u64,
    /// The item's place in its batch.
    pub index: usize,
    pub is_updating: bool,
    /// The item exactly as received.
    pub item: Value,
    pub unknown_fields: Vec<String>,
}

/// One accepted progress step or status update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub index: usize,
    pub item: Value,
    pub unknown_fields: Vec<String>,
}

/// One refused request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub seq: u64,
    pub service: String,
    pub http_status: u16,
    /// The `error_code` answered (empty when the answer was not a portal body).
    pub error_code: String,
    pub reason: String,
    /// True for faults injected on purpose.
    pub injected: bool,
}

/// A field the contract does not know, as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownField {
    pub seq: u64,
    pub service: String,
    pub path: String,
}

/// Everything the portal saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Records {
    /// Accepted versions by dossier code, in arrival order.
    pub dossiers: BTreeMap<String, Vec<DossierVersion>>,
    /// OAuth2 tokens issued (LGSP mode).
    #[serde(default)]
    pub tokens_issued: u64,
    pub progress: BTreeMap<String, Vec<Entry>>,
    pub statuses: BTreeMap<String, Vec<Entry>>,
    pub refused: Vec<Refusal>,
    pub unknown_fields: Vec<UnknownField>,
    /// Calls per service (login counted as the login service name), faulted ones included.
    pub calls: BTreeMap<String, u64>,
    /// Successful logins.
    pub logins: u64,
    /// Requests answered 429 by the rate limit.
    pub rate_limited: u64,
    /// Injected faults by kind.
    pub injected: BTreeMap<String, u64>,
    /// Requests seen (the last `seq`).
    pub requests: u64,
}

/// An accepted version older than one accepted before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderViolation {
    pub dossier: String,
    pub seq: u64,
    pub version: i64,
    pub after_version: i64,
}

/// What the records say about the dossiers a test sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncCheck {
    /// Dossiers whose last sent version is not the last accepted one.
    pub missing: Vec<String>,
    /// Accepted versions that equal one already accepted for that dossier.
    pub duplicates: u64,
    /// Accepted versions sent before one accepted earlier.
    pub older_after_newer: u64,
    /// Accepted items that match nothing the test sent.
    pub unexpected: u64,
    pub accepted: u64,
}

impl Records {
    /// The last accepted item of a dossier.
    pub fn latest(&self, code: &str) -> Option<&Value> {
        self.dossiers
            .get(code)
            .and_then(|v| v.last())
            .map(|v| &v.item)
    }

    /// Accepted versions whose version (read by `version_of` from the item, e.g. from a marker
    /// the test put in `GhiChu`) is lower than one accepted before them for that dossier.
    pub fn ordering_violations<F>(&self, version_of: F) -> Vec<OrderViolation>
    where
        F: Fn(&str, &Value) -> Option<i64>,
    {
        let mut out = Vec::new();
        for (code, versions) in &self.dossiers {
            let mut newest: Option<i64> = None;
            for v in versions {
                let Some(n) = version_of(code, &v.item) else {
                    continue;
                };
                if let Some(m) = newest {
                    if n < m {
                        out.push(OrderViolation {
                            dossier: code.clone(),
                            seq: v.seq,
                            version: n,
                            after_version: m,
                        });
                    }
                }
                newest = Some(newest.map_or(n, |m| m.max(n)));
            }
        }
        out
    }

    /// Compare with what was sent: `sent` maps each dossier code to its items in the order the
    /// test produced them (the version is the position). Items are matched by JSON equality.
    pub fn check_sent(&self, sent: &BTreeMap<String, Vec<Value>>) -> SyncCheck {
        let mut c = SyncCheck::default();
        for (code, versions) in &self.dossiers {
            let list = sent.get(code);
            let mut seen = BTreeSet::new();
            let mut newest: Option<usize> = None;
            for v in versions {
                c.accepted += 1;
                let pos = list.and_then(|l| l.iter().rposition(|s| s == &v.item));
                let Some(p) = pos else {
                    c.unexpected += 1;
                    continue;
                };
                if !seen.insert(p) {
                    c.duplicates += 1;
                }
                if newest.is_some_and(|m| p < m) {
                    c.older_after_newer += 1;
                }
                newest = Some(newest.map_or(p, |m| m.max(p)));
            }
        }
        for (code, items) in sent {
            let ok = match (items.last(), self.latest(code)) {
                (Some(want), Some(got)) => want == got,
                (None, _) => true,
                _ => false,
            };
            if !ok {
                c.missing.push(code.clone());
            }
        }
        c
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

struct Inner {
    records: Records,
    faults: Faults,
    script: VecDeque<Scripted>,
    bucket: Option<Bucket>,
    sessions: HashMap<String, Instant>,
    /// LGSP mode: bearer tokens and their expiry.
    tokens: HashMap<String, Instant>,
    catalogue: Catalogue,
    /// Online dossiers served by `LayDanhSachHoSoTrucTuyen` ([open], see `online.rs`).
    online: Vec<Value>,
}

struct Shared {
    cfg: PortalConfig,
    inner: Mutex<Inner>,
}

impl Inner {
    fn set_faults(&mut self, f: Faults) {
        self.script = f.script.iter().copied().collect();
        self.bucket = f.rate_limit.map(|r| Bucket {
            tokens: f64::from(r.burst.max(1)),
            last: Instant::now(),
        });
        self.faults = f;
    }
}

/// A running portal sandbox.
#[derive(Clone)]
pub struct Portal {
    shared: Arc<Shared>,
    pub addr: SocketAddr,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Login,
    Integration,
    Sharing,
}

impl Portal {
    /// Start on `127.0.0.1:<port>` (0 = any free port).
    pub async fn start(port: u16, cfg: PortalConfig) -> std::io::Result<Portal> {
        let mut inner = Inner {
            records: Records::default(),
            faults: Faults::default(),
            script: VecDeque::new(),
            bucket: None,
            sessions: HashMap::new(),
            tokens: HashMap::new(),
            catalogue: cfg.catalogue.clone().unwrap_or_else(builtin_catalogue),
            online: Vec::new(),
        };
        inner.set_faults(cfg.faults.clone());
        let shared = Arc::new(Shared {
            inner: Mutex::new(inner),
            cfg,
        });
        let c = &shared.cfg;
        let app = Router::new()
            .route(&c.login_path, post(login_ep))
            .route(&c.integration_path, post(integration_ep))
            .route(&c.sharing_path, post(sharing_ep))
            .route(&c.token_path, post(token_ep))
            .route("/_sandbox/records", get(records_ep))
            .route("/_sandbox/faults", get(get_faults_ep).post(set_faults_ep))
            .route("/_sandbox/expire-sessions", post(expire_ep))
            .route(
                "/_sandbox/catalogue",
                get(get_catalogue_ep).post(set_catalogue_ep),
            )
            .with_state(shared.clone());
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = l.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(
                KillableListener(l),
                app.into_make_service_with_connect_info::<Conn>(),
            )
            .await;
        });
        Ok(Portal { shared, addr })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap()
    }

    pub fn config(&self) -> &PortalConfig {
        &self.shared.cfg
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn login_url(&self) -> String {
        format!("{}{}", self.base_url(), self.shared.cfg.login_path)
    }

    pub fn integration_url(&self) -> String {
        format!("{}{}", self.base_url(), self.shared.cfg.integration_path)
    }

    pub fn sharing_url(&self) -> String {
        format!("{}{}", self.base_url(), self.shared.cfg.sharing_path)
    }

    pub fn records(&self) -> Records {
        self.inner().records.clone()
    }

    /// Forget every record (sessions, catalogue and faults stay).
    pub fn clear_records(&self) {
        self.inner().records = Records::default();
    }

    pub fn refused(&self) -> Vec<Refusal> {
        self.inner().records.refused.clone()
    }

    /// Accepted versions of one dossier, in arrival order.
    pub fn dossier_versions(&self, code: &str) -> Vec<DossierVersion> {
        self.inner()
            .records
            .dossiers
            .get(code)
            .cloned()
            .unwrap_or_default()
    }

    pub fn logins(&self) -> u64 {
        self.inner().records.logins
    }

    /// Calls of one service (login under its service name).
    pub fn calls(&self, service: &str) -> u64 {
        self.inner()
            .records
            .calls
            .get(service)
            .copied()
            .unwrap_or(0)
    }

    /// Requests answered 429 by the rate limit.
    /// Requests seen so far, every service and answer included.
    pub fn requests(&self) -> u64 {
        self.inner().records.requests
    }

    pub fn rate_limited(&self) -> u64 {
        self.inner().records.rate_limited
    }

    pub fn faults(&self) -> Faults {
        self.inner().faults.clone()
    }

    /// Replace the faults (and restart the script and the rate limit's bucket).
    pub fn set_faults(&self, f: Faults) {
        self.inner().set_faults(f);
    }

    /// The next `count` calls fail with `kind` (appended to the current script).
    pub fn fail_next(&self, kind: FaultKind, count: u32) {
        let mut g = self.inner();
        g.script.push_back(Scripted { kind, count });
        g.faults.script.push(Scripted { kind, count });
    }

    /// A full outage (`true`) or the recovery (`false`).
    pub fn set_down(&self, down: bool) {
        self.inner().faults.down = down;
    }

    pub fn set_rate_limit(&self, r: Option<RateLimit>) {
        let mut g = self.inner();
        let mut f = g.faults.clone();
        f.rate_limit = r;
        f.script = g.script.iter().copied().collect();
        g.set_faults(f);
    }

    /// Forget every OAuth2 token now (LGSP mode).
    pub fn expire_tokens(&self) {
        self.inner().tokens.clear();
    }

    /// Expire every session now.
    pub fn expire_sessions(&self) {
        self.inner().sessions.clear();
    }

    pub fn catalogue(&self) -> Catalogue {
        self.inner().catalogue.clone()
    }

    pub fn set_catalogue(&self, c: Catalogue) {
        self.inner().catalogue = c;
    }

    /// Change one procedure record in place; false when the code is not in the catalogue.
    pub fn update_procedure(&self, code: &str, f: impl FnOnce(&mut Value)) -> bool {
        let mut g = self.inner();
        let p = g
            .catalogue
            .procedures
            .iter_mut()
            .find(|p| p.get("MATTHC").and_then(Value::as_str) == Some(code));
        match p {
            Some(p) => {
                f(p);
                true
            }
            None => false,
        }
    }

    /// Seed a dossier submitted online (served by `LayDanhSachHoSoTrucTuyen`, [open]); it
    /// should carry `MaHoSo` and `NgayTiepNhan` (`yyyyMMddHHmmss`).
    pub fn add_online_dossier(&self, dossier: Value) {
        self.inner().online.push(dossier);
    }
}

/// Run a sandbox portal with the default settings until Ctrl-C, printing its endpoints
/// (`gateway sandbox portal`).
pub async fn run_standalone(port: u16) -> std::io::Result<()> {
    run_standalone_with(port, PortalConfig::default()).await
}

/// [`run_standalone`] with chosen settings.
pub async fn run_standalone_with(port: u16, cfg: PortalConfig) -> std::io::Result<()> {
    let p = Portal::start(port, cfg.clone()).await?;
    println!("DVCQG portal sandbox listening on {}", p.base_url());
    println!(
        "  login        POST {}  {{\"username\",\"password\"}}",
        p.login_url()
    );
    println!(
        "  integration  POST {}  (service: {}, {SVC_SYNC_DOSSIER}, {SVC_PROGRESS}, {SVC_STATUS})",
        p.integration_url(),
        cfg.login_service
    );
    println!(
        "  sharing      POST {}  (service: {})",
        p.sharing_url(),
        SHARING_SERVICES.join(", ")
    );
    println!(
        "  headers      dstcode: {}, Content-Type: application/json",
        cfg.units.join(" | ")
    );
    println!(
        "  credentials  username {:?}, password {:?}",
        cfg.username, cfg.password
    );
    println!(
        "  sandbox      GET {0}/_sandbox/records, GET|POST {0}/_sandbox/faults, \
         POST {0}/_sandbox/expire-sessions, GET|POST {0}/_sandbox/catalogue",
        p.base_url()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Request handling

type St = State<Arc<Shared>>;

/// `POST {token_path}`: OAuth2 client credentials (LGSP mode).
async fn token_ep(st: St, form: axum::extract::Form<HashMap<String, String>>) -> Response {
    let Some(clients) = st.cfg.oauth2.clone() else {
        return (StatusCode::NOT_FOUND, "LGSP mode is off").into_response();
    };
    let f = &form.0;
    let ok = f.get("grant_type").map(String::as_str) == Some("client_credentials")
        && f.get("client_id") == Some(&clients.client_id)
        && f.get("client_secret") == Some(&clients.client_secret);
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let token = format!("{:032x}", rand::rng().random::<u128>());
    let mut g = st.inner.lock().unwrap();
    g.tokens.insert(
        token.clone(),
        Instant::now() + Duration::from_secs(clients.token_ttl_secs),
    );
    g.records.tokens_issued += 1;
    Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": clients.token_ttl_secs})).into_response()
}

async fn login_ep(st: St, ci: ConnectInfo<Conn>, h: HeaderMap, b: Bytes) -> Response {
    handle(Endpoint::Login, st.0, ci.0, h, b).await
}

async fn integration_ep(st: St, ci: ConnectInfo<Conn>, h: HeaderMap, b: Bytes) -> Response {
    handle(Endpoint::Integration, st.0, ci.0, h, b).await
}

async fn sharing_ep(st: St, ci: ConnectInfo<Conn>, h: HeaderMap, b: Bytes) -> Response {
    handle(Endpoint::Sharing, st.0, ci.0, h, b).await
}

/// One portal answer (always JSON).
struct Answer {
    http: StatusCode,
    /// `None` = success.
    code: Option<String>,
    message: String,
    result: Value,
    session: Option<String>,
    retry_after: Option<u64>,
}

impl Answer {
    fn ok(message: &str, result: Value) -> Answer {
        Answer {
            http: StatusCode::OK,
            code: None,
            message: message.into(),
            result,
            session: None,
            retry_after: None,
        }
    }

    fn err(code: &str, message: String) -> Answer {
        Answer {
            http: StatusCode::OK,
            code: Some(code.into()),
            message,
            result: Value::Null,
            session: None,
            retry_after: None,
        }
    }

    fn http(mut self, s: StatusCode) -> Answer {
        self.http = s;
        self
    }

    fn result(mut self, r: Value) -> Answer {
        self.result = r;
        self
    }
}

fn code_value(cfg: &PortalConfig, ep: Endpoint, code: Option<&str>) -> Value {
    let as_string = match cfg.code_style {
        CodeStyle::Number => false,
        CodeStyle::String => true,
        CodeStyle::Mixed => ep == Endpoint::Sharing,
    };
    match (code, as_string) {
        (None, true) => Value::from("00"),
        (None, false) => Value::from(0),
        (Some(c), true) => Value::from(c),
        (Some(c), false) => c.parse::<i64>().map(Value::from).unwrap_or(Value::from(c)),
    }
}

fn render(cfg: &PortalConfig, ep: Endpoint, a: Answer) -> Response {
    let mut body = Map::new();
    if let Some(s) = a.session {
        body.insert("session".into(), Value::from(s));
    }
    body.insert("error_code".into(), code_value(cfg, ep, a.code.as_deref()));
    body.insert("message".into(), Value::from(a.message));
    body.insert("result".into(), a.result);
    let mut r = (a.http, Json(Value::Object(body))).into_response();
    if let Some(s) = a.retry_after {
        r.headers_mut()
            .insert("retry-after", s.to_string().parse().unwrap());
    }
    r
}

/// Which fault, if any, this call gets.
fn pick_fault(g: &mut Inner) -> Option<FaultKind> {
    if let Some(front) = g.script.front_mut() {
        let kind = front.kind;
        front.count = front.count.saturating_sub(1);
        if front.count == 0 {
            g.script.pop_front();
        }
        // The visible script shows what is left.
        g.faults.script = g.script.iter().copied().collect();
        return Some(kind);
    }
    let f = &g.faults;
    let roll: f64 = rand::rng().random();
    let mut acc = 0.0;
    for (rate, kind) in [
        (f.reset_rate, FaultKind::Reset),
        (f.timeout_rate, FaultKind::Timeout),
        (f.server_error_rate, FaultKind::ServerError),
        (f.too_many_rate, FaultKind::TooManyRequests),
        (f.error_code_rate, FaultKind::ErrorCode),
    ] {
        acc += rate;
        if rate > 0.0 && roll < acc {
            return Some(kind);
        }
    }
    None
}

fn fault_name(k: FaultKind) -> &'static str {
    match k {
        FaultKind::ServerError => "server_error",
        FaultKind::ErrorCode => "error_code",
        FaultKind::TooManyRequests => "too_many_requests",
        FaultKind::Timeout => "timeout",
        FaultKind::Reset => "reset",
        FaultKind::SessionExpired => "session_expired",
        FaultKind::Down => "down",
    }
}

/// Take a token; `Err(retry_after_secs)` when the bucket is empty.
fn take_token(g: &mut Inner) -> Result<(), u64> {
    let Some(rl) = g.faults.rate_limit else {
        return Ok(());
    };
    let now = Instant::now();
    let b = g.bucket.get_or_insert(Bucket {
        tokens: f64::from(rl.burst.max(1)),
        last: now,
    });
    let rate = rl.per_sec.max(1e-9);
    b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate)
        .min(f64::from(rl.burst.max(1)));
    b.last = now;
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        Ok(())
    } else {
        Err((((1.0 - b.tokens) / rate).ceil() as u64).max(1))
    }
}

fn record_refusal(g: &mut Inner, seq: u64, service: &str, a: &Answer, injected: bool) {
    g.records.refused.push(Refusal {
        seq,
        service: service.to_string(),
        http_status: a.http.as_u16(),
        error_code: a.code.clone().unwrap_or_default(),
        reason: a.message.clone(),
        injected,
    });
}

async fn handle(
    ep: Endpoint,
    sh: Arc<Shared>,
    conn: Conn,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let cfg = &sh.cfg;
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let service = match ep {
        Endpoint::Login => cfg.login_service.clone(),
        _ => parsed
            .as_ref()
            .and_then(|v| v.get("service"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    };

    // Arrival, outage, rate limit, fault choice: one lock, no await inside.
    let (seq, delay, fault, early) = {
        let mut g = sh.inner.lock().unwrap();
        g.records.requests += 1;
        let seq = g.records.requests;
        *g.records.calls.entry(service.clone()).or_default() += 1;
        let mut early = None;
        let mut fault = None;
        if g.faults.down {
            *g.records.injected.entry("down".into()).or_default() += 1;
            let a = Answer::err(
                &cfg.codes.system_error,
                "portal is down (sandbox outage)".into(),
            )
            .http(StatusCode::SERVICE_UNAVAILABLE);
            record_refusal(&mut g, seq, &service, &a, true);
            early = Some(a);
        } else if let Err(after) = take_token(&mut g) {
            g.records.rate_limited += 1;
            let mut a = Answer::err(
                &cfg.codes.system_error,
                "rate limit exceeded, retry later".into(),
            )
            .http(StatusCode::TOO_MANY_REQUESTS);
            a.retry_after = Some(after);
            record_refusal(&mut g, seq, &service, &a, false);
            early = Some(a);
        } else {
            fault = pick_fault(&mut g);
            if let Some(k) = fault {
                *g.records.injected.entry(fault_name(k).into()).or_default() += 1;
            }
        }
        (seq, g.faults.delay_ms, fault, early)
    };
    if let Some(a) = early {
        return render(cfg, ep, a);
    }
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if let Some(kind) = fault {
        let (injected_answer, hold) = {
            let mut g = sh.inner.lock().unwrap();
            let a = match kind {
                FaultKind::ServerError => Some(
                    Answer::err(&cfg.codes.system_error, "injected internal error".into())
                        .http(StatusCode::INTERNAL_SERVER_ERROR),
                ),
                FaultKind::ErrorCode => Some(Answer::err(
                    &cfg.codes.system_error,
                    "Hệ thống đang bận (injected HTTP 200 with an error)".into(),
                )),
                FaultKind::TooManyRequests => {
                    let mut a = Answer::err(&cfg.codes.system_error, "injected 429".into())
                        .http(StatusCode::TOO_MANY_REQUESTS);
                    a.retry_after = Some(g.faults.retry_after_secs);
                    Some(a)
                }
                FaultKind::Timeout => Some(
                    Answer::err(&cfg.codes.system_error, "injected timeout".into())
                        .http(StatusCode::GATEWAY_TIMEOUT),
                ),
                FaultKind::Reset => Some(
                    Answer::err(&cfg.codes.system_error, "injected connection reset".into())
                        .http(StatusCode::INTERNAL_SERVER_ERROR),
                ),
                FaultKind::Down => Some(
                    Answer::err(&cfg.codes.system_error, "injected outage".into())
                        .http(StatusCode::SERVICE_UNAVAILABLE),
                ),
                FaultKind::SessionExpired => {
                    g.sessions.clear();
                    None
                }
            };
            if let Some(a) = &a {
                record_refusal(&mut g, seq, &service, a, true);
            }
            (a, g.faults.hold_ms)
        };
        if let Some(a) = injected_answer {
            match kind {
                FaultKind::Timeout => tokio::time::sleep(Duration::from_millis(hold)).await,
                FaultKind::Reset => conn.kill(),
                _ => {}
            }
            return render(cfg, ep, a);
        }
    }

    let answer = {
        let mut g = sh.inner.lock().unwrap();
        let a = serve(ep, cfg, &mut g, seq, &service, &headers, parsed);
        if a.code.is_some() {
            record_refusal(&mut g, seq, &service, &a, false);
        }
        a
    };
    render(cfg, ep, answer)
}

/// The contract: transport checks, login, session, then the operation.
fn serve(
    ep: Endpoint,
    cfg: &PortalConfig,
    g: &mut Inner,
    seq: u64,
    service: &str,
    headers: &HeaderMap,
    parsed: Option<Value>,
) -> Answer {
    let codes = &cfg.codes;
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .trim()
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Answer::err(
            &codes.malformed,
            format!("Content-Type must be application/json, got {ct:?}"),
        )
        .http(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let Some(dst) = headers.get("dstcode").and_then(|v| v.to_str().ok()) else {
        return Answer::err(&codes.malformed, "header dstcode is required".into())
            .http(StatusCode::BAD_REQUEST);
    };
    if !cfg.units.iter().any(|u| u == dst) {
        return Answer::err(
            &codes.unknown_unit,
            format!("dstcode {dst:?} is not a known unit"),
        );
    }
    let Some(Value::Object(body)) = parsed else {
        return Answer::err(&codes.malformed, "the body must be a JSON object".into())
            .http(StatusCode::BAD_REQUEST);
    };

    // Login on the login path, or by its service name on either endpoint.
    if ep == Endpoint::Login || service == cfg.login_service {
        return login(cfg, g, &body);
    }

    let allowed: &[&str] = match ep {
        Endpoint::Integration => INTEGRATION_SERVICES,
        _ => SHARING_SERVICES,
    };
    if service.is_empty() {
        return Answer::err(&codes.malformed, "field service is required".into());
    }
    let known_elsewhere =
        INTEGRATION_SERVICES.contains(&service) || SHARING_SERVICES.contains(&service);
    if !allowed.contains(&service) && (cfg.strict_endpoints || !known_elsewhere) {
        let other = if INTEGRATION_SERVICES.contains(&service) {
            " (it is served on the integration endpoint)"
        } else if SHARING_SERVICES.contains(&service) {
            " (it is served on the sharing endpoint)"
        } else {
            ""
        };
        return Answer::err(
            &codes.unknown_service,
            format!("unknown service {service:?} on this endpoint{other}"),
        );
    }
    match body.get("madonvi").and_then(Value::as_str) {
        None => return Answer::err(&codes.malformed, "field madonvi is required".into()),
        Some(u) if !cfg.units.iter().any(|x| x == u) => {
            return Answer::err(
                &codes.unknown_unit,
                format!("madonvi {u:?} is not a known unit"),
            )
        }
        Some(_) => {}
    }
    let now = Instant::now();
    if cfg.oauth2.is_some() {
        // LGSP mode: the bearer token authorizes the call; no session in the body.
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        match g.tokens.get(bearer) {
            Some(exp) if *exp > now => {}
            _ => {
                return Answer::err(
                    &codes.session_expired,
                    "invalid or expired bearer token".into(),
                )
                .http(StatusCode::UNAUTHORIZED)
            }
        }
    }
    let session = body.get("session").and_then(Value::as_str);
    let session = match (session, cfg.oauth2.is_some()) {
        (Some(s), _) => s,
        (None, true) => "",
        (None, false) => return Answer::err(&codes.malformed, "field session is required".into()),
    };
    match g.sessions.get(session) {
        _ if cfg.oauth2.is_some() => {}
        Some(exp) if *exp > now => {}
        Some(_) => {
            g.sessions.remove(session);
            return Answer::err(
                &codes.session_expired,
                "Phiên làm việc đã hết hạn (session expired), log in again".into(),
            );
        }
        None => {
            return Answer::err(
                &codes.session_expired,
                "Phiên làm việc không hợp lệ hoặc đã hết hạn (unknown or expired session)".into(),
            )
        }
    }

    // Top-level fields.
    let extra: &[&str] = match service {
        SVC_SYNC_DOSSIER => &["isUpdating", "data"],
        SVC_PROGRESS | SVC_STATUS => &["data"],
        SVC_LOOKUP => &["mahoso"],
        SVC_PROCEDURE => &["MaTTHC"],
        SVC_ONLINE_DOSSIERS => &["tuNgay"],
        _ => &[],
    };
    let mut issues = Issues::default();
    for k in body.keys() {
        if !["session", "madonvi", "service"].contains(&k.as_str()) && !extra.contains(&k.as_str())
        {
            issues.unknown.push(format!("body.{k}"));
        }
    }
    match service {
        SVC_SYNC_DOSSIER | SVC_PROGRESS | SVC_STATUS => sync(cfg, g, seq, service, &body, issues),
        SVC_LOOKUP => {
            if let Some(a) = unknown_refusal(cfg, g, seq, service, &issues) {
                return a;
            }
            let Some(code) = body.get("mahoso").and_then(Value::as_str) else {
                return Answer::err(&codes.invalid, "mahoso: required string".into());
            };
            match current_dossier(g, code) {
                Some(item) => Answer::ok("Thành công", item),
                None => Answer::err(&codes.not_found, format!("dossier {code:?} not found")),
            }
        }
        SVC_PROCEDURE => {
            if let Some(a) = unknown_refusal(cfg, g, seq, service, &issues) {
                return a;
            }
            let Some(code) = body.get("MaTTHC").and_then(Value::as_str) else {
                return Answer::err(&codes.invalid, "MaTTHC: required string".into());
            };
            match g.catalogue.procedure(code) {
                Some(p) => Answer::ok("Thành công", p.clone()),
                None => Answer::err(
                    &codes.unknown_procedure,
                    format!("procedure {code:?} is not in the catalogue"),
                ),
            }
        }
        SVC_ONLINE_DOSSIERS => {
            if let Some(a) = unknown_refusal(cfg, g, seq, service, &issues) {
                return a;
            }
            let from = match body.get("tuNgay") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if is_portal_date(s) => Some(s.as_str()),
                Some(_) => {
                    return Answer::err(&codes.invalid, "tuNgay: a yyyyMMddHHmmss date".into())
                }
            };
            Answer::ok("Thành công", Value::Array(online::list(&g.online, from)))
        }
        _ => {
            if let Some(a) = unknown_refusal(cfg, g, seq, service, &issues) {
                return a;
            }
            let list = match service {
                SVC_PROCEDURES => g.catalogue.procedures.clone(),
                SVC_AGENCIES => g.catalogue.agencies.clone(),
                _ => g.catalogue.fields.clone(),
            };
            Answer::ok("Thành công", Value::Array(list))
        }
    }
}

/// Record unknown top-level fields of a look-up; refuse them when strict.
fn unknown_refusal(
    cfg: &PortalConfig,
    g: &mut Inner,
    seq: u64,
    service: &str,
    issues: &Issues,
) -> Option<Answer> {
    for p in &issues.unknown {
        g.records.unknown_fields.push(UnknownField {
            seq,
            service: service.into(),
            path: p.clone(),
        });
    }
    if cfg.strict_unknown_fields && !issues.unknown.is_empty() {
        return Some(
            Answer::err(
                &cfg.codes.invalid,
                format!("unknown fields: {}", issues.unknown.join(", ")),
            )
            .result(json!({"errors": [], "unknown_fields": issues.unknown})),
        );
    }
    None
}

/// The progress list in a `TraCuuHoSo` answer. The name is an **assumption** of this sandbox
/// (and of the gateway's in-doubt resolution): the portal's look-up answer is public only for
/// the dossier's own fields.
pub const LOOKUP_PROGRESS: &str = "TienDoXuLy";

fn current_dossier(g: &Inner, code: &str) -> Option<Value> {
    let last = g.records.dossiers.get(code)?.last()?;
    let mut item = last.item.clone();
    let steps: Vec<Value> = g
        .records
        .progress
        .get(code)
        .map(|s| s.iter().map(|e| e.item.clone()).collect())
        .unwrap_or_default();
    if let Some(o) = item.as_object_mut() {
        o.insert(LOOKUP_PROGRESS.into(), Value::Array(steps));
    }
    if let Some(st) = g.records.statuses.get(code).and_then(|s| s.last()) {
        if (st.seq, st.index) > (last.seq, last.index) {
            if let (Some(o), Some(s)) = (item.as_object_mut(), st.item.get("TrangThaiHoSo")) {
                o.insert("TrangThaiHoSo".into(), s.clone());
            }
        }
    }
    Some(item)
}

fn login(cfg: &PortalConfig, g: &mut Inner, body: &Map<String, Value>) -> Answer {
    let user = body.get("username").and_then(Value::as_str);
    let pass = body.get("password").and_then(Value::as_str);
    let (Some(user), Some(pass)) = (user, pass) else {
        return Answer::err(
            &cfg.codes.malformed,
            "login needs username and password strings".into(),
        );
    };
    if user != cfg.username || pass != cfg.password {
        return Answer::err(
            &cfg.codes.login_failed,
            "Tên đăng nhập hoặc mật khẩu không đúng (login failed)".into(),
        );
    }
    let token: String = {
        let mut r = rand::rng();
        (0..32)
            .map(|_| char::from_digit(r.random_range(0..16), 16).unwrap())
            .collect()
    };
    let now = Instant::now();
    g.sessions.retain(|_, exp| *exp > now);
    g.sessions.insert(
        token.clone(),
        now + Duration::from_millis(cfg.session_ttl_ms),
    );
    g.records.logins += 1;
    let mut a = Answer::ok("Đăng nhập thành công", Value::Null);
    a.session = Some(token);
    a
}

/// `DongBoHoSoMC`, `CapNhatTienDoHoSoMC`, `DongBoTrangThaiHoSo`: validate the whole batch, then
/// store all of it or nothing.
fn sync(
    cfg: &PortalConfig,
    g: &mut Inner,
    seq: u64,
    service: &str,
    body: &Map<String, Value>,
    mut issues: Issues,
) -> Answer {
    let codes = &cfg.codes;
    let statuses: BTreeSet<u32> = cfg.statuses.keys().copied().collect();
    let is_updating = if service == SVC_SYNC_DOSSIER {
        match body.get("isUpdating") {
            Some(Value::Bool(b)) => Some(*b),
            other => {
                issues.errors.push(format!(
                    "isUpdating: must be true or false, got {}",
                    other.map_or("nothing".to_string(), Value::to_string)
                ));
                None
            }
        }
    } else {
        None
    };
    let spec = match service {
        SVC_SYNC_DOSSIER => DOSSIER,
        SVC_PROGRESS => PROGRESS,
        _ => STATUS,
    };
    let empty = Vec::new();
    let data = match body.get("data") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => {
            issues.errors.push("data: must not be empty".into());
            &empty
        }
        other => {
            issues.errors.push(format!(
                "data: must be an array, got {}",
                other.map_or("nothing".to_string(), Value::to_string)
            ));
            &empty
        }
    };
    let mut item_unknown: Vec<Vec<String>> = Vec::new();
    for (i, item) in data.iter().enumerate() {
        let mut it = Issues::default();
        check_object(&format!("data[{i}]"), item, spec, &statuses, &mut it);
        issues.errors.extend(it.errors);
        issues.unknown.extend(it.unknown.iter().cloned());
        item_unknown.push(it.unknown);
    }
    for p in &issues.unknown {
        g.records.unknown_fields.push(UnknownField {
            seq,
            service: service.into(),
            path: p.clone(),
        });
    }
    if cfg.strict_unknown_fields {
        for p in &issues.unknown {
            issues
                .errors
                .push(format!("{p}: unknown field (strict_unknown_fields)"));
        }
    }
    let refuse = |code: &str, what: &str, errors: &[String], unknown: &[String]| {
        let shown: Vec<&str> = errors.iter().take(10).map(String::as_str).collect();
        let more = if errors.len() > 10 {
            format!(" (and {} more)", errors.len() - 10)
        } else {
            String::new()
        };
        Answer::err(
            code,
            format!(
                "{what}; the whole batch is refused: {}{more}",
                shown.join("; ")
            ),
        )
        .result(json!({"errors": errors, "unknown_fields": unknown}))
    };
    if !issues.errors.is_empty() {
        return refuse(
            &codes.invalid,
            "Dữ liệu không hợp lệ (invalid data)",
            &issues.errors,
            &issues.unknown,
        );
    }

    let code_of = |v: &Value| {
        v.get("MaHoSo")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    if service == SVC_SYNC_DOSSIER {
        let unknown_proc: Vec<String> = data
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let p = v.get("MaTTHC").and_then(Value::as_str).unwrap_or("");
                (!g.catalogue.contains(p))
                    .then(|| format!("data[{i}].MaTTHC: procedure {p:?} is not in the catalogue"))
            })
            .collect();
        if !unknown_proc.is_empty() {
            return refuse(
                &codes.unknown_procedure,
                "Thủ tục không tồn tại (unknown procedure)",
                &unknown_proc,
                &issues.unknown,
            );
        }
        let updating = is_updating.unwrap_or(false);
        let mut in_batch = BTreeSet::new();
        let (mut dup, mut missing) = (Vec::new(), Vec::new());
        for (i, v) in data.iter().enumerate() {
            let c = code_of(v);
            let exists = g.records.dossiers.contains_key(&c) || in_batch.contains(&c);
            if !updating && exists && cfg.refuse_duplicate_create {
                dup.push(format!(
                    "data[{i}].MaHoSo: dossier {c:?} already exists (isUpdating=false)"
                ));
            }
            if updating && !exists && cfg.refuse_update_unknown {
                missing.push(format!(
                    "data[{i}].MaHoSo: dossier {c:?} does not exist (isUpdating=true)"
                ));
            }
            in_batch.insert(c);
        }
        if !dup.is_empty() {
            return refuse(
                &codes.duplicate,
                "Hồ sơ đã tồn tại (duplicate dossier)",
                &dup,
                &issues.unknown,
            );
        }
        if !missing.is_empty() {
            return refuse(
                &codes.not_found,
                "Hồ sơ không tồn tại (dossier not found)",
                &missing,
                &issues.unknown,
            );
        }
        for (i, v) in data.iter().enumerate() {
            g.records
                .dossiers
                .entry(code_of(v))
                .or_default()
                .push(DossierVersion {
                    seq,
                    index: i,
                    is_updating: updating,
                    item: v.clone(),
                    unknown_fields: item_unknown[i].clone(),
                });
        }
    } else {
        if cfg.refuse_progress_unknown {
            let missing: Vec<String> = data
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    let c = code_of(v);
                    (!g.records.dossiers.contains_key(&c))
                        .then(|| format!("data[{i}].MaHoSo: dossier {c:?} does not exist"))
                })
                .collect();
            if !missing.is_empty() {
                return refuse(
                    &codes.not_found,
                    "Hồ sơ không tồn tại (dossier not found)",
                    &missing,
                    &issues.unknown,
                );
            }
        }
        for (i, v) in data.iter().enumerate() {
            let target = if service == SVC_PROGRESS {
                &mut g.records.progress
            } else {
                &mut g.records.statuses
            };
            target.entry(code_of(v)).or_default().push(Entry {
                seq,
                index: i,
                item: v.clone(),
                unknown_fields: item_unknown[i].clone(),
            });
        }
    }
    Answer::ok(
        "Thành công",
        json!({"accepted": data.len(), "unknown_fields": issues.unknown}),
    )
}

// ---------------------------------------------------------------------------------------------
// Sandbox endpoints

async fn records_ep(State(sh): St) -> Json<Records> {
    Json(sh.inner.lock().unwrap().records.clone())
}

async fn get_faults_ep(State(sh): St) -> Json<Faults> {
    Json(sh.inner.lock().unwrap().faults.clone())
}

async fn set_faults_ep(State(sh): St, Json(f): Json<Faults>) -> StatusCode {
    sh.inner.lock().unwrap().set_faults(f);
    StatusCode::NO_CONTENT
}

async fn expire_ep(State(sh): St) -> StatusCode {
    sh.inner.lock().unwrap().sessions.clear();
    StatusCode::NO_CONTENT
}

async fn get_catalogue_ep(State(sh): St) -> Json<Catalogue> {
    Json(sh.inner.lock().unwrap().catalogue.clone())
}

async fn set_catalogue_ep(State(sh): St, Json(c): Json<Catalogue>) -> StatusCode {
    sh.inner.lock().unwrap().catalogue = c;
    StatusCode::NO_CONTENT
}
