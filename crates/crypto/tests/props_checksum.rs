//! Property tests of the payment checksum schemes (`gw_crypto::checksum`): sign/verify round
//! trips over random field sets, any changed field, added or removed field, or other key fails,
//! and VNPay's field order (sorted by name, empty values and the hash fields left out).
//!
//! Cases per property: 128, or `PROPTEST_CASES` when set (e.g. `PROPTEST_CASES=5000`).

use std::collections::BTreeMap;

use gw_crypto::checksum::{ChecksumError, MoMo, PayGov, PaymentPlatform, VnPay};
use gw_crypto::keys::Secret;
use proptest::prelude::*;
use proptest::sample::Index;

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        // A failure prints its shrunk input; nothing is written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Values as payment parties send them: ASCII, Vietnamese text, and the characters form
/// encoding treats specially (`&`, `=`, `+`, `%`, space, `~`).
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,12}",
        "[ -~]{0,24}",
        "[a-zA-Z &=+%~ăâđêôơưàảãáạễệ]{1,20}",
    ]
}

/// A VNPay field set: unique `vnp_*` names (never the hash fields), non-empty values.
fn vnp_fields() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::btree_map(
        "vnp_[A-Za-z]{1,12}",
        value().prop_filter("non-empty", |v| !v.is_empty()),
        1..10,
    )
    .prop_map(|m: BTreeMap<String, String>| {
        m.into_iter()
            .filter(|(k, _)| k != VnPay::HASH_FIELD && k != VnPay::HASH_TYPE_FIELD)
            .collect::<Vec<_>>()
    })
    .prop_filter("at least one field", |v| !v.is_empty())
    .prop_shuffle()
}

fn with_hash(mut fields: Vec<(String, String)>, hash: String) -> Vec<(String, String)> {
    fields.push((VnPay::HASH_FIELD.to_owned(), hash));
    fields
}

proptest! {
    #![proptest_config(config(128))]

    /// Signing then verifying succeeds whatever the field order and the hash's letter case.
    #[test]
    fn vnpay_round_trip_in_any_order(fields in vnp_fields(), upper in any::<bool>(), seed in any::<u64>()) {
        let vnp = VnPay::new(Secret::new("VNP-SECRET"));
        let hash = vnp.sign(&fields).unwrap();
        prop_assert_eq!(hash.len(), 128);
        let hash = if upper { hash.to_uppercase() } else { hash };
        let mut received = with_hash(fields, hash);
        // A deterministic reordering (rotation) of what the callback carried.
        let n = received.len();
        received.rotate_left((seed % n as u64) as usize);
        received.push((VnPay::HASH_TYPE_FIELD.to_owned(), "HmacSHA512".to_owned()));
        prop_assert_eq!(vnp.verify(&received), Ok(()));
    }

    /// The signed string lists the non-empty fields sorted by name, once each.
    #[test]
    fn vnpay_hash_data_is_sorted_and_skips_empty(fields in vnp_fields(), empty in "vnp_[A-Za-z]{1,8}") {
        let mut with_empty = fields.clone();
        if !fields.iter().any(|(k, _)| *k == empty) {
            with_empty.push((empty, String::new()));
        }
        let data = VnPay::hash_data(&with_empty);
        prop_assert_eq!(&data, &VnPay::hash_data(&fields));
        let names: Vec<&str> = data.split('&').map(|kv| kv.split('=').next().unwrap()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        prop_assert_eq!(&names, &sorted);
        prop_assert_eq!(names.len(), fields.len());
    }

    /// Any one changed value, a removed field, an added field or another secret fails.
    #[test]
    fn vnpay_any_change_fails(
        fields in vnp_fields(),
        at in any::<Index>(),
        new_value in value().prop_filter("non-empty", |v| !v.is_empty()),
        change in 0..4u8,
    ) {
        let vnp = VnPay::new(Secret::new("VNP-SECRET"));
        let hash = vnp.sign(&fields).unwrap();
        let mut tampered = fields.clone();
        let i = at.index(tampered.len());
        match change {
            0 => {
                prop_assume!(tampered[i].1 != new_value);
                tampered[i].1 = new_value;
            }
            1 => { tampered.remove(i); }
            2 => tampered.push(("vnp_ZZExtra".to_owned(), new_value)),
            _ => {
                let other = VnPay::new(Secret::new("ANOTHER-SECRET"));
                prop_assert_eq!(other.verify(&with_hash(fields, hash)), Err(ChecksumError::Mismatch));
                return Ok(());
            }
        }
        prop_assert_eq!(vnp.verify(&with_hash(tampered, hash)), Err(ChecksumError::Mismatch));
    }

    /// MoMo signs the fields in the given order: round trip, any changed value fails, and
    /// the order is part of what is signed.
    #[test]
    fn momo_round_trip_change_and_order(
        fields in prop::collection::vec(("[a-zA-Z]{1,10}", value()), 1..8),
        at in any::<Index>(),
        new_value in value(),
    ) {
        let momo = MoMo::new(Secret::new("MOMO-KEY"));
        let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let sig = momo.sign(&f).unwrap();
        prop_assert_eq!(momo.verify(&f, &sig.to_uppercase()), Ok(()));
        let i = at.index(f.len());
        if f[i].1 != new_value {
            let mut t = f.clone();
            t[i].1 = &new_value;
            prop_assert_eq!(momo.verify(&t, &sig), Err(ChecksumError::Mismatch));
        }
        let mut reversed = f.clone();
        reversed.reverse();
        if MoMo::raw_data(&reversed) != MoMo::raw_data(&f) {
            prop_assert_eq!(momo.verify(&reversed, &sig), Err(ChecksumError::Mismatch));
        }
        prop_assert_eq!(MoMo::new(Secret::new("OTHER")).verify(&f, &sig), Err(ChecksumError::Mismatch));
    }

    /// MaXacThuc: round trip; any changed field or another key fails; garbage is `NotHex`.
    #[test]
    fn payment_platform_round_trip_and_change(
        fields in prop::collection::vec(value(), 1..8),
        at in any::<Index>(),
        new_value in value(),
        garbage in "[g-z]{2,8}",
    ) {
        let pp = PaymentPlatform::new(Secret::new("PP-KEY"));
        let f: Vec<&str> = fields.iter().map(String::as_str).collect();
        let m = pp.ma_xac_thuc(&f).unwrap();
        prop_assert_eq!(pp.verify(&f, &m), Ok(()));
        let i = at.index(f.len());
        if f[i] != new_value {
            let mut t = f.clone();
            t[i] = &new_value;
            prop_assert_eq!(pp.verify(&t, &m), Err(ChecksumError::Mismatch));
        }
        prop_assert_eq!(PaymentPlatform::new(Secret::new("OTHER")).verify(&f, &m), Err(ChecksumError::Mismatch));
        prop_assert_eq!(pp.verify(&f, &garbage), Err(ChecksumError::NotHex));
    }

    /// PayGov: round trip; any of the three fields changed fails.
    #[test]
    fn paygov_round_trip_and_change(
        order in "[A-Z0-9]{1,12}",
        request in "[A-Z0-9]{1,12}",
        amount in 0u64..10_000_000_000,
        which in 0..3u8,
    ) {
        let pg = PayGov::new(Secret::new("PG-SECRET"), "ACCESS", "PARTNER");
        let amount = amount.to_string();
        let c = pg.checksum(&order, &request, &amount).unwrap();
        prop_assert_eq!(pg.verify(&order, &request, &amount, &c), Ok(()));
        let (mut o, mut r, mut a) = (order.clone(), request.clone(), amount.clone());
        match which {
            0 => o.push('9'),
            1 => r.push('9'),
            _ => a.push('0'),
        }
        prop_assert_eq!(pg.verify(&o, &r, &a, &c), Err(ChecksumError::Mismatch));
    }
}
