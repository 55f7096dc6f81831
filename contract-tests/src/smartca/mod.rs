//! A strict sandbox of VNPT SmartCA's remote signing API, CONTRACTS.md §4.
//!
//! # Enforced strictly ([seen] in client code)
//!
//! - JSON `POST`s (`Content-Type: application/json`, else 415; a body that is not a JSON
//!   object: 400) carrying **`sp_id` and `sp_password` in every body** (missing or wrong: 401).
//! - `POST /v1/credentials/get_certificate {sp_id, sp_password, user_id, serial_number?,
//!   transaction_id}` → `data.user_certificates[{cert_id, serial_number, cert_valid_from,
//!   cert_valid_to, cert_data}]` (`cert_data` base64 DER; `chain_data` the issuer chain).
//! - `POST /v1/signatures/sign {sp_id, sp_password, user_id, transaction_id, transaction_desc,
//!   serial_number, time_stamp, sign_files[{doc_id, file_type, sign_type, data_to_be_signed}]}`:
//!   every field present; `sign_type` must be `"hash"`; `data_to_be_signed` must be a **hex
//!   digest** of 32, 48 or 64 bytes (SHA-256/384/512 by length): a document, base64 or any
//!   other length is refused with `INVALID_HASH`; `serial_number` must be the official's
//!   certificate's. Answers `data {transaction_id, tran_code}`.
//! - `POST /v1/signatures/sign/{transaction_id}/status {sp_id, sp_password}`: the request's
//!   state; `signatures[{doc_id, signature_value}]` (base64) once signed.
//!
//! # Configurable ([open]) — see [`SmartCaConfig`]
//!
//! - The answer envelope: `{"status_code": 200, "message": WORD, "data": …}` with HTTP 200 for
//!   every answer the service decides (HTTP 401 for bad SP credentials, 400 for a malformed
//!   body); the status words `WAITING`, `SUCCESS`, `REJECTED`, `EXPIRED`; an unknown
//!   transaction `status_code` 404 `TRANSACTION_NOT_FOUND`.
//! - **Idempotency**: the client names the transaction (`transaction_id`). A second `sign` with
//!   a known `transaction_id` is answered as the first was and **not pushed again** to the
//!   phone ([`crate::officials::SignRecords::pushes`]).
//! - `time_stamp` `yyyyMMddHHmmss`; `file_type` any non-empty string; the status path takes the
//!   client's `transaction_id` (the `tran_code` is informative).
//! - Whether signatures are raw or CMS: raw (RSA PKCS#1 v1.5, ECDSA DER).
//!
//! # Records, faults, sandbox endpoints
//! Shared with the other signing sandboxes ([`crate::officials`]): the officials, their phones,
//! [`crate::officials::SignFaults`], [`crate::officials::SignRecords`]. `GET /_sandbox/records`,
//! `GET|POST /_sandbox/faults`.
//!
//! # Files
//! `config.rs` the settings; `api.rs` the three operations; `server.rs` [`SmartCa`], the
//! router, the sandbox endpoints and `run_standalone`.

mod api;
mod config;
mod server;
mod state;

pub use config::SmartCaConfig;
pub use server::{run_standalone, SmartCa};
