//! A strict sandbox of Viettel MySign's remote signing API, CONTRACTS.md §4.
//!
//! # Enforced strictly ([seen] in client code)
//!
//! - JSON `POST`s (`Content-Type: application/json`, else 415; not a JSON object: 400).
//! - `POST /vtss/service/ras/v1/login {client_id, client_secret, user_id, profile_id}` → a
//!   bearer token for that user (`access_token`, `token_type`, `expires_in`): about an hour at
//!   the real service, [`MySignConfig::token_lifetime`] here. Every other call needs
//!   `Authorization: Bearer` with a live token **of the same user** (else HTTP 401).
//! - `POST /vtss/service/certificates/info {client_id, user_id, credentialID?, certificates,
//!   certInfo}` → the user's credentials with their certificate chain (base64 DER).
//! - `POST /vtss/service/signHash {client_id, credentialID, numSignatures, documents[], hash[],
//!   hashAlgo, signAlgo, async: 1}`: `numSignatures` = the number of `hash` = the number of
//!   `documents`; each `hash` a base64 **digest** whose length is `hashAlgo`'s (an OID); a
//!   document or a digest of another length is refused; `signAlgo` fits the key → `transactionId`.
//! - `POST /vtss/service/requests/status {transactionId}` → `status` `"0"` pending, `"1"` signed
//!   with `signatures[]` (base64, in the order of `hash`).
//!
//! # Configurable ([open]) — see [`MySignConfig`]
//!
//! - Statuses beyond "0"/"1": `"2"` rejected by the official, `"3"` expired; an unknown
//!   `transactionId` is HTTP 404. Refusals are HTTP 400 `{"code", "message"}`; a bad login 401.
//! - `async: 0` (a synchronous signHash) is refused: only the asynchronous flow is known.
//! - A signHash carrying the same `documents` names, hashes and credential as a pending one
//!   is **not** recognised as a repeat (the service gives no idempotency key): each reaches the
//!   phone. Clients must not repeat it.
//!
//! # Files
//! `config.rs` the settings; `auth.rs` login and tokens; `api.rs` the operations; `server.rs`
//! [`MySign`], the router, `/_sandbox/*` and `run_standalone`.

mod api;
mod auth;
mod config;
mod server;
mod state;

pub use config::MySignConfig;
pub use server::{run_standalone, MySign};
