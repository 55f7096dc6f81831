//! The payment checksum schemes on arbitrary input. The bytes are read as a VNPay return/IPN
//! query string (`k=v&k=v`, form-urlencoded): verifying it never panics and never succeeds for
//! a hash the fuzzer wrote; signing the same fields (distinct names) and verifying succeeds
//! (also with the hash upper-cased, and with the fields in reverse order: VNPay sorts them);
//! the other schemes verify arbitrary checksum strings without panicking and accept exactly
//! their own output.
#![no_main]

use gw_crypto::checksum::{ChecksumError, MoMo, PayGov, PaymentPlatform, VnPay};
use gw_crypto::keys::Secret;
use libfuzzer_sys::fuzz_target;

/// `application/x-www-form-urlencoded` parsing (lossy UTF-8), as a web framework gives the
/// query to the callback handler.
fn decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => {
                let h = std::str::from_utf8(&s[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &[u8]) -> Vec<(String, String)> {
    q.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|&b| b == b'=') {
            Some(i) => (decode(&p[..i]), decode(&p[i + 1..])),
            None => (decode(p), String::new()),
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let vnp = VnPay::new(Secret::new("FUZZSECRET"));
    let params = parse_query(data);
    let _ = VnPay::hash_data(&params);
    match vnp.verify(&params) {
        Ok(()) => panic!("a fuzzer-written vnp_SecureHash verified"),
        Err(ChecksumError::Missing(_) | ChecksumError::NotHex | ChecksumError::Mismatch) => {}
        Err(e) => panic!("unexpected error: {e}"),
    }
    // Field order is free only among distinct names: VNPay never sends a name twice, and the
    // hash covers repeated names in the order received (sorting is stable).
    let mut seen = std::collections::HashSet::new();
    let mut fields: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != VnPay::HASH_FIELD && seen.insert(k.clone()))
        .cloned()
        .collect();
    let hash = vnp.sign(&fields).unwrap();
    fields.push((VnPay::HASH_FIELD.to_owned(), hash.to_uppercase()));
    vnp.verify(&fields).expect("own hash verifies");
    fields.reverse();
    vnp.verify(&fields)
        .expect("own hash verifies in any field order");

    let text = String::from_utf8_lossy(data);
    let parts: Vec<&str> = text.split('|').collect();
    let claimed = parts.last().copied().unwrap_or("");
    let pp = PaymentPlatform::new(Secret::new("KEY"));
    assert!(pp.verify(&parts, claimed).is_err());
    let own = pp.ma_xac_thuc(&parts).unwrap();
    pp.verify(&parts, &own).expect("own MaXacThuc verifies");

    let pairs: Vec<(&str, &str)> = parts
        .iter()
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    let momo = MoMo::new(Secret::new("K"));
    assert!(momo.verify(&pairs, claimed).is_err());
    let own = momo.sign(&pairs).unwrap();
    momo.verify(&pairs, &own)
        .expect("own MoMo signature verifies");

    let pg = PayGov::new(Secret::new("S"), "A", "P");
    let get = |i: usize| parts.get(i).copied().unwrap_or("");
    assert!(pg.verify(get(0), get(1), get(2), claimed).is_err());
    let own = pg.checksum(get(0), get(1), get(2)).unwrap();
    pg.verify(get(0), get(1), get(2), &own)
        .expect("own PayGov checksum verifies");
});
