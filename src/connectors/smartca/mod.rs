//! The VNPT SmartCA connector (remote signing, hash-only). Contract: `shared/CONTRACTS.md` §4;
//! the strict sandbox is `gw_contract_tests::smartca`.
//!
//! # Invariants
//! - `sp_id` and `sp_password` travel in every body ([seen]); such bodies are sent unobserved
//!   and noted in the evidence capture with `sp_password` redacted.
//! - **The gateway names the transaction**: `transaction_id` is derived from the flow's request
//!   id (`gw-` + 32 hex digits of SHA-256 over the signer's name and the request id), so the
//!   same request id always means the same transaction at SmartCA, and its status can be asked
//!   before (or without) the sign call's answer.
//! - **A resend only when the service says the first never arrived**: a sign call whose answer
//!   is lost (timeout, broken exchange, 5xx, garbage) is followed by a status query; only
//!   "transaction not found" sends it again (once). Any other answer keeps the first; a status
//!   query that fails too leaves the request in doubt ([`SignerError::InDoubt`]), resolved by
//!   the flow's next `status`.
//! - Only a hex digest leaves the gateway: `sign_type` is always `"hash"`,
//!   `data_to_be_signed` the digest (checked for its algorithm's length before sending).
//! - The answer envelope and the status words are [open]: `status_code`, `message` and
//!   `data`; the words are settings (`[signers.NAME.codes]`, defaults `WAITING`, `SUCCESS`,
//!   `REJECTED`, `EXPIRED`, `TRANSACTION_NOT_FOUND`).
//!
//! # Files, one per role
//! `settings` the section resolved once; `request` the three bodies; `response` reading
//! answers; `connector` the [`SmartCaSigner`] (no `session`: SmartCA has no login, and each
//! call is one POST on the shared [`crate::connectors::officials::Link`]).
//! Imports run `connector` → `request`, `response`, `settings`.

mod connector;
mod request;
mod response;
mod settings;

pub use connector::SmartCaSigner;
