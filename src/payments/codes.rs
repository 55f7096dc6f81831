//! Which provider result codes are final: the one place that says so.
//!
//! # Invariants
//! - A code is [`Finality::Paid`] only where the provider documents it as money taken;
//!   [`Finality::Pending`] where the provider documents that the payment may still complete
//!   (the order stays `requested`: a later paid notification, or reconciliation, settles it);
//!   everything else is [`Finality::Failed`].
//! - Notifications (IPN / callback) and queries read the same table.
//!
//! Sources: VNPay PAY 2.1.0 (`vnp_ResponseCode`, `vnp_TransactionStatus` tables); MoMo
//! One-time payment v3 (`resultCode` table); the DVCQG payment platform and PayGov publish
//! only "00" as success in their callback contracts (CONTRACTS.md) and name no pending
//! callback code, so every other callback code of theirs is final.

/// What a provider's code says about an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finality {
    Paid,
    /// Not (yet) paid, and it may still be: not a final outcome.
    Pending,
    Failed,
}

/// VNPay `vnp_TransactionStatus` codes that are not final: 01 not completed, 05 VNPay is
/// processing (refund), 07 suspected fraud (money taken, under review).
const VNPAY_PENDING_STATUS: &[&str] = &["01", "05", "07"];
/// VNPay `vnp_ResponseCode` codes that are not final: 07 money taken, suspected (under review).
const VNPAY_PENDING_RESPONSE: &[&str] = &["07"];

/// A VNPay IPN: paid only when both codes are 00.
pub fn vnpay(response_code: &str, transaction_status: &str) -> Finality {
    if response_code == "00" && transaction_status == "00" {
        Finality::Paid
    } else if VNPAY_PENDING_STATUS.contains(&transaction_status)
        || VNPAY_PENDING_RESPONSE.contains(&response_code)
    {
        Finality::Pending
    } else {
        Finality::Failed
    }
}

/// A VNPay `querydr` answer's `vnp_TransactionStatus`.
pub fn vnpay_status(transaction_status: &str) -> Finality {
    vnpay(
        if transaction_status == "00" { "00" } else { "" },
        transaction_status,
    )
}

/// MoMo `resultCode`s that are not final: 1000 initiated, waiting for the user; 7000 being
/// processed; 7002 being processed by the provider of the payment instrument; 8000 waiting
/// for the user to confirm again; 9000 authorized, not yet captured.
const MOMO_PENDING: &[&str] = &["1000", "7000", "7002", "8000", "9000"];

/// A MoMo `resultCode` (IPN or query).
pub fn momo(result_code: &str) -> Finality {
    match result_code {
        "0" => Finality::Paid,
        c if MOMO_PENDING.contains(&c) => Finality::Pending,
        _ => Finality::Failed,
    }
}

/// A PayGov callback `errorCode`.
pub fn paygov(error_code: &str) -> Finality {
    if error_code == "00" {
        Finality::Paid
    } else {
        Finality::Failed
    }
}

/// A DVCQG payment platform callback `MaLoi`.
pub fn platform(ma_loi: &str) -> Finality {
    if ma_loi == "00" {
        Finality::Paid
    } else {
        Finality::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables() {
        assert_eq!(vnpay("00", "00"), Finality::Paid);
        assert_eq!(vnpay("00", "01"), Finality::Pending);
        assert_eq!(vnpay("07", "07"), Finality::Pending);
        assert_eq!(vnpay("07", "00"), Finality::Pending);
        assert_eq!(vnpay("24", "02"), Finality::Failed);
        assert_eq!(vnpay("51", "02"), Finality::Failed);
        assert_eq!(vnpay_status("00"), Finality::Paid);
        assert_eq!(vnpay_status("05"), Finality::Pending);
        assert_eq!(vnpay_status("02"), Finality::Failed);
        assert_eq!(momo("0"), Finality::Paid);
        for c in ["1000", "7000", "7002", "8000", "9000"] {
            assert_eq!(momo(c), Finality::Pending, "{c}");
        }
        for c in ["1001", "1003", "1006", "42", ""] {
            assert_eq!(momo(c), Finality::Failed, "{c}");
        }
        assert_eq!(paygov("00"), Finality::Paid);
        assert_eq!(paygov("24"), Finality::Failed);
        assert_eq!(platform("00"), Finality::Paid);
        assert_eq!(platform("99"), Finality::Failed);
    }
}
