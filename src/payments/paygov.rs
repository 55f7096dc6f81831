//! PayGov through the provincial integration platform (LGSP) (CONTRACTS.md §3).
//!
//! - Every call carries the LGSP's bearer token (OAuth2 client credentials at `token_url`,
//!   cached until shortly before it expires, fetched again once on a `401`).
//! - Creation [seen]: `partnerCode, returnUrl, orderId, amount (string), orderInfo (no
//!   diacritics), requestCode, ipAddress, accessKey, serviceCode, checksum = SHA-256 hex of
//!   secretKey+accessKey+partnerCode+orderId+requestCode+amount`; the answer's `data.url` is
//!   where the citizen pays. `requestCode` is the dossier code.
//! - Callback [seen fields, open checksum]: `amount, orderId, orderInfo, requestCode,
//!   transactionNo, payDate, errorCode ("00" paid), transactionCode, checksum`; the checksum
//!   formula is configured ([`gw_crypto::checksum::FieldChecksum`]: algorithm, fields,
//!   separator; `secretKey`, `accessKey`, `partnerCode` name our own values). Reply
//!   `{"error_code": "SUCCESSFUL" | "FAILED", "error_message"}`; a repeated callback for a
//!   settled order is `SUCCESSFUL` ("already confirmed") and changes nothing.
//! - Query [open]: `POST query_url {partnerCode, orderId, requestCode, accessKey, checksum}`
//!   (the creation formula with an empty amount) → `{error_code: "00" | "01" (unknown),
//!   data: {status: "00" paid | "01" pending | "02" failed, amount, transactionNo}}`.

use std::time::Duration;

use async_trait::async_trait;
use gw_crypto::checksum::{FieldChecksum, PayGov as RequestChecksum};
use gw_crypto::keys::Secret;
use gw_store::payments::PaymentOrder;
use serde_json::json;
use tracing::{info, warn};

use crate::transport::lgsp::{ClientAuth, TokenCache, TokenEndpoint, TokenError};
use crate::transport::stack::{Auth, BuildError, Outbound};

use super::fields::{field, FieldError};
use super::hooks::{ProviderMessage, RefusedBecause};
use super::provider::{Provider, ProviderError, ProviderStatus};
use super::service::{Payments, Settle, Verdict};

/// The default callback checksum fields (defined once, in gw-crypto, and shared with the
/// sandbox): every meaningful field, unlike the creation formula.
pub const DEFAULT_CALLBACK_FIELDS: [&str; 10] = gw_crypto::checksum::PAYGOV_CALLBACK_FIELDS;

#[derive(Clone)]
pub struct PayGovSettings {
    pub name: String,
    pub partner_code: String,
    pub access_key: String,
    pub secret_key: String,
    pub service_code: String,
    pub create_url: String,
    pub query_url: String,
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub return_url: String,
    pub ip_addr: String,
    pub timeout: Duration,
    /// `sha256`, `hmac-sha256` or `hmac-sha512`.
    pub callback_algorithm: gw_crypto::checksum::FieldAlgorithm,
    pub callback_fields: Vec<String>,
    pub callback_separator: String,
}

pub struct PayGov {
    s: PayGovSettings,
    request_sum: RequestChecksum,
    callback_sum: FieldChecksum,
    http: Outbound,
    /// The LGSP token, shared by every call (see [`crate::transport::lgsp`]).
    token: TokenCache,
}

/// An LGSP token is dropped this long before it expires.
pub const TOKEN_MARGIN: Duration = Duration::from_secs(30);

/// The parsed callback (after its checksum verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    pub order_id: String,
    pub amount: i64,
    pub error_code: String,
    pub transaction_no: String,
}

/// Parse a callback body (no checksum check). `amount` is whole VND as text or number.
pub fn parse_callback(v: &serde_json::Value) -> Result<Callback, FieldError> {
    if !v.is_object() {
        return Err(FieldError::NotObject("callback"));
    }
    let amount = field(v, "amount");
    if amount.is_empty() || !amount.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldError::NotWhole("amount".into()));
    }
    let order_id = field(v, "orderId");
    let error_code = field(v, "errorCode");
    if order_id.is_empty() || error_code.is_empty() {
        return Err(FieldError::Required("orderId and errorCode"));
    }
    Ok(Callback {
        order_id,
        amount: amount
            .parse()
            .map_err(|_| FieldError::TooLarge("amount".into()))?,
        error_code,
        transaction_no: field(v, "transactionNo"),
    })
}

fn reply(ok: bool, message: &str) -> serde_json::Value {
    json!({"error_code": if ok { "SUCCESSFUL" } else { "FAILED" }, "error_message": message})
}

impl PayGov {
    pub fn new(s: PayGovSettings) -> Result<Self, BuildError> {
        let http = super::provider::provider_client(&s.name, s.timeout)?;
        let token = TokenCache::new(
            &s.name,
            TokenEndpoint {
                url: s.token_url.clone(),
                client_id: s.client_id.clone(),
                client_secret: crate::config::Secret::new(s.client_secret.clone()),
                client_auth: ClientAuth::Basic,
            },
            http.clone(),
            TOKEN_MARGIN,
        );
        Ok(PayGov {
            request_sum: RequestChecksum::new(
                Secret::new(s.secret_key.clone()),
                s.access_key.clone(),
                s.partner_code.clone(),
            ),
            callback_sum: FieldChecksum::new(
                s.callback_algorithm,
                s.callback_fields.clone(),
                s.callback_separator.clone(),
                Secret::new(s.secret_key.clone()),
            ),
            http,
            token,
            s,
        })
    }

    fn our(&self, f: &str, v: &serde_json::Value) -> String {
        match f {
            "accessKey" => self.s.access_key.clone(),
            "partnerCode" => self.s.partner_code.clone(),
            other => field(v, other),
        }
    }

    /// Handle a callback; the JSON reply (always HTTP 200). Every refusal is handed to the
    /// evidence log with the message's digest before the reply.
    pub async fn handle_callback(&self, payments: &Payments, body: &[u8]) -> serde_json::Value {
        let v = serde_json::from_slice::<serde_json::Value>(body).unwrap_or_default();
        let order_id = field(&v, "orderId");
        let message = ProviderMessage::new(body, &field(&v, "checksum"), &field(&v, "errorCode"));
        let refuse = |because: RefusedBecause, why: String| {
            let message = message.clone();
            let order_id = order_id.clone();
            async move {
                let reply = reply(false, &why);
                payments
                    .refused(
                        &self.s.name,
                        &order_id,
                        because,
                        message,
                        "FAILED",
                        &serde_json::to_vec(&reply).expect("JSON"),
                    )
                    .await;
                info!(provider = %self.s.name, reference = %order_id, because = because.as_str(), "PayGov callback refused");
                reply
            }
        };
        if !v.is_object() {
            return refuse(RefusedBecause::Malformed, "malformed body".into()).await;
        }
        if self
            .callback_sum
            .verify(|f| self.our(f, &v), &field(&v, "checksum"))
            .is_err()
        {
            warn!(provider = %self.s.name, "PayGov callback with an invalid checksum refused");
            return refuse(RefusedBecause::Checksum, "invalid checksum".into()).await;
        }
        let cb = match parse_callback(&v) {
            Ok(cb) => cb,
            Err(e) => {
                warn!(provider = %self.s.name, error = %e, "PayGov callback malformed");
                return refuse(RefusedBecause::Malformed, e.to_string()).await;
            }
        };
        let verdict = Verdict {
            reference: cb.order_id.clone(),
            outcome: super::codes::paygov(&cb.error_code),
            amount: cb.amount,
            provider_txn: (!cb.transaction_no.is_empty()).then(|| cb.transaction_no.clone()),
            code: cb.error_code.clone(),
            source: "callback",
            message: Some(message.clone()),
        };
        let (ok, msg) = match payments.settle(&verdict).await {
            Ok(Settle::Applied(_)) => (true, "confirmed"),
            Ok(Settle::AlreadySettled(_)) => (true, "already confirmed"),
            Ok(Settle::Pending(_)) => (true, "received"),
            Ok(Settle::NotFound) => {
                return refuse(RefusedBecause::UnknownOrder, "order not found".into()).await
            }
            Ok(Settle::AmountMismatch { .. }) => {
                return refuse(RefusedBecause::Amount, "invalid amount".into()).await
            }
            Err(e) => {
                warn!(provider = %self.s.name, reference = %cb.order_id, error = %e, "PayGov callback not recorded");
                (false, "temporary failure")
            }
        };
        info!(provider = %self.s.name, reference = %cb.order_id, amount = cb.amount, ok, "PayGov callback answered");
        reply(ok, msg)
    }

    /// Count failed token fetches in `metrics` (`gateway_token_refresh_failures_total`).
    pub fn report_to(&self, metrics: std::sync::Arc<crate::telemetry::metrics::Metrics>) {
        self.token.report_to(metrics);
    }

    /// LGSP tokens fetched so far.
    pub fn token_fetches(&self) -> u64 {
        self.token.fetches()
    }

    async fn bearer(&self) -> Result<String, ProviderError> {
        self.token.token().await.map_err(|e| match e {
            TokenError::Transport(e) => ProviderError::Unavailable(format!("LGSP token: {e}")),
            TokenError::Refused { status } => {
                ProviderError::Unavailable(format!("LGSP token: HTTP {status}"))
            }
            TokenError::Decode(d) => ProviderError::Refused(format!("LGSP token: {d}")),
            TokenError::NoToken => {
                ProviderError::Refused("LGSP token answer has no access_token".into())
            }
        })
    }

    /// POST with the bearer token; on 401 drop the token and call once more with a new one.
    async fn call(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ProviderError> {
        let mut renewed = false;
        loop {
            let tok = self.bearer().await?;
            let reply = self
                .http
                .post_json(url, body)
                .auth(Auth::Bearer(&tok))
                .send()
                .await?;
            if reply.status == 401 && !renewed {
                self.token.invalidate(&tok).await;
                renewed = true;
                continue;
            }
            return super::provider::json_answer(&reply);
        }
    }
}

/// `orderInfo` without diacritics: ASCII letters, digits and spaces kept, the rest dropped.
fn ascii_info(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == ' ' || *c == '-' || *c == '.')
        .collect()
}

#[async_trait]
impl Provider for PayGov {
    fn name(&self) -> &str {
        &self.s.name
    }

    async fn create(&self, o: &PaymentOrder) -> Result<String, ProviderError> {
        let n = &o.order;
        let amount = n.amount.to_string();
        let checksum = self
            .request_sum
            .checksum(&n.reference, &n.dossier_code, &amount)
            .map_err(|e| ProviderError::Refused(e.to_string()))?;
        let body = json!({
            "partnerCode": self.s.partner_code,
            "returnUrl": self.s.return_url,
            "orderId": n.reference,
            "amount": amount,
            "orderInfo": ascii_info(&format!("Thanh toan le phi ho so {}", n.dossier_code)),
            "requestCode": n.dossier_code,
            "ipAddress": self.s.ip_addr,
            "accessKey": self.s.access_key,
            "serviceCode": self.s.service_code,
            "checksum": checksum,
        });
        let a = self.call(&self.s.create_url, &body).await?;
        match a["data"]["url"].as_str() {
            Some(url) if !url.is_empty() => Ok(url.to_string()),
            _ => Err(ProviderError::Refused(format!(
                "creation refused: {} {}",
                field(&a, "error_code"),
                field(&a, "error_message")
            ))),
        }
    }

    async fn query(&self, o: &PaymentOrder) -> Result<ProviderStatus, ProviderError> {
        let n = &o.order;
        let checksum = self
            .request_sum
            .checksum(&n.reference, &n.dossier_code, "")
            .map_err(|e| ProviderError::Refused(e.to_string()))?;
        let body = json!({
            "partnerCode": self.s.partner_code,
            "orderId": n.reference,
            "requestCode": n.dossier_code,
            "accessKey": self.s.access_key,
            "checksum": checksum,
        });
        let a = self.call(&self.s.query_url, &body).await?;
        let d = &a["data"];
        Ok(
            match (
                field(&a, "error_code").as_str(),
                field(d, "status").as_str(),
            ) {
                ("01", _) => ProviderStatus::Unknown,
                ("00", "00") => ProviderStatus::Paid {
                    amount: field(d, "amount")
                        .parse()
                        .map_err(|_| ProviderError::Refused("amount is not a number".into()))?,
                    txn: field(d, "transactionNo"),
                },
                ("00", "01") => ProviderStatus::Pending,
                ("00", code) => ProviderStatus::Failed { code: code.into() },
                (code, _) => return Err(ProviderError::Refused(format!("query answered {code}"))),
            },
        )
    }
}
