//! The Viettel MySign connector (remote signing, hash-only). Contract: `shared/CONTRACTS.md`
//! §4; the strict sandbox is `gw_contract_tests::mysign`.
//!
//! # Invariants
//! - **One login for all concurrent requests**: a token is per official (the login names the
//!   `user_id`), cached until a minute before `expires_in`; concurrent callers of one official
//!   wait for the same login. A 401 drops the token only if it is still the one refused, and
//!   the call is repeated **once** after one re-login; a second 401 is a failed login, never a
//!   loop. The login body carries `client_secret`: sent unobserved, noted redacted.
//! - Only digests leave the gateway: `hash[]` base64 digests, `documents[]` names only (the
//!   request id), `async: 1`.
//! - MySign chooses the transaction id and offers no look-up by our request id: a signHash
//!   whose answer is lost is **in doubt** ([`SignerError::InDoubt`]) and never sent again
//!   blindly (the phone might get it twice). Within one process a request id is submitted once.
//! - `status` "0" waiting and "1" signed are [seen]; "2" rejected, "3" expired and HTTP 404 for
//!   an unknown id are [open] settings (`[signers.NAME.codes]`).
//!
//! # Files, one per role
//! `settings` the section resolved once; `session` the per-official token cache; `request`
//! the bodies; `client` one authenticated call (renew once); `response` reading answers;
//! `connector` the [`MySignSigner`]. Imports run `connector` → `client` → `session` →
//! `request`, `response`, `settings`.

mod client;
mod connector;
mod request;
mod response;
mod session;
mod settings;

pub use connector::MySignSigner;
