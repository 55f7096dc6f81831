//! RFC 3161 time-stamps: build a `TimeStampReq` for a SHA-256 digest, verify a `TimeStampResp` or a
//! bare `TimeStampToken`.
//!
//! Invariants:
//! - Requests always carry SHA-256, a random 64-bit nonce and `certReq = TRUE` (so the token
//!   includes the TSA certificate).
//! - A token is accepted only if: it is CMS SignedData over `id-ct-TSTInfo`; its signature verifies
//!   with the signer certificate it names; that certificate chains to the configured
//!   [`TrustStore`] with extendedKeyUsage timeStamping (critical) and, when CRLs are configured, is not
//!   revoked; the `messageImprint` is SHA-256 over exactly the caller's digest; and, for a response to
//!   our request, the nonce is ours. Each failure has its own [`TspError`] variant.
//! - DER is built and read by a small, strict TLV codec here (definite lengths only); the signature
//!   and chain checks are OpenSSL's (PKCS#7 verify, X509 store).
//! - Not checked: the ESS `signingCertificate` attribute binding (RFC 5035); TSA policy OIDs are
//!   returned to the caller, not enforced.

use openssl::hash::{hash, MessageDigest};
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;

use crate::keys::{KeyError, TrustStore, Usage};
use crate::util::ct_eq;

/// DER of OID 2.16.840.1.101.3.4.2.1 (SHA-256).
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
/// DER of OID 1.2.840.113549.1.7.2 (signedData).
const OID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
/// DER of OID 1.2.840.113549.1.9.16.1.4 (id-ct-TSTInfo).
const OID_TST_INFO: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x04,
];

const TAG_INTEGER: u8 = 0x02;
const TAG_BOOLEAN: u8 = 0x01;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_GENERALIZED_TIME: u8 = 0x18;
const TAG_CONTEXT_0_CONSTRUCTED: u8 = 0xa0;

/// Errors of time-stamp requests and verification.
#[derive(Debug, thiserror::Error)]
pub enum TspError {
    #[error("malformed time-stamp structure: {0}")]
    Malformed(String),
    #[error("TSA refused the request: status {status} {text}")]
    Rejected { status: i64, text: String },
    #[error("the token is for another digest (messageImprint mismatch)")]
    ImprintMismatch,
    #[error("the response answers another request (nonce mismatch)")]
    NonceMismatch,
    #[error("unsupported hash algorithm in messageImprint")]
    UnsupportedHash,
    #[error("time-stamp signature does not verify: {0}")]
    SignatureInvalid(String),
    #[error("TSA certificate: {0}")]
    Certificate(#[from] KeyError),
    #[error("OpenSSL: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

// ---------------------------------------------------------------- DER

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    der(TAG_SEQUENCE, &parts.concat())
}

/// Reads TLVs from a buffer (definite lengths only, as DER requires).
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    fn peek_tag(&self) -> Option<u8> {
        self.buf.first().copied()
    }
    fn any(&mut self) -> Result<(u8, &'a [u8]), TspError> {
        let bad = |m: &str| TspError::Malformed(m.to_owned());
        let tag = *self.buf.first().ok_or_else(|| bad("truncated tag"))?;
        let first = *self.buf.get(1).ok_or_else(|| bad("truncated length"))?;
        let (len, hdr) = if first < 0x80 {
            (first as usize, 2)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 {
                return Err(bad("unsupported length form"));
            }
            let bytes = self
                .buf
                .get(2..2 + n)
                .ok_or_else(|| bad("truncated length"))?;
            (
                bytes.iter().fold(0usize, |acc, b| acc << 8 | *b as usize),
                2 + n,
            )
        };
        let end = hdr.checked_add(len).ok_or_else(|| bad("length overflow"))?;
        let content = self
            .buf
            .get(hdr..end)
            .ok_or_else(|| bad("truncated content"))?;
        self.buf = &self.buf[end..];
        Ok((tag, content))
    }
    fn expect(&mut self, tag: u8, what: &str) -> Result<&'a [u8], TspError> {
        let (t, c) = self.any()?;
        if t != tag {
            return Err(TspError::Malformed(format!(
                "{what}: tag {t:#04x}, expected {tag:#04x}"
            )));
        }
        Ok(c)
    }
}

fn oid_to_string(der: &[u8]) -> String {
    let mut parts: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for (i, b) in der.iter().enumerate() {
        acc = acc << 7 | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            if parts.is_empty() && i < der.len() {
                let first = if acc < 80 { acc / 40 } else { 2 };
                parts.push(first);
                parts.push(acc - first * 40);
            } else {
                parts.push(acc);
            }
            acc = 0;
        }
    }
    parts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

fn int_value(content: &[u8]) -> i64 {
    content.iter().fold(
        if content.first().is_some_and(|b| b & 0x80 != 0) {
            -1
        } else {
            0
        },
        |acc, b| acc << 8 | *b as i64,
    )
}

// ---------------------------------------------------------------- request

/// A DER `TimeStampReq` and what is needed to check the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeStampRequest {
    /// DER to POST as `application/timestamp-query`.
    pub der: Vec<u8>,
    /// The SHA-256 digest being time-stamped.
    pub digest: Vec<u8>,
    /// The nonce's INTEGER content octets.
    pub nonce: Vec<u8>,
}

/// Builds a request for a SHA-256 `digest` (32 bytes).
pub fn request(digest: &[u8]) -> Result<TimeStampRequest, TspError> {
    if digest.len() != 32 {
        return Err(TspError::Malformed(format!(
            "SHA-256 digest must be 32 bytes, got {}",
            digest.len()
        )));
    }
    let mut nonce = [0u8; 8];
    openssl::rand::rand_bytes(&mut nonce)?;
    nonce[0] &= 0x7f; // positive INTEGER
    if nonce[0] == 0 {
        nonce[0] = 1; // minimal encoding: no leading zero octet
    }
    let imprint = seq(&[
        seq(&[der(TAG_OID, OID_SHA256), der(TAG_NULL, &[])]),
        der(TAG_OCTET_STRING, digest),
    ]);
    let body = seq(&[
        der(TAG_INTEGER, &[1]),
        imprint,
        der(TAG_INTEGER, &nonce),
        der(TAG_BOOLEAN, &[0xff]),
    ]);
    Ok(TimeStampRequest {
        der: body,
        digest: digest.to_vec(),
        nonce: nonce.to_vec(),
    })
}

/// Builds a request for the SHA-256 of `data`.
pub fn request_for_data(data: &[u8]) -> Result<TimeStampRequest, TspError> {
    request(&hash(MessageDigest::sha256(), data)?)
}

// ---------------------------------------------------------------- verification

/// A verified time-stamp.
#[derive(Debug, Clone)]
pub struct TimeStamp {
    /// `genTime` as sent, e.g. `20260101120000Z`.
    pub gen_time: String,
    /// `genTime` as Unix seconds (fractions dropped).
    pub gen_unix: i64,
    /// TSA policy OID (dotted).
    pub policy: String,
    /// Serial number content octets.
    pub serial: Vec<u8>,
    /// The nonce's INTEGER content octets, if any.
    pub nonce: Option<Vec<u8>>,
    /// The TSA certificate that signed.
    pub tsa: X509,
    /// The token (CMS ContentInfo), to store as evidence.
    pub token_der: Vec<u8>,
}

/// Verifies a `TimeStampResp` answering `req`: status granted, token valid for `req.digest`, nonce ours.
pub fn verify_response(
    resp_der: &[u8],
    req: &TimeStampRequest,
    trust: &TrustStore,
) -> Result<TimeStamp, TspError> {
    let mut outer = Reader::new(resp_der);
    let resp = outer.expect(TAG_SEQUENCE, "TimeStampResp")?;
    if !outer.is_empty() {
        return Err(TspError::Malformed(
            "trailing data after TimeStampResp".into(),
        ));
    }
    let mut r = Reader::new(resp);
    let status_info = r.expect(TAG_SEQUENCE, "PKIStatusInfo")?;
    let mut s = Reader::new(status_info);
    let status = int_value(s.expect(TAG_INTEGER, "PKIStatus")?);
    if status != 0 && status != 1 {
        let mut text = String::new();
        if s.peek_tag() == Some(TAG_SEQUENCE) {
            let mut free = Reader::new(s.expect(TAG_SEQUENCE, "PKIFreeText")?);
            while !free.is_empty() {
                let (_, t) = free.any()?;
                text.push_str(&String::from_utf8_lossy(t));
            }
        }
        return Err(TspError::Rejected { status, text });
    }
    if r.is_empty() {
        return Err(TspError::Malformed(
            "granted response without a token".into(),
        ));
    }
    let token_start = resp.len() - r.buf.len();
    r.expect(TAG_SEQUENCE, "TimeStampToken")?;
    let token = &resp[token_start..];
    let ts = verify_token(token, &req.digest, trust)?;
    match &ts.nonce {
        Some(n) if ct_eq(n, &req.nonce) => Ok(ts),
        _ => Err(TspError::NonceMismatch),
    }
}

/// Verifies a `TimeStampToken` (CMS ContentInfo DER) for the SHA-256 `digest`.
pub fn verify_token(
    token_der: &[u8],
    digest: &[u8],
    trust: &TrustStore,
) -> Result<TimeStamp, TspError> {
    verify_token_at(token_der, digest, trust, CertificateTime::Now)
}

/// When the TSA certificate must have been valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateTime {
    /// Now (what `openssl ts -verify` does): for fresh tokens.
    Now,
    /// At the token's own `genTime`: for archived evidence whose TSA certificate has expired since
    /// (the archive must then protect the token itself, e.g. by a later time-stamp over it).
    GenTime,
}

/// [`verify_token`] with a choice of when the TSA certificate is judged.
pub fn verify_token_at(
    token_der: &[u8],
    digest: &[u8],
    trust: &TrustStore,
    when: CertificateTime,
) -> Result<TimeStamp, TspError> {
    check_content_type(token_der)?;
    let p7 = Pkcs7::from_der(token_der).map_err(|e| TspError::Malformed(format!("CMS: {e}")))?;
    let no_certs = Stack::<X509>::new()?;
    let signers = p7
        .signers(&no_certs, Pkcs7Flags::empty())
        .map_err(|e| TspError::SignatureInvalid(format!("signer certificate not in token: {e}")))?;
    let tsa = match signers.iter().collect::<Vec<_>>().as_slice() {
        [one] => (*one).to_owned(),
        _ => {
            return Err(TspError::Malformed(
                "a time-stamp token has exactly one signer".into(),
            ))
        }
    };
    // Signature only here (NOVERIFY): the chain is validated by our TrustStore, with the
    // timeStamping purpose and CRLs, below.
    let empty_store = X509StoreBuilder::new()?.build();
    let mut tst_info = Vec::new();
    p7.verify(
        &no_certs,
        &empty_store,
        None,
        Some(&mut tst_info),
        Pkcs7Flags::NOVERIFY,
    )
    .map_err(|e| TspError::SignatureInvalid(e.to_string()))?;
    let extra: Vec<X509> = p7
        .signed()
        .and_then(|s| s.certificates())
        .map(|c| c.iter().map(|x| x.to_owned()).collect())
        .unwrap_or_default();

    let info = parse_tst_info(&tst_info)?;
    let gen_unix = generalized_time_to_unix(&info.gen_time)
        .ok_or_else(|| TspError::Malformed(format!("genTime {:?}", info.gen_time)))?;
    let at = match when {
        CertificateTime::Now => None,
        CertificateTime::GenTime => Some(gen_unix),
    };
    trust.verify_at(&tsa, &extra, Usage::TimeStamping, at)?;
    if info.hash_oid != OID_SHA256 {
        return Err(TspError::UnsupportedHash);
    }
    if !ct_eq(&info.hashed, digest) {
        return Err(TspError::ImprintMismatch);
    }
    Ok(TimeStamp {
        gen_time: info.gen_time,
        gen_unix,
        policy: info.policy,
        serial: info.serial,
        nonce: info.nonce,
        tsa,
        token_der: token_der.to_vec(),
    })
}

/// Checks the token's shape: `ContentInfo { signedData, [0] SignedData { version, digestAlgorithms,
/// encapContentInfo { id-ct-TSTInfo, ... } } }`.
fn check_content_type(token: &[u8]) -> Result<(), TspError> {
    let mut r = Reader::new(Reader::new(token).expect(TAG_SEQUENCE, "ContentInfo")?);
    if r.expect(TAG_OID, "contentType")? != OID_SIGNED_DATA {
        return Err(TspError::Malformed("token is not CMS SignedData".into()));
    }
    let explicit = r.expect(TAG_CONTEXT_0_CONSTRUCTED, "content")?;
    let mut sd = Reader::new(Reader::new(explicit).expect(TAG_SEQUENCE, "SignedData")?);
    sd.expect(TAG_INTEGER, "version")?;
    sd.expect(TAG_SET, "digestAlgorithms")?;
    let mut encap = Reader::new(sd.expect(TAG_SEQUENCE, "encapContentInfo")?);
    if encap.expect(TAG_OID, "eContentType")? != OID_TST_INFO {
        return Err(TspError::Malformed(
            "eContentType is not id-ct-TSTInfo".into(),
        ));
    }
    Ok(())
}

struct TstInfo {
    policy: String,
    hash_oid: Vec<u8>,
    hashed: Vec<u8>,
    serial: Vec<u8>,
    gen_time: String,
    nonce: Option<Vec<u8>>,
}

fn parse_tst_info(der_bytes: &[u8]) -> Result<TstInfo, TspError> {
    let mut r = Reader::new(Reader::new(der_bytes).expect(TAG_SEQUENCE, "TSTInfo")?);
    if int_value(r.expect(TAG_INTEGER, "version")?) != 1 {
        return Err(TspError::Malformed("TSTInfo version is not 1".into()));
    }
    let policy = oid_to_string(r.expect(TAG_OID, "policy")?);
    let mut imprint = Reader::new(r.expect(TAG_SEQUENCE, "messageImprint")?);
    let mut alg = Reader::new(imprint.expect(TAG_SEQUENCE, "hashAlgorithm")?);
    let hash_oid = alg.expect(TAG_OID, "hash OID")?.to_vec();
    let hashed = imprint.expect(TAG_OCTET_STRING, "hashedMessage")?.to_vec();
    let serial = r.expect(TAG_INTEGER, "serialNumber")?.to_vec();
    let gen_time = String::from_utf8_lossy(r.expect(TAG_GENERALIZED_TIME, "genTime")?).into_owned();
    let mut nonce = None;
    while !r.is_empty() {
        let (tag, content) = r.any()?;
        match tag {
            TAG_SEQUENCE | TAG_BOOLEAN => {} // accuracy, ordering
            TAG_INTEGER => nonce = Some(content.to_vec()),
            _ => {} // tsa [0], extensions [1]
        }
    }
    Ok(TstInfo {
        policy,
        hash_oid,
        hashed,
        serial,
        gen_time,
        nonce,
    })
}

/// `YYYYMMDDHHMMSS[.f*]Z` (DER GeneralizedTime, UTC) to Unix seconds.
fn generalized_time_to_unix(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 15 || *b.last()? != b'Z' || !b[..14].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let rest = &s[14..s.len() - 1];
    if !(rest.is_empty()
        || (rest.starts_with('.')
            && rest.len() > 1
            && rest[1..].bytes().all(|c| c.is_ascii_digit())))
    {
        return None;
    }
    let n = |from: usize, to: usize| s[from..to].parse::<i64>().ok();
    let (y, mo, d, h, mi, sec) = (
        n(0, 4)?,
        n(4, 6)?,
        n(6, 8)?,
        n(8, 10)?,
        n(10, 12)?,
        n(12, 14)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Days from civil (H. Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3_600 + mi * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generalized_time() {
        assert_eq!(generalized_time_to_unix("19700101000000Z"), Some(0));
        assert_eq!(
            generalized_time_to_unix("20000301000000Z"),
            Some(951_868_800)
        );
        assert_eq!(
            generalized_time_to_unix("20261124143211.5Z"),
            Some(1_795_530_731)
        );
        assert_eq!(generalized_time_to_unix("20261124143211"), None);
        assert_eq!(generalized_time_to_unix("2026112414321xZ"), None);
    }

    #[test]
    fn request_layout() {
        let d = [7u8; 32];
        let r = request(&d).unwrap();
        let mut outer = Reader::new(&r.der);
        let mut body = Reader::new(outer.expect(TAG_SEQUENCE, "req").unwrap());
        assert_eq!(body.expect(TAG_INTEGER, "v").unwrap(), &[1]);
        let mut mi = Reader::new(body.expect(TAG_SEQUENCE, "mi").unwrap());
        let mut alg = Reader::new(mi.expect(TAG_SEQUENCE, "alg").unwrap());
        assert_eq!(
            oid_to_string(alg.expect(TAG_OID, "oid").unwrap()),
            "2.16.840.1.101.3.4.2.1"
        );
        assert_eq!(mi.expect(TAG_OCTET_STRING, "h").unwrap(), &d);
        assert_eq!(
            body.expect(TAG_INTEGER, "nonce").unwrap(),
            r.nonce.as_slice()
        );
        assert_eq!(body.expect(TAG_BOOLEAN, "certReq").unwrap(), &[0xff]);
        assert!(matches!(request(&[0u8; 20]), Err(TspError::Malformed(_))));
    }

    #[test]
    fn der_lengths_and_oids() {
        let long = der(TAG_OCTET_STRING, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let mut r = Reader::new(&long);
        assert_eq!(r.expect(TAG_OCTET_STRING, "x").unwrap().len(), 300);
        assert_eq!(oid_to_string(OID_TST_INFO), "1.2.840.113549.1.9.16.1.4");
        assert!(matches!(
            Reader::new(&[0x30, 0x05, 0x00]).any(),
            Err(TspError::Malformed(_))
        ));
        assert_eq!(int_value(&[0x00, 0x80]), 128);
        assert_eq!(int_value(&[0xff]), -1);
    }
}
