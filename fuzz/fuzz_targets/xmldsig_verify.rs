//! The XML-DSig verifier on arbitrary input (never panics, never accepts: the fuzzer cannot
//! forge a signature of a key generated here), and sign → verify on every document the reader
//! accepts: the signature made over it verifies, names the root, and digests what the
//! canonicalizer produced.
#![no_main]

use std::sync::OnceLock;

use gw_crypto::keys::{SigningKey, VerifyingKey};
use gw_crypto::xmldsig::{
    sign_enveloped, verify_enveloped, DsigError, SignOptions, SignerTrust, VerifyOptions,
};
use libfuzzer_sys::fuzz_target;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;

fn key() -> &'static (SigningKey, Vec<VerifyingKey>) {
    static KEY: OnceLock<(SigningKey, Vec<VerifyingKey>)> = OnceLock::new();
    KEY.get_or_init(|| {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let pkey = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let sk = SigningKey::new("fuzz", pkey, None, Vec::new()).unwrap();
        let vk = sk.verifying_key().unwrap();
        (sk, vec![vk])
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (sk, pinned) = key();
    let opts = VerifyOptions::new(SignerTrust::Pinned(pinned));
    // Nothing the fuzzer writes carries a valid signature of this fresh key.
    assert!(verify_enveloped(text, &opts).is_err());

    let sign_opts = SignOptions {
        include_certificate: false,
        ..SignOptions::default()
    };
    match sign_enveloped(text, sk, &sign_opts) {
        Ok(signed) => match verify_enveloped(&signed, &opts) {
            Ok(v) => assert!(v.signed_path.is_empty()),
            // A document that already holds a Signature now holds two: refused, as it must be.
            Err(DsigError::Wrapping(_)) => {}
            Err(e) => panic!("own signature does not verify: {e}\n{signed}"),
        },
        Err(_) => {}
    }
});
