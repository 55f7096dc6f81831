//! `[sources.NAME]`: inbound sources; events arrive at `POST /in/<name>`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::names::valid_name;
use super::secrets::SecretRef;

/// An inbound source: events arrive at `POST /in/<name>`.
#[derive(Debug, Clone, Deserialize)]
pub struct SourceSection {
    /// Bearer token senders must present, by reference. Absent = no authentication
    /// (allowed only on a loopback listener; `check-config` says so).
    #[serde(default)]
    pub token: Option<SecretRef>,
    /// Event kinds this source may send (patterns with a trailing `*`). Default: any.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Signing profile whose keys must have signed every request (`jws-detached` or
    /// `http-signature`), checked before the body is read as an event. Default: none.
    #[serde(default)]
    pub verify: Option<String>,
    /// A declarative one-stop adapter folder (`adapters/<name>/`, relative to this file): the
    /// request body is then the vendor's own JSON, mapped to the canonical dossier by the
    /// adapter's mapping (kind, key and version come from it). Absent: the body is a generic
    /// event `{"kind", "key", "version"?, "payload"}`.
    #[serde(default)]
    pub adapter: Option<PathBuf>,
}

/// Check `[sources]`: valid names, and a token unless the inbound listener is loopback.
pub(super) fn validate(
    sources: &BTreeMap<String, SourceSection>,
    inbound_loopback: bool,
    p: &mut impl FnMut(String, String, &str),
) {
    for (name, s) in sources {
        if !valid_name(name) {
            p(
                format!("sources.{name}"),
                "the name has characters other than a-z, 0-9, - and _".into(),
                "rename it",
            );
        }
        if s.token.is_none() && !inbound_loopback {
            p(
                format!("sources.{name}.token"),
                "no token on a non-loopback listener: anyone could inject events".into(),
                "set token = { env = \"NAME\" }",
            );
        }
    }
}
