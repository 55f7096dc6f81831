//! What the ops listener holds: its tokens and roles, the engine it reports on, and who is
//! calling.
//!
//! # Invariants
//! - Tokens are resolved once at start and never printed (`Debug` shows the name only).
//! - Every API request carries its [`Caller`] (set by the auth layer) before a handler runs.

use std::sync::Arc;
use std::time::Instant;

use crate::config::{Loaded, OpsRole};
use crate::config::{Secret, SecretProblem};
use crate::runtime::Engine;

/// One resolved ops token.
#[derive(Clone)]
pub struct OpsToken {
    pub name: String,
    pub role: OpsRole,
    pub secret: Secret,
}

impl std::fmt::Debug for OpsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpsToken({}, {:?}, ***)", self.name, self.role)
    }
}

/// Why `[ops] tokens` cannot be used, by step; each names the token's key and name.
#[derive(Debug, thiserror::Error)]
pub enum OpsSetupError {
    /// The token's secret cannot be read (unset variable, missing file, empty value).
    #[error("ops.tokens[{index}].token ({name}): {problem}")]
    Secret {
        index: usize,
        name: String,
        problem: SecretProblem,
    },
    /// The token is too short to resist guessing.
    #[error(
        "ops.tokens[{index}].token ({name}): shorter than 16 characters: use a long random value"
    )]
    TooShort { index: usize, name: String },
}

/// What the ops listener needs besides the engine.
#[derive(Debug, Clone, Default)]
pub struct OpsOptions {
    /// Empty = the API and the dashboard are off.
    pub tokens: Vec<OpsToken>,
    /// The instance name (for `/api/v1/status`).
    pub instance: String,
    /// The remote-signing requests (when `[signers]` are configured): a dossier's trail shows
    /// its signing requests and their states.
    pub signatures: Option<SignatureRequests>,
    /// The agency subscriptions (for `/api/v1/subscriptions`).
    pub subscriptions: Vec<crate::agencies::Subscription>,
    /// Where the subscriptions' disabled states are kept (`[gateway] data_dir`).
    pub data_dir: std::path::PathBuf,
    /// The service-quality index (`/api/v1/indicators`), when `[indicators]` is configured.
    pub indicators: Option<Arc<crate::jobs::indicators::Wired>>,
}

/// The signature store as the ops API reads it.
#[derive(Clone)]
pub struct SignatureRequests(pub Arc<dyn gw_store::signatures::SignatureStore>);

impl std::fmt::Debug for SignatureRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignatureRequests")
    }
}

impl OpsOptions {
    /// Resolve `[ops] tokens` (secrets are read here, at start).
    pub fn from_config(loaded: &Loaded) -> Result<Self, OpsSetupError> {
        let mut tokens = Vec::new();
        for (i, t) in loaded.config.ops.tokens.iter().enumerate() {
            let secret =
                t.token
                    .resolve(&loaded.base)
                    .map_err(|problem| OpsSetupError::Secret {
                        index: i,
                        name: t.name.clone(),
                        problem,
                    })?;
            if secret.expose().len() < 16 {
                return Err(OpsSetupError::TooShort {
                    index: i,
                    name: t.name.clone(),
                });
            }
            tokens.push(OpsToken {
                name: t.name.clone(),
                role: t.role,
                secret,
            });
        }
        Ok(OpsOptions {
            tokens,
            instance: loaded.config.gateway.instance.clone(),
            signatures: None,
            // A subscription that cannot be built stops the engine's start with its reason.
            subscriptions: crate::agencies::Subscription::all(&loaded.config).unwrap_or_default(),
            data_dir: loaded.config.gateway.data_dir.clone(),
            indicators: None,
        })
    }
}

/// Shared state of the ops handlers.
pub struct OpsState {
    pub engine: Arc<Engine>,
    pub options: OpsOptions,
    pub started: Instant,
    pub started_ms: i64,
}

/// Who is calling (set by the auth layer for every API request).
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: OpsRole,
}
