//! The evidence hook: transitions and refused provider messages, as handed to the evidence
//! log after they are durably recorded.
//!
//! # Invariants
//! - A hook sees a transition only after the store recorded it; a failing hook is logged and
//!   does not undo the transition (the store's trail is the durable record).
//! - A refused provider message is handed to the hooks before it is answered.
//! - What a hook gets carries references, amounts, codes and digests; the message body is kept
//!   (encrypted) only in `full` mode, never logged.

use std::sync::Arc;

use async_trait::async_trait;
use gw_store::payments::OrderState;
use serde::Serialize;

/// Why a hook could not record, by step.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HookError {
    /// The record could not be encoded.
    #[error("encoding the record: {0}")]
    Encode(String),
    /// The record could not be written (the evidence store is unavailable).
    #[error("writing the record: {0}")]
    Write(String),
}

/// A provider message as received (a callback), for the evidence log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderMessage {
    /// SHA-256 hex of the message exactly as received (the raw IPN query, the JSON body).
    pub digest: String,
    /// SHA-256 hex of the provider's checksum value in it, when it carries one.
    pub signature_digest: Option<String>,
    /// The provider's result code in it (`vnp_ResponseCode`, `MaLoi`, `errorCode`), if any.
    pub code: Option<String>,
    /// The message itself; the evidence log keeps it (encrypted) only in `full` mode.
    #[serde(skip)]
    pub body: Arc<Vec<u8>>,
}

impl ProviderMessage {
    /// `body` as received, with its checksum value and result code (both as the message
    /// states them; empty = absent).
    pub fn new(body: &[u8], checksum: &str, code: &str) -> Self {
        ProviderMessage {
            digest: gw_crypto::digest::sha256_hex(body),
            signature_digest: (!checksum.is_empty())
                .then(|| gw_crypto::digest::sha256_hex(checksum.as_bytes())),
            code: (!code.is_empty()).then(|| code.to_string()),
            body: Arc::new(body.to_vec()),
        }
    }
}

/// A transition as handed to the evidence log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvidenceEvent {
    pub reference: String,
    pub dossier_code: String,
    pub provider: String,
    pub from: Option<OrderState>,
    pub to: OrderState,
    pub source: String,
    pub amount: i64,
    pub provider_txn: Option<String>,
    pub at_ms: i64,
    /// The code recorded in the trail (`00/00`, `query:paid`, `deadline`, …).
    pub code: String,
    /// The provider message that caused the transition (callbacks), when known.
    pub message: Option<ProviderMessage>,
    /// The id of the `payment.settled` envelope queued with the transition.
    pub notice_id: Option<String>,
}

/// Why a provider message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusedBecause {
    /// The checksum / secure hash does not verify (a forged or corrupted message).
    Checksum,
    /// Not parseable, or fields missing or malformed.
    Malformed,
    /// Another merchant / partner code or currency.
    Party,
    /// No order has the reference.
    UnknownOrder,
    /// The amount differs from the order's.
    Amount,
}

impl RefusedBecause {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusedBecause::Checksum => "checksum",
            RefusedBecause::Malformed => "malformed",
            RefusedBecause::Party => "party",
            RefusedBecause::UnknownOrder => "unknown_order",
            RefusedBecause::Amount => "amount",
        }
    }
}

/// A provider message that was refused (nothing changed), as handed to the evidence log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub provider: String,
    /// The reference the message names (unverified when the checksum failed); may be empty.
    pub reference: String,
    /// The dossier of the order with that reference, when there is one; else empty.
    pub dossier_code: String,
    pub because: RefusedBecause,
    pub message: ProviderMessage,
    /// The code of our reply (`97`, `99`, `FAILED`, …).
    pub reply_code: String,
    /// Our reply as sent.
    #[serde(skip)]
    pub reply: Vec<u8>,
    pub at_ms: i64,
}

/// Where transitions go after they are durably recorded (the evidence log plugs in here).
/// A failing hook is logged and does not undo the transition: the store's trail
/// (`PaymentStore::transitions`) is the durable record it can be rebuilt from.
#[async_trait]
pub trait EvidenceHook: Send + Sync + 'static {
    async fn record(&self, event: &EvidenceEvent) -> Result<(), HookError>;
    /// A provider message that was refused, before the reply is sent. Default: not recorded.
    async fn refused(&self, refusal: &Refusal) -> Result<(), HookError> {
        let _ = refusal;
        Ok(())
    }
}
