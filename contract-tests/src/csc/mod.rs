//! A strict sandbox of a Cloud Signature Consortium API v2 service (remote signing,
//! hash-only), CONTRACTS.md §4.
//!
//! # Enforced strictly ([likely]: the CSC API v2 specification's field names)
//!
//! - `POST {base}/oauth2/token` (`application/x-www-form-urlencoded`,
//!   `grant_type=client_credentials`, `client_id`, `client_secret`) → a bearer token (service
//!   scope). Every other call: JSON (`Content-Type: application/json`, else 415) with
//!   `Authorization: Bearer` (else 401 `invalid_token`).
//! - `credentials/list {userID}` → `{credentialIDs}`.
//! - `credentials/info {credentialID, certificates: "none"|"single"|"chain", certInfo,
//!   authInfo}` → `{key {status, algo[], len}, cert {status, certificates[] (base64 DER, leaf
//!   first), serialNumber, subjectDN, issuerDN, validFrom, validTo}, auth {mode}, multisign}`.
//! - `credentials/authorize {credentialID, numSignatures, hashes[], hashAlgorithmOID}` →
//!   `{SAD, expiresIn}`: the SAD is bound to that credential and exactly those hashes.
//! - `signatures/signHash {credentialID, SAD, hashes[] (base64 digests of hashAlgorithmOID's
//!   length), hashAlgorithmOID, signAlgo, operationMode "S"|"A", clientData?}`: the SAD must be
//!   live and for these hashes; `signAlgo` must fit the key (RSASSA-PSS signs PSS).
//!   `"S"` (the default) answers `{signatures[]}` in the order of `hashes` once the official
//!   confirmed; `"A"` answers `{responseID}` at once.
//! - Errors are HTTP 400 (401 for tokens) `{"error", "error_description"}`.
//!
//! # Configurable ([open]) — see [`CscConfig`]
//!
//! - The base path (`/csc/v2`); the authorization mode is `implicit` (the official confirms on
//!   the phone at signHash, no PIN or OTP through the gateway).
//! - The asynchronous poll: `signatures/signPolling {responseID}` → `{signatures[]}` when
//!   signed; otherwise HTTP 400 with `error` `pending`, `access_denied` (the official
//!   refused), `expired` or `invalid_response_id` (unknown id).
//! - In synchronous mode an official who refuses gives `access_denied`, one who never answers
//!   `expired` (after [`CscConfig::lifetime`]).
//! - **Idempotency**: a signHash whose `clientData` names a request already pushed for the
//!   same credential answers that request (same `responseID`) and does not push again.
//!
//! # Files
//! `config.rs` settings; `auth.rs` the token endpoint, bearer tokens and SADs; `api.rs` the
//! credentials and signatures operations; `server.rs` [`Csc`], router, `run_standalone`.

mod api;
mod auth;
mod config;
mod server;
mod state;

pub use config::CscConfig;
pub use server::{run_standalone, Csc};
