//! Small helpers shared by the modules: hex, constant-time equality, ECDSA signature encodings.

use openssl::bn::BigNum;
use openssl::ecdsa::EcdsaSig;
use openssl::error::ErrorStack;

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// Constant-time equality; different lengths are unequal (length is not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a, b)
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
