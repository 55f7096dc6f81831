//! The errors of the signing module: [`SigningError`], loading a profile, one variant per
//! failing step.
//!
//! # Invariants
//! - This file imports nothing else of `signing`, so every other file of it may import it
//!   without making a circle.
//! - Messages name the configuration key or the step that failed, never a key or a body.

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
