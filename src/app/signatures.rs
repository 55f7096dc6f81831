//! The signing flow of a running gateway, wired when `[signers.NAME]` are configured: the
//! service the edge hands `signature.requested` to, and its singleton job publishing outcomes
//! through the route runtime.
//!
//! # Invariants
//! - Built once at start; no `[signers]`, no signing flow (the edge answers
//!   `signing_not_configured`).
//! - The signature store is the gateway's store (same URL, same TLS).

use std::sync::Arc;
use std::time::Duration;

use crate::connectors::signers::Signers;
use crate::signatures::{ServiceSettings, SignatureService};

/// How often the signing job runs a round.
pub const TICK: Duration = Duration::from_secs(1);

/// Why the signing flow cannot be wired, by step.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("store: {0}")]
    Store(String),
    #[error(transparent)]
    Signers(#[from] crate::connectors::signers::BuildError),
    #[error(transparent)]
    Formats(#[from] crate::signatures::FormatsError),
}

/// The signing service from the configuration; `None` without `[signers]`.
pub async fn from_config(
    loaded: &crate::config::Loaded,
) -> Result<Option<Arc<SignatureService>>, WireError> {
    if loaded.config.signers.is_empty() {
        return Ok(None);
    }
    let signers = Signers::load(loaded)?;
    let formats = crate::signatures::Formats::from_config(loaded)?;
    let url = loaded
        .store_url()
        .map_err(|e| WireError::Store(e.to_string()))?;
    let tls = super::backends::store_tls(loaded).map_err(|e| WireError::Store(e.to_string()))?;
    let store = gw_store::signatures::open_tls(&url, tls)
        .await
        .map_err(|e| WireError::Store(e.to_string()))?;
    Ok(Some(Arc::new(
        SignatureService::new(
            store,
            signers,
            ServiceSettings {
                instance: loaded.config.gateway.instance.clone(),
                max_document_bytes: loaded.config.inbound.max_body_bytes,
                ..ServiceSettings::default()
            },
        )
        .with_formats(formats),
    )))
}

/// The job: rounds under the `signatures` leadership, outcomes through the engine.
pub fn scheduled(
    service: Arc<SignatureService>,
    engine: &Arc<crate::runtime::Engine>,
    instance: &str,
    cancel: tokio_util::sync::CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let lead = crate::jobs::Singleton::for_engine(crate::jobs::SIGNATURES, engine, instance);
    let m = service.metrics.clone();
    engine.metrics.add_renderer(Arc::new(move || m.render()));
    let sink = Arc::new(super::payments::EngineSink(engine.clone()));
    crate::jobs::signatures::run(service, sink, TICK, lead, cancel)
}
