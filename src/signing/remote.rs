//! What a remote signing service (VNPT SmartCA, Viettel MySign, a CSC API v2 service) returns,
//! and its verification before anything is built on it.
//!
//! # Invariants
//! - **Hash-only.** A remote service is given a digest, never a document: the types here carry
//!   a digest ([`DigestAlgorithm`] and its bytes), a signature value and a certificate, nothing
//!   else. The document stays in the gateway.
//! - **Nothing a service returns is trusted before [`RemoteVerifier::verify`] said yes**, in
//!   this order: the form is one we can check; the certificate the service answered with is the
//!   one we asked for (pinned serial or subject of the official, and the same certificate the
//!   gateway computed the digest with); the certificate chains to the configured trust anchors,
//!   is valid at signing time, and carries digitalSignature or nonRepudiation; the key can sign
//!   this digest algorithm; the signature verifies over **exactly our digest** with that key.
//! - Each refusal is one [`RemoteError`] variant, worded for an operator (what was wrong, what to
//!   check): these become the reasons of `signature.failed`.
//! - Signatures are checked by the system OpenSSL (the `openssl` crate), as everything else in
//!   the gateway: RSA PKCS#1 v1.5 (default) or RSA-PSS where configured (salt = digest length,
//!   MGF1 with the same digest), ECDSA on P-256, P-384 and P-521 (DER, or the raw `r‖s` of
//!   IEEE P1363 that some services answer: both are read, explicitly, by length and shape).
//! - The CMS form (a service answering a whole CMS SignedData instead of a raw signature) is
//!   [open] per service and **refused here** ([`RemoteError::FormUnsupported`]): its signed
//!   attributes would have to be parsed to know what was signed, and a signature we cannot
//!   check is never passed on.

use std::fmt;

use base64::Engine as _;
use gw_crypto::keys::{KeyError, TrustStore, Usage};
use openssl::bn::BigNum;
use openssl::ecdsa::EcdsaSig;
use openssl::md::Md;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Public};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::sign::RsaPssSaltlen;
use openssl::x509::X509;
use serde::{Deserialize, Serialize};

/// A digest algorithm a remote signature is made over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestAlgorithm {
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlgorithm {
    /// Every algorithm, strongest last.
    pub const ALL: [DigestAlgorithm; 3] = [
        DigestAlgorithm::Sha256,
        DigestAlgorithm::Sha384,
        DigestAlgorithm::Sha512,
    ];

    /// The digest's length in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(self) -> usize {
        match self {
            DigestAlgorithm::Sha256 => 32,
            DigestAlgorithm::Sha384 => 48,
            DigestAlgorithm::Sha512 => 64,
        }
    }

    /// The configuration spelling: `sha256`, `sha384`, `sha512`.
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Sha384 => "sha384",
            DigestAlgorithm::Sha512 => "sha512",
        }
    }

    /// The name people read: `SHA-256`.
    pub fn label(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "SHA-256",
            DigestAlgorithm::Sha384 => "SHA-384",
            DigestAlgorithm::Sha512 => "SHA-512",
        }
    }

    /// The algorithm's OID (CSC `hashAlgorithmOID`).
    pub fn oid(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "2.16.840.1.101.3.4.2.1",
            DigestAlgorithm::Sha384 => "2.16.840.1.101.3.4.2.2",
            DigestAlgorithm::Sha512 => "2.16.840.1.101.3.4.2.3",
        }
    }

    /// From `sha256`, `SHA-256`, `SHA256` or the OID.
    pub fn parse(s: &str) -> Option<DigestAlgorithm> {
        let norm: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        DigestAlgorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == norm || a.oid() == s)
    }

    /// The digest of `data` (for tests and for callers that hold the bytes to sign).
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            DigestAlgorithm::Sha256 => openssl::sha::sha256(data).to_vec(),
            DigestAlgorithm::Sha384 => openssl::sha::sha384(data).to_vec(),
            DigestAlgorithm::Sha512 => openssl::sha::sha512(data).to_vec(),
        }
    }

    fn md(self) -> &'static openssl::md::MdRef {
        match self {
            DigestAlgorithm::Sha256 => Md::sha256(),
            DigestAlgorithm::Sha384 => Md::sha384(),
            DigestAlgorithm::Sha512 => Md::sha512(),
        }
    }

    /// The DER `DigestInfo` prefix of PKCS#1 v1.5 (RFC 8017 §9.2 note 1).
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            DigestAlgorithm::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            DigestAlgorithm::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            DigestAlgorithm::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What a service answers: a bare signature value, or a whole CMS SignedData ([open] per
/// service; a setting, `signers.NAME.signature_form`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SignatureForm {
    #[default]
    Raw,
    Cms,
}

impl SignatureForm {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureForm::Raw => "raw",
            SignatureForm::Cms => "cms",
        }
    }
}

/// How an RSA key signs (configured per service; ECDSA keys sign ECDSA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RsaPadding {
    /// PKCS#1 v1.5 (`sha256WithRSAEncryption`): what the services sign by default.
    #[default]
    Pkcs1,
    /// RSASSA-PSS, salt length = digest length, MGF1 with the same digest.
    Pss,
}

/// A signature value as a service returned it.
#[derive(Clone, PartialEq, Eq)]
pub struct SignatureValue {
    /// The bytes: a raw signature (RSA: the modulus' length; ECDSA: DER or `r‖s`) or a CMS.
    pub bytes: Vec<u8>,
    /// Which of the two the bytes are (from the service's configured form).
    pub form: SignatureForm,
    /// The certificate (DER) the service answered the signature with, when it does.
    pub certificate: Option<Vec<u8>>,
}

impl fmt::Debug for SignatureValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureValue")
            .field("form", &self.form)
            .field("len", &self.bytes.len())
            .field("certificate", &self.certificate.as_ref().map(Vec::len))
            .finish()
    }
}

/// The kind and size of an official's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Rsa { bits: u32 },
    Ec { curve: Curve },
}

/// The ECDSA curves the gateway verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    /// Bytes of one coordinate (`r` or `s` in the raw form).
    fn field_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }
}

impl KeyAlgorithm {
    /// Whether this key may sign a digest of `alg`: RSA (2048 bits or more) any of them;
    /// ECDSA a digest at least as long as the curve's order (SHA-256 for P-256; SHA-384 or
    /// more for P-384; SHA-512 for P-521), so the digest is never the weaker half.
    pub fn accepts(self, alg: DigestAlgorithm) -> bool {
        match self {
            KeyAlgorithm::Rsa { bits } => bits >= 2048,
            KeyAlgorithm::Ec { curve } => alg.len() >= curve.field_len().min(64),
        }
    }

    /// The digests this key accepts, for messages.
    pub fn accepted(self) -> Vec<DigestAlgorithm> {
        DigestAlgorithm::ALL
            .into_iter()
            .filter(|a| self.accepts(*a))
            .collect()
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyAlgorithm::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyAlgorithm::Ec { curve } => write!(f, "ECDSA {}", curve.label()),
        }
    }
}

/// An official's certificate as a service gave it (leaf, then whatever chain it sent), read
/// once: the assembler computes the digest with it, the verifier checks the signature with it.
#[derive(Clone)]
pub struct SignerCertificate {
    leaf: X509,
    chain: Vec<X509>,
    key: KeyAlgorithm,
}

impl fmt::Debug for SignerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignerCertificate")
            .field("subject", &self.subject())
            .field("serial", &self.serial())
            .field("key", &self.key)
            .field("chain", &self.chain.len())
            .finish()
    }
}

impl PartialEq for SignerCertificate {
    fn eq(&self, other: &Self) -> bool {
        self.der() == other.der()
    }
}

impl SignerCertificate {
    /// The leaf's DER and the chain's (leaf not repeated).
    pub fn from_der(leaf: &[u8], chain: &[Vec<u8>]) -> Result<Self, RemoteError> {
        let parse = |d: &[u8]| {
            X509::from_der(d).map_err(|e| RemoteError::Certificate(format!("not X.509 DER: {e}")))
        };
        let leaf = parse(leaf)?;
        let chain = chain
            .iter()
            .map(|c| parse(c))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_x509(leaf, chain)
    }

    /// Base64 DER strings (what the services answer), leaf first.
    pub fn from_base64(certs: &[&str]) -> Result<Self, RemoteError> {
        let mut ders = Vec::new();
        for c in certs {
            let clean: String = c.chars().filter(|c| !c.is_whitespace()).collect();
            ders.push(
                base64::engine::general_purpose::STANDARD
                    .decode(clean)
                    .map_err(|e| RemoteError::Certificate(format!("not base64: {e}")))?,
            );
        }
        let Some((leaf, chain)) = ders.split_first() else {
            return Err(RemoteError::Certificate(
                "no certificate in the answer".into(),
            ));
        };
        Self::from_der(leaf, chain)
    }

    /// PEM text, leaf first.
    pub fn from_pem(pem: &[u8]) -> Result<Self, RemoteError> {
        let mut all = X509::stack_from_pem(pem)
            .map_err(|e| RemoteError::Certificate(format!("not PEM: {e}")))?;
        if all.is_empty() {
            return Err(RemoteError::Certificate("no certificate in the PEM".into()));
        }
        let leaf = all.remove(0);
        Self::from_x509(leaf, all)
    }

    fn from_x509(leaf: X509, chain: Vec<X509>) -> Result<Self, RemoteError> {
        let pkey = leaf
            .public_key()
            .map_err(|e| RemoteError::Certificate(format!("no public key: {e}")))?;
        let key = key_algorithm(&pkey)?;
        Ok(SignerCertificate { leaf, chain, key })
    }

    pub fn x509(&self) -> &X509 {
        &self.leaf
    }

    pub fn chain(&self) -> &[X509] {
        &self.chain
    }

    pub fn der(&self) -> Vec<u8> {
        self.leaf.to_der().unwrap_or_default()
    }

    pub fn key(&self) -> KeyAlgorithm {
        self.key
    }

    /// The serial in upper-case hex without leading zeros (`5000`), as pinned in configuration.
    pub fn serial(&self) -> String {
        self.leaf
            .serial_number()
            .to_bn()
            .ok()
            .and_then(|b| b.to_hex_str().ok().map(|s| s.to_string()))
            .map(|s| normalize_serial(&s))
            .unwrap_or_default()
    }

    /// The subject as `gateway certs` prints it: `C=VN, O=…, CN=…`.
    pub fn subject(&self) -> String {
        self.leaf
            .subject_name()
            .entries()
            .map(|e| {
                let key = e.object().nid().short_name().unwrap_or("?");
                let val = e.data().to_string().unwrap_or_default();
                format!("{key}={val}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// End of validity, as OpenSSL prints it.
    pub fn not_after(&self) -> String {
        self.leaf.not_after().to_string()
    }
}

/// A serial as written by people or OpenSSL (`50:00`, `0x5000`, `005000`) → `5000`.
pub fn normalize_serial(s: &str) -> String {
    let t = s.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let hex: String = t
        .chars()
        .filter(|c| !matches!(c, ':' | ' '))
        .collect::<String>()
        .to_ascii_uppercase();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    }
}

fn key_algorithm(pkey: &PKey<Public>) -> Result<KeyAlgorithm, RemoteError> {
    match pkey.id() {
        Id::RSA => Ok(KeyAlgorithm::Rsa { bits: pkey.bits() }),
        Id::EC => {
            let ec = pkey
                .ec_key()
                .map_err(|e| RemoteError::Certificate(e.to_string()))?;
            let curve = match ec.group().curve_name() {
                Some(Nid::X9_62_PRIME256V1) => Curve::P256,
                Some(Nid::SECP384R1) => Curve::P384,
                Some(Nid::SECP521R1) => Curve::P521,
                other => {
                    return Err(RemoteError::Certificate(format!(
                        "unsupported curve {other:?} (P-256, P-384 or P-521)"
                    )))
                }
            };
            Ok(KeyAlgorithm::Ec { curve })
        }
        other => Err(RemoteError::Certificate(format!(
            "unsupported key type {other:?} (RSA or ECDSA)"
        ))),
    }
}

/// Which official a request is for, pinned in configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerPin {
    /// The certificate's serial (hex, normalised by [`normalize_serial`]).
    Serial(String),
    /// The certificate's subject, as [`SignerCertificate::subject`] writes it.
    Subject(String),
}

impl SignerPin {
    pub fn serial(s: &str) -> Self {
        SignerPin::Serial(normalize_serial(s))
    }

    fn matches(&self, c: &SignerCertificate) -> bool {
        match self {
            SignerPin::Serial(s) => c.serial() == *s,
            SignerPin::Subject(s) => c.subject() == *s,
        }
    }
}

impl fmt::Display for SignerPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignerPin::Serial(s) => write!(f, "serial {s}"),
            SignerPin::Subject(s) => write!(f, "subject `{s}`"),
        }
    }
}

/// What a returned signature must be.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// The official asked for (`signers.NAME.officials[].user_id`), for messages.
    pub official: &'a str,
    /// The official's pinned certificate.
    pub pin: &'a SignerPin,
    /// Exactly the digest the gateway sent.
    pub digest: &'a [u8],
    pub algorithm: DigestAlgorithm,
    /// How RSA keys sign for this service.
    pub padding: RsaPadding,
    /// When the signature was made (Unix seconds; the time the service reported it, or the
    /// time it arrived): the certificate must be valid then.
    pub signed_at: i64,
}

/// A signature that passed every check.
#[derive(Debug, Clone)]
pub struct Verified {
    pub signature: Vec<u8>,
    pub certificate: SignerCertificate,
    /// The chain as validated, leaf first.
    pub chain: Vec<X509>,
}

/// Why a remote signature (or the certificate it comes with) is refused. Each is a reason of
/// `signature.failed`, worded for the operator who reads it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    #[error("the service's certificate cannot be read: {0}")]
    Certificate(String),
    #[error("the service answered a {form} signature, which the gateway cannot verify: set signers.NAME.signature_form to what the service really returns (only `raw` is verified)")]
    FormUnsupported { form: &'static str },
    #[error("the digest to sign is {got} bytes, {algorithm} digests are {expected}: the request was built wrong, nothing was sent")]
    DigestLength {
        algorithm: DigestAlgorithm,
        expected: usize,
        got: usize,
    },
    #[error("the certificate answered for official `{official}` is not theirs: it is {found}, configuration pins {pinned}; check the official's user id / credential at the service, or the pin in signers.NAME.officials")]
    NotThisSigner {
        official: String,
        found: String,
        pinned: String,
    },
    #[error("the service signed with another certificate ({found}) than the one the digest was computed for ({expected}); the signature cannot be used")]
    OtherCertificate { found: String, expected: String },
    #[error("the certificate of official `{official}` ({subject}) is not valid at signing time (valid until {not_after}): the official needs a renewed certificate from the service")]
    Expired {
        official: String,
        subject: String,
        not_after: String,
    },
    #[error("the certificate of official `{official}` ({subject}) is revoked: the official needs a new certificate")]
    Revoked { official: String, subject: String },
    #[error("the certificate of official `{official}` does not chain to the trust anchors ({detail}): add the service's CA to signers.NAME.trust_anchors if it is the right CA")]
    UntrustedChain { official: String, detail: String },
    #[error("the certificate of official `{official}` ({subject}) allows neither digitalSignature nor nonRepudiation: it is not a signing certificate; ask the service for the official's signing credential")]
    KeyUsage { official: String, subject: String },
    #[error("the key of official `{official}` is {key}, which cannot sign a {algorithm} digest (it accepts {accepted}); choose another digest algorithm")]
    AlgorithmMismatch {
        official: String,
        key: String,
        algorithm: DigestAlgorithm,
        accepted: String,
    },
    #[error("the signature was made by the official's key but over another digest than ours (the service signed something else); it cannot be used")]
    WrongDigest,
    #[error("the signature does not verify over our digest with the official's certificate (made with another key, over another digest, or damaged): it cannot be used")]
    BadSignature,
}

impl RemoteError {
    /// A stable, short code for metrics labels and the failure event (`wrong_digest`, …).
    pub fn code(&self) -> &'static str {
        match self {
            RemoteError::Certificate(_) => "certificate_unreadable",
            RemoteError::FormUnsupported { .. } => "form_unsupported",
            RemoteError::DigestLength { .. } => "digest_length",
            RemoteError::NotThisSigner { .. } => "not_this_signer",
            RemoteError::OtherCertificate { .. } => "other_certificate",
            RemoteError::Expired { .. } => "certificate_expired",
            RemoteError::Revoked { .. } => "certificate_revoked",
            RemoteError::UntrustedChain { .. } => "untrusted_chain",
            RemoteError::KeyUsage { .. } => "key_usage",
            RemoteError::AlgorithmMismatch { .. } => "algorithm_mismatch",
            RemoteError::WrongDigest => "wrong_digest",
            RemoteError::BadSignature => "bad_signature",
        }
    }
}

/// Checks a digest against its algorithm's length (before anything is sent).
pub fn check_digest(algorithm: DigestAlgorithm, digest: &[u8]) -> Result<(), RemoteError> {
    if digest.len() != algorithm.len() {
        return Err(RemoteError::DigestLength {
            algorithm,
            expected: algorithm.len(),
            got: digest.len(),
        });
    }
    Ok(())
}

/// Checks that `cert` is the official's (`pin`) and its key can sign `algorithm`: what the
/// gateway checks before it sends a digest, and again on the answer.
pub fn check_signer(
    official: &str,
    pin: &SignerPin,
    cert: &SignerCertificate,
    algorithm: DigestAlgorithm,
) -> Result<(), RemoteError> {
    if !pin.matches(cert) {
        return Err(RemoteError::NotThisSigner {
            official: official.into(),
            found: format!("serial {} `{}`", cert.serial(), cert.subject()),
            pinned: pin.to_string(),
        });
    }
    if !cert.key().accepts(algorithm) {
        return Err(RemoteError::AlgorithmMismatch {
            official: official.into(),
            key: cert.key().to_string(),
            algorithm,
            accepted: cert
                .key()
                .accepted()
                .iter()
                .map(|a| a.label())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(())
}

/// The verifier of one signer service: its trust anchors, loaded once.
#[derive(Debug, Clone)]
pub struct RemoteVerifier {
    trust: TrustStore,
}

impl RemoteVerifier {
    pub fn new(trust: TrustStore) -> Self {
        RemoteVerifier { trust }
    }

    /// From a PEM file of anchors (and intermediates: every certificate in it is trusted).
    pub fn from_pem(pem: &[u8]) -> Result<Self, RemoteError> {
        TrustStore::from_pem(pem)
            .map(Self::new)
            .map_err(|e| RemoteError::Certificate(format!("trust anchors: {e}")))
    }

    /// The certificate alone: the official's (pinned), trusted, valid at `at`, a signing
    /// certificate whose key can sign `algorithm`. Used before sending (a refused certificate
    /// never reaches the phone) and again by [`RemoteVerifier::verify`].
    pub fn check_certificate(
        &self,
        official: &str,
        pin: &SignerPin,
        cert: &SignerCertificate,
        algorithm: DigestAlgorithm,
        at: i64,
    ) -> Result<Vec<X509>, RemoteError> {
        check_signer(official, pin, cert, algorithm)?;
        self.trust
            .verify_at(cert.x509(), cert.chain(), Usage::Signing, Some(at))
            .map_err(|e| match e {
                KeyError::Expired { subject } | KeyError::NotYetValid { subject } => {
                    RemoteError::Expired {
                        official: official.into(),
                        subject,
                        not_after: cert.not_after(),
                    }
                }
                KeyError::Revoked { subject } => RemoteError::Revoked {
                    official: official.into(),
                    subject,
                },
                KeyError::KeyUsage { subject, .. } => RemoteError::KeyUsage {
                    official: official.into(),
                    subject,
                },
                other => RemoteError::UntrustedChain {
                    official: official.into(),
                    detail: other.to_string(),
                },
            })
    }

    /// Everything the module doc lists, in that order. `cert` is the certificate the gateway
    /// fetched first and computed the digest with.
    pub fn verify(
        &self,
        value: &SignatureValue,
        cert: &SignerCertificate,
        want: &Expected<'_>,
    ) -> Result<Verified, RemoteError> {
        if value.form == SignatureForm::Cms {
            return Err(RemoteError::FormUnsupported { form: "cms" });
        }
        check_digest(want.algorithm, want.digest)?;
        if let Some(answered) = &value.certificate {
            if *answered != cert.der() {
                let found = SignerCertificate::from_der(answered, &[])
                    .map(|c| format!("serial {} `{}`", c.serial(), c.subject()))
                    .unwrap_or_else(|_| "an unreadable certificate".into());
                return Err(RemoteError::OtherCertificate {
                    found,
                    expected: format!("serial {} `{}`", cert.serial(), cert.subject()),
                });
            }
        }
        let chain = self.check_certificate(
            want.official,
            want.pin,
            cert,
            want.algorithm,
            want.signed_at,
        )?;
        verify_signature(
            cert,
            &value.bytes,
            want.digest,
            want.algorithm,
            want.padding,
        )?;
        Ok(Verified {
            signature: value.bytes.clone(),
            certificate: cert.clone(),
            chain,
        })
    }
}

/// The signature over the digest itself (no hashing here: the digest is what was signed).
fn verify_signature(
    cert: &SignerCertificate,
    sig: &[u8],
    digest: &[u8],
    alg: DigestAlgorithm,
    padding: RsaPadding,
) -> Result<(), RemoteError> {
    let pkey = cert
        .x509()
        .public_key()
        .map_err(|e| RemoteError::Certificate(e.to_string()))?;
    let sig_der;
    let sig = match cert.key() {
        KeyAlgorithm::Ec { curve } => {
            sig_der = ecdsa_der(sig, curve).ok_or(RemoteError::BadSignature)?;
            &sig_der[..]
        }
        KeyAlgorithm::Rsa { .. } => sig,
    };
    let ok = (|| -> Result<bool, openssl::error::ErrorStack> {
        let mut ctx = PkeyCtx::new(&pkey)?;
        ctx.verify_init()?;
        ctx.set_signature_md(alg.md())?;
        if let KeyAlgorithm::Rsa { .. } = cert.key() {
            match padding {
                RsaPadding::Pkcs1 => ctx.set_rsa_padding(Padding::PKCS1)?,
                RsaPadding::Pss => {
                    ctx.set_rsa_padding(Padding::PKCS1_PSS)?;
                    ctx.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)?;
                    ctx.set_rsa_mgf1_md(alg.md())?;
                }
            }
        }
        ctx.verify(digest, sig)
    })()
    .unwrap_or(false);
    if ok {
        return Ok(());
    }
    // PKCS#1 v1.5 can say more: made by this key over another digest, or not by this key.
    if let (KeyAlgorithm::Rsa { .. }, RsaPadding::Pkcs1) = (cert.key(), padding) {
        if let Ok(rsa) = pkey.rsa() {
            let mut out = vec![0u8; rsa.size() as usize];
            if let Ok(n) = rsa.public_decrypt(sig, &mut out, Padding::PKCS1) {
                let info = &out[..n];
                if DigestAlgorithm::ALL.iter().any(|a| {
                    info.len() == a.digest_info_prefix().len() + a.len()
                        && info.starts_with(a.digest_info_prefix())
                }) {
                    return Err(RemoteError::WrongDigest);
                }
            }
        }
    }
    Err(RemoteError::BadSignature)
}

/// An ECDSA signature as DER: DER as it came, or the raw `r‖s` of exactly twice the curve's
/// field length converted. Anything else is not an ECDSA signature on this curve.
fn ecdsa_der(sig: &[u8], curve: Curve) -> Option<Vec<u8>> {
    if let Ok(s) = EcdsaSig::from_der(sig) {
        // Only a strict DER encoding counts as DER (re-encoding gives the same bytes).
        if s.to_der().ok().as_deref() == Some(sig) {
            return Some(sig.to_vec());
        }
    }
    let n = curve.field_len();
    if sig.len() != 2 * n {
        return None;
    }
    let r = BigNum::from_slice(&sig[..n]).ok()?;
    let s = BigNum::from_slice(&sig[n..]).ok()?;
    EcdsaSig::from_private_components(r, s).ok()?.to_der().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::hash::MessageDigest;
    use openssl::pkey::Private;
    use openssl::sign::Signer;

    fn example(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/certs-example/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn official(name: &str) -> (SignerCertificate, PKey<Private>) {
        let cert = SignerCertificate::from_pem(&example(&format!("officials/{name}.pem"))).unwrap();
        let key = PKey::private_key_from_pem(&example(&format!("officials/{name}.key"))).unwrap();
        (cert, key)
    }

    /// Signs a digest (prehashed) the way a service does.
    fn sign_digest(key: &PKey<Private>, digest: &[u8], alg: DigestAlgorithm, pss: bool) -> Vec<u8> {
        let mut ctx = PkeyCtx::new(key).unwrap();
        ctx.sign_init().unwrap();
        ctx.set_signature_md(alg.md()).unwrap();
        if key.id() == Id::RSA {
            if pss {
                ctx.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
                ctx.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)
                    .unwrap();
            } else {
                ctx.set_rsa_padding(Padding::PKCS1).unwrap();
            }
        }
        let mut out = Vec::new();
        ctx.sign_to_vec(digest, &mut out).unwrap();
        out
    }

    fn verifier() -> RemoteVerifier {
        RemoteVerifier::from_pem(&example("chain.pem")).unwrap()
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn check(
        name: &str,
        pin: &SignerPin,
        sig: &[u8],
        digest: &[u8],
        alg: DigestAlgorithm,
        padding: RsaPadding,
    ) -> Result<Verified, RemoteError> {
        let (cert, _) = official(name);
        let value = SignatureValue {
            bytes: sig.to_vec(),
            form: SignatureForm::Raw,
            certificate: None,
        };
        verifier().verify(
            &value,
            &cert,
            &Expected {
                official: name,
                pin,
                digest,
                algorithm: alg,
                padding,
                signed_at: now(),
            },
        )
    }

    /// Every key kind verifies over exactly our digest; one flipped bit of the digest is
    /// refused, as WrongDigest where RSA lets us tell.
    #[test]
    fn rsa_pkcs1_pss_and_ecdsa_verify_over_exactly_our_digest() {
        let cases = [
            ("official-rsa", "5000", DigestAlgorithm::Sha256, false),
            ("official-rsa", "5000", DigestAlgorithm::Sha512, true),
            ("official-ec", "5001", DigestAlgorithm::Sha256, false),
            ("official-ec384", "5002", DigestAlgorithm::Sha384, false),
        ];
        for (name, serial, alg, pss) in cases {
            let (_, key) = official(name);
            let digest = alg.digest(b"the result document");
            let sig = sign_digest(&key, &digest, alg, pss);
            let padding = if pss {
                RsaPadding::Pss
            } else {
                RsaPadding::Pkcs1
            };
            let pin = SignerPin::serial(serial);
            check(name, &pin, &sig, &digest, alg, padding)
                .unwrap_or_else(|e| panic!("{name} {alg}: {e}"));
            let mut other = digest.clone();
            other[0] ^= 1;
            let e = check(name, &pin, &sig, &other, alg, padding).unwrap_err();
            if name == "official-rsa" && !pss {
                assert_eq!(e, RemoteError::WrongDigest);
            } else {
                assert_eq!(e, RemoteError::BadSignature, "{name}");
            }
        }
    }

    /// Cross-check with an independent implementation: OpenSSL's `Signer` hashing the
    /// document itself gives a signature our digest-level verification accepts.
    #[test]
    fn a_signature_made_over_the_document_verifies_over_its_digest() {
        let (_, key) = official("official-rsa");
        let doc = b"hash-only: the document stays here";
        let mut s = Signer::new(MessageDigest::sha256(), &key).unwrap();
        s.update(doc).unwrap();
        let sig = s.sign_to_vec().unwrap();
        let digest = DigestAlgorithm::Sha256.digest(doc);
        check(
            "official-rsa",
            &SignerPin::serial("50:00"),
            &sig,
            &digest,
            DigestAlgorithm::Sha256,
            RsaPadding::Pkcs1,
        )
        .unwrap();
    }

    /// ECDSA in the raw r‖s form (P1363) is read as well as DER.
    #[test]
    fn ecdsa_raw_form_is_accepted_and_garbage_refused() {
        let (_, key) = official("official-ec");
        let digest = DigestAlgorithm::Sha256.digest(b"x");
        let der = sign_digest(&key, &digest, DigestAlgorithm::Sha256, false);
        let s = EcdsaSig::from_der(&der).unwrap();
        let mut raw = s.r().to_vec_padded(32).unwrap();
        raw.extend(s.s().to_vec_padded(32).unwrap());
        let pin = SignerPin::serial("5001");
        check(
            "official-ec",
            &pin,
            &raw,
            &digest,
            DigestAlgorithm::Sha256,
            RsaPadding::Pkcs1,
        )
        .unwrap();
        let e = check(
            "official-ec",
            &pin,
            &raw[..63],
            &digest,
            DigestAlgorithm::Sha256,
            RsaPadding::Pkcs1,
        )
        .unwrap_err();
        assert_eq!(e, RemoteError::BadSignature);
    }

    /// Another official's signature, another official's certificate, an expired certificate, a
    /// certificate without signing usage, a weak digest for a P-384 key: each its own reason.
    #[test]
    fn each_refusal_has_its_own_reason() {
        let digest = DigestAlgorithm::Sha256.digest(b"doc");
        // Signed by another official's key, checked against the requested one's certificate.
        let (_, other) = official("official-other");
        let sig = sign_digest(&other, &digest, DigestAlgorithm::Sha256, false);
        let e = check(
            "official-rsa",
            &SignerPin::serial("5000"),
            &sig,
            &digest,
            DigestAlgorithm::Sha256,
            RsaPadding::Pkcs1,
        )
        .unwrap_err();
        assert_eq!(e, RemoteError::BadSignature);
        // The service gives someone else's certificate: the pin refuses it.
        let e = check(
            "official-other",
            &SignerPin::serial("5000"),
            &sig,
            &digest,
            DigestAlgorithm::Sha256,
            RsaPadding::Pkcs1,
        )
        .unwrap_err();
        assert!(matches!(e, RemoteError::NotThisSigner { .. }), "{e}");
        assert!(e.to_string().contains("pins serial 5000"), "{e}");
        // Expired.
        let (_, k) = official("official-expired");
        let sig = sign_digest(&k, &digest, DigestAlgorithm::Sha256, false);
        let e = check(
            "official-expired",
            &SignerPin::serial("5004"),
            &sig,
            &digest,
            DigestAlgorithm::Sha256,
            RsaPadding::Pkcs1,
        )
        .unwrap_err();
        assert!(matches!(e, RemoteError::Expired { .. }), "{e}");
        assert!(e.to_string().contains("2021"), "{e}");
        // No signing key usage.
        let (_, k) = official("official-nousage");
        let sig = sign_digest(&k, &digest, DigestAlgorithm::Sha256, false);
        let e = check(
            "official-nousage",
            &SignerPin::serial("5005"),
            &sig,
            &digest,
            DigestAlgorithm::Sha256,
            RsaPadding::Pkcs1,
        )
        .unwrap_err();
        assert!(matches!(e, RemoteError::KeyUsage { .. }), "{e}");
        // A P-384 key and a SHA-256 digest.
        let (_, k) = official("official-ec384");
        let sig = sign_digest(&k, &digest, DigestAlgorithm::Sha256, false);
        let e = check(
            "official-ec384",
            &SignerPin::serial("5002"),
            &sig,
            &digest,
            DigestAlgorithm::Sha256,
            RsaPadding::Pkcs1,
        )
        .unwrap_err();
        assert!(matches!(e, RemoteError::AlgorithmMismatch { .. }), "{e}");
        assert!(e.to_string().contains("SHA-384, SHA-512"), "{e}");
        // An untrusted chain: anchors that are not the officials' CA.
        let (cert, k) = official("official-rsa");
        let sig = sign_digest(&k, &digest, DigestAlgorithm::Sha256, false);
        let foreign = RemoteVerifier::from_pem(&example("tsa.pem")).unwrap();
        let e = foreign
            .verify(
                &SignatureValue {
                    bytes: sig,
                    form: SignatureForm::Raw,
                    certificate: None,
                },
                &cert,
                &Expected {
                    official: "official-rsa",
                    pin: &SignerPin::serial("5000"),
                    digest: &digest,
                    algorithm: DigestAlgorithm::Sha256,
                    padding: RsaPadding::Pkcs1,
                    signed_at: now(),
                },
            )
            .unwrap_err();
        assert!(matches!(e, RemoteError::UntrustedChain { .. }), "{e}");
    }

    /// A CMS answer is refused explicitly, a certificate answered with the signature must be
    /// the one asked for, and a digest of the wrong length is refused before anything else.
    #[test]
    fn cms_other_certificate_and_digest_length() {
        let (cert, key) = official("official-rsa");
        let (other, _) = official("official-other");
        let digest = DigestAlgorithm::Sha256.digest(b"doc");
        let sig = sign_digest(&key, &digest, DigestAlgorithm::Sha256, false);
        let pin = SignerPin::serial("5000");
        let want = Expected {
            official: "official-rsa",
            pin: &pin,
            digest: &digest,
            algorithm: DigestAlgorithm::Sha256,
            padding: RsaPadding::Pkcs1,
            signed_at: now(),
        };
        let v = verifier();
        let mut value = SignatureValue {
            bytes: sig.clone(),
            form: SignatureForm::Cms,
            certificate: None,
        };
        assert_eq!(
            v.verify(&value, &cert, &want).unwrap_err().code(),
            "form_unsupported"
        );
        value.form = SignatureForm::Raw;
        value.certificate = Some(other.der());
        assert_eq!(
            v.verify(&value, &cert, &want).unwrap_err().code(),
            "other_certificate"
        );
        value.certificate = Some(cert.der());
        v.verify(&value, &cert, &want).unwrap();
        let short = &digest[..31];
        let want = Expected {
            digest: short,
            ..want
        };
        assert_eq!(
            v.verify(&value, &cert, &want).unwrap_err().code(),
            "digest_length"
        );
    }

    #[test]
    fn digest_names_and_serials() {
        assert_eq!(
            DigestAlgorithm::parse("SHA-384"),
            Some(DigestAlgorithm::Sha384)
        );
        assert_eq!(
            DigestAlgorithm::parse("2.16.840.1.101.3.4.2.1"),
            Some(DigestAlgorithm::Sha256)
        );
        assert_eq!(DigestAlgorithm::parse("sha1"), None);
        assert_eq!(normalize_serial("0x00:50:00"), "5000");
        assert_eq!(normalize_serial("5000"), "5000");
    }
}
