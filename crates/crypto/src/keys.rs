//! Keys and trust: loading signing keys, key rings with rotation, X.509 chain validation.
//!
//! Invariants:
//! - Only RSA (>= 2048 bits) and ECDSA P-256 keys are accepted: those are the algorithms every
//!   signature format in this crate supports.
//! - A [`SigningKey`] loaded with a certificate holds a key that matches that certificate (checked at load).
//! - Keys are immutable after loading and cheap to clone (`Arc`); load them once at start.
//! - [`TrustStore::verify`] checks the chain to a configured anchor at the current time, the leaf's key
//!   usage (digitalSignature or nonRepudiation; timeStamping for TSAs) and, when CRLs are configured,
//!   that the leaf's issuer published a current CRL that does not list the leaf (intermediates are
//!   checked too when a CRL of their issuer is configured). Each failure has its own variant.
//! - Passwords travel as [`Secret`], which never prints and is zeroed on drop.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::error::ErrorStack;
use openssl::nid::Nid;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyParam;
use openssl::x509::{CrlStatus, X509Crl, X509KeyUsage, X509PurposeId, X509StoreContext, X509};

// X509_V_ERR_* codes (stable since OpenSSL 0.9.x) that get their own error variant.
const X509_V_ERR_CERT_NOT_YET_VALID: i32 = 9;
const X509_V_ERR_CERT_HAS_EXPIRED: i32 = 10;

/// Errors of key loading and certificate validation.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot parse key or certificate: {0}")]
    Parse(String),
    #[error("cannot open PKCS#12 (wrong password or damaged file): {0}")]
    Pkcs12(String),
    #[error("unsupported key: {0} (RSA >= 2048 bits or ECDSA P-256 only)")]
    UnsupportedKey(String),
    #[error("the private key does not match the certificate")]
    KeyCertificateMismatch,
    #[error("certificate {subject} has expired")]
    Expired { subject: String },
    #[error("certificate {subject} is not yet valid")]
    NotYetValid { subject: String },
    #[error("certificate {subject} is revoked")]
    Revoked { subject: String },
    #[error("certificate chain is not trusted: {0}")]
    Untrusted(String),
    #[error("certificate {subject} does not allow {needed}")]
    KeyUsage {
        subject: String,
        needed: &'static str,
    },
    #[error("no key with id {0:?} in the key ring")]
    UnknownKeyId(String),
    #[error("OpenSSL: {0}")]
    Crypto(#[from] ErrorStack),
}

/// A password or other secret string: never printed, zeroed when dropped.
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret value; keep the borrow short.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // SAFETY: zero bytes are valid UTF-8, so the String stays valid.
        unsafe { self.0.as_mut_vec() }.fill(0);
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// The key algorithm family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    /// ECDSA on NIST P-256 (secp256r1).
    EcP256,
}

fn key_kind<T: openssl::pkey::HasPublic>(pkey: &PKey<T>) -> Result<KeyKind, KeyError> {
    match pkey.id() {
        Id::RSA if pkey.bits() >= 2048 => Ok(KeyKind::Rsa),
        Id::RSA => Err(KeyError::UnsupportedKey(format!("RSA-{}", pkey.bits()))),
        Id::EC => {
            let curve = pkey.ec_key()?.group().curve_name();
            if curve == Some(Nid::X9_62_PRIME256V1) {
                Ok(KeyKind::EcP256)
            } else {
                Err(KeyError::UnsupportedKey(format!("EC curve {curve:?}")))
            }
        }
        other => Err(KeyError::UnsupportedKey(format!("{other:?}"))),
    }
}

struct SigningKeyInner {
    id: String,
    kind: KeyKind,
    pkey: PKey<Private>,
    cert: Option<X509>,
    chain: Vec<X509>,
}

/// A private key with its id and, optionally, its certificate and chain. Cheap to clone.
#[derive(Clone)]
pub struct SigningKey(Arc<SigningKeyInner>);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.0.id)
            .field("kind", &self.0.kind)
            .field("subject", &self.0.cert.as_ref().map(subject_of))
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Builds a key; checks the key type and that `cert` (if any) carries this key's public half.
    pub fn new(
        id: impl Into<String>,
        pkey: PKey<Private>,
        cert: Option<X509>,
        chain: Vec<X509>,
    ) -> Result<Self, KeyError> {
        let kind = key_kind(&pkey)?;
        if let Some(c) = &cert {
            if !c.public_key()?.public_eq(&pkey) {
                return Err(KeyError::KeyCertificateMismatch);
            }
        }
        Ok(SigningKey(Arc::new(SigningKeyInner {
            id: id.into(),
            kind,
            pkey,
            cert,
            chain,
        })))
    }

    /// The key id (`kid` in JWS, `keyid` in HTTP signatures).
    pub fn id(&self) -> &str {
        &self.0.id
    }
    pub fn kind(&self) -> KeyKind {
        self.0.kind
    }
    pub fn private_key(&self) -> &PKey<Private> {
        &self.0.pkey
    }
    /// The signer certificate, if loaded with one.
    pub fn certificate(&self) -> Option<&X509> {
        self.0.cert.as_ref()
    }
    /// Intermediates (and possibly the root) that came with the key.
    pub fn chain(&self) -> &[X509] {
        &self.0.chain
    }
    /// The public half, for verification.
    pub fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        let der = self.0.pkey.public_key_to_der()?;
        Ok(VerifyingKey {
            id: self.0.id.clone(),
            kind: self.0.kind,
            pkey: PKey::public_key_from_der(&der)?,
            cert: self.0.cert.clone(),
        })
    }
    /// Days until the certificate expires (negative once expired); `None` without a certificate.
    pub fn days_to_expiry(&self) -> Option<i64> {
        self.0.cert.as_ref().and_then(|c| days_to_expiry(c).ok())
    }
}

/// A public key (with its certificate when known) used to verify.
#[derive(Clone)]
pub struct VerifyingKey {
    pub id: String,
    pub kind: KeyKind,
    pub pkey: PKey<Public>,
    pub cert: Option<X509>,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("subject", &self.cert.as_ref().map(subject_of))
            .finish()
    }
}

impl VerifyingKey {
    /// From a certificate (PEM or DER X509).
    pub fn from_certificate(id: impl Into<String>, cert: X509) -> Result<Self, KeyError> {
        let pkey = cert.public_key()?;
        Ok(VerifyingKey {
            id: id.into(),
            kind: key_kind(&pkey)?,
            pkey,
            cert: Some(cert),
        })
    }
    /// From a PEM public key (`BEGIN PUBLIC KEY`) or certificate.
    pub fn from_pem(id: impl Into<String>, pem: &[u8]) -> Result<Self, KeyError> {
        if let Ok(cert) = X509::from_pem(pem) {
            return Self::from_certificate(id, cert);
        }
        let pkey = PKey::public_key_from_pem(pem).map_err(|e| KeyError::Parse(e.to_string()))?;
        Ok(VerifyingKey {
            id: id.into(),
            kind: key_kind(&pkey)?,
            pkey,
            cert: None,
        })
    }
}

/// Finds a verification key by id (JWS `kid`, HTTP signature `keyid`).
pub trait KeyResolver {
    fn resolve(&self, key_id: &str) -> Option<&VerifyingKey>;
}

impl KeyResolver for Vec<VerifyingKey> {
    fn resolve(&self, key_id: &str) -> Option<&VerifyingKey> {
        self.iter().find(|k| k.id == key_id)
    }
}

impl<const N: usize> KeyResolver for [VerifyingKey; N] {
    fn resolve(&self, key_id: &str) -> Option<&VerifyingKey> {
        self.iter().find(|k| k.id == key_id)
    }
}

impl KeyResolver for KeyRing {
    fn resolve(&self, key_id: &str) -> Option<&VerifyingKey> {
        self.verifiers.get(key_id)
    }
}

/// Loads a private key (PEM, optionally encrypted with `password`) and an optional certificate PEM
/// (leaf first, then its chain).
pub fn load_pem(
    id: impl Into<String>,
    key_pem: &[u8],
    cert_pem: Option<&[u8]>,
    password: Option<&Secret>,
) -> Result<SigningKey, KeyError> {
    let pkey = match password {
        Some(p) => PKey::private_key_from_pem_passphrase(key_pem, p.expose().as_bytes()),
        None => PKey::private_key_from_pem(key_pem),
    }
    .map_err(|e| KeyError::Parse(e.to_string()))?;
    let (cert, chain) = match cert_pem {
        Some(pem) => {
            let mut certs =
                X509::stack_from_pem(pem).map_err(|e| KeyError::Parse(e.to_string()))?;
            if certs.is_empty() {
                return Err(KeyError::Parse("no certificate in PEM".into()));
            }
            let leaf = certs.remove(0);
            (Some(leaf), certs)
        }
        None => (None, Vec::new()),
    };
    SigningKey::new(id, pkey, cert, chain)
}

/// Loads key, certificate and chain from a PKCS#12 bundle.
pub fn load_pkcs12(
    id: impl Into<String>,
    der: &[u8],
    password: &Secret,
) -> Result<SigningKey, KeyError> {
    let p12 = Pkcs12::from_der(der).map_err(|e| KeyError::Pkcs12(e.to_string()))?;
    let parsed = p12
        .parse2(password.expose())
        .map_err(|e| KeyError::Pkcs12(e.to_string()))?;
    let pkey = parsed
        .pkey
        .ok_or_else(|| KeyError::Pkcs12("no private key in bundle".into()))?;
    let chain = parsed
        .ca
        .map(|s| s.into_iter().collect())
        .unwrap_or_default();
    SigningKey::new(id, pkey, parsed.cert, chain)
}

/// Days from now until `cert`'s notAfter (negative once expired).
pub fn days_to_expiry(cert: &X509) -> Result<i64, KeyError> {
    let now = Asn1Time::days_from_now(0)?;
    let diff = now.diff(cert.not_after())?;
    Ok(i64::from(diff.days))
}

pub(crate) fn subject_of(cert: &X509) -> String {
    cert.subject_name()
        .entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            let val = e.data().to_string().unwrap_or_default();
            format!("{key}={val}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Several keys by id: sign with the current one, verify with any still trusted.
///
/// Rotation: [`KeyRing::rotate`] makes a new key current and keeps the previous one for verification
/// until [`KeyRing::retire`] removes it.
#[derive(Debug, Clone)]
pub struct KeyRing {
    current: SigningKey,
    verifiers: BTreeMap<String, VerifyingKey>,
}

impl KeyRing {
    pub fn new(current: SigningKey) -> Result<Self, KeyError> {
        let mut verifiers = BTreeMap::new();
        verifiers.insert(current.id().to_owned(), current.verifying_key()?);
        Ok(KeyRing { current, verifiers })
    }
    /// The key to sign with.
    pub fn current(&self) -> &SigningKey {
        &self.current
    }
    /// Adds a verification-only key (a peer's key, or an old key of ours).
    pub fn trust(&mut self, key: VerifyingKey) {
        self.verifiers.insert(key.id.clone(), key);
    }
    /// Makes `next` current; the previous key stays trusted for verification.
    pub fn rotate(&mut self, next: SigningKey) -> Result<(), KeyError> {
        self.verifiers
            .insert(next.id().to_owned(), next.verifying_key()?);
        self.current = next;
        Ok(())
    }
    /// Stops trusting `id` (never the current key).
    pub fn retire(&mut self, id: &str) -> Result<(), KeyError> {
        if id == self.current.id() || self.verifiers.remove(id).is_none() {
            return Err(KeyError::UnknownKeyId(id.to_owned()));
        }
        Ok(())
    }
    /// The verification key with this id.
    pub fn verifier(&self, id: &str) -> Result<&VerifyingKey, KeyError> {
        self.verifiers
            .get(id)
            .ok_or_else(|| KeyError::UnknownKeyId(id.to_owned()))
    }
    /// Days to expiry of every key that has a certificate, for monitoring.
    pub fn expiry_report(&self) -> Vec<(String, i64)> {
        self.verifiers
            .values()
            .filter_map(|v| {
                v.cert
                    .as_ref()
                    .and_then(|c| days_to_expiry(c).ok())
                    .map(|d| (v.id.clone(), d))
            })
            .collect()
    }
}

/// What a certificate must be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// keyUsage digitalSignature or nonRepudiation (when the extension is present).
    Signing,
    /// extendedKeyUsage timeStamping (RFC 3161 §2.3) plus a signing key usage.
    TimeStamping,
}

/// Trust anchors, extra intermediates and CRLs. Build once, share.
#[derive(Clone, Default)]
pub struct TrustStore {
    anchors: Vec<X509>,
    intermediates: Vec<X509>,
    crls: Vec<Arc<X509Crl>>,
}

impl fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustStore")
            .field(
                "anchors",
                &self.anchors.iter().map(subject_of).collect::<Vec<_>>(),
            )
            .field("intermediates", &self.intermediates.len())
            .field("crls", &self.crls.len())
            .finish()
    }
}

impl TrustStore {
    /// A store trusting the certificates in `anchors_pem` (one or more PEM certificates).
    pub fn from_pem(anchors_pem: &[u8]) -> Result<Self, KeyError> {
        let anchors =
            X509::stack_from_pem(anchors_pem).map_err(|e| KeyError::Parse(e.to_string()))?;
        if anchors.is_empty() {
            return Err(KeyError::Parse("no trust anchor in PEM".into()));
        }
        Ok(TrustStore {
            anchors,
            ..TrustStore::default()
        })
    }
    /// Adds untrusted intermediates used to build chains.
    pub fn add_intermediates_pem(&mut self, pem: &[u8]) -> Result<(), KeyError> {
        self.intermediates
            .extend(X509::stack_from_pem(pem).map_err(|e| KeyError::Parse(e.to_string()))?);
        Ok(())
    }
    /// Adds a CRL; from then on the leaf's issuer must have a current CRL.
    pub fn add_crl_pem(&mut self, pem: &[u8]) -> Result<(), KeyError> {
        self.crls.push(Arc::new(
            X509Crl::from_pem(pem).map_err(|e| KeyError::Parse(e.to_string()))?,
        ));
        Ok(())
    }
    /// The configured anchors.
    pub fn anchors(&self) -> &[X509] {
        &self.anchors
    }
    /// Days to expiry of every anchor and intermediate, for monitoring.
    pub fn expiry_report(&self) -> Vec<(String, i64)> {
        self.anchors
            .iter()
            .chain(&self.intermediates)
            .filter_map(|c| days_to_expiry(c).ok().map(|d| (subject_of(c), d)))
            .collect()
    }

    /// Validates `leaf` (with untrusted `extra` certificates, e.g. from KeyInfo or x5c) for `usage`.
    /// Returns the validated chain, leaf first.
    pub fn verify(&self, leaf: &X509, extra: &[X509], usage: Usage) -> Result<Vec<X509>, KeyError> {
        self.verify_at(leaf, extra, usage, None)
    }

    /// Like [`TrustStore::verify`], but validity periods and CRL freshness are judged at `at` (Unix
    /// seconds) instead of now: for a signature whose signing time is proven by a time-stamp.
    pub fn verify_at(
        &self,
        leaf: &X509,
        extra: &[X509],
        usage: Usage,
        at: Option<i64>,
    ) -> Result<Vec<X509>, KeyError> {
        let mut builder = X509StoreBuilder::new()?;
        if let Some(t) = at {
            let mut param = X509VerifyParam::new()?;
            param.set_time(t as _);
            builder.set_param(&param)?;
        }
        for a in &self.anchors {
            builder.add_cert(a.clone())?;
        }
        if usage == Usage::TimeStamping {
            builder.set_purpose(X509PurposeId::TIMESTAMP_SIGN)?;
        }
        let store = builder.build();
        let mut untrusted = Stack::new()?;
        for c in self.intermediates.iter().chain(extra) {
            untrusted.push(c.clone())?;
        }
        let subject = subject_of(leaf);
        let chain = X509StoreContext::new()?.init(&store, leaf, &untrusted, |ctx| {
            let ok = ctx.verify_cert()?;
            let chain: Vec<X509> = ctx
                .chain()
                .map(|s| s.iter().map(|c| c.to_owned()).collect())
                .unwrap_or_default();
            Ok((ok, ctx.error(), chain))
        })?;
        let (ok, err, chain) = chain;
        if !ok {
            return Err(match err.as_raw() {
                X509_V_ERR_CERT_HAS_EXPIRED => KeyError::Expired { subject },
                X509_V_ERR_CERT_NOT_YET_VALID => KeyError::NotYetValid { subject },
                _ => KeyError::Untrusted(format!("{subject}: {}", err.error_string())),
            });
        }
        check_key_usage(leaf, usage)?;
        if !self.crls.is_empty() {
            self.check_revocation(&chain, at)?;
        }
        Ok(chain)
    }

    fn check_revocation(&self, chain: &[X509], at: Option<i64>) -> Result<(), KeyError> {
        let now = match at {
            Some(t) => Asn1Time::from_unix(t as _)?,
            None => Asn1Time::days_from_now(0)?,
        };
        for (i, pair) in chain.windows(2).enumerate() {
            let (cert, issuer) = (&pair[0], &pair[1]);
            let issuer_key = issuer.public_key()?;
            let issuer_name = issuer.subject_name().to_der()?;
            let crl = self.crls.iter().find(|crl| {
                crl.issuer_name().to_der().ok().as_deref() == Some(issuer_name.as_slice())
                    && crl.verify(&issuer_key).unwrap_or(false)
            });
            let Some(crl) = crl else {
                if i == 0 {
                    return Err(KeyError::Untrusted(format!(
                        "no CRL configured for issuer {}",
                        subject_of(issuer)
                    )));
                }
                continue;
            };
            let fresh = crl
                .next_update()
                .map(|next| is_after(next, &now))
                .unwrap_or(true);
            if !fresh {
                return Err(KeyError::Untrusted(format!(
                    "CRL of {} is out of date",
                    subject_of(issuer)
                )));
            }
            if let CrlStatus::Revoked(_) = crl.get_by_cert(cert) {
                return Err(KeyError::Revoked {
                    subject: subject_of(cert),
                });
            }
        }
        Ok(())
    }
}

fn is_after(t: &Asn1TimeRef, now: &Asn1TimeRef) -> bool {
    now.diff(t)
        .map(|d| d.days > 0 || (d.days == 0 && d.secs > 0))
        .unwrap_or(false)
}

fn check_key_usage(leaf: &X509, usage: Usage) -> Result<(), KeyError> {
    let subject = subject_of(leaf);
    if let Some(ku) = leaf.key_usage() {
        if !ku.intersects(X509KeyUsage::DIGITAL_SIGNATURE | X509KeyUsage::NON_REPUDIATION) {
            return Err(KeyError::KeyUsage {
                subject,
                needed: "digitalSignature or nonRepudiation",
            });
        }
    }
    if usage == Usage::TimeStamping {
        let eku = leaf.extended_key_usage();
        if !eku.is_some_and(|e| e.contains(openssl::x509::X509ExtendedKeyUsage::TIMESTAMP)) {
            return Err(KeyError::KeyUsage {
                subject,
                needed: "timeStamping",
            });
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn example(name: &str) -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../certs-example/");
        std::fs::read(format!("{path}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    pub(crate) fn rsa_key() -> SigningKey {
        load_pem(
            "rsa-1",
            &example("sign-rsa.key"),
            Some(&example("sign-rsa.pem")),
            None,
        )
        .unwrap()
    }
    pub(crate) fn ec_key() -> SigningKey {
        load_pem(
            "ec-1",
            &example("sign-ec.key"),
            Some(&example("sign-ec.pem")),
            None,
        )
        .unwrap()
    }
    pub(crate) fn trust() -> TrustStore {
        let mut t = TrustStore::from_pem(&example("root-ca.pem")).unwrap();
        t.add_intermediates_pem(&example("intermediate-ca.pem"))
            .unwrap();
        t
    }

    #[test]
    fn loads_pem_and_pkcs12() {
        let rsa = rsa_key();
        assert_eq!(rsa.kind(), KeyKind::Rsa);
        assert!(rsa.days_to_expiry().unwrap() > 3000);
        let ec = load_pkcs12("ec-p12", &example("sign-ec.p12"), &Secret::new("example")).unwrap();
        assert_eq!(ec.kind(), KeyKind::EcP256);
        assert_eq!(ec.chain().len(), 2);
        assert!(matches!(
            load_pkcs12("x", &example("sign-ec.p12"), &Secret::new("wrong")),
            Err(KeyError::Pkcs12(_))
        ));
        assert!(matches!(
            load_pem(
                "x",
                &example("sign-rsa.key"),
                Some(&example("sign-ec.pem")),
                None
            ),
            Err(KeyError::KeyCertificateMismatch)
        ));
        assert_eq!(format!("{:?}", Secret::new("example")), "Secret(***)");
    }

    #[test]
    fn chain_validation_distinguishes_failures() {
        let mut t = trust();
        let cert = |n: &str| X509::from_pem(&example(n)).unwrap();
        assert_eq!(
            t.verify(&cert("sign-rsa.pem"), &[], Usage::Signing)
                .unwrap()
                .len(),
            3
        );
        assert!(matches!(
            t.verify(&cert("sign-expired.pem"), &[], Usage::Signing),
            Err(KeyError::Expired { .. })
        ));
        // ...but it was valid on 2020-06-01, which a time-stamp could prove the signature is from.
        t.verify_at(
            &cert("sign-expired.pem"),
            &[],
            Usage::Signing,
            Some(1_590_969_600),
        )
        .unwrap();
        assert!(matches!(
            t.verify_at(
                &cert("sign-rsa.pem"),
                &[],
                Usage::Signing,
                Some(1_590_969_600)
            ),
            Err(KeyError::NotYetValid { .. })
        ));
        // Without CRLs the revoked certificate passes; with them it does not.
        t.verify(&cert("sign-revoked.pem"), &[], Usage::Signing)
            .unwrap();
        t.add_crl_pem(&example("intermediate-ca.crl.pem")).unwrap();
        assert!(matches!(
            t.verify(&cert("sign-revoked.pem"), &[], Usage::Signing),
            Err(KeyError::Revoked { .. })
        ));
        t.verify(&cert("sign-ec.pem"), &[], Usage::Signing).unwrap();
        // The TLS server certificate may not sign documents... it has digitalSignature, but no timeStamping.
        assert!(matches!(
            t.verify(&cert("sign-rsa.pem"), &[], Usage::TimeStamping),
            Err(KeyError::Untrusted(_)) | Err(KeyError::KeyUsage { .. })
        ));
        t.verify(&cert("tsa.pem"), &[], Usage::TimeStamping)
            .unwrap();
        // A chain to an unconfigured root.
        let only_int = TrustStore::from_pem(&example("server.pem")).unwrap();
        assert!(matches!(
            only_int.verify(&cert("sign-rsa.pem"), &[], Usage::Signing),
            Err(KeyError::Untrusted(_))
        ));
        // The root CA's key usage does not allow signing documents.
        assert!(matches!(
            t.verify(&cert("root-ca.pem"), &[], Usage::Signing),
            Err(KeyError::KeyUsage { .. })
        ));
    }

    #[test]
    fn encrypted_pem_needs_the_password() {
        let key = rsa_key();
        let pem = key
            .private_key()
            .private_key_to_pem_pkcs8_passphrase(openssl::symm::Cipher::aes_256_cbc(), b"pw")
            .unwrap();
        let cert = example("sign-rsa.pem");
        load_pem("enc", &pem, Some(&cert), Some(&Secret::new("pw"))).unwrap();
        assert!(matches!(
            load_pem("enc", &pem, Some(&cert), Some(&Secret::new("no"))),
            Err(KeyError::Parse(_))
        ));
        let small = PKey::from_rsa(openssl::rsa::Rsa::generate(1024).unwrap()).unwrap();
        assert!(matches!(
            SigningKey::new("small", small, None, vec![]),
            Err(KeyError::UnsupportedKey(_))
        ));
    }

    #[test]
    fn key_ring_rotation() {
        let mut ring = KeyRing::new(rsa_key()).unwrap();
        assert_eq!(ring.current().id(), "rsa-1");
        ring.rotate(ec_key()).unwrap();
        assert_eq!(ring.current().id(), "ec-1");
        assert!(ring.verifier("rsa-1").is_ok());
        ring.retire("rsa-1").unwrap();
        assert!(matches!(
            ring.verifier("rsa-1"),
            Err(KeyError::UnknownKeyId(_))
        ));
        assert!(matches!(
            ring.retire("ec-1"),
            Err(KeyError::UnknownKeyId(_))
        ));
        assert_eq!(ring.expiry_report().len(), 1);
        assert!(ring.resolve("ec-1").is_some());
        assert!(ring.resolve("rsa-1").is_none());
    }
}
