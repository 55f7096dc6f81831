//! The connector's settings, resolved once at start from `[adapters.<name>.axis]`.
//!
//! # Invariants
//! - Everything that can be wrong is found here, at start: a missing section, an unreadable
//!   secret, a profile without a key. A running connector never fails on its settings.
//! - The secret is resolved into a [`Secret`] and never appears in an error or a log.

use std::path::Path;
use std::time::Duration;

use crate::config::{AdapterSection, Secret};

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("missing [axis] settings")]
    MissingSection,
    #[error("axis.secret: {0}")]
    Secret(String),
    #[error("the signing profile has no key: the axis takes only signed envelopes (set signing = an xmldsig-enveloped profile with the province's key)")]
    NoKey,
}

/// Settings, resolved once.
#[derive(Clone)]
pub struct Settings {
    pub send_url: String,
    pub list_url: String,
    pub get_url: String,
    pub status_url: String,
    pub system_id: String,
    pub secret: Secret,
    pub organ_id: String,
    pub system_header: String,
    pub secret_header: String,
    pub json_header: String,
    pub retryable: Vec<String>,
    pub page_size: u32,
    pub source_name: String,
    pub poll_interval: Duration,
    /// The profile whose trust anchors verify received envelopes.
    pub trust_profile: Option<String>,
}

impl Settings {
    pub fn from_section(a: &AdapterSection, base: &Path) -> Result<Self, SettingsError> {
        let x = a.axis.as_ref().ok_or(SettingsError::MissingSection)?;
        let secret = x
            .secret
            .resolve(base)
            .map_err(|e| SettingsError::Secret(e.to_string()))?;
        let url = a.url.trim_end_matches('/');
        Ok(Settings {
            send_url: format!("{url}{}", x.send_path),
            list_url: format!("{url}{}", x.list_path),
            get_url: format!("{url}{}", x.get_path),
            status_url: format!("{url}{}", x.status_path),
            system_id: x.system_id.clone(),
            secret,
            organ_id: x.organ_id.clone(),
            system_header: x.system_header.clone(),
            secret_header: x.secret_header.clone(),
            json_header: x.json_header.clone(),
            retryable: x.retryable_codes.clone(),
            page_size: x.page_size,
            source_name: x.source_name.clone(),
            poll_interval: x.poll_interval.0,
            trust_profile: x.trust.clone().or_else(|| a.signing.clone()),
        })
    }
}
