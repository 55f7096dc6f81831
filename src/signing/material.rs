//! A profile's keys, read once: the signing key (PEM key + certificate, or PKCS#12), the keys
//! accepted when verifying (ours, current and previous, and the pinned peers'), the trust
//! anchors and CRLs.
//!
//! Key ids: the signing key's id is `key_id` (default: the profile's name); every other key
//! carries the `key_id` written next to its certificate.

use std::path::{Path, PathBuf};

use gw_crypto::keys::{self, Secret, SigningKey, TrustStore, VerifyingKey};
use openssl::hash::MessageDigest;
use openssl::x509::X509;

use super::error::{SigningError, SubjectError};
use crate::config::{defaults, SigningSection};

/// The scheme of a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    JwsCompact,
    JwsDetached,
    XmlDsigEnveloped,
    HttpSignature,
    None,
}

impl Scheme {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "jws-compact" => Scheme::JwsCompact,
            "jws-detached" => Scheme::JwsDetached,
            "xmldsig-enveloped" => Scheme::XmlDsigEnveloped,
            "http-signature" => Scheme::HttpSignature,
            "none" => Scheme::None,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Scheme::JwsCompact => "jws-compact",
            Scheme::JwsDetached => "jws-detached",
            Scheme::XmlDsigEnveloped => "xmldsig-enveloped",
            Scheme::HttpSignature => "http-signature",
            Scheme::None => "none",
        }
    }
}

/// Everything a profile signs and verifies with.
#[derive(Debug)]
pub struct KeyMaterial {
    pub profile: String,
    pub scheme: Scheme,
    /// `algorithm` as written (checked against the scheme by the configuration).
    pub algorithm: Option<String>,
    /// The key we sign with, with its certificate and chain.
    pub key: Option<SigningKey>,
    /// Keys accepted by id when verifying: ours (current, previous) and the pinned peers'.
    pub verifiers: Vec<VerifyingKey>,
    /// Which of `verifiers` are our previous keys (for the expiry report).
    previous_ids: Vec<String>,
    /// Certificates that came after each key's leaf (its chain), by key id.
    chains: Vec<(String, Vec<X509>)>,
    /// Anchors (and CRLs) signer certificates must chain to, when configured.
    pub trust: Option<TrustStore>,
    /// Anchor certificates as read, for the expiry report.
    anchors: Vec<X509>,
    pub embed_chain: bool,
    /// `jws-detached`: the header carrying the JWS.
    pub header: String,
    /// `http-signature`: covered headers besides method, target and content-digest.
    pub cover_headers: Vec<String>,
    pub max_age: std::time::Duration,
    pub max_skew: std::time::Duration,
    /// Subjects a certificate judged by `trust` may have (empty: any).
    pub allowed_subjects: Vec<String>,
}

fn full(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

impl KeyMaterial {
    /// Read the files and secrets of `[signing.<profile>]`. `base` is the config file's folder.
    pub fn from_section(
        profile: &str,
        s: &SigningSection,
        base: &Path,
    ) -> Result<Self, SigningError> {
        let scheme = Scheme::parse(&s.scheme).ok_or_else(|| SigningError::Settings {
            profile: profile.into(),
            what: format!("unknown scheme `{}`", s.scheme),
        })?;
        let read = |field: &str, p: &Path| {
            let p = full(base, p);
            std::fs::read(&p).map_err(|e| SigningError::Read {
                profile: profile.into(),
                field: field.into(),
                path: p.display().to_string(),
                detail: e.to_string(),
            })
        };
        let key_err = |field: &str| {
            let field = field.to_string();
            move |source| SigningError::Key {
                profile: profile.into(),
                field: field.clone(),
                source,
            }
        };
        let secret = |field: &str, r: &crate::config::SecretRef| {
            r.resolve(base)
                .map(|v| Secret::new(v.expose()))
                .map_err(|detail| SigningError::Secret {
                    profile: profile.into(),
                    field: field.into(),
                    detail: detail.to_string(),
                })
        };
        let key_id = s.key_id.clone().unwrap_or_else(|| profile.to_string());
        let key = match (&s.key, &s.certificate, &s.pkcs12) {
            (Some(k), Some(c), None) => {
                let pw = s
                    .key_password
                    .as_ref()
                    .map(|r| secret("key_password", r))
                    .transpose()?;
                Some(
                    keys::load_pem(
                        key_id.clone(),
                        &read("key", k)?,
                        Some(&read("certificate", c)?),
                        pw.as_ref(),
                    )
                    .map_err(key_err("key"))?,
                )
            }
            (None, _, Some(p12)) => {
                let pw = match &s.pkcs12_password {
                    Some(r) => secret("pkcs12_password", r)?,
                    None => Secret::new(""),
                };
                Some(
                    keys::load_pkcs12(key_id.clone(), &read("pkcs12", p12)?, &pw)
                        .map_err(key_err("pkcs12"))?,
                )
            }
            (None, None, None) => None,
            _ => {
                return Err(SigningError::Settings {
                    profile: profile.into(),
                    what: "set key + certificate, or pkcs12".into(),
                })
            }
        };
        let mut verifiers = Vec::new();
        let mut chains = Vec::new();
        if let Some(k) = &key {
            verifiers.push(k.verifying_key().map_err(key_err("key"))?);
            chains.push((k.id().to_string(), k.chain().to_vec()));
        }
        let mut previous_ids = Vec::new();
        for (field, list) in [("previous", &s.previous), ("trusted_keys", &s.trusted_keys)] {
            for k in list {
                let pem = read(field, &k.certificate)?;
                let mut stack = X509::stack_from_pem(&pem).unwrap_or_default();
                let cert = (!stack.is_empty())
                    .then(|| stack.remove(0))
                    .ok_or_else(|| SigningError::Key {
                        profile: profile.into(),
                        field: field.into(),
                        source: keys::KeyError::Parse(format!(
                            "no PEM certificate in {}",
                            k.certificate.display()
                        )),
                    })?;
                verifiers.push(
                    VerifyingKey::from_certificate(k.key_id.clone(), cert)
                        .map_err(key_err(field))?,
                );
                chains.push((k.key_id.clone(), stack));
                if field == "previous" {
                    previous_ids.push(k.key_id.clone());
                }
            }
        }
        let (trust, anchors) = match &s.trust_anchors {
            Some(p) => {
                let pem = read("trust_anchors", p)?;
                let mut t = TrustStore::from_pem(&pem).map_err(key_err("trust_anchors"))?;
                for (i, c) in s.crls.iter().enumerate() {
                    let field = format!("crls[{i}]");
                    t.add_crl_pem(&read(&field, c)?).map_err(key_err(&field))?;
                }
                let anchors = t.anchors().to_vec();
                (Some(t), anchors)
            }
            None => (None, Vec::new()),
        };
        Ok(KeyMaterial {
            profile: profile.into(),
            scheme,
            algorithm: s.algorithm.clone(),
            key,
            verifiers,
            previous_ids,
            chains,
            trust,
            anchors,
            embed_chain: s.embed_chain,
            header: s
                .header
                .clone()
                .unwrap_or_else(|| defaults::JWS_DETACHED_HEADER.to_string())
                .to_ascii_lowercase(),
            cover_headers: s
                .cover_headers
                .clone()
                .unwrap_or_else(|| {
                    defaults::SIGNATURE_COVERED_HEADERS
                        .iter()
                        .map(|h| h.to_string())
                        .collect()
                })
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            max_age: s
                .max_age
                .map(|d| d.0)
                .unwrap_or(defaults::SIGNATURE_MAX_AGE),
            max_skew: s
                .max_skew
                .map(|d| d.0)
                .unwrap_or(defaults::SIGNATURE_MAX_SKEW),
            allowed_subjects: s
                .allowed_subjects
                .iter()
                .map(|x| normalise_subject(x))
                .collect(),
        })
    }

    /// Whether a certificate judged by the anchors may sign for this profile: its subject is
    /// one of `allowed_subjects`, or none are configured.
    pub fn subject_allowed(&self, cert: &X509) -> Result<(), SubjectError> {
        if self.allowed_subjects.is_empty() {
            return Ok(());
        }
        let subject = name_text(cert.subject_name());
        if self.allowed_subjects.contains(&normalise_subject(&subject)) {
            Ok(())
        } else {
            Err(SubjectError::NotAllowed {
                subject,
                profile: self.profile.clone(),
            })
        }
    }

    /// Material from files given directly (the `sign`/`verify` commands without a profile).
    pub fn from_files(
        key: Option<&Path>,
        cert: Option<&Path>,
        trust: Option<&Path>,
    ) -> Result<Self, SigningError> {
        let section = SigningSection {
            scheme: "none".into(),
            algorithm: None,
            key: key.map(Path::to_path_buf),
            certificate: if key.is_some() {
                cert.map(Path::to_path_buf)
            } else {
                None
            },
            key_password: None,
            pkcs12: None,
            pkcs12_password: None,
            key_id: None,
            embed_chain: false,
            header: None,
            cover_headers: None,
            previous: Vec::new(),
            trust_anchors: trust.map(Path::to_path_buf),
            crls: Vec::new(),
            // A certificate alone (verification) is pinned under the id the signature names;
            // the verifier looks it up by that id, see `pinned_as`.
            trusted_keys: match (key, cert) {
                (None, Some(c)) => vec![crate::config::KeyCertificate {
                    key_id: "cli".into(),
                    certificate: c.to_path_buf(),
                }],
                _ => Vec::new(),
            },
            max_age: None,
            max_skew: None,
            allowed_subjects: Vec::new(),
        };
        KeyMaterial::from_section("cli", &section, Path::new("."))
    }

    /// The chain certificates that came with key `id` (after its leaf).
    pub fn chain_of(&self, id: &str) -> &[X509] {
        self.chains
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, c)| c.as_slice())
            .unwrap_or(&[])
    }

    /// Every certificate held, with its role and key id (anchors: their subject).
    pub fn certificates(&self) -> Vec<(&'static str, &str, &X509)> {
        let mut out = Vec::new();
        let own = self.key.as_ref().map(|k| k.id());
        if let Some(k) = &self.key {
            if let Some(c) = k.certificate() {
                out.push(("signing", k.id(), c));
            }
        }
        for v in &self.verifiers {
            if Some(v.id.as_str()) == own {
                continue;
            }
            if let Some(c) = &v.cert {
                let role = if self.previous_ids.contains(&v.id) {
                    "previous"
                } else {
                    "trusted"
                };
                out.push((role, v.id.as_str(), c));
            }
        }
        for a in &self.anchors {
            out.push(("anchor", "", a));
        }
        out
    }
}

/// What the commands and the expiry report say about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// `CN=…, O=…` in the certificate's order.
    pub subject: String,
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// SHA-256 of the DER, colon-separated hex.
    pub sha256: String,
    /// Negative once expired.
    pub days_to_expiry: i64,
}

/// A subject as compared: attributes trimmed, separated by `, `, names upper-case
/// (`c=VN,O=X` and `C=VN, O=X` are the same subject); values compared exactly.
fn normalise_subject(s: &str) -> String {
    s.split(',')
        .map(|part| match part.split_once('=') {
            Some((k, v)) => format!("{}={}", k.trim().to_ascii_uppercase(), v.trim()),
            None => part.trim().to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn name_text(n: &openssl::x509::X509NameRef) -> String {
    n.entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            let val = e.data().to_string().unwrap_or_default();
            format!("{key}={val}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Subject, issuer, serial, SHA-256 fingerprint and days to expiry of `cert`.
pub fn describe_certificate(cert: &X509) -> CertificateInfo {
    let serial = cert
        .serial_number()
        .to_bn()
        .and_then(|b| b.to_hex_str().map(|s| s.to_string()))
        .unwrap_or_default();
    let sha256 = cert
        .digest(MessageDigest::sha256())
        .map(|d| {
            d.iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":")
        })
        .unwrap_or_default();
    CertificateInfo {
        subject: name_text(cert.subject_name()),
        issuer: name_text(cert.issuer_name()),
        serial,
        sha256,
        days_to_expiry: keys::days_to_expiry(cert).unwrap_or(i64::MIN),
    }
}
