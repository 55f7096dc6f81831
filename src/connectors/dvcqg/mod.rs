//! The national public service portal (DVCQG) connector. Contract: `shared/CONTRACTS.md` §1-2.
//!
//! # Invariants
//! - Every body carries `session` (session auth), `madonvi` and `service`; every request the
//!   `dstcode` header. Dates are `yyyyMMddHHmmss` in Vietnam time (UTC+7).
//! - The session is cached and shared: concurrent callers wait for one login. When the portal
//!   answers "session expired", the session is renewed and the call repeated **once**; a second
//!   expiry is a retryable failure, never a loop. OAuth2 tokens (LGSP) come from the shared
//!   [`crate::transport::lgsp::TokenCache`]: refreshed a minute before expiry, one refresh for
//!   all waiters, dropped and fetched again once on a 401.
//! - `error_code` 0 / "0" / "00" (number or string) is success; HTTP 200 with any other code is
//!   an error: retryable if configured so (`retryable_codes`), otherwise a refusal of the
//!   content (dead-lettered with the portal's message).
//! - **One bad item never takes its batch down**: only the items a refusal names get it.
//! - One [`crate::model::outcome::Health`] per HTTP exchange: a batch's health is carried by one of its
//!   items, so the circuit breaker counts calls, not items.
//! - Translation errors (unknown procedure code, a malformed canonical payload) are refusals:
//!   retrying cannot fix them.
//!
//! # Files, one per role
//! - `settings`: `[dvcqg]` resolved once at start; `session`: the session login or LGSP token;
//! - `request`: the portal's operations and the body and headers of a call; `client`: one
//!   authenticated call (sign, send, renew once, classify); `response`: reading answers;
//! - `sync`: the batched `DongBoHoSoMC` / `CapNhatTienDoHoSoMC`; `progress`: the progress
//!   payload as the portal's item; `lookup`: `TraCuuHoSo`, exchanges in doubt, the sharing
//!   endpoint; `connector`: the [`DvcqgConnector`] that ties them; `translate`: the canonical
//!   model to the portal's fields.
//!
//! Imports run one way: `connector` → `sync`/`lookup` → `client` → `session` → `request`,
//! `response`, `settings`; this file only declares and re-exports.

mod client;
mod connector;
mod lookup;
mod progress;
mod request;
mod response;
mod session;
pub mod settings;
mod sync;
pub mod translate;

pub use connector::DvcqgConnector;
pub use lookup::{SharingError, PROGRESS_LIST};
pub use request::service;
pub use settings::{SettingsError, TOKEN_MARGIN};
