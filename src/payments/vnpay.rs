//! VNPay: the payment URL, the IPN (instant payment notification) and the `querydr`
//! transaction query (CONTRACTS.md §3).
//!
//! IPN handling order (each step answers VNPay's `RspCode` and stops):
//! 1. `vnp_SecureHash` verifies (HMAC-SHA512 of the sorted query), else `97`;
//! 2. `vnp_TmnCode` is ours and the fields parse, else `99`;
//! 3. the order `vnp_TxnRef` exists, else `01`;
//! 4. `vnp_Amount` / 100 equals the order's amount, else `04`;
//! 5. the order is still open, else `02` (already confirmed; nothing changes);
//! 6. paid (`vnp_ResponseCode` = `vnp_TransactionStatus` = `00`) or failed is recorded
//!    durably, then `00`. A store failure answers `99` (VNPay calls again).
//!
//! A refusal (`97`, `99`, `01`, `04`) is handed to the evidence log with the IPN's digest before
//! it is answered; a transition carries the IPN's digest, `vnp_SecureHash` digest and
//! `vnp_ResponseCode` to its evidence record ([`super::ProviderMessage`]).

use std::time::Duration;

use async_trait::async_trait;

use crate::transport::stack::{BuildError, Outbound, TransportError};
use gw_crypto::checksum::VnPay as VnPayHash;
use gw_crypto::keys::Secret;
use gw_store::payments::PaymentOrder;
use serde::Deserialize;
use tracing::{info, warn};

use super::hooks::{ProviderMessage, RefusedBecause};
use super::orders::MAX_REFERENCE_LEN;
use super::provider::{Provider, ProviderError, ProviderStatus};
use super::service::{Payments, Settle, Verdict};

/// The `vnp_Version` this connector speaks.
pub const VERSION: &str = "2.1.0";

/// VNPay connection settings.
#[derive(Clone)]
pub struct VnPaySettings {
    /// Provider name in the configuration (stored on each order).
    pub name: String,
    pub tmn_code: String,
    pub hash_secret: String,
    /// The pay page, e.g. `https://sandbox.vnpayment.vn/paymentv2/vpcpay.html`.
    pub pay_url: String,
    /// The transaction API, e.g. `https://sandbox.vnpayment.vn/merchant_webapi/api/transaction`.
    pub api_url: String,
    /// Where VNPay sends the citizen back.
    pub return_url: String,
    /// `vnp_IpAddr` of our server for API calls and of the pay request.
    pub ip_addr: String,
    pub timeout: Duration,
}

/// The VNPay connector.
pub struct VnPay {
    s: VnPaySettings,
    hash: VnPayHash,
    http: Outbound,
}

/// VNPay's `RspCode` replies to an IPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpnReply {
    Confirmed,
    OrderNotFound,
    AlreadyConfirmed,
    InvalidAmount,
    InvalidSignature,
    Other,
}

impl IpnReply {
    pub fn code(self) -> &'static str {
        match self {
            IpnReply::Confirmed => "00",
            IpnReply::OrderNotFound => "01",
            IpnReply::AlreadyConfirmed => "02",
            IpnReply::InvalidAmount => "04",
            IpnReply::InvalidSignature => "97",
            IpnReply::Other => "99",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            IpnReply::Confirmed => "Confirm Success",
            IpnReply::OrderNotFound => "Order not found",
            IpnReply::AlreadyConfirmed => "Order already confirmed",
            IpnReply::InvalidAmount => "Invalid amount",
            IpnReply::InvalidSignature => "Invalid signature",
            IpnReply::Other => "Unknown error",
        }
    }

    /// The JSON body VNPay expects.
    pub fn body(self) -> serde_json::Value {
        serde_json::json!({"RspCode": self.code(), "Message": self.message()})
    }
}

/// The fields of an IPN the gateway uses, after the checksum verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipn {
    pub tmn_code: String,
    pub txn_ref: String,
    /// VND (the IPN carries VND × 100).
    pub amount: i64,
    pub response_code: String,
    pub transaction_status: String,
    pub transaction_no: Option<String>,
}

/// Why an IPN's fields do not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpnParseError {
    #[error("field {0} is missing")]
    Missing(&'static str),
    #[error("field {0} is malformed")]
    Malformed(&'static str),
}

/// Parse the IPN fields (no checksum check: [`VnPay::verify`] does that first).
pub fn parse_ipn(params: &[(String, String)]) -> Result<Ipn, IpnParseError> {
    let get = |k: &'static str| -> Result<&str, IpnParseError> {
        let mut it = params.iter().filter(|(n, _)| n == k);
        let v = it.next().ok_or(IpnParseError::Missing(k))?;
        if it.next().is_some() {
            return Err(IpnParseError::Malformed(k));
        }
        Ok(v.1.as_str())
    };
    let amount_raw = get("vnp_Amount")?;
    let amount100: i64 = if !amount_raw.is_empty() && amount_raw.bytes().all(|b| b.is_ascii_digit())
    {
        amount_raw
            .parse()
            .map_err(|_| IpnParseError::Malformed("vnp_Amount"))?
    } else {
        return Err(IpnParseError::Malformed("vnp_Amount"));
    };
    if amount100 % 100 != 0 {
        return Err(IpnParseError::Malformed("vnp_Amount"));
    }
    let txn_ref = get("vnp_TxnRef")?;
    if txn_ref.is_empty() || txn_ref.len() > 100 {
        return Err(IpnParseError::Malformed("vnp_TxnRef"));
    }
    let code = |k: &'static str| -> Result<String, IpnParseError> {
        let v = get(k)?;
        if v.len() == 2 && v.bytes().all(|b| b.is_ascii_digit()) {
            Ok(v.to_string())
        } else {
            Err(IpnParseError::Malformed(k))
        }
    };
    Ok(Ipn {
        tmn_code: get("vnp_TmnCode")?.to_string(),
        txn_ref: txn_ref.to_string(),
        amount: amount100 / 100,
        response_code: code("vnp_ResponseCode")?,
        transaction_status: code("vnp_TransactionStatus")?,
        transaction_no: get("vnp_TransactionNo")
            .ok()
            .filter(|s| !s.is_empty() && *s != "0")
            .map(str::to_string),
    })
}

/// `yyyyMMddHHmmss` in GMT+7, as VNPay dates are.
pub fn vnp_date(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(crate::model::time::VIETNAM);
    t.format(time::macros::format_description!(
        "[year][month][day][hour][minute][second]"
    ))
    .expect("formats")
}

impl VnPay {
    pub fn new(s: VnPaySettings) -> Result<Self, BuildError> {
        let http = super::provider::provider_client(&s.name, s.timeout)?;
        Ok(VnPay {
            hash: VnPayHash::new(Secret::new(s.hash_secret.clone())),
            s,
            http,
        })
    }

    pub fn settings(&self) -> &VnPaySettings {
        &self.s
    }

    /// The pay URL parameters of an order (deterministic: the dates come from the order).
    pub fn pay_params(&self, o: &PaymentOrder) -> Vec<(String, String)> {
        let n = &o.order;
        let p = |k: &str, v: String| (k.to_string(), v);
        vec![
            p("vnp_Version", VERSION.into()),
            p("vnp_Command", "pay".into()),
            p("vnp_TmnCode", self.s.tmn_code.clone()),
            // In i128: never wraps, whatever a stored amount is (creation bounds it anyway).
            p("vnp_Amount", (i128::from(n.amount) * 100).to_string()),
            p("vnp_CreateDate", vnp_date(n.created_ms)),
            p("vnp_ExpireDate", vnp_date(n.deadline_ms)),
            p("vnp_CurrCode", n.currency.clone()),
            p("vnp_IpAddr", self.s.ip_addr.clone()),
            p("vnp_Locale", "vn".into()),
            p(
                "vnp_OrderInfo",
                format!("Thanh toan le phi ho so {} {}", n.dossier_code, n.reference),
            ),
            p("vnp_OrderType", "other".into()),
            p("vnp_ReturnUrl", self.s.return_url.clone()),
            p("vnp_TxnRef", n.reference.clone()),
        ]
    }

    /// The signed pay URL of an order.
    pub fn pay_url(&self, o: &PaymentOrder) -> Result<String, ProviderError> {
        let params = self.pay_params(o);
        let hash = self
            .hash
            .sign(&params)
            .map_err(|e| ProviderError::Refused(e.to_string()))?;
        Ok(format!(
            "{}?{}&vnp_SecureHash={hash}",
            self.s.pay_url,
            VnPayHash::hash_data(&params)
        ))
    }

    /// Handle one IPN given as its raw query string (see the module docs for the steps).
    /// Every refusal is handed to the evidence log with the message's digest before the reply.
    pub async fn handle_ipn(&self, payments: &Payments, raw_query: &str) -> IpnReply {
        let params = parse_query(raw_query);
        let one = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        let message = ProviderMessage::new(
            raw_query.as_bytes(),
            one("vnp_SecureHash"),
            one("vnp_ResponseCode"),
        );
        let claimed = one("vnp_TxnRef").to_string();
        let refuse = |because: RefusedBecause, reply: IpnReply| {
            let message = message.clone();
            let claimed = claimed.clone();
            async move {
                payments
                    .refused(
                        &self.s.name,
                        &claimed,
                        because,
                        message,
                        reply.code(),
                        &serde_json::to_vec(&reply.body()).expect("JSON"),
                    )
                    .await;
                info!(provider = %self.s.name, reference = %claimed, code = reply.code(), because = because.as_str(), "VNPay IPN refused");
                reply
            }
        };
        if self.hash.verify(&params).is_err() {
            warn!(provider = %self.s.name, "VNPay IPN with an invalid signature refused");
            return refuse(RefusedBecause::Checksum, IpnReply::InvalidSignature).await;
        }
        let ipn = match parse_ipn(&params) {
            Ok(ipn) => ipn,
            Err(e) => {
                warn!(provider = %self.s.name, error = %e, "VNPay IPN malformed");
                return refuse(RefusedBecause::Malformed, IpnReply::Other).await;
            }
        };
        if ipn.tmn_code != self.s.tmn_code {
            warn!(provider = %self.s.name, "VNPay IPN for another merchant code");
            return refuse(RefusedBecause::Party, IpnReply::Other).await;
        }
        if ipn.txn_ref.len() > MAX_REFERENCE_LEN {
            return refuse(RefusedBecause::UnknownOrder, IpnReply::OrderNotFound).await;
        }
        let verdict = Verdict {
            reference: ipn.txn_ref.clone(),
            outcome: super::codes::vnpay(&ipn.response_code, &ipn.transaction_status),
            amount: ipn.amount,
            provider_txn: ipn.transaction_no.clone(),
            code: format!("{}/{}", ipn.response_code, ipn.transaction_status),
            source: "callback",
            message: Some(message.clone()),
        };
        let reply = match payments.settle(&verdict).await {
            Ok(Settle::Applied(_)) => IpnReply::Confirmed,
            Ok(Settle::AlreadySettled(_)) => IpnReply::AlreadyConfirmed,
            // Received; the order stays open for the final notification.
            Ok(Settle::Pending(_)) => IpnReply::Confirmed,
            Ok(Settle::NotFound) => {
                return refuse(RefusedBecause::UnknownOrder, IpnReply::OrderNotFound).await
            }
            Ok(Settle::AmountMismatch { .. }) => {
                return refuse(RefusedBecause::Amount, IpnReply::InvalidAmount).await
            }
            Err(e) => {
                warn!(provider = %self.s.name, reference = %ipn.txn_ref, error = %e, "VNPay IPN not recorded");
                IpnReply::Other
            }
        };
        info!(provider = %self.s.name, reference = %ipn.txn_ref, amount = ipn.amount, code = reply.code(), "VNPay IPN answered");
        reply
    }
}

/// The `querydr` answer fields (VNPay's names).
#[derive(Debug, Deserialize)]
#[allow(non_snake_case)]
struct QueryAnswer {
    #[serde(default)]
    vnp_ResponseId: String,
    #[serde(default)]
    vnp_Command: String,
    vnp_ResponseCode: String,
    #[serde(default)]
    vnp_Message: String,
    #[serde(default)]
    vnp_TmnCode: String,
    #[serde(default)]
    vnp_TxnRef: String,
    #[serde(default)]
    vnp_Amount: String,
    #[serde(default)]
    vnp_BankCode: String,
    #[serde(default)]
    vnp_PayDate: String,
    #[serde(default)]
    vnp_TransactionNo: String,
    #[serde(default)]
    vnp_TransactionType: String,
    #[serde(default)]
    vnp_TransactionStatus: String,
    #[serde(default)]
    vnp_OrderInfo: String,
    #[serde(default)]
    vnp_PromotionCode: String,
    #[serde(default)]
    vnp_PromotionAmount: String,
    #[serde(default)]
    vnp_SecureHash: String,
}

impl QueryAnswer {
    /// The answer's signed data, in VNPay's order.
    fn hash_data(&self) -> String {
        [
            &self.vnp_ResponseId,
            &self.vnp_Command,
            &self.vnp_ResponseCode,
            &self.vnp_Message,
            &self.vnp_TmnCode,
            &self.vnp_TxnRef,
            &self.vnp_Amount,
            &self.vnp_BankCode,
            &self.vnp_PayDate,
            &self.vnp_TransactionNo,
            &self.vnp_TransactionType,
            &self.vnp_TransactionStatus,
            &self.vnp_OrderInfo,
            &self.vnp_PromotionCode,
            &self.vnp_PromotionAmount,
        ]
        .map(String::as_str)
        .join("|")
    }
}

#[async_trait]
impl Provider for VnPay {
    fn name(&self) -> &str {
        &self.s.name
    }

    /// VNPay has no creation call: the order exists at VNPay once the citizen opens the signed
    /// pay URL, which is built locally and deterministically.
    async fn create(&self, order: &PaymentOrder) -> Result<String, ProviderError> {
        self.pay_url(order)
    }

    async fn query(&self, order: &PaymentOrder) -> Result<ProviderStatus, ProviderError> {
        let request_id = uuid::Uuid::now_v7().simple().to_string();
        let now = vnp_date(crate::model::time::now_ms());
        let n = &order.order;
        let order_info = format!("Truy van {}", n.reference);
        let fields = [
            request_id.as_str(),
            VERSION,
            "querydr",
            &self.s.tmn_code,
            &n.reference,
            &vnp_date(n.created_ms),
            &now,
            &self.s.ip_addr,
            &order_info,
        ];
        let hash = self
            .hash
            .sign_raw(&fields.join("|"))
            .map_err(|e| ProviderError::Refused(e.to_string()))?;
        let body = serde_json::json!({
            "vnp_RequestId": request_id,
            "vnp_Version": VERSION,
            "vnp_Command": "querydr",
            "vnp_TmnCode": self.s.tmn_code,
            "vnp_TxnRef": n.reference,
            "vnp_OrderInfo": order_info,
            "vnp_TransactionDate": vnp_date(n.created_ms),
            "vnp_CreateDate": now,
            "vnp_IpAddr": self.s.ip_addr,
            "vnp_SecureHash": hash,
        });
        let reply = self.http.post_json(&self.s.api_url, &body).send().await?;
        if reply.status >= 500 {
            // No verdict: the outcome is unknown (any other status is read as an answer).
            return Err(TransportError::Status {
                status: reply.status,
                body: String::new(),
            }
            .into());
        }
        let a: QueryAnswer = reply
            .json()
            .map_err(|e| ProviderError::Refused(format!("querydr answer: {}", e.detail())))?;
        self.hash
            .verify_raw(&a.hash_data(), &a.vnp_SecureHash)
            .map_err(|e| ProviderError::Refused(format!("querydr answer checksum: {e}")))?;
        match a.vnp_ResponseCode.as_str() {
            "00" => {}
            "91" => return Ok(ProviderStatus::Unknown),
            other => {
                return Err(ProviderError::Refused(format!(
                    "querydr answered {other}: {}",
                    a.vnp_Message
                )))
            }
        }
        if a.vnp_TxnRef != n.reference {
            return Err(ProviderError::Refused(
                "querydr answered about another order".into(),
            ));
        }
        let amount = a
            .vnp_Amount
            .parse::<i64>()
            .map_err(|_| ProviderError::Refused("querydr amount is not a number".into()))?
            / 100;
        Ok(match super::codes::vnpay_status(&a.vnp_TransactionStatus) {
            super::codes::Finality::Paid => ProviderStatus::Paid {
                amount,
                txn: a.vnp_TransactionNo,
            },
            super::codes::Finality::Pending => ProviderStatus::Pending,
            super::codes::Finality::Failed => ProviderStatus::Failed {
                code: a.vnp_TransactionStatus.clone(),
            },
        })
    }
}

/// Decode an `application/x-www-form-urlencoded` query into pairs (order kept).
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (form_urldecode(k), form_urldecode(v))
        })
        .collect()
}

/// The inverse of [`form_urlencode`]: `+` is a space, `%XX` a byte; invalid escapes are kept.
pub fn form_urldecode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gw_crypto::checksum::form_urlencode;

    #[test]
    fn urldecode_inverts_urlencode() {
        for s in ["", "a b", "Thanh toán: H00/1 *a-b._~", "100%", "%zz", "%4"] {
            assert_eq!(form_urldecode(&form_urlencode(s)), s);
        }
        assert_eq!(form_urldecode("%4"), "%4");
        assert_eq!(form_urldecode("%zz"), "%zz");
        assert_eq!(form_urldecode("a+b%2B"), "a b+");
    }

    #[test]
    fn vnp_dates_are_gmt7() {
        assert_eq!(vnp_date(0), "19700101070000");
    }

    #[test]
    fn ipn_parsing_is_strict() {
        let base = |amount: &str| {
            vec![
                ("vnp_TmnCode".to_string(), "T".to_string()),
                ("vnp_TxnRef".into(), "R".into()),
                ("vnp_Amount".into(), amount.into()),
                ("vnp_ResponseCode".into(), "00".into()),
                ("vnp_TransactionStatus".into(), "00".into()),
                ("vnp_TransactionNo".into(), "14".into()),
            ]
        };
        assert_eq!(parse_ipn(&base("5000000")).unwrap().amount, 50_000);
        for bad in ["", "-100", "1.5", "150", "99999999999999999999999"] {
            assert_eq!(
                parse_ipn(&base(bad)),
                Err(IpnParseError::Malformed("vnp_Amount")),
                "{bad}"
            );
        }
        let mut twice = base("100");
        twice.push(("vnp_TxnRef".into(), "S".into()));
        assert_eq!(
            parse_ipn(&twice),
            Err(IpnParseError::Malformed("vnp_TxnRef"))
        );
        assert_eq!(
            parse_ipn(&base("100")[1..]),
            Err(IpnParseError::Missing("vnp_TmnCode"))
        );
    }
}
