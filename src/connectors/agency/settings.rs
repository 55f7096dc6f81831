//! A push subscription's table resolved once at start: secrets read and decoded, the RFC 9421
//! key loaded, the HTTP client built (timeouts, TLS, the agency's rate limit).

use std::path::Path;
use std::sync::Arc;

use super::webhook::{WebhookError, WebhookSecret};
use crate::agencies::Subscription;
use crate::config::{AdapterSection, PushSection, RateLimitSection};
use crate::transport::client::{ClientError, HttpClient};

/// Why a push subscription's settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("subscription {name}: delivery is not push")]
    NotPush { name: String },
    #[error("subscription {name}: push.secret: {detail}")]
    SecretUnreadable { name: String, detail: String },
    #[error("subscription {name}: push.secret: {source}")]
    SecretInvalid {
        name: String,
        #[source]
        source: WebhookError,
    },
    #[error("subscription {name}: push.rfc9421.key: {detail}")]
    Key { name: String, detail: String },
    #[error("subscription {name}: push: {source}")]
    Client {
        name: String,
        #[source]
        source: ClientError,
    },
}

/// The RFC 9421 signing of a push.
#[derive(Clone)]
pub struct HttpSignature {
    pub key: gw_crypto::keys::SigningKey,
    pub alg: gw_crypto::httpsig::HttpSigAlgorithm,
}

/// A push subscription, ready to send.
#[derive(Clone)]
pub struct PushSettings {
    pub url: String,
    pub secrets: Vec<WebhookSecret>,
    pub rfc9421: Option<HttpSignature>,
    pub client: HttpClient,
    pub disable_after: std::time::Duration,
}

impl PushSettings {
    pub fn resolve(sub: &Subscription, base: &Path) -> Result<Self, SettingsError> {
        let name = sub.name.clone();
        let push: &PushSection = sub
            .push
            .as_ref()
            .ok_or(SettingsError::NotPush { name: name.clone() })?;
        let mut secrets = Vec::new();
        for r in push.secret.refs() {
            let v = r
                .resolve(base)
                .map_err(|e| SettingsError::SecretUnreadable {
                    name: name.clone(),
                    detail: e.to_string(),
                })?;
            secrets.push(WebhookSecret::parse(v.expose()).map_err(|source| {
                SettingsError::SecretInvalid {
                    name: name.clone(),
                    source,
                }
            })?);
        }
        let rfc9421 = match &push.rfc9421 {
            None => None,
            Some(s) => {
                let key_err = |detail: String| SettingsError::Key {
                    name: name.clone(),
                    detail,
                };
                let pem = s.key.resolve(base).map_err(|e| key_err(e.to_string()))?;
                let key =
                    gw_crypto::keys::load_pem(s.keyid.clone(), pem.expose().as_bytes(), None, None)
                        .map_err(|e| key_err(e.to_string()))?;
                let alg = gw_crypto::httpsig::HttpSigAlgorithm::from_name(&s.alg)
                    .ok_or_else(|| key_err(format!("unknown algorithm {}", s.alg)))?;
                Some(HttpSignature { key, alg })
            }
        };
        // The transport stack of an adapter: timeouts, TLS, the agency's quota, 429 back-off,
        // and the evidence capture of every exchange.
        let adapter = AdapterSection {
            connector: "agency".into(),
            url: push.url.clone(),
            timeout: push.timeout,
            connect_timeout: crate::config::Dur(crate::config::defaults::HTTP_CONNECT_TIMEOUT),
            bearer: None,
            tls: push.tls.clone(),
            headers: Default::default(),
            dvcqg: None,
            axis: None,
            signing: None,
            rate_limit: push
                .rate_per_s
                .map(|per_sec| RateLimitSection { per_sec, burst: 1 }),
        };
        let client =
            HttpClient::build(&format!("agency.{name}"), &adapter, base).map_err(|source| {
                SettingsError::Client {
                    name: name.clone(),
                    source,
                }
            })?;
        Ok(PushSettings {
            url: push.url.clone(),
            secrets,
            rfc9421,
            client,
            disable_after: push.disable_after.0,
        })
    }
}

/// Shared settings.
pub type Shared = Arc<PushSettings>;
