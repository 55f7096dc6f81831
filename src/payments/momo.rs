//! MoMo (API v2, CONTRACTS.md §3 [likely]): order creation, the IPN, and the transaction query.
//!
//! - `signature` = hex HMAC-SHA256 over `k=v&…` in a fixed field order per message; the orders
//!   are defined once in [`gw_crypto::checksum::MoMoMessage`] and shared with the sandbox.
//! - Creation: `POST create_url {partnerCode, requestId, amount (number), orderId, orderInfo,
//!   redirectUrl, ipnUrl, requestType, extraData, lang, signature}` → `{resultCode: 0,
//!   payUrl}`. `requestId` is the order reference, so a retried creation is the same request
//!   (MoMo answers a repeated request alike; another request for an existing `orderId` is `41`).
//! - IPN: MoMo `POST`s JSON to `ipnUrl` (`POST /payments/NAME/ipn`) and expects **HTTP 204**.
//!   Handling order: `signature` verifies (else `400`), the fields parse and `partnerCode` is
//!   ours (else `400`), the order exists (else `404`: MoMo calls again, reconciliation covers
//!   it), the amount matches (else `400`), paid (`resultCode` 0) or failed is recorded
//!   durably, then `204`; a repeated IPN for a settled order is `204` and changes nothing; a
//!   store failure is `503` (MoMo calls again). Every refusal is handed to the evidence log
//!   before the reply.
//! - Query [likely]: `POST query_url {partnerCode, requestId (fresh), orderId, lang,
//!   signature}` → `resultCode` 0 paid (`amount`, `transId`), 1000 / 7000 / 7002 pending,
//!   42 unknown order, anything else failed. The answer's own signature is [open] and not
//!   checked (the call goes to the configured endpoint over TLS).

use std::time::Duration;

use async_trait::async_trait;

use crate::transport::stack::{Auth, BuildError, Outbound};
use axum::http::StatusCode;
use gw_crypto::checksum::{MoMo as Signer, MoMoMessage};
use gw_crypto::keys::Secret;
use gw_store::payments::PaymentOrder;
use serde_json::json;
use tracing::{info, warn};

use super::codes::Finality;
use super::fields::{field, whole, FieldError};
use super::hooks::{ProviderMessage, RefusedBecause};
use super::provider::{Provider, ProviderError, ProviderStatus};
use super::service::{Payments, Settle, Verdict};

// MoMo's test endpoints and default `requestType` are defaults of `[payments.momo.NAME]`.
pub use crate::config::payments::{
    MOMO_CREATE_URL as CREATE_URL, MOMO_QUERY_URL as QUERY_URL, MOMO_REQUEST_TYPE as REQUEST_TYPE,
};

#[derive(Clone)]
pub struct MoMoSettings {
    /// Provider name in the configuration (stored on each order).
    pub name: String,
    pub partner_code: String,
    pub access_key: String,
    pub secret_key: String,
    pub create_url: String,
    pub query_url: String,
    /// Where MoMo sends the citizen back.
    pub redirect_url: String,
    /// Where MoMo posts IPNs: this gateway's `…/payments/NAME/ipn`, as MoMo reaches it.
    pub ipn_url: String,
    pub request_type: String,
    pub lang: String,
    pub timeout: Duration,
}

pub struct MoMo {
    s: MoMoSettings,
    sig: Signer,
    http: Outbound,
}

/// The fields of an IPN the gateway uses (after its signature verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipn {
    pub partner_code: String,
    pub order_id: String,
    pub amount: i64,
    pub result_code: String,
    pub trans_id: String,
}

/// Parse an IPN body (no signature check: the handler verifies first).
pub fn parse_ipn(v: &serde_json::Value) -> Result<Ipn, FieldError> {
    if !v.is_object() {
        return Err(FieldError::NotObject("IPN"));
    }
    let order_id = field(v, "orderId");
    if order_id.is_empty() {
        return Err(FieldError::Missing("orderId".into()));
    }
    let result_code = field(v, "resultCode");
    if result_code.is_empty() || !result_code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldError::NotNumber("resultCode".into()));
    }
    Ok(Ipn {
        partner_code: field(v, "partnerCode"),
        order_id,
        amount: whole(v, "amount")?,
        result_code,
        trans_id: field(v, "transId"),
    })
}

impl MoMo {
    pub fn new(s: MoMoSettings) -> Result<Self, BuildError> {
        Ok(MoMo {
            sig: Signer::new(Secret::new(s.secret_key.clone())),
            http: super::provider::provider_client(&s.name, s.timeout)?,
            s,
        })
    }

    /// A field's value for a signature: `accessKey` is ours, the rest come from `v`.
    fn value(&self, f: &str, v: &serde_json::Value) -> String {
        match f {
            "accessKey" => self.s.access_key.clone(),
            other => field(v, other),
        }
    }

    fn sign(&self, m: MoMoMessage, v: &serde_json::Value) -> Result<String, ProviderError> {
        self.sig
            .sign_message(m, |f| self.value(f, v))
            .map_err(|e| ProviderError::Refused(e.to_string()))
    }

    /// Handle one IPN body; the HTTP status to answer (204 = acknowledged).
    pub async fn handle_ipn(&self, payments: &Payments, body: &[u8]) -> StatusCode {
        let v = serde_json::from_slice::<serde_json::Value>(body).unwrap_or_default();
        let order_id = field(&v, "orderId");
        let message = ProviderMessage::new(body, &field(&v, "signature"), &field(&v, "resultCode"));
        let refuse = |because: RefusedBecause, status: StatusCode| {
            let message = message.clone();
            let order_id = order_id.clone();
            async move {
                payments
                    .refused(
                        &self.s.name,
                        &order_id,
                        because,
                        message,
                        status.as_str(),
                        b"",
                    )
                    .await;
                info!(provider = %self.s.name, reference = %order_id, status = status.as_u16(), because = because.as_str(), "MoMo IPN refused");
                status
            }
        };
        if !v.is_object() {
            return refuse(RefusedBecause::Malformed, StatusCode::BAD_REQUEST).await;
        }
        if self
            .sig
            .verify_message(
                MoMoMessage::Ipn,
                |f| self.value(f, &v),
                &field(&v, "signature"),
            )
            .is_err()
        {
            warn!(provider = %self.s.name, "MoMo IPN with an invalid signature refused");
            return refuse(RefusedBecause::Checksum, StatusCode::BAD_REQUEST).await;
        }
        let ipn = match parse_ipn(&v) {
            Ok(ipn) => ipn,
            Err(e) => {
                warn!(provider = %self.s.name, error = %e, "MoMo IPN malformed");
                return refuse(RefusedBecause::Malformed, StatusCode::BAD_REQUEST).await;
            }
        };
        if ipn.partner_code != self.s.partner_code {
            return refuse(RefusedBecause::Party, StatusCode::BAD_REQUEST).await;
        }
        let verdict = Verdict {
            reference: ipn.order_id.clone(),
            outcome: super::codes::momo(&ipn.result_code),
            amount: ipn.amount,
            provider_txn: (!ipn.trans_id.is_empty()).then(|| ipn.trans_id.clone()),
            code: ipn.result_code.clone(),
            source: "callback",
            message: Some(message.clone()),
        };
        let status = match payments.settle(&verdict).await {
            Ok(Settle::Applied(_) | Settle::AlreadySettled(_) | Settle::Pending(_)) => {
                StatusCode::NO_CONTENT
            }
            Ok(Settle::NotFound) => {
                return refuse(RefusedBecause::UnknownOrder, StatusCode::NOT_FOUND).await
            }
            Ok(Settle::AmountMismatch { .. }) => {
                return refuse(RefusedBecause::Amount, StatusCode::BAD_REQUEST).await
            }
            Err(e) => {
                warn!(provider = %self.s.name, reference = %ipn.order_id, error = %e, "MoMo IPN not recorded");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        info!(provider = %self.s.name, reference = %ipn.order_id, amount = ipn.amount, status = status.as_u16(), "MoMo IPN answered");
        status
    }

    async fn post(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ProviderError> {
        super::provider::post_json(&self.http, url, body, Auth::None).await
    }
}

#[async_trait]
impl Provider for MoMo {
    fn name(&self) -> &str {
        &self.s.name
    }

    async fn create(&self, o: &PaymentOrder) -> Result<String, ProviderError> {
        let n = &o.order;
        let mut body = json!({
            "partnerCode": self.s.partner_code,
            "requestId": n.reference,
            "amount": n.amount,
            "orderId": n.reference,
            "orderInfo": format!("Thanh toan le phi ho so {}", n.dossier_code),
            "redirectUrl": self.s.redirect_url,
            "ipnUrl": self.s.ipn_url,
            "requestType": self.s.request_type,
            "extraData": "",
            "lang": self.s.lang,
        });
        body["signature"] = self.sign(MoMoMessage::Create, &body)?.into();
        let a = self.post(&self.s.create_url, &body).await?;
        let url = field(&a, "payUrl");
        if field(&a, "resultCode") != "0" || field(&a, "orderId") != n.reference || url.is_empty() {
            return Err(ProviderError::Refused(format!(
                "creation refused: resultCode {} {}",
                field(&a, "resultCode"),
                field(&a, "message")
            )));
        }
        Ok(url)
    }

    async fn query(&self, o: &PaymentOrder) -> Result<ProviderStatus, ProviderError> {
        let n = &o.order;
        let mut body = json!({
            "partnerCode": self.s.partner_code,
            "requestId": uuid::Uuid::now_v7().simple().to_string(),
            "orderId": n.reference,
            "lang": self.s.lang,
        });
        body["signature"] = self.sign(MoMoMessage::Query, &body)?.into();
        let a = self.post(&self.s.query_url, &body).await?;
        if field(&a, "orderId") != n.reference {
            return Err(ProviderError::Refused(
                "query answered about another order".into(),
            ));
        }
        let code = field(&a, "resultCode");
        Ok(match code.as_str() {
            "42" => ProviderStatus::Unknown,
            "" => {
                return Err(ProviderError::Refused(
                    "query answer has no resultCode".into(),
                ))
            }
            code => match super::codes::momo(code) {
                Finality::Paid => ProviderStatus::Paid {
                    amount: whole(&a, "amount")
                        .map_err(|e| ProviderError::Refused(e.to_string()))?,
                    txn: field(&a, "transId"),
                },
                Finality::Pending => ProviderStatus::Pending,
                Finality::Failed => ProviderStatus::Failed { code: code.into() },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipn_parsing_is_strict() {
        let ok = json!({"partnerCode": "P", "orderId": "R", "amount": 10000, "resultCode": 0, "transId": 42});
        let ipn = parse_ipn(&ok).unwrap();
        assert_eq!(
            (ipn.amount, ipn.result_code.as_str(), ipn.trans_id.as_str()),
            (10_000, "0", "42")
        );
        for (k, bad) in [
            ("amount", json!(-1)),
            ("amount", json!(1.5)),
            ("amount", json!("")),
            ("resultCode", json!("x")),
            ("orderId", json!("")),
        ] {
            let mut v = ok.clone();
            v[k] = bad.clone();
            assert!(parse_ipn(&v).is_err(), "{k} = {bad}");
        }
        assert!(parse_ipn(&json!([1])).is_err());
    }
}
