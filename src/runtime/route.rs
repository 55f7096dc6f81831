//! A configured route and where its messages live on the broker.
//!
//! # Invariants
//! - A key always goes to the same partition queue: [`stable_hash`] (FNV-1a) is stable across
//!   processes, releases and machines, so repartitioning never happens silently.
//! - Queue names are `gw.route.<route>.p<partition>` ([`route_queue`]), written here only.
//! - The headers the runtime adds to a message on its way (first attempt, replay, last reason,
//!   deferrals) are named here only.

use std::collections::BTreeMap;
use std::sync::Arc;

use gw_broker::Message;

use super::circuit::Circuit;
use super::retry::Policy;
use crate::connectors::Connector;
use crate::model::envelope::Envelope;

/// Header: unix ms of the first delivery attempt (for the elapsed retry budget).
pub const HDR_FIRST_MS: &str = "x-gw-first-ms";
/// Header: the dead letter this message replays.
pub const HDR_REPLAY_OF: &str = "x-gw-replay-of";
/// Envelope header: this publish may repeat one whose copy was already delivered (a job that
/// crashed between a confirmed publish and noting it publishes again under the same id): the
/// ledger is asked first, as for a redelivery.
pub const HDR_MAY_BE_DUPLICATE: &str = "x-gw-may-be-duplicate";
/// Header: why the last attempt failed (for the trail; bounded reason label).
pub const HDR_LAST_REASON: &str = "x-gw-last-reason";
/// Header: how many of the message's redeliveries were circuit-breaker deferrals, not failed
/// attempts (the broker's attempt count includes them; the retry budget does not).
pub const HDR_DEFERRED: &str = "x-gw-deferred";

/// A configured route, ready to run.
pub struct Route {
    pub name: String,
    pub source: String,
    pub kinds: Vec<String>,
    pub destination: String,
    pub partitions: u16,
    pub connector: Arc<dyn Connector>,
    pub policy: Policy,
    pub concurrency: usize,
    /// The route's circuit breaker ([`super::circuit`]).
    pub circuit: Circuit,
    /// When set, what the route takes instead of `source` and `kinds`: an agency
    /// subscription's filter (any source; kinds, procedures, units), see [`Route::takes`].
    pub admit: Option<Admit>,
}

/// A route's own test of the envelopes it takes (an agency subscription's filter).
pub type Admit = Arc<dyn Fn(&Envelope) -> bool + Send + Sync>;

impl Route {
    /// The queue of partition `p`.
    pub fn queue(&self, p: u16) -> String {
        route_queue(&self.name, p)
    }
    /// Every queue of this route.
    pub fn queues(&self) -> Vec<String> {
        (0..self.partitions).map(|p| self.queue(p)).collect()
    }
    /// The queue a key goes to.
    pub fn queue_for_key(&self, key: &str) -> String {
        self.queue((stable_hash(key) % self.partitions as u64) as u16)
    }
    pub fn matches(&self, source: &str, kind: &str) -> bool {
        self.admit.is_none()
            && self.source == source
            && crate::config::kinds_admit(&self.kinds, kind)
    }
    /// Whether this route may take an event of `kind` from `source`, before its payload is
    /// known: [`Route::matches`] for a configured route; for a route with an [`Admit`] (an
    /// agency subscription, which takes from every source), whether its kinds admit `kind`
    /// (its other filters read the payload). The edge answers 422 only when no route may.
    pub fn may_take(&self, source: &str, kind: &str) -> bool {
        match &self.admit {
            Some(_) => crate::config::kinds_admit(&self.kinds, kind),
            None => self.matches(source, kind),
        }
    }
    /// Whether this route takes `env`: its [`Admit`] when it has one, else [`Route::matches`].
    pub fn takes(&self, env: &Envelope) -> bool {
        match &self.admit {
            Some(admit) => admit(env),
            None => self.matches(&env.source, &env.kind),
        }
    }
}

/// The service-quality index's own queue: a copy of every event the indicators read
/// (`crate::jobs::indicators` consumes it), when `[indicators]` is configured.
pub const INDICATORS_QUEUE: &str = "gw.indicators";

pub fn route_queue(route: &str, partition: u16) -> String {
    format!("gw.route.{route}.p{partition}")
}

/// FNV-1a: stable across processes, versions and machines (partitioning must not move keys).
pub fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// The broker message for an envelope on its first publish.
pub fn message_for(env: &Envelope) -> Message {
    let mut headers = BTreeMap::new();
    headers.insert("traceparent".to_string(), env.traceparent.clone());
    Message {
        id: env.id.to_string(),
        key: env.key.clone(),
        headers,
        attempt: 0,
        body: env.encode().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_hash_is_stable() {
        // FNV-1a reference values: partitioning must never move keys between releases.
        assert_eq!(stable_hash(""), 0xcbf29ce484222325);
        assert_eq!(stable_hash("a"), 0xaf63dc4c8601ec8c);
        assert_eq!(route_queue("sync", 3), "gw.route.sync.p3");
    }
}
