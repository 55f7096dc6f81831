//! Payment transitions and refused payment callbacks as evidence records (issue 5: "every
//! transition recorded in the ledger and the evidence log").
//!
//! One record per transition, written after the transition is durably stored (a record that
//! could not be written is logged; the payment store's trail is the durable record):
//! - `adapter` = the provider name (its mode: `[evidence.adapters] NAME`), `direction` `in` for
//!   callbacks, `out` for our own steps (the request, a provider query, expiry);
//! - `operation` = `payment.STATE` (`payment.requested`, `payment.paid`, …), `dossier` = the
//!   dossier code, `envelope_id` = the id of the `payment.settled` envelope queued with it;
//! - `request_digest` = SHA-256 of the provider message as received (the raw IPN query, the
//!   JSON body) when a callback caused it; otherwise of the transition itself as JSON (which
//!   `full` mode keeps as the request body); `signature_digest` = SHA-256 of the message's
//!   checksum value; `result_code` = the provider's code (`vnp_ResponseCode`, `MaLoi`,
//!   `errorCode`), else the trail's code (`query:paid`, `deadline`, …);
//! - the exchange key `payment/PROVIDER/REFERENCE/STATE/0` carries the order reference (the
//!   record has no other place for it; the amount stays in the digested message), and makes
//!   the record idempotent.
//!
//! One record per distinct refused callback (forged checksum, malformed, another merchant,
//! unknown order, wrong amount), written before the reply is sent: `operation`
//! `payment.refused.REASON`, `result_code` = our reply's code (`97`, `99`, `FAILED`, …),
//! `response_digest` = SHA-256 of the reply, `http_status` 200, `dossier` = the dossier of the
//! order the message names, if any. The exchange key holds the reason and the message's
//! digest, so a refused message replayed many times is one record.
//!
//! No card or bank account data is put into a record's metadata; in `full` mode the bodies
//! (callbacks carry bank codes, never account or card numbers) are sealed like every other.

use std::sync::Arc;

use async_trait::async_trait;
use gw_store::{Batch, Store};

use super::hooks::{EvidenceEvent, EvidenceHook, HookError, Refusal};
use crate::evidence::capture::Exchange;
use crate::evidence::{EvidenceLog, Mode, RecordContext};
use gw_crypto::digest::sha256_hex;

/// The evidence log as a payment [`EvidenceHook`].
pub struct PaymentEvidence {
    pub store: Arc<dyn Store>,
    pub log: Arc<EvidenceLog>,
}

impl PaymentEvidence {
    pub fn new(store: Arc<dyn Store>, log: Arc<EvidenceLog>) -> Self {
        PaymentEvidence { store, log }
    }

    async fn write(&self, records: Vec<gw_store::EvidenceRecord>) -> Result<(), HookError> {
        if records.is_empty() {
            return Ok(());
        }
        self.store
            .record(Batch {
                evidence: records,
                ..Default::default()
            })
            .await
            .map_err(|e| HookError::Write(e.to_string()))
    }
}

#[async_trait]
impl EvidenceHook for PaymentEvidence {
    async fn record(&self, e: &EvidenceEvent) -> Result<(), HookError> {
        let mode = self.log.mode_of(&e.provider);
        if mode == Mode::Off {
            return Ok(());
        }
        let keep = mode == Mode::Full;
        let (request_digest, signature_digest, body, code) = match &e.message {
            Some(m) => (
                m.digest.clone(),
                m.signature_digest.clone(),
                m.body.clone(),
                m.code.clone().unwrap_or_else(|| e.code.clone()),
            ),
            None => {
                let json = serde_json::to_vec(e).map_err(|e| HookError::Encode(e.to_string()))?;
                (sha256_hex(&json), None, Arc::new(json), e.code.clone())
            }
        };
        let exchange = Exchange {
            at_ms: e.at_ms,
            operation: None,
            request_digest,
            response_digest: None,
            signature_digest,
            cert_fingerprint: None,
            status: None,
            result_code: Some(code),
            request_body: keep.then_some(body),
            response_body: None,
        };
        let direction = if e.source == "callback" { "in" } else { "out" };
        let records = self.log.records(
            &RecordContext {
                adapter: &e.provider,
                direction,
                route: "",
                exchange_prefix: &format!(
                    "payment/{}/{}/{}",
                    e.provider,
                    e.reference,
                    e.to.as_str()
                ),
                envelope_id: e.notice_id.as_deref().unwrap_or(""),
                dossier: &e.dossier_code,
                operation: &format!("payment.{}", e.to.as_str()),
            },
            vec![exchange],
        );
        self.write(records).await
    }

    async fn refused(&self, r: &Refusal) -> Result<(), HookError> {
        let mode = self.log.mode_of(&r.provider);
        if mode == Mode::Off {
            return Ok(());
        }
        let keep = mode == Mode::Full;
        let exchange = Exchange {
            at_ms: r.at_ms,
            operation: None,
            request_digest: r.message.digest.clone(),
            response_digest: Some(sha256_hex(&r.reply)),
            signature_digest: r.message.signature_digest.clone(),
            cert_fingerprint: None,
            status: Some(200),
            result_code: Some(r.reply_code.clone()),
            request_body: keep.then(|| r.message.body.clone()),
            response_body: keep.then(|| Arc::new(r.reply.clone())),
        };
        let records = self.log.records(
            &RecordContext {
                adapter: &r.provider,
                direction: "in",
                route: "",
                exchange_prefix: &format!(
                    "payment/{}/refused/{}/{}",
                    r.provider,
                    r.because.as_str(),
                    r.message.digest
                ),
                envelope_id: "",
                dossier: &r.dossier_code,
                operation: &format!("payment.refused.{}", r.because.as_str()),
            },
            vec![exchange],
        );
        self.write(records).await
    }
}
