//! `[signers.NAME]` of a MySign service, resolved once at start.

use std::path::Path;

use crate::config::{Secret, SignerSection};
use crate::connectors::officials::{required_secret, words, Link, Roster, SettingsError};

pub(super) struct Settings {
    pub(super) name: String,
    pub(super) url: String,
    pub(super) client_id: String,
    pub(super) client_secret: Secret,
    pub(super) profile_id: String,
    pub(super) waiting: Vec<String>,
    pub(super) signed: Vec<String>,
    pub(super) rejected: Vec<String>,
    pub(super) expired: Vec<String>,
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
    let client_secret = required_secret(name, "client_secret", s.client_secret.as_ref(), base)?;
    let c = s.codes.clone().unwrap_or_default();
    Ok(Settings {
        name: name.into(),
        url: s.url.trim_end_matches('/').into(),
        client_id: s.client_id.clone().ok_or(missing("client_id"))?,
        client_secret,
        profile_id: s.profile_id.clone().ok_or(missing("profile_id"))?,
        waiting: words(c.waiting.as_ref(), &["0"]),
        signed: words(c.signed.as_ref(), &["1"]),
        rejected: words(c.rejected.as_ref(), &["2"]),
        expired: words(c.expired.as_ref(), &["3"]),
        roster: Roster::new(name, s, base)?,
        link: Link::new(name, s, base)?,
    })
}
