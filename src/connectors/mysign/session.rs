//! MySign's logins: one bearer token per official, shared by every caller.
//!
//! # Invariants
//! - One login per official at a time: concurrent callers wait on the official's lock and
//!   share its token.
//! - A token is forgotten only if it is still the one the service refused
//!   ([`Sessions::invalidate`]): one expiry costs one login, however many callers saw it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::request;
use super::settings::Settings;
use crate::connectors::officials::{json_of, status_error};
use crate::connectors::signer::SignerError;
use crate::transport::stack::Auth;

/// A token is dropped this long before it expires.
const MARGIN: Duration = Duration::from_secs(60);
/// When the service gives no `expires_in`.
const DEFAULT_TTL: Duration = Duration::from_secs(3600);

type Cell = Arc<tokio::sync::Mutex<Option<(String, Instant)>>>;

#[derive(Default)]
pub(super) struct Sessions {
    cells: Mutex<HashMap<String, Cell>>,
    logins: AtomicU64,
}

impl Sessions {
    fn cell(&self, user: &str) -> Cell {
        self.cells
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(user.into())
            .or_default()
            .clone()
    }

    /// Logins made so far.
    pub(super) fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    /// The official's token, logging in when there is none (one login at a time).
    pub(super) async fn token(&self, s: &Settings, user: &str) -> Result<String, SignerError> {
        let cell = self.cell(user);
        let mut cur = cell.lock().await;
        if let Some((t, until)) = cur.as_ref() {
            if Instant::now() < *until {
                return Ok(t.clone());
            }
        }
        self.logins.fetch_add(1, Ordering::Relaxed);
        let url = format!("{}{}", s.url, request::LOGIN);
        let reply = s
            .link
            .post(
                "login",
                &url,
                &request::login(s, user),
                Auth::None,
                &["client_secret"],
            )
            .await
            .map_err(|e| match e {
                SignerError::Transport { error, .. } => SignerError::Login {
                    service: s.name.clone(),
                    retryable: error.failure().is_some(),
                    detail: error.to_string(),
                },
                other => other,
            })?;
        if !(200..300).contains(&reply.status) {
            let permanent = matches!(reply.status, 400 | 401 | 403);
            tracing::warn!(signer = %s.name, status = reply.status, "MySign login refused");
            return Err(SignerError::Login {
                service: s.name.clone(),
                detail: format!(
                    "{}{}",
                    status_error("login", &reply),
                    if permanent {
                        ": check signers.NAME.client_id, client_secret and profile_id"
                    } else {
                        ""
                    }
                ),
                retryable: !permanent,
            });
        }
        let v = json_of("login", &reply)?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or(SignerError::Login {
                service: s.name.clone(),
                detail: "the login answer has no access_token".into(),
                retryable: true,
            })?
            .to_string();
        let ttl = v
            .get("expires_in")
            .and_then(Value::as_u64)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TTL);
        *cur = Some((
            token.clone(),
            Instant::now() + ttl.saturating_sub(MARGIN.min(ttl / 2)),
        ));
        Ok(token)
    }

    /// Forget `stale` if it is still the official's token.
    pub(super) async fn invalidate(&self, user: &str, stale: &str) {
        let cell = self.cell(user);
        let mut cur = cell.lock().await;
        if cur.as_ref().map(|(t, _)| t.as_str()) == Some(stale) {
            *cur = None;
        }
    }
}
