//! The Cloud Signature Consortium API v2 connector (remote signing, hash-only). Contract:
//! `shared/CONTRACTS.md` §4 ([likely]: the CSC v2 specification's names); the strict sandbox
//! is `gw_contract_tests::csc`.
//!
//! # Invariants
//! - Service authorization is OAuth2 client credentials through the shared
//!   [`crate::transport::lgsp::TokenCache`]: one token fetch for all concurrent callers,
//!   renewed a minute before expiry; a 401 drops the token (if still the one refused) and the
//!   call is repeated **once**.
//! - The signing sequence: `credentials/info` (the certificate, checked against the pin before
//!   anything is signed) → `credentials/authorize` (a SAD bound to exactly our hashes) →
//!   `signatures/signHash` with `operationMode` "A" (a `responseID`, then
//!   `signatures/signPolling`, [open] path) or "S" (the call waits for the official: the
//!   section's `timeout` must exceed `request_lifetime`).
//! - `clientData` carries the request id: a service that deduplicates on it (the sandbox does)
//!   never pushes one request twice; one that does not is protected only by the in-process
//!   guard and by the flow's store. A signHash whose answer is lost is in doubt
//!   ([`SignerError::InDoubt`]).
//! - Errors are `{error, error_description}`; the words for waiting, refused, expired and
//!   unknown are settings (defaults `pending`, `access_denied`, `expired`,
//!   `invalid_response_id`).
//!
//! # Files, one per role
//! `settings` the section resolved once; `session` the token; `request` the bodies; `client`
//! one authenticated call (renew once); `response` reading answers; `connector` the
//! [`CscSigner`]. Imports run `connector` → `client` → `session` → `request`, `response`,
//! `settings`.

mod client;
mod connector;
mod request;
mod response;
mod session;
mod settings;

pub use connector::CscSigner;
