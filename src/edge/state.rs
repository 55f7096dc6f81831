//! What the edge holds while it runs: its configured sources and the engine it publishes to.
//!
//! # Invariants
//! - Built once at start from the configuration; a source's token, signature profile and
//!   adapter never change while it runs.
//! - `slots` bounds the requests of one source handled at once (503 `busy` beyond).

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Secret;
use crate::runtime::Engine;
use crate::telemetry::metrics::Metrics;

/// One configured source.
pub struct SourceRuntime {
    pub token: Option<Secret>,
    pub kinds: Vec<String>,
    /// The signature every request must carry (`verify = "NAME"`), checked before parsing.
    pub verify: Option<Arc<crate::signing::InboundVerifier>>,
    /// The one-stop adapter whose mapping turns the vendor's JSON into the canonical dossier.
    pub adapter: Option<Arc<crate::mapping::Adapter>>,
    /// Requests of this source handled at once (`inbound.source_concurrency`).
    pub slots: Arc<tokio::sync::Semaphore>,
}

pub struct InboundState {
    pub engine: Arc<Engine>,
    pub sources: HashMap<String, SourceRuntime>,
    pub metrics: Arc<Metrics>,
    /// `inbound.max_body_bytes`: the body is read only after the token was checked.
    pub max_body_bytes: usize,
    /// The payment service, when `[payments]` is on: dossier snapshots accepted here keep
    /// their fees as the dossier's known fees (orders are checked against them).
    pub payments: Option<Arc<crate::payments::Payments>>,
    /// The signing flow, when `[signers.NAME]` are configured: `signature.requested` events
    /// go to it.
    pub signatures: Option<Arc<crate::signatures::SignatureService>>,
}
