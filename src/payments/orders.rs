//! Orders: what the one-stop system asks to pay, the checks a request passes, and the
//! deterministic order reference.
//!
//! # Invariants
//! - **One order per fee (or per dossier).** The order reference is derived deterministically
//!   from the dossier code, the fee item(s) and the attempt number ([`order_reference`]): same
//!   input, same reference, on every instance and after every restart.
//! - A request is checked before anything is stored: field limits, distinct codes, positive
//!   amounts within the maxima, checked sums ([`check_request`], pure and fuzzed).

use std::time::Duration;

use gw_store::payments::{OrderState, PaymentOrder};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::provider::ProviderError;
use crate::config::payments::{
    FeeCheck, Grouping, DEFAULT_DEADLINE_SECS, DEFAULT_MAX_AMOUNT, DEFAULT_REFERENCE_PREFIX,
    DEFAULT_SOURCE_NAME,
};

/// Longest reference any supported provider takes (`MaThamChieu`: 20).
pub const MAX_REFERENCE_LEN: usize = 20;

/// The reference of an order: `prefix` (upper-case alphanumerics, at most 4) followed by the
/// base-32 SHA-256 of `dossier ␟ fee key ␟ attempt`, cut to [`MAX_REFERENCE_LEN`]. Same input,
/// same reference, on every instance and after every restart; with a 4-character prefix, 16
/// base-32 characters (80 bits) remain, so distinct fees do not collide in practice.
pub fn order_reference(prefix: &str, dossier_code: &str, fee_key: &str, attempt: u32) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let prefix: String = prefix
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .take(4)
        .collect();
    let digest = Sha256::new()
        .chain_update(dossier_code.as_bytes())
        .chain_update([0x1f])
        .chain_update(fee_key.as_bytes())
        .chain_update([0x1f])
        .chain_update(attempt.to_be_bytes())
        .finalize();
    let mut out = prefix;
    let mut bits: u32 = 0;
    let mut nbits = 0;
    for b in digest {
        bits = (bits << 8) | u32::from(b);
        nbits += 8;
        while nbits >= 5 && out.len() < MAX_REFERENCE_LEN {
            nbits -= 5;
            out.push(ALPHABET[((bits >> nbits) & 31) as usize] as char);
        }
    }
    out
}

/// One fee of a dossier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fee {
    /// The fee item code (unique within the dossier).
    pub code: String,
    /// Amount in VND.
    pub amount: i64,
}

/// The one-stop system asks for a dossier's fees to be paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    pub dossier_code: String,
    pub fees: Vec<Fee>,
    /// 1 for the first try; a new attempt (after a failed or expired order) makes new orders.
    #[serde(default = "one")]
    pub attempt: u32,
}

fn one() -> u32 {
    1
}

/// An order as the requester sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    pub reference: String,
    pub fee_items: Vec<String>,
    pub amount: i64,
    pub state: OrderState,
    pub pay_url: Option<String>,
}

impl From<&PaymentOrder> for OrderView {
    fn from(o: &PaymentOrder) -> Self {
        OrderView {
            reference: o.order.reference.clone(),
            fee_items: o.order.fee_items.clone(),
            amount: o.order.amount,
            state: o.state,
            pay_url: o.pay_url.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("unknown payment provider `{0}`")]
    UnknownProvider(String),
    #[error("invalid payment request: {0}")]
    Invalid(String),
    #[error("order {reference} exists with amount {stored}, the request says {requested}: a changed fee needs a new attempt")]
    AmountChanged {
        reference: String,
        stored: i64,
        requested: i64,
    },
    /// `fee_check = "known"` and no dossier snapshot with fees reached the gateway yet.
    #[error("no fees are known for dossier {0}: the one-stop system sends the dossier (with its fees) before asking for payment")]
    FeesUnknown(String),
    /// A requested fee is not among the dossier's known fees, has another amount, or is paid.
    #[error("{0}")]
    FeeMismatch(String),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("store: {0}")]
    Store(#[from] gw_store::StoreError),
}

/// The checks of an order request that need nothing but the request and the settings: field
/// limits ([`crate::model::limits`]), distinct codes, positive amounts within the maxima, checked sums.
/// Returns the sorted fee codes and, when it fits `max_order_amount`, the total. Pure (fuzzed by
/// `fuzz/fuzz_targets/edge_input.rs`).
pub fn check_request<'r>(
    settings: &Settings,
    req: &'r PaymentRequest,
) -> Result<(Vec<&'r str>, Option<i64>), PaymentError> {
    crate::model::limits::dossier_code("dossier_code", &req.dossier_code)
        .map_err(|e| PaymentError::Invalid(e.to_string()))?;
    if req.fees.is_empty() || req.fees.len() > crate::model::limits::MAX_FEES_PER_REQUEST {
        return Err(PaymentError::Invalid(format!(
            "fees: 1 to {} fees are required",
            crate::model::limits::MAX_FEES_PER_REQUEST
        )));
    }
    for (i, f) in req.fees.iter().enumerate() {
        crate::model::limits::fee_code(&format!("fees[{i}].code"), &f.code)
            .map_err(|e| PaymentError::Invalid(e.to_string()))?;
    }
    if req.attempt == 0 {
        return Err(PaymentError::Invalid("attempt starts at 1".into()));
    }
    let mut codes: Vec<&str> = req.fees.iter().map(|f| f.code.as_str()).collect();
    codes.sort_unstable();
    if codes.windows(2).any(|w| w[0] == w[1]) || codes.iter().any(|c| c.is_empty()) {
        return Err(PaymentError::Invalid(
            "fees: each code must be distinct".into(),
        ));
    }
    if req.fees.iter().any(|f| f.amount <= 0) {
        return Err(PaymentError::Invalid("fee amounts must be positive".into()));
    }
    let max_fee = settings.max_fee_amount;
    if let Some(f) = req.fees.iter().find(|f| f.amount > max_fee) {
        return Err(PaymentError::Invalid(format!(
            "fee {} amount {} is above the largest allowed fee {max_fee} (payments.max_fee_amount)",
            f.code, f.amount
        )));
    }
    let max_order = settings.max_order_amount;
    let total = req
        .fees
        .iter()
        .try_fold(0i64, |sum, f| sum.checked_add(f.amount))
        .filter(|t| *t <= max_order);
    if matches!(settings.grouping, Grouping::PerDossier) && total.is_none() {
        return Err(PaymentError::Invalid(format!(
                "the fees add up to more than the largest allowed order {max_order} (payments.max_order_amount)"
            )));
    }
    Ok((codes, total))
}

/// Settings of the payment service (from `[payments]`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub grouping: Grouping,
    /// A `requested` order older than this is queried and, if the provider never saw a
    /// payment, expired.
    pub deadline: Duration,
    /// Reference prefix (≤ 4 upper-case alphanumerics).
    pub reference_prefix: String,
    /// The envelope source name of `payment.settled`.
    pub source_name: String,
    /// The largest amount (VND) one fee may have; a larger one is refused.
    pub max_fee_amount: i64,
    /// The largest amount (VND) one order may have (the sum of its fees, per dossier).
    pub max_order_amount: i64,
    /// Whether requested fees must match the dossier's known fees.
    pub fee_check: FeeCheck,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            grouping: Grouping::PerFee,
            deadline: Duration::from_secs(DEFAULT_DEADLINE_SECS),
            reference_prefix: DEFAULT_REFERENCE_PREFIX.into(),
            source_name: DEFAULT_SOURCE_NAME.into(),
            max_fee_amount: DEFAULT_MAX_AMOUNT,
            max_order_amount: DEFAULT_MAX_AMOUNT,
            fee_check: FeeCheck::Known,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_deterministic_short_and_distinct() {
        let a = order_reference("GW", "H01.2-240101-0001", "LEPHI", 1);
        assert_eq!(a, order_reference("GW", "H01.2-240101-0001", "LEPHI", 1));
        assert_eq!(a.len(), MAX_REFERENCE_LEN);
        assert!(a.starts_with("GW"));
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, order_reference("GW", "H01.2-240101-0001", "PHI", 1));
        assert_ne!(a, order_reference("GW", "H01.2-240101-0001", "LEPHI", 2));
        assert_ne!(a, order_reference("GW", "H01.2-240101-0002", "LEPHI", 1));
        // Separator: ("ab", "c") and ("a", "bc") differ.
        assert_ne!(
            order_reference("", "ab", "c", 1),
            order_reference("", "a", "bc", 1)
        );
        assert_eq!(order_reference("x-y!zz9", "D", "F", 1).len(), 20);
        assert!(order_reference("x-y!zz9", "D", "F", 1).starts_with("XYZZ"));
        let mut seen = std::collections::HashSet::new();
        for i in 0..20_000 {
            assert!(seen.insert(order_reference("GW", &format!("D{i}"), "F", 1)));
        }
    }
}
