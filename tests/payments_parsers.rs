//! Property tests of the payment callback parsers, the query decoding and the references:
//! arbitrary input never panics, well-formed input round-trips, and any change to a signed
//! VNPay callback breaks its checksum.

use gateway::payments::vnpay::{form_urldecode, parse_ipn, parse_query};
use gateway::payments::{order_reference, paygov, platform, MAX_REFERENCE_LEN};
use gw_crypto::checksum::{form_urlencode, VnPay};
use gw_crypto::keys::Secret;
use proptest::prelude::*;

fn ipn(amount100: &str, txn_ref: &str, code: &str) -> Vec<(String, String)> {
    [
        ("vnp_TmnCode", "T"),
        ("vnp_TxnRef", txn_ref),
        ("vnp_Amount", amount100),
        ("vnp_ResponseCode", code),
        ("vnp_TransactionStatus", code),
        ("vnp_TransactionNo", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn vnpay_ipn_parser_never_panics(pairs in prop::collection::vec((".{0,20}", ".{0,30}"), 0..12)) {
        let _ = parse_ipn(&pairs);
    }

    #[test]
    fn vnpay_amounts_round_trip(amount in 1i64..1_000_000_000_000, txn_ref in "[A-Z0-9]{1,20}") {
        let p = parse_ipn(&ipn(&(amount * 100).to_string(), &txn_ref, "00")).unwrap();
        prop_assert_eq!(p.amount, amount);
        prop_assert_eq!(p.txn_ref, txn_ref);
    }

    #[test]
    fn vnpay_rejects_non_numeric_or_fractional_amounts(s in "[^0-9]{1,8}|[0-9]{0,6}[1-9][0-9]?") {
        // Either not digits, or not a multiple of 100 (1-2 trailing digits, non-zero).
        let r = parse_ipn(&ipn(&s, "R", "00"));
        if s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<i64>().map(|v| v % 100 == 0).unwrap_or(false) {
            prop_assert!(r.is_ok());
        } else {
            prop_assert!(r.is_err());
        }
    }

    #[test]
    fn query_decoding_inverts_form_encoding(pairs in prop::collection::vec(("[a-zA-Z_]{1,10}", "\\PC{0,20}"), 0..8)) {
        let q = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", form_urlencode(k), form_urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let decoded = parse_query(&q);
        let expected: Vec<_> = pairs.iter().filter(|(k, _)| !k.is_empty()).cloned().collect();
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn urldecode_never_panics(s in "\\PC{0,40}|[%+0-9a-fA-F]{0,12}") {
        let _ = form_urldecode(&s);
        let _ = parse_query(&s);
    }

    #[test]
    fn any_change_to_a_signed_vnpay_callback_breaks_it(idx in 0usize..6, extra in "[A-Za-z0-9]{1,4}") {
        let vnp = VnPay::new(Secret::new("K"));
        let mut p = ipn("5000000", "REF1", "00");
        let h = vnp.sign(&p).unwrap();
        p.push(("vnp_SecureHash".into(), h));
        prop_assert!(vnp.verify(&p).is_ok());
        p[idx].1.push_str(&extra);
        prop_assert!(vnp.verify(&p).is_err());
    }

    #[test]
    fn platform_and_paygov_parsers_never_panic(
        obj in prop::collection::btree_map(
            prop::sample::select(vec!["MaLoi", "MaDoiTac", "MaThamChieu", "SoTien", "MaTienTe", "amount", "orderId", "errorCode", "x"]),
            prop_oneof![".{0,12}".prop_map(serde_json::Value::from), any::<i64>().prop_map(serde_json::Value::from), Just(serde_json::Value::Null)],
            0..9,
        )
    ) {
        let v = serde_json::Value::Object(obj.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
        if let Ok(cb) = platform::parse_callback(&v) {
            prop_assert!(cb.so_tien >= 0);
        }
        if let Ok(cb) = paygov::parse_callback(&v) {
            prop_assert!(cb.amount >= 0);
        }
    }

    #[test]
    fn platform_amounts_round_trip(amount in 0i64..1_000_000_000_000, as_number in any::<bool>()) {
        let so_tien = if as_number { serde_json::json!(amount) } else { serde_json::json!(amount.to_string()) };
        let v = serde_json::json!({"MaLoi": "00", "MaDoiTac": "P", "MaThamChieu": "R", "SoTien": so_tien, "MaTienTe": "VND"});
        prop_assert_eq!(platform::parse_callback(&v).unwrap().so_tien, amount);
        let g = serde_json::json!({"orderId": "R", "errorCode": "00", "amount": so_tien});
        prop_assert_eq!(paygov::parse_callback(&g).unwrap().amount, amount);
    }

    #[test]
    fn references_fit_every_provider(prefix in "\\PC{0,8}", dossier in "\\PC{0,60}", fee in "\\PC{0,30}", attempt in 1u32..100) {
        let r = order_reference(&prefix, &dossier, &fee, attempt);
        prop_assert_eq!(r.len(), MAX_REFERENCE_LEN);
        prop_assert!(r.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        prop_assert_eq!(r.clone(), order_reference(&prefix, &dossier, &fee, attempt));
    }
}
