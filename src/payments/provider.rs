//! The outbound side of a payment provider: the [`Provider`] trait, what a provider says about
//! an order, and the HTTP calls every provider makes through the one outbound stack.
//!
//! # Invariants
//! - No answer in time, a transport failure or a 5xx is [`ProviderError::Unavailable`] (the
//!   outcome is unknown: retry); another status, an unreadable or unverifiable answer is
//!   [`ProviderError::Refused`].
//! - Every provider calls through [`crate::transport::stack::Outbound`], built once per
//!   provider with its timeout.

use std::time::Duration;

use async_trait::async_trait;
use gw_store::payments::PaymentOrder;

use crate::transport::stack::{Auth, BuildError, Options, Outbound, Reply, TransportError};

/// What a provider says about an order when asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderStatus {
    Paid {
        amount: i64,
        txn: String,
    },
    Failed {
        code: String,
    },
    /// Known, not paid yet.
    Pending,
    /// The provider has no such order.
    Unknown,
}

/// One transaction of a provider's day listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderTxn {
    pub reference: String,
    pub amount: i64,
    pub paid: bool,
    pub txn: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// No answer in time or a transport failure: the outcome is unknown, retry.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The provider answered with an error or a reply that does not verify.
    #[error("provider refused: {0}")]
    Refused(String),
}

impl From<TransportError> for ProviderError {
    /// No whole answer (or a 5xx): the outcome is unknown; a status the caller does not
    /// accept or an unreadable body: refused.
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Status { status, .. } if status < 500 => {
                ProviderError::Refused(format!("HTTP {}", status_text(status)))
            }
            TransportError::Status { status, .. } => {
                ProviderError::Unavailable(format!("HTTP {}", status_text(status)))
            }
            TransportError::Decode(d) => ProviderError::Refused(format!("answer: {d}")),
            other => ProviderError::Unavailable(other.to_string()),
        }
    }
}

/// `500 Internal Server Error`, as providers' errors have always shown a status.
fn status_text(status: u16) -> String {
    reqwest::StatusCode::from_u16(status)
        .map(|s| s.to_string())
        .unwrap_or_else(|_| status.to_string())
}

/// The client a provider calls through (the one outbound stack, the provider's timeout).
pub(crate) fn provider_client(owner: &str, timeout: Duration) -> Result<Outbound, BuildError> {
    Outbound::build(&Options::plain(owner, timeout))
}

/// POST `body` as JSON; the answer as JSON: 5xx or no answer is [`ProviderError::Unavailable`]
/// (the outcome is unknown), another non-success status or an unreadable body
/// [`ProviderError::Refused`].
pub(crate) async fn post_json(
    http: &Outbound,
    url: &str,
    body: &serde_json::Value,
    auth: Auth<'_>,
) -> Result<serde_json::Value, ProviderError> {
    let reply = http.post_json(url, body).auth(auth).send().await?;
    json_answer(&reply)
}

/// A provider's JSON answer (see [`post_json`]).
pub(crate) fn json_answer(reply: &Reply) -> Result<serde_json::Value, ProviderError> {
    Ok(reply.clone().success()?.json()?)
}

/// A payment provider's outbound side (the callback side lives in each provider's module).
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The configured provider name (also stored on each order).
    fn name(&self) -> &str;
    /// Create the order at the provider (idempotent on the reference); returns the pay URL.
    async fn create(&self, order: &PaymentOrder) -> Result<String, ProviderError>;
    /// Ask the provider about one order.
    async fn query(&self, order: &PaymentOrder) -> Result<ProviderStatus, ProviderError>;
    /// The provider's transactions created in `[from_ms, to_ms)`, when it can list them.
    async fn transactions(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Option<Vec<ProviderTxn>>, ProviderError> {
        let _ = (from_ms, to_ms);
        Ok(None)
    }
}
