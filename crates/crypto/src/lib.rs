//! Signing and verification for the gateway: XML canonicalization and XML-DSig, JWS, HTTP message
//! signatures, the payment parties' checksum schemes, keys and X.509 trust, RFC 3161 time-stamps.
//!
//! Invariants across the crate:
//! - All cryptography goes through the system OpenSSL (the `openssl` crate); no hand-rolled primitives.
//! - Every comparison of a secret-derived value (MAC, digest, checksum) is constant-time
//!   (`openssl::memcmp::eq`).
//! - Verification fails closed and says why: each module has one error enum with a variant per failing
//!   step, so "tampered content", "tampered SignedInfo", "expired certificate", "wrapping" and
//!   "replayed request" are distinguishable by callers and in logs.
//! - Verifiers return what was verified (the signed element, the payload, the signer certificate) so
//!   callers act only on verified data.
//! - Keys are loaded once ([`keys`]) and shared cheaply (`Arc` inside).
//! - One copy of each small helper: [`digest::sha256_hex`] and [`util::ct_eq`] are public so the
//!   gateway uses them instead of its own.

pub mod checksum;
pub mod digest;
pub mod httpsig;
pub mod jws;
pub mod keys;
pub mod tsp;
pub mod util;
pub mod xml;
pub mod xmldsig;

#[cfg(test)]
mod tests {
    fn assert_send_sync<T: Send + Sync>() {}

    /// Keys, trust stores and nonce stores are built once and shared across tasks.
    #[test]
    fn shared_types_are_send_and_sync() {
        assert_send_sync::<crate::keys::SigningKey>();
        assert_send_sync::<crate::keys::VerifyingKey>();
        assert_send_sync::<crate::keys::KeyRing>();
        assert_send_sync::<crate::keys::TrustStore>();
        assert_send_sync::<crate::httpsig::MemoryNonceStore>();
        assert_send_sync::<crate::checksum::VnPay>();
    }
}
