//! `[signers.NAME]` of a CSC service, resolved once at start.

use std::path::Path;

use crate::config::SignerSection;
use crate::connectors::officials::{required_secret, words, Link, Roster, SettingsError};
use crate::transport::lgsp::{ClientAuth, TokenCache, TokenEndpoint};
use crate::transport::stack::{Options, Outbound};

/// A token is dropped this long before it expires.
const TOKEN_MARGIN: std::time::Duration = std::time::Duration::from_secs(60);

pub(super) struct Settings {
    pub(super) name: String,
    /// The API root (`…/csc/v2`), without a trailing slash.
    pub(super) url: String,
    pub(super) synchronous: bool,
    pub(super) polling_path: String,
    pub(super) waiting: Vec<String>,
    pub(super) rejected: Vec<String>,
    pub(super) expired: Vec<String>,
    pub(super) not_found: Vec<String>,
    pub(super) tokens: TokenCache,
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
    let url = s.url.trim_end_matches('/').to_string();
    let secret = required_secret(name, "client_secret", s.client_secret.as_ref(), base)?;
    let endpoint = TokenEndpoint {
        url: s
            .token_url
            .clone()
            .unwrap_or_else(|| format!("{url}/oauth2/token")),
        client_id: s.client_id.clone().ok_or(missing("client_id"))?,
        client_secret: secret,
        client_auth: ClientAuth::Body,
    };
    let token_stack = Outbound::build(&Options {
        owner: &format!("signers.{name}"),
        timeout: s.timeout.0,
        connect_timeout: Some(s.connect_timeout.0),
        tls: s.tls.as_ref(),
        base,
        user_agent: true,
        headers: None,
    })?;
    let c = s.codes.clone().unwrap_or_default();
    Ok(Settings {
        name: name.into(),
        synchronous: s.operation_mode.as_deref() == Some("sync"),
        polling_path: s
            .polling_path
            .clone()
            .unwrap_or_else(|| "signatures/signPolling".into())
            .trim_start_matches('/')
            .to_string(),
        waiting: words(c.waiting.as_ref(), &["pending"]),
        rejected: words(c.rejected.as_ref(), &["access_denied"]),
        expired: words(c.expired.as_ref(), &["expired"]),
        not_found: words(c.not_found.as_ref(), &["invalid_response_id"]),
        tokens: TokenCache::new(
            &format!("signers.{name}"),
            endpoint,
            token_stack,
            TOKEN_MARGIN,
        ),
        roster: Roster::new(name, s, base)?,
        link: Link::new(name, s, base)?,
        url,
    })
}
