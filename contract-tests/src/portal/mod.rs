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
//!
//! # Files (one per role)
//!
//! - `services.rs`: the contract's service names; `config.rs`: [`PortalConfig`] and its
//!   defaults; `faults.rs`: [`Faults`] and [`RateLimit`]; `records.rs`: [`Records`].
//! - `state.rs`: the state behind the lock; `answer.rs`: the answer envelope.
//! - `auth.rs`: login and OAuth2 tokens; `sync.rs`: dossier sync, progress, status;
//!   `lookup.rs`: `TraCuuHoSo`; `dispatch.rs`: one call's path through the checks.
//! - `admin.rs`: `/_sandbox/*`; `server.rs`: [`Portal`], router and listener.
//! - `validate.rs`, `catalogue.rs`, `online.rs`, `net.rs`: item rules, the procedure catalogue,
//!   online dossiers, the killable listener.

mod admin;
mod answer;
mod auth;
mod catalogue;
mod config;
mod dispatch;
mod faults;
mod lookup;
mod net;
mod online;
mod records;
mod server;
mod services;
mod state;
mod sync;
mod validate;

pub use catalogue::{builtin as builtin_catalogue, Catalogue};
pub use config::{default_statuses, CodeStyle, ErrorCodes, OAuth2Clients, PortalConfig};
pub use faults::{FaultKind, Faults, RateLimit, Scripted};
pub use online::SVC_ONLINE_DOSSIERS;
pub use records::{
    DossierVersion, Entry, OrderViolation, Records, Refusal, SyncCheck, UnknownField,
};
pub use server::{run_standalone, run_standalone_with, Portal};
pub use services::{
    DEFAULT_UNIT, LOOKUP_PROGRESS, SVC_AGENCIES, SVC_FIELDS, SVC_LOOKUP, SVC_PROCEDURE,
    SVC_PROCEDURES, SVC_PROGRESS, SVC_STATUS, SVC_SYNC_DOSSIER,
};
pub use validate::is_portal_date;
