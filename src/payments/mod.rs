//! Online fee payment: orders at a provider, verified callbacks, one order per fee,
//! `payment.settled` notices for the one-stop system, and reconciliation.
//!
//! # Invariants
//! - **One order per fee (or per dossier).** The order reference is derived deterministically
//!   from the dossier code, the fee item(s) and the attempt number ([`order_reference`]) and the
//!   order is stored *before* the provider is called; a retried or replayed request finds the
//!   stored order and reuses it (the provider is called again only while no pay URL is known,
//!   with the same reference, which the providers deduplicate).
//! - **No fee paid without proof.** An order moves to `paid` only through [`Payments::settle`],
//!   which callers reach after verifying the provider's checksum (callbacks) or from the
//!   provider's own answer to a query (reconciliation). The amount is checked against the
//!   order before anything is recorded.
//! - **Every transition is recorded** (`gw_store::payments` trail, same transaction as the state
//!   change) and handed to the [`EvidenceHook`]s afterwards (the evidence log:
//!   [`evidence`]), with the provider message that caused it; refused
//!   callbacks are handed to them too ([`Payments::refused`]), before they are answered.
//! - **Every settled order reaches the one-stop system.** The `payment.settled` notice is queued
//!   in the store's outbox in the transaction that settles the order; [`Payments::publish_notices`]
//!   drains it (at least once; the envelope id is the notice id, so consumers deduplicate).
//! - Logs carry references, amounts and result codes only: never a card or bank account number.

//!
//! # Files, one per role
//! `orders` (requests, checks, references), `provider` (the provider trait and its HTTP calls),
//! `service` (the state: create, settle, expire, publish), `hooks` (the evidence hook),
//! `notices` (`payment.settled` publishing), `refusals` (refused messages counted and sampled),
//! `fields` (reading provider messages); one file per provider (`vnpay`, `platform`, `paygov`,
//! `momo`). Their HTTP endpoints are the edge's ([`crate::edge::payments`]); the running
//! gateway's payment side is wired by [`crate::app::payments`], and its scheduled notices and
//! reconciliation are a singleton job ([`crate::jobs::payments`]).

pub mod codes;
pub mod config;
pub mod evidence;
pub mod fields;
pub mod hooks;
pub mod momo;
pub mod notices;
pub mod orders;
pub mod paygov;
pub mod platform;
pub mod provider;
pub mod reconcile;
pub mod refusals;
pub mod service;
pub mod vnpay;

// The `[payments]` settings types live with the rest of the configuration.
pub use crate::config::payments::{
    FeeCheck, Grouping, DEFAULT_DEADLINE_SECS, DEFAULT_MAX_AMOUNT, DEFAULT_REFERENCE_PREFIX,
    DEFAULT_SOURCE_NAME, MAX_AMOUNT_LIMIT,
};
// The paths callers have always used.
pub use hooks::{EvidenceEvent, EvidenceHook, HookError, ProviderMessage, Refusal, RefusedBecause};
pub use notices::{BrokerSink, NoticeError, NoticeSink, SETTLED_KIND};
pub use orders::{
    check_request, order_reference, Fee, OrderView, PaymentError, PaymentRequest, Settings,
    MAX_REFERENCE_LEN,
};
pub use provider::{Provider, ProviderError, ProviderStatus, ProviderTxn};
pub use refusals::{Refusals, REFUSED_EVIDENCE_PER_MINUTE};
pub use service::{Payments, Settle, Verdict};
