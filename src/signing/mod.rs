//! Signing profiles: what an adapter's profile does to an outgoing request just before it is
//! sent, and how a source's profile checks an incoming request before it is read. The
//! `gw-crypto` crate provides the schemes; a profile (`[signing.NAME]` in the configuration)
//! wires one of them to keys loaded once at start.
//!
//! # Invariants
//! - Signing happens after translation and before sending, on the exact bytes that are sent:
//!   the profile returns the request the client sends, body and headers included, and nothing
//!   changes them afterwards.
//! - A signing failure is never "send unsigned": the attempt fails and is retried (a key that
//!   cannot be read is a configuration fault an operator can fix).
//! - Keys, certificates, trust anchors and CRLs are read once, by [`Profiles::load`], at start;
//!   never per message. A profile that cannot load stops the start with `signing.NAME.FIELD:`
//!   and the reason.
//! - Signing and verifying are CPU work (an RSA-2048 signature takes about a millisecond): they
//!   run on tokio's blocking pool (`spawn_blocking`), never on the reactor threads, and at most
//!   [`cpu_slots`] of them at once (the number of CPUs less one, at least one), so a burst of
//!   RSA signatures cannot crowd the reactor threads off the CPUs either. Measured on 2 shared
//!   cores under load (`tests/signing.rs`, `signing_cost_per_scheme`): with 8 tasks signing RSA,
//!   a 1 ms ticker's p99 lateness was 10-16 ms inline, 15-27 ms with unbounded `spawn_blocking`
//!   (blocking threads outnumber the cores) and 2-3 ms bounded, for 20-25% less signing
//!   throughput than inline.
//! - Inbound verification fails closed with one stable code per cause ([`codes`]); a request
//!   that does not verify is never parsed, let alone queued.
//!
//! # Schemes
//! | scheme | outgoing request | inbound check |
//! |---|---|---|
//! | `jws-compact` | body = compact JWS of the body, `Content-Type: application/jose` | — |
//! | `jws-detached` | body unchanged, RFC 7797 JWS (`b64:false`) in `header` | yes |
//! | `xmldsig-enveloped` | XML body with an enveloped `ds:Signature` (exclusive C14N) | — |
//! | `http-signature` | RFC 9421 `Signature-Input`/`Signature` + RFC 9530 `Content-Digest` | yes |
//! | `none` | unchanged | — |
//!
//! Replay protection of inbound signatures: freshness first (`created` of an HTTP signature,
//! `iat` in a detached JWS's protected header, within `max_age` / `max_skew`; a detached JWS
//! without `iat` is stale), then the signature's identity (`nonce:KEY:NONCE`, or the SHA-256
//! of the compact JWS) is checked against this process's memory and remembered in the store
//! until its window ends (`gw_store::replay`): a replay is refused after a restart and on
//! another instance sharing the store. Outgoing detached JWS carry `iat`.
//!
//! # Files
//! Each file imports only the ones listed before it; this one declares them, re-exports their
//! public items and holds [`Profiles`] (which builds on all of them), and none imports it back.
//! - `error.rs`: the error enums ([`SigningError`] loading, [`SignError`] signing,
//!   [`CpuError`] the pool, [`SubjectError`] a refused signer subject).
//! - `cpu.rs`: the signing pool ([`cpu_slots`], `run_cpu`).
//! - `profile.rs`: the outgoing contract, [`SigningProfile`], and [`Unsigned`].
//! - `material.rs`: [`Scheme`] and a profile's keys, [`KeyMaterial`].
//! - `outbound.rs`: [`SchemeProfile`], the signer of each scheme.
//! - `inbound.rs`: [`InboundVerifier`] and its rejection [`codes`].

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{AdapterSection, Loaded, SourceSection};

pub mod assemble;
mod cpu;
mod error;
mod inbound;
mod material;
mod outbound;
mod profile;
pub mod remote;

pub use cpu::cpu_slots;
pub use error::{CpuError, SignError, SigningError, SubjectError};
pub use inbound::{
    codes, signer_fingerprint, InboundRequest, InboundVerifier, Rejection, ReplayId, Verified,
};
pub use material::{describe_certificate, CertificateInfo, KeyMaterial, Scheme};
pub use outbound::SchemeProfile;
pub use profile::{SigningProfile, Unsigned};

/// Every configured profile, loaded once: outgoing signers and inbound verifiers share the
/// keys of their profile.
pub struct Profiles {
    material: BTreeMap<String, Arc<KeyMaterial>>,
    signers: BTreeMap<String, Arc<dyn SigningProfile>>,
    verifiers: BTreeMap<String, Arc<InboundVerifier>>,
}

impl std::fmt::Debug for Profiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profiles")
            .field("profiles", &self.material.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Profiles {
    /// No profile at all.
    pub fn empty() -> Self {
        Profiles {
            material: BTreeMap::new(),
            signers: BTreeMap::new(),
            verifiers: BTreeMap::new(),
        }
    }

    /// Load every `[signing.NAME]` profile of the configuration (keys, certificates, trust
    /// anchors, CRLs, secrets): the one place keys are read.
    pub fn load(loaded: &Loaded) -> Result<Self, SigningError> {
        let mut p = Profiles::empty();
        for (name, section) in &loaded.config.signing {
            let m = Arc::new(KeyMaterial::from_section(name, section, &loaded.base)?);
            if m.scheme != Scheme::None && m.key.is_some() {
                p.signers
                    .insert(name.clone(), Arc::new(SchemeProfile::new(m.clone())?));
            }
            if matches!(m.scheme, Scheme::JwsDetached | Scheme::HttpSignature) {
                p.verifiers
                    .insert(name.clone(), Arc::new(InboundVerifier::new(m.clone())));
            }
            p.material.insert(name.clone(), m);
        }
        Ok(p)
    }

    /// The signer an adapter names (`signing = "NAME"`), or [`Unsigned`].
    pub fn for_adapter(&self, a: &AdapterSection) -> Result<Arc<dyn SigningProfile>, SigningError> {
        let Some(name) = &a.signing else {
            return Ok(Arc::new(Unsigned));
        };
        match (self.material.get(name), self.signers.get(name)) {
            (Some(_), Some(s)) => Ok(s.clone()),
            (Some(m), None) if m.scheme == Scheme::None => Ok(Arc::new(Unsigned)),
            (Some(_), None) => Err(SigningError::Settings {
                profile: name.clone(),
                what: "no key to sign with (set key + certificate, or pkcs12)".into(),
            }),
            (None, _) => Err(SigningError::UnknownProfile(name.clone())),
        }
    }

    /// The verifier a source names (`verify = "NAME"`), if any.
    pub fn for_source(
        &self,
        s: &SourceSection,
    ) -> Result<Option<Arc<InboundVerifier>>, SigningError> {
        let Some(name) = &s.verify else {
            return Ok(None);
        };
        match self.verifiers.get(name) {
            Some(v) => Ok(Some(v.clone())),
            None if self.material.contains_key(name) => Err(SigningError::Settings {
                profile: name.clone(),
                what: "inbound requests can be verified with jws-detached or http-signature only"
                    .into(),
            }),
            None => Err(SigningError::UnknownProfile(name.clone())),
        }
    }

    /// The loaded keys of a profile.
    pub fn material(&self, name: &str) -> Option<&Arc<KeyMaterial>> {
        self.material.get(name)
    }

    /// Days to expiry of every certificate the profiles hold, for monitoring (see
    /// [`certs_days_to_expiry`]).
    pub fn certs_days_to_expiry(&self) -> Vec<CertExpiry> {
        certs_days_to_expiry(self)
    }

    /// SHA-256 (hex, lowercase, of the DER) of the certificate profile `name` signs with, if
    /// it has one (for the evidence log).
    pub fn signing_certificate_sha256(&self, name: &str) -> Option<String> {
        let m = self.material.get(name)?;
        let (_, _, cert) = m
            .certificates()
            .into_iter()
            .find(|(role, _, _)| *role == "signing")?;
        let der = cert.to_der().ok()?;
        Some(gw_crypto::digest::sha256_hex(&der))
    }
}

/// One certificate's remaining validity, for the metrics (`profile`, `role`, days).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertExpiry {
    pub profile: String,
    /// `signing` (the key we sign with), `previous` (our rotated-out keys), `trusted` (a
    /// pinned peer) or `anchor` (a trust anchor).
    pub role: &'static str,
    /// The key id (`kid`/`keyid`); for anchors, the subject.
    pub key_id: String,
    pub subject: String,
    pub serial: String,
    /// Negative once expired.
    pub days: i64,
}

/// Profile → certificate → days to expiry, for every certificate of every profile.
pub fn certs_days_to_expiry(p: &Profiles) -> Vec<CertExpiry> {
    let mut out = Vec::new();
    for (name, m) in &p.material {
        for (role, key_id, cert) in m.certificates() {
            let info = describe_certificate(cert);
            out.push(CertExpiry {
                profile: name.clone(),
                role,
                key_id: key_id.to_string(),
                subject: info.subject,
                serial: info.serial,
                days: info.days_to_expiry,
            });
        }
    }
    out
}
