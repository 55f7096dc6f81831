//! What a connector is to the route runtime: the [`Connector`] trait and what one delivery
//! attempt returns.
//!
//! # Invariants
//! - A connector never acks, retries or records: it returns an [`Attempted`] and the route
//!   runtime does the rest (one place decides, one place records).
//! - An exchange in doubt is never re-sent blindly: [`Connector::resolve_in_doubt`] asks the
//!   party first, or says it cannot tell.

use std::time::Duration;

use async_trait::async_trait;

use crate::model::envelope::Envelope;
use crate::model::outcome::{Answer, Decision, Health};

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
    /// [`Connector::deliver`], told whether this delivery may have been attempted before (a
    /// retry, a redelivery, a replay). The default ignores it; the agencies' fan-out marks the
    /// copies it publishes again so that their routes look them up in the ledger.
    async fn deliver_seen(
        &self,
        env: &Envelope,
        prior: Option<i64>,
        _seen_before: bool,
    ) -> Attempted {
        self.deliver(env, prior).await
    }
    /// Whether the runtime reads the destination's versions of a versioned envelope's key
    /// (to supersede and coalesce) before handing it here. The default: yes. The agencies'
    /// fan-out says no: the versions that count are each subscription's, read by its route.
    fn reads_versions(&self) -> bool {
        true
    }
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
