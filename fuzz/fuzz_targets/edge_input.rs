//! The edge's newer input checks on arbitrary bytes:
//! - `evidence::redact::redact` (the byte scan that masks credentials before the evidence log
//!   digests a body): never panics; idempotent; a body that was JSON is still JSON, and no
//!   top-level credential field keeps a string value other than the mask;
//! - a payment order request (`payments::check_request` after JSON decoding): never panics; an
//!   accepted request's codes obey `limits`, its amounts are positive and within the maxima,
//!   and its total does not wrap.
#![no_main]

use gateway::evidence::redact::{redact, FIELDS, MASK};
use gateway::payments::{check_request, PaymentRequest, Settings};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let once = redact(data).into_owned();
    assert_eq!(redact(&once).as_ref(), once.as_slice(), "redaction is idempotent");
    if serde_json::from_slice::<serde_json::Value>(data).is_ok() {
        let v: serde_json::Value =
            serde_json::from_slice(&once).expect("a redacted JSON body is still JSON");
        if let Some(o) = v.as_object() {
            for (k, val) in o {
                if FIELDS.iter().any(|f| f.eq_ignore_ascii_case(k)) {
                    if let Some(s) = val.as_str() {
                        assert_eq!(s, MASK, "credential {k} left in clear");
                    }
                }
            }
        }
    }

    if let Ok(req) = serde_json::from_slice::<PaymentRequest>(data) {
        let settings = Settings::default();
        if let Ok((codes, total)) = check_request(&settings, &req) {
            assert!(gateway::model::limits::dossier_code("d", &req.dossier_code).is_ok());
            assert!(!codes.is_empty() && codes.len() <= gateway::model::limits::MAX_FEES_PER_REQUEST);
            for f in &req.fees {
                assert!(f.amount > 0 && f.amount <= settings.max_fee_amount);
            }
            if let Some(t) = total {
                let sum: i128 = req.fees.iter().map(|f| f.amount as i128).sum();
                assert_eq!(t as i128, sum, "the total does not wrap");
            }
        }
    }
});
