//! Connectors: Rust code for one protocol family each. A connector translates an envelope to
//! the party's format, signs it with the adapter's signing profile, sends it and reads the
//! answer; [`crate::retry::classify`] decides what the answer means, with the connector's
//! reading of 2xx bodies for parties that answer "HTTP 200, but error".
//!
//! # Invariants
//! - A connector never acks, retries or records: it returns a [`Attempted`] and the route
//!   runtime does the rest (one place decides, one place records).
//! - Connectors are built once at start (clients, keys, mappings) and shared by every lane.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::AdapterSection;
use crate::envelope::Envelope;
use crate::metrics::Metrics;
use crate::retry::{Answer, Decision, Health};
use crate::signing::SigningProfile;

pub mod dvcqg;
pub mod http;

/// The result of one delivery attempt.
#[derive(Debug, Clone)]
pub struct Attempted {
    pub answer: Answer,
    pub decision: Decision,
    pub latency: Duration,
    /// Digest (SHA-256 hex) of what was sent, for the trail.
    pub request_digest: String,
    /// What the exchange said about the destination, for the circuit breaker. One item of a
    /// batch carries the batch's exchange; the others are [`Health::Silent`].
    pub health: Health,
}

/// What the party's look-up says about an exchange in doubt (sent by a holder that died before
/// recording the answer), see [`Connector::resolve_in_doubt`].
#[derive(Debug, Clone)]
pub enum InDoubtCheck {
    /// The party has this exchange's effect: record it as delivered, do not send.
    AlreadyThere,
    /// The party does not have it: send it.
    NotThere,
    /// The look-up itself failed: try again later, never send blindly.
    LookupFailed(Attempted),
    /// The party offers no look-up that can tell (the reason): sent again and shown as in doubt
    /// (`unverified`) on the dossier's trail; the party's own idempotency must absorb it.
    Unverifiable(&'static str),
}

impl InDoubtCheck {
    /// The resolution recorded on the in-doubt row.
    pub fn resolution(&self) -> &'static str {
        match self {
            InDoubtCheck::AlreadyThere => "already_there",
            InDoubtCheck::NotThere => "not_there",
            InDoubtCheck::LookupFailed(_) => "lookup_failed",
            InDoubtCheck::Unverifiable(_) => "unverified",
        }
    }
}

#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// The adapter's name.
    fn adapter(&self) -> &str;
    /// Translate, sign, send, read the answer and classify it. `prior` is the version of this
    /// key the destination already has (from the ledger), when the envelope is versioned.
    async fn deliver(&self, env: &Envelope, prior: Option<i64>) -> Attempted;
    /// Does an envelope of this kind act on the destination's copy of its key (a progress
    /// step acts on a dossier the portal must already have)? Then the route runtime holds it
    /// back while a snapshot of its key is on its way, and dead-letters it with its dossier.
    fn acts_on_snapshot(&self, _kind: &str) -> bool {
        false
    }
    /// An earlier send of `env` was never recorded (its holder died mid-send): ask the party
    /// whether it has the effect. The default: no look-up.
    async fn resolve_in_doubt(&self, _env: &Envelope) -> InDoubtCheck {
        InDoubtCheck::Unverifiable("the party offers no look-up")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("adapter {0}: unknown connector kind `{1}`")]
    UnknownKind(String, String),
    #[error(transparent)]
    Client(#[from] crate::transport::client::ClientError),
    #[error("adapter {adapter}: {source}")]
    Dvcqg {
        adapter: String,
        #[source]
        source: dvcqg::SettingsError,
    },
}

/// Build the connector an adapter's configuration names, signing with `signing` (the
/// adapter's profile, loaded once by [`crate::signing::Profiles::load`]); failed logins and
/// token refreshes are counted in `metrics`.
pub fn build(
    name: &str,
    a: &AdapterSection,
    base: &Path,
    signing: Arc<dyn SigningProfile>,
    metrics: &Arc<Metrics>,
) -> Result<Arc<dyn Connector>, ConnectorError> {
    match a.connector.as_str() {
        "http" => Ok(Arc::new(http::HttpConnector::new(name, a, base, signing)?)),
        "dvcqg" => {
            let c = dvcqg::DvcqgConnector::new(name, a, base, signing)?;
            c.report_to(metrics.clone());
            Ok(Arc::new(c))
        }
        other => Err(ConnectorError::UnknownKind(name.into(), other.into())),
    }
}
