//! Small helpers shared by the modules: hex, constant-time equality, ECDSA signature encodings.
//!
//! # Invariants
//!
//! - [`ct_eq`] and [`hex`] are public, so the gateway compares secrets and writes hex through
//!   the same code as this crate; the signing helpers stay inside the crate.
//! - [`ct_eq`] takes the same time for every pair of equal-length inputs; the length itself is
//!   not treated as secret.

use openssl::bn::BigNum;
use openssl::ecdsa::EcdsaSig;
use openssl::error::ErrorStack;

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// Constant-time equality of secrets (tokens, MACs, digests). Its time depends only on the
/// longer input's length: no early exit at the first difference, and none on a length
/// mismatch, so a guessed token learns neither its prefix nor its length.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

/// How a signature is made: the digest, RSA-PSS parameters when PSS is used, and whether an
/// ECDSA signature travels as fixed-width `r || s` (JWS, XML-DSig, RFC 9421) instead of DER.
pub(crate) struct SigningScheme {
    pub digest: openssl::hash::MessageDigest,
    /// MGF1 digest and salt length for RSA-PSS (OpenSSL's raw value: `-1` = digest length).
    pub pss: Option<(openssl::hash::MessageDigest, i32)>,
    pub ecdsa_raw: bool,
}

/// Sign `data`; the one place every scheme of this crate signs through.
pub(crate) fn sign_with(
    pkey: &openssl::pkey::PKeyRef<openssl::pkey::Private>,
    p: &SigningScheme,
    data: &[u8],
) -> Result<Vec<u8>, ErrorStack> {
    let mut signer = openssl::sign::Signer::new(p.digest, pkey)?;
    if let Some((mgf1, salt)) = p.pss {
        signer.set_rsa_padding(openssl::rsa::Padding::PKCS1_PSS)?;
        signer.set_rsa_mgf1_md(mgf1)?;
        signer.set_rsa_pss_saltlen(openssl::sign::RsaPssSaltlen::custom(salt))?;
    }
    signer.update(data)?;
    let sig = signer.sign_to_vec()?;
    if p.ecdsa_raw {
        ecdsa_der_to_raw(&sig, 32)
    } else {
        Ok(sig)
    }
}

/// Verify `sig` over `data`; `Ok(false)` on a mismatch or a malformed signature.
pub(crate) fn verify_with(
    pkey: &openssl::pkey::PKeyRef<openssl::pkey::Public>,
    p: &SigningScheme,
    data: &[u8],
    sig: &[u8],
) -> Result<bool, ErrorStack> {
    let der;
    let sig = if p.ecdsa_raw {
        match ecdsa_raw_to_der(sig, 32) {
            Some(d) => {
                der = d;
                der.as_slice()
            }
            None => return Ok(false),
        }
    } else {
        sig
    };
    let mut verifier = openssl::sign::Verifier::new(p.digest, pkey)?;
    if let Some((mgf1, salt)) = p.pss {
        verifier.set_rsa_padding(openssl::rsa::Padding::PKCS1_PSS)?;
        verifier.set_rsa_mgf1_md(mgf1)?;
        verifier.set_rsa_pss_saltlen(openssl::sign::RsaPssSaltlen::custom(salt))?;
    }
    verifier.update(data)?;
    // OpenSSL reports some malformed signatures as errors rather than `false`.
    Ok(verifier.verify(sig).unwrap_or(false))
}

/// Converts an OpenSSL DER ECDSA signature into the fixed-width `r || s` form (JWS, XML-DSig).
pub(crate) fn ecdsa_der_to_raw(der: &[u8], field_len: usize) -> Result<Vec<u8>, ErrorStack> {
    let sig = EcdsaSig::from_der(der)?;
    let mut out = sig.r().to_vec_padded(field_len as i32)?;
    out.extend(sig.s().to_vec_padded(field_len as i32)?);
    Ok(out)
}

/// Converts fixed-width `r || s` into DER; `None` when the length is not `2 * field_len`.
pub(crate) fn ecdsa_raw_to_der(raw: &[u8], field_len: usize) -> Option<Vec<u8>> {
    if raw.len() != 2 * field_len {
        return None;
    }
    let r = BigNum::from_slice(&raw[..field_len]).ok()?;
    let s = BigNum::from_slice(&raw[field_len..]).ok()?;
    EcdsaSig::from_private_components(r, s).ok()?.to_der().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_ct_eq() {
        assert_eq!(hex(&[0x00, 0xab, 0x10]), "00ab10");
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}

#[cfg(test)]
mod ct_eq_tests {
    use super::ct_eq;

    #[test]
    fn equal_only_when_same_bytes_and_length() {
        assert!(ct_eq(b"token", b"token"));
        assert!(ct_eq(b"", b""));
        assert!(!ct_eq(b"token", b"tokem"));
        assert!(!ct_eq(b"token", b"token\0"));
        assert!(!ct_eq(b"tok", b"token"));
        assert!(!ct_eq(b"", b"x"));
    }
}
