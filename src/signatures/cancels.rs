//! Telling the signing services of cancels: a request cancelled (by `gateway signing cancel`
//! or the API) or expired by the gateway while it may be on the official's phone is marked
//! `service_cancel = "pending"` by the store; [`SignatureService::notify_cancels`] drains
//! those marks each round.
//!
//! # Invariants
//! - **Recorded once, with what the service said**: `cancelled`, `already_final`,
//!   `not_supported_by_service` (no cancel operation in `shared/CONTRACTS.md` §4: SmartCA,
//!   MySign and CSC today), `refused:<reason_kind>` (a permanent error), `gave_up` (after
//!   [`MAX_CANCEL_ATTEMPTS`] transient failures). The first recorded answer stays.
//! - **Retried with backoff**: a transient failure ([`SignerError::is_retryable`]) is counted
//!   and the next attempt scheduled [`cancel_backoff`] later (doubling from
//!   [`CANCEL_RETRY_BASE`] up to [`CANCEL_RETRY_CAP`], in the store, so a restart keeps the
//!   schedule).
//! - **Never blocking other requests**: a round tells at most `batch` cancels, `concurrency`
//!   at once; a request's failure only reschedules that request, and nothing here changes a
//!   request's state (the cancel itself is already final).
//! - Personal data: the official's user id goes to the service only; logs and metrics carry
//!   the request id, the service name and the outcome code.

use std::time::Duration;

use futures::StreamExt as _;
use gw_store::signatures::CancelDue;
use gw_store::StoreError;
use tracing::{info, warn};

use super::service::{hash_request_of, SignatureService};
use crate::connectors::signer::{CancelOutcome, SignerError, Transaction};
use crate::model::time::now_ms;

/// The first wait after a failed attempt.
pub const CANCEL_RETRY_BASE: Duration = Duration::from_secs(5);
/// The longest wait between two attempts.
pub const CANCEL_RETRY_CAP: Duration = Duration::from_secs(600);
/// Attempts before the gateway stops trying (recorded as `gave_up`).
pub const MAX_CANCEL_ATTEMPTS: u32 = 10;

/// The wait after `failed` failed attempts (1-based): `base · 2^(failed-1)`, capped.
pub fn cancel_backoff(base: Duration, failed: u32) -> Duration {
    let f = 2u32.saturating_pow(failed.saturating_sub(1).min(16));
    base.saturating_mul(f).min(CANCEL_RETRY_CAP)
}

/// What one attempt came to.
enum Told {
    /// The service's answer (or the lack of a cancel operation): recorded, done.
    Final(String),
    /// A transient failure: try again later.
    Later(String),
}

impl SignatureService {
    /// Tell the services of up to `max` due cancels; how many were attempted.
    pub async fn notify_cancels(&self, max: u32) -> Result<usize, StoreError> {
        let due = self.store.cancels_due(now_ms(), max).await?;
        let n = due.len();
        let mut tasks = futures::stream::iter(due.into_iter().map(|d| self.notify_one(d)))
            .buffer_unordered(self.settings().concurrency.max(1));
        while let Some(done) = tasks.next().await {
            done?;
        }
        Ok(n)
    }

    async fn notify_one(&self, due: CancelDue) -> Result<(), StoreError> {
        let id = due.request_id.as_str();
        let Some(r) = self.store.get(id).await? else {
            return Ok(());
        };
        let service = r.request.service.clone();
        let told = match (self.signers.get(&service), hash_request_of(&r)) {
            (None, _) => Told::Final("refused:unknown_signer_service".into()),
            (Some(_), None) => Told::Final("refused:bad_request".into()),
            (Some(signer), Some(hr)) => {
                let tx = r
                    .transaction_id
                    .clone()
                    .map(Transaction)
                    .or_else(|| signer.transaction_for(&hr));
                match signer.cancel(tx.as_ref(), &hr).await {
                    Ok(o) => Told::Final(o.as_str().to_owned()),
                    Err(e) if e.is_retryable() => Told::Later(kind_of(&e)),
                    Err(e) => Told::Final(format!("refused:{}", kind_of(&e))),
                }
            }
        };
        match told {
            Told::Final(outcome) => {
                self.store.mark_cancel_notified(id, &outcome).await?;
                self.metrics.count_cancel_notice(&service, &outcome);
                if outcome == CancelOutcome::NotSupported.as_str() {
                    info!(request = %id, service = %service, "the service has no cancel operation: the official's phone keeps the request until the service expires it");
                } else {
                    info!(request = %id, service = %service, outcome = %outcome, "the service was told of the cancel");
                }
            }
            Told::Later(why) => {
                let failed = due.attempts + 1;
                if failed >= MAX_CANCEL_ATTEMPTS {
                    warn!(request = %id, service = %service, attempts = failed, why, "the service could not be told of the cancel; given up");
                    self.store.mark_cancel_notified(id, "gave_up").await?;
                    self.metrics.count_cancel_notice(&service, "gave_up");
                } else {
                    let wait = cancel_backoff(CANCEL_RETRY_BASE, failed);
                    warn!(request = %id, service = %service, attempts = failed, why, retry_in_s = wait.as_secs(), "the service could not be told of the cancel; tried again later");
                    self.store
                        .note_cancel_attempt(id, now_ms() + wait.as_millis() as i64)
                        .await?;
                }
            }
        }
        Ok(())
    }
}

/// A short code for a failure (no words of the service: they may name the official).
fn kind_of(e: &SignerError) -> String {
    match e {
        SignerError::Transport { .. } => "transport",
        SignerError::Refused { .. } => "service_refused",
        SignerError::Answer { .. } => "bad_answer",
        SignerError::Login { .. } => "service_login",
        SignerError::UnknownSigner { .. } => "unknown_official",
        SignerError::Input(_) => "bad_request",
        SignerError::Certificate(_) => "certificate",
        SignerError::InDoubt { .. } => "in_doubt",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap() {
        let b = Duration::from_secs(5);
        assert_eq!(cancel_backoff(b, 1), Duration::from_secs(5));
        assert_eq!(cancel_backoff(b, 2), Duration::from_secs(10));
        assert_eq!(cancel_backoff(b, 4), Duration::from_secs(40));
        assert_eq!(cancel_backoff(b, 9), CANCEL_RETRY_CAP);
        assert_eq!(cancel_backoff(b, u32::MAX), CANCEL_RETRY_CAP);
    }
}
