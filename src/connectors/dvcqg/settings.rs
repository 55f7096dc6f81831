//! The connector's settings, resolved once at start from `[adapters.<name>.dvcqg]`.
//!
//! # Invariants
//! - Everything that can be wrong in the settings is found here, at start: a missing section,
//!   a missing credential, an unreadable secret, a bad procedure table, a token client that
//!   cannot be built. A running connector never fails on its settings.
//! - Secrets are resolved into [`Secret`]s and never appear in an error.

use std::path::Path;
use std::time::Duration;

use tokio::sync::Mutex;

use super::translate::{ProcedureTable, ProcedureTableError};
use crate::config::{AdapterSection, DvcqgSection, Secret, SecretRef};
use crate::transport::lgsp::{ClientAuth, TokenCache, TokenEndpoint};
use crate::transport::stack::{BuildError, Options, Outbound};

/// An LGSP token is dropped this long before it expires.
pub const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("missing [dvcqg] settings")]
    MissingSection,
    /// A field the chosen authentication needs (`oauth2 needs token_url`).
    #[error("{auth} needs {field}")]
    Missing {
        auth: &'static str,
        field: &'static str,
    },
    #[error("{0}")]
    Secret(String),
    #[error(transparent)]
    Procedures(#[from] ProcedureTableError),
    #[error("cannot build the token client: {0}")]
    TokenClient(#[from] BuildError),
}

/// Settings, resolved once.
pub(super) struct Settings {
    pub(super) url: String,
    pub(super) sharing_url: String,
    pub(super) unit_code: String,
    pub(super) lookup: bool,
    pub(super) expired: Vec<String>,
    pub(super) retryable: Vec<String>,
    pub(super) exists: Vec<String>,
    pub(super) not_found: Vec<String>,
    pub(super) max_items: usize,
    pub(super) max_bytes: usize,
    pub(super) linger: Duration,
    pub(super) in_flight: usize,
}

/// How the connector authenticates.
pub(super) enum Auth {
    Session {
        login_url: String,
        login_service: String,
        username: String,
        password: Secret,
        /// The session in use; the lock makes the login single-flight.
        current: Mutex<Option<String>>,
    },
    /// Client credentials at the LGSP.
    OAuth2(TokenCache),
}

/// Everything the connector is built from.
pub(super) struct Resolved {
    pub(super) settings: Settings,
    pub(super) auth: Auth,
    pub(super) procedures: ProcedureTable,
}

pub(super) fn resolve(
    name: &str,
    a: &AdapterSection,
    base: &Path,
) -> Result<Resolved, SettingsError> {
    let d: &DvcqgSection = a.dvcqg.as_ref().ok_or(SettingsError::MissingSection)?;
    let secret = |r: &SecretRef| {
        r.resolve(base)
            .map_err(|e| SettingsError::Secret(e.to_string()))
    };
    let need = |auth: &'static str, field: &'static str| SettingsError::Missing { auth, field };
    let auth = match d.auth.as_str() {
        "oauth2" => {
            let endpoint = TokenEndpoint {
                url: d.token_url.clone().ok_or(need("oauth2", "token_url"))?,
                client_id: d.client_id.clone().ok_or(need("oauth2", "client_id"))?,
                client_secret: secret(
                    d.client_secret
                        .as_ref()
                        .ok_or(need("oauth2", "client_secret"))?,
                )?,
                client_auth: ClientAuth::Body,
            };
            // The token endpoint gets a plain client (the adapter's timeout only), as it
            // always has: not the adapter's fixed headers, certificate or user agent.
            let stack = Outbound::build(&Options::plain(name, a.timeout.0))?;
            Auth::OAuth2(TokenCache::new(name, endpoint, stack, TOKEN_MARGIN))
        }
        _ => Auth::Session {
            login_url: d.login_url.clone().unwrap_or_else(|| a.url.clone()),
            login_service: d.login_service.clone(),
            username: d.username.clone().ok_or(need("session auth", "username"))?,
            password: secret(
                d.password
                    .as_ref()
                    .ok_or(need("session auth", "password"))?,
            )?,
            current: Mutex::new(None),
        },
    };
    let procedures = match &d.procedures {
        Some(p) => {
            let p = if p.is_absolute() {
                p.clone()
            } else {
                base.join(p)
            };
            ProcedureTable::load(&p)?
        }
        None => ProcedureTable::default(),
    };
    let settings = Settings {
        url: a.url.clone(),
        sharing_url: d.sharing_url.clone().unwrap_or_else(|| a.url.clone()),
        unit_code: d.unit_code.clone(),
        lookup: d.is_updating == "lookup",
        expired: d.session_expired_codes.clone(),
        retryable: d.retryable_codes.clone(),
        exists: d.exists_codes.clone(),
        not_found: d.not_found_codes.clone(),
        max_items: d.batch_max_items,
        max_bytes: d.batch_max_bytes,
        linger: d.batch_linger.0,
        in_flight: d.batch_in_flight,
    };
    Ok(Resolved {
        settings,
        auth,
        procedures,
    })
}
