//! The signer as the assembler sees it: a certificate (and its chain) whose key a remote
//! service holds. What the key can be used with, and whether a returned value is a signature
//! by that key over exactly our digest.
//!
//! # Invariants
//! - A certificate is usable only with an RSA key of at least 2048 bits or an ECDSA key on
//!   P-256, P-384 or P-521, and with a keyUsage (when present) allowing digitalSignature or
//!   nonRepudiation. Anything else is refused before a digest is computed.
//! - ECDSA keys are paired with the digest of their strength (P-256/SHA-256, P-384/SHA-384,
//!   P-521/SHA-512, ETSI TS 119 312); RSA keys take any of SHA-256/384/512.
//! - A returned value is checked over the prehashed digest exactly as the service signed it:
//!   RSA PKCS#1 v1.5 over the DigestInfo of the digest, ECDSA over the digest. An ECDSA value
//!   may come as DER or as raw `r || s` (CSC and some services send either); both are
//!   accepted and normalised, and a value that verifies in neither form is refused.

use openssl::bn::BigNum;
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::md::Md;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Public};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::x509::{X509KeyUsage, X509};
use serde::{Deserialize, Serialize};

/// Why a signer certificate or a returned signature value is refused; one variant per check.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("signer certificate is not DER X.509: {0}")]
    Certificate(#[source] openssl::error::ErrorStack),
    #[error("signer certificate has no readable public key: {0}")]
    NoPublicKey(#[source] openssl::error::ErrorStack),
    #[error("signer certificate's key cannot sign here: {0}")]
    UnsupportedKey(String),
    #[error("signer certificate's keyUsage allows neither digitalSignature nor nonRepudiation")]
    KeyUsage,
    #[error("digest {digest} cannot be used with the signer's {key} key (use {suggested})")]
    DigestNotForKey {
        digest: DigestAlgorithm,
        key: KeyType,
        suggested: DigestAlgorithm,
    },
    #[error(
        "the signature value does not verify over the digest with the signer certificate's key"
    )]
    SignatureMismatch,
    #[error("OpenSSL: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// The digest the signer signs (and, for CMS and PAdES, the content digest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestAlgorithm {
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlgorithm {
    pub fn message_digest(self) -> MessageDigest {
        match self {
            DigestAlgorithm::Sha256 => MessageDigest::sha256(),
            DigestAlgorithm::Sha384 => MessageDigest::sha384(),
            DigestAlgorithm::Sha512 => MessageDigest::sha512(),
        }
    }
    pub(crate) fn md(self) -> &'static openssl::md::MdRef {
        match self {
            DigestAlgorithm::Sha256 => Md::sha256(),
            DigestAlgorithm::Sha384 => Md::sha384(),
            DigestAlgorithm::Sha512 => Md::sha512(),
        }
    }
    /// Digest length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            DigestAlgorithm::Sha256 => 32,
            DigestAlgorithm::Sha384 => 48,
            DigestAlgorithm::Sha512 => 64,
        }
    }
    /// The dotted OID (NIST hash algorithms, 2.16.840.1.101.3.4.2.x).
    pub fn oid(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "2.16.840.1.101.3.4.2.1",
            DigestAlgorithm::Sha384 => "2.16.840.1.101.3.4.2.2",
            DigestAlgorithm::Sha512 => "2.16.840.1.101.3.4.2.3",
        }
    }
    /// The name remote services use (`SHA-256`...). CSC names the OID instead: [`Self::oid`].
    pub fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "SHA-256",
            DigestAlgorithm::Sha384 => "SHA-384",
            DigestAlgorithm::Sha512 => "SHA-512",
        }
    }
    pub fn digest(self, data: &[u8]) -> Result<Vec<u8>, openssl::error::ErrorStack> {
        Ok(openssl::hash::hash(self.message_digest(), data)?.to_vec())
    }
}

impl std::fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DigestAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace('-', "").as_str() {
            "sha256" => Ok(DigestAlgorithm::Sha256),
            "sha384" => Ok(DigestAlgorithm::Sha384),
            "sha512" => Ok(DigestAlgorithm::Sha512),
            _ => Err(format!(
                "unsupported digest algorithm `{s}` (sha256, sha384 or sha512)"
            )),
        }
    }
}

/// The signer's key family, as far as the formats care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    /// RSA, PKCS#1 v1.5 signatures.
    Rsa { bits: u32 },
    /// ECDSA on a NIST curve; `field` is the field size in bytes (32, 48 or 66).
    Ecdsa { field: usize },
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyType::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyType::Ecdsa { field: 32 } => f.write_str("ECDSA P-256"),
            KeyType::Ecdsa { field: 48 } => f.write_str("ECDSA P-384"),
            KeyType::Ecdsa { field } => write!(f, "ECDSA ({} bits)", field * 8),
        }
    }
}

impl KeyType {
    /// The digest that matches the key's strength (what is suggested when refused).
    pub fn natural_digest(self) -> DigestAlgorithm {
        match self {
            KeyType::Rsa { .. } | KeyType::Ecdsa { field: 32 } => DigestAlgorithm::Sha256,
            KeyType::Ecdsa { field: 48 } => DigestAlgorithm::Sha384,
            KeyType::Ecdsa { .. } => DigestAlgorithm::Sha512,
        }
    }
}

/// A signer certificate with its chain (leaf first) and the checked key.
#[derive(Clone)]
pub struct Signer {
    pub leaf: X509,
    pub chain: Vec<X509>,
    pub key: PKey<Public>,
    pub key_type: KeyType,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_type", &self.key_type)
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Checks the leaf's key and key usage.
    pub fn new(leaf: X509, chain: Vec<X509>) -> Result<Self, SignerError> {
        let key = leaf.public_key().map_err(SignerError::NoPublicKey)?;
        let key_type = match key.id() {
            Id::RSA if key.bits() >= 2048 => KeyType::Rsa { bits: key.bits() },
            Id::RSA => {
                return Err(SignerError::UnsupportedKey(format!(
                    "RSA-{} (at least 2048 bits)",
                    key.bits()
                )))
            }
            Id::EC => {
                let curve = key.ec_key()?.group().curve_name();
                match curve {
                    Some(Nid::X9_62_PRIME256V1) => KeyType::Ecdsa { field: 32 },
                    Some(Nid::SECP384R1) => KeyType::Ecdsa { field: 48 },
                    Some(Nid::SECP521R1) => KeyType::Ecdsa { field: 66 },
                    other => {
                        return Err(SignerError::UnsupportedKey(format!(
                            "EC curve {:?} (P-256, P-384 or P-521)",
                            other.map(|n| n.short_name().unwrap_or("?"))
                        )))
                    }
                }
            }
            other => {
                return Err(SignerError::UnsupportedKey(format!(
                    "{other:?} (RSA or ECDSA)"
                )))
            }
        };
        if let Some(ku) = leaf.key_usage() {
            if !ku.intersects(X509KeyUsage::DIGITAL_SIGNATURE | X509KeyUsage::NON_REPUDIATION) {
                return Err(SignerError::KeyUsage);
            }
        }
        Ok(Signer {
            leaf,
            chain,
            key,
            key_type,
        })
    }

    /// From DER certificates, leaf first.
    pub fn from_der(certs: &[Vec<u8>]) -> Result<Self, SignerError> {
        let mut parsed = certs
            .iter()
            .map(|d| X509::from_der(d).map_err(SignerError::Certificate))
            .collect::<Result<Vec<_>, _>>()?;
        if parsed.is_empty() {
            return Err(SignerError::UnsupportedKey("no certificate given".into()));
        }
        let leaf = parsed.remove(0);
        Signer::new(leaf, parsed)
    }

    /// DER of the leaf then the chain.
    pub fn to_der(&self) -> Result<Vec<Vec<u8>>, SignerError> {
        std::iter::once(&self.leaf)
            .chain(&self.chain)
            .map(|c| c.to_der().map_err(SignerError::from))
            .collect()
    }

    /// Refuses a digest the key is not paired with.
    pub fn check_digest(&self, digest: DigestAlgorithm) -> Result<(), SignerError> {
        let ok = match self.key_type {
            KeyType::Rsa { .. } => true,
            KeyType::Ecdsa { .. } => digest == self.key_type.natural_digest(),
        };
        if ok {
            Ok(())
        } else {
            Err(SignerError::DigestNotForKey {
                digest,
                key: self.key_type,
                suggested: self.key_type.natural_digest(),
            })
        }
    }

    /// Checks `value` over the prehashed `digest`; returns it in the form CMS carries (RSA as
    /// is, ECDSA as DER).
    pub fn verify_digest(
        &self,
        alg: DigestAlgorithm,
        digest: &[u8],
        value: &[u8],
    ) -> Result<Vec<u8>, SignerError> {
        let candidates: Vec<Vec<u8>> = match self.key_type {
            KeyType::Rsa { .. } => vec![value.to_vec()],
            KeyType::Ecdsa { field } => {
                let mut c = Vec::new();
                if EcdsaSig::from_der(value).is_ok() {
                    c.push(value.to_vec());
                }
                if value.len() == 2 * field {
                    if let Some(der) = raw_to_der(value, field) {
                        c.push(der);
                    }
                }
                c
            }
        };
        for candidate in candidates {
            if self.verify_once(alg, digest, &candidate)? {
                return Ok(candidate);
            }
        }
        Err(SignerError::SignatureMismatch)
    }

    fn verify_once(
        &self,
        alg: DigestAlgorithm,
        digest: &[u8],
        sig: &[u8],
    ) -> Result<bool, SignerError> {
        let mut ctx = PkeyCtx::new(&self.key)?;
        ctx.verify_init()?;
        if matches!(self.key_type, KeyType::Rsa { .. }) {
            ctx.set_rsa_padding(Padding::PKCS1)?;
        }
        ctx.set_signature_md(alg.md())?;
        // OpenSSL reports some malformed values as errors rather than `false`.
        Ok(ctx.verify(digest, sig).unwrap_or(false))
    }
}

/// Raw `r || s` to DER; `None` when a half is not a valid integer.
fn raw_to_der(raw: &[u8], field: usize) -> Option<Vec<u8>> {
    let r = BigNum::from_slice(&raw[..field]).ok()?;
    let s = BigNum::from_slice(&raw[field..]).ok()?;
    EcdsaSig::from_private_components(r, s).ok()?.to_der().ok()
}

/// DER ECDSA to raw `r || s` of `field` bytes each (XML-DSig's form).
pub fn ecdsa_der_to_raw(der: &[u8], field: usize) -> Result<Vec<u8>, SignerError> {
    let sig = EcdsaSig::from_der(der)?;
    let mut out = sig.r().to_vec_padded(field as i32)?;
    out.extend(sig.s().to_vec_padded(field as i32)?);
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use openssl::pkey::Private;

    pub(crate) fn example(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("certs-example")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// The example signer `sign-rsa` or `sign-ec`: its signer and private key.
    pub(crate) fn signer(name: &str) -> (Signer, PKey<Private>) {
        let leaf = X509::from_pem(&example(&format!("{name}.pem"))).unwrap();
        let chain = vec![X509::from_pem(&example("intermediate-ca.pem")).unwrap()];
        let key = PKey::private_key_from_pem(&example(&format!("{name}.key"))).unwrap();
        (Signer::new(leaf, chain).unwrap(), key)
    }

    /// What a remote service does: a raw signature over the prehashed digest.
    pub(crate) fn remote_sign(key: &PKey<Private>, alg: DigestAlgorithm, digest: &[u8]) -> Vec<u8> {
        let mut ctx = PkeyCtx::new(key).unwrap();
        ctx.sign_init().unwrap();
        if key.id() == Id::RSA {
            ctx.set_rsa_padding(Padding::PKCS1).unwrap();
        }
        ctx.set_signature_md(alg.md()).unwrap();
        let mut out = Vec::new();
        ctx.sign_to_vec(digest, &mut out).unwrap();
        out
    }

    #[test]
    fn keys_and_digests() {
        let (rsa, _) = signer("sign-rsa");
        assert_eq!(rsa.key_type, KeyType::Rsa { bits: 2048 });
        for d in [
            DigestAlgorithm::Sha256,
            DigestAlgorithm::Sha384,
            DigestAlgorithm::Sha512,
        ] {
            rsa.check_digest(d).unwrap();
        }
        let (ec, _) = signer("sign-ec");
        assert_eq!(ec.key_type, KeyType::Ecdsa { field: 32 });
        ec.check_digest(DigestAlgorithm::Sha256).unwrap();
        let e = ec.check_digest(DigestAlgorithm::Sha512).unwrap_err();
        assert!(matches!(e, SignerError::DigestNotForKey { .. }));
        assert_eq!(
            e.to_string(),
            "digest SHA-512 cannot be used with the signer's ECDSA P-256 key (use SHA-256)"
        );
        // The TSA certificate carries a signing key usage too; a CA certificate does not
        // (keyCertSign, cRLSign only).
        let ca = X509::from_pem(&example("intermediate-ca.pem")).unwrap();
        assert!(matches!(
            Signer::new(ca, vec![]),
            Err(SignerError::KeyUsage)
        ));
        assert!("sha1".parse::<DigestAlgorithm>().is_err());
        assert_eq!(
            "SHA-384".parse::<DigestAlgorithm>().unwrap(),
            DigestAlgorithm::Sha384
        );
    }

    #[test]
    fn values_are_checked_over_the_digest() {
        for name in ["sign-rsa", "sign-ec"] {
            let (s, key) = signer(name);
            let alg = DigestAlgorithm::Sha256;
            let digest = alg.digest(b"to be signed").unwrap();
            let value = remote_sign(&key, alg, &digest);
            let cms_form = s.verify_digest(alg, &digest, &value).unwrap();
            if let KeyType::Ecdsa { field } = s.key_type {
                // Raw r || s is accepted and comes back as DER.
                let raw = ecdsa_der_to_raw(&value, field).unwrap();
                assert_eq!(s.verify_digest(alg, &digest, &raw).unwrap(), cms_form);
            }
            let other = alg.digest(b"something else").unwrap();
            assert!(matches!(
                s.verify_digest(alg, &other, &value),
                Err(SignerError::SignatureMismatch)
            ));
            assert!(matches!(
                s.verify_digest(alg, &digest, b"garbage"),
                Err(SignerError::SignatureMismatch)
            ));
        }
        // A signature by another key (the RSA signer's value checked with the EC certificate).
        let (ec, _) = signer("sign-ec");
        let (_, rsa_key) = signer("sign-rsa");
        let digest = DigestAlgorithm::Sha256.digest(b"x").unwrap();
        let value = remote_sign(&rsa_key, DigestAlgorithm::Sha256, &digest);
        assert!(matches!(
            ec.verify_digest(DigestAlgorithm::Sha256, &digest, &value),
            Err(SignerError::SignatureMismatch)
        ));
    }
}
