//! The errors of the signing module, one enum per operation and one variant per failing step.
//!
//! # Invariants
//! - This file imports nothing else of `signing`, so every other file of it may import it
//!   without making a circle.
//! - Messages name the configuration key or the step that failed, never a key or a body.
//! - A step that wraps a lower error keeps it as its `source`; where the message is the lower
//!   error's own, the variant is `transparent`.

use gw_crypto::httpsig::HttpSigError;
use gw_crypto::jws::JwsError;
use gw_crypto::xmldsig::DsigError;

/// Errors of loading a profile, one variant per failing step; each names the config key.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("signing.{profile}.{field}: cannot read {path}: {detail}")]
    Read {
        profile: String,
        field: String,
        path: String,
        detail: String,
    },
    #[error("signing.{profile}.{field}: {detail}")]
    Secret {
        profile: String,
        field: String,
        detail: String,
    },
    #[error("signing.{profile}.{field}: {source}")]
    Key {
        profile: String,
        field: String,
        #[source]
        source: gw_crypto::keys::KeyError,
    },
    #[error("signing.{profile}: {what}")]
    Settings { profile: String, what: String },
    #[error("no signing profile named `{0}`")]
    UnknownProfile(String),
}

/// Why CPU-bound work could not run on the signing pool (`run_cpu`).
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// Waiting for one of the [`super::cpu::cpu_slots`] failed (the semaphore was closed).
    #[error("signing slots closed: {0}")]
    SlotsClosed(#[source] tokio::sync::AcquireError),
    /// The work panicked or was cancelled on the blocking pool.
    #[error("signing task failed: {0}")]
    TaskFailed(#[source] tokio::task::JoinError),
}

/// Why an outgoing request could not be signed ([`super::SigningProfile::sign`]). The request
/// is then not sent: the attempt fails and is retried.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The signing pool could not run the work.
    #[error(transparent)]
    Cpu(#[from] CpuError),
    /// `jws-compact` / `jws-detached`: the JWS could not be made.
    #[error(transparent)]
    Jws(#[from] JwsError),
    /// `xmldsig-enveloped` met a body that is not XML.
    #[error("xmldsig-enveloped signs XML bodies, and this body is not XML")]
    NotXml,
    /// `xmldsig-enveloped`: the enveloped signature could not be made.
    #[error(transparent)]
    XmlDsig(#[from] DsigError),
    /// `http-signature`: the RFC 9421 headers could not be made.
    #[error(transparent)]
    HttpSig(#[from] HttpSigError),
}

/// A signer certificate judged by the trust anchors whose subject is not among the profile's
/// `allowed_subjects` ([`super::KeyMaterial::subject_allowed`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("signer subject `{subject}` is not among allowed_subjects of profile {profile}")]
    NotAllowed { subject: String, profile: String },
}
