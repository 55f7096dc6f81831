//! `[signers.NAME]` of a SmartCA service, resolved once at start.

use std::path::Path;

use crate::config::{Secret, SignerSection};
use crate::connectors::officials::{required_secret, words, Link, Roster, SettingsError};

/// Everything the connector is built from.
pub(super) struct Settings {
    pub(super) name: String,
    /// Base URL, without a trailing slash.
    pub(super) url: String,
    pub(super) sp_id: String,
    pub(super) sp_password: Secret,
    pub(super) waiting: Vec<String>,
    pub(super) signed: Vec<String>,
    pub(super) rejected: Vec<String>,
    pub(super) expired: Vec<String>,
    pub(super) not_found: Vec<String>,
    pub(super) roster: Roster,
    pub(super) link: Link,
}

pub(super) fn resolve(
    name: &str,
    s: &SignerSection,
    base: &Path,
) -> Result<Settings, SettingsError> {
    let missing = |field| SettingsError::Missing {
        name: name.into(),
        field,
    };
    let sp_password = required_secret(name, "sp_password", s.sp_password.as_ref(), base)?;
    let c = s.codes.clone().unwrap_or_default();
    Ok(Settings {
        name: name.into(),
        url: s.url.trim_end_matches('/').into(),
        sp_id: s.sp_id.clone().ok_or(missing("sp_id"))?,
        sp_password,
        waiting: words(c.waiting.as_ref(), &["WAITING"]),
        signed: words(c.signed.as_ref(), &["SUCCESS"]),
        rejected: words(c.rejected.as_ref(), &["REJECTED"]),
        expired: words(c.expired.as_ref(), &["EXPIRED"]),
        not_found: words(c.not_found.as_ref(), &["TRANSACTION_NOT_FOUND"]),
        roster: Roster::new(name, s, base)?,
        link: Link::new(name, s, base)?,
    })
}
