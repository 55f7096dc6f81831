//! The CSC service's bearer token (client credentials), through the shared token cache.

use super::settings::Settings;
use crate::connectors::signer::SignerError;
use crate::transport::lgsp::TokenError;

/// The current token (one fetch for all waiters).
pub(super) async fn token(s: &Settings) -> Result<String, SignerError> {
    s.tokens.token().await.map_err(|e| SignerError::Login {
        service: s.name.clone(),
        retryable: !matches!(
            e,
            TokenError::Refused {
                status: 400 | 401 | 403
            }
        ),
        detail: match e {
            TokenError::Refused { .. } => {
                format!("{e}: check signers.{}.client_id and client_secret", s.name)
            }
            other => other.to_string(),
        },
    })
}

/// Forget `stale` if it is still the token in use.
pub(super) async fn invalidate(s: &Settings, stale: &str) {
    s.tokens.invalidate(stale).await;
}

/// Token fetches so far.
pub(super) fn fetches(s: &Settings) -> u64 {
    s.tokens.fetches()
}
