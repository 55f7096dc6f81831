//! The payment callback parsers on arbitrary bytes: VNPay's IPN query string
//! (`payments::vnpay::parse_query` then `parse_ipn`), and the JSON callbacks of the DVCQG payment
//! platform and PayGov (`parse_callback`). Never panics; an accepted VNPay IPN has a
//! non-negative whole-VND amount; decoding is total (every query
//! decodes to pairs, whatever its escapes).
#![no_main]

use gateway::payments::{paygov, platform, vnpay};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let params = vnpay::parse_query(&text);
    if let Ok(ipn) = vnpay::parse_ipn(&params) {
        assert!(ipn.amount >= 0, "{ipn:?}");
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = platform::parse_callback(&v);
        let _ = paygov::parse_callback(&v);
    }
});
