//! The agencies' fan-out: one route between the edge and every agency subscription, so an
//! event taken by twenty subscriptions is published once by the edge, read once from the
//! broker and decoded once, and every subscription's filter is evaluated once, in one place.
//!
//! The edge ([`super::Engine::publish`]) publishes an event that at least one subscription
//! takes to the fan-out's own partitioned work queues, `gw.route.agencies.fanout.p<N>`
//! ([`fanout_route`] of `[broker] agencies_fanout`; declared like every route queue: quorum, single active consumer,
//! delivery limit and dead-letter queue). The fan-out is a route of the runtime like any other
//! (ledger, retries, dead letters, lanes per key, on every backend); its connector,
//! [`Fanout`], evaluates each subscription's filter and publishes one copy into the queue of
//! each subscription that takes the event (push: `gw.route.agency.<name>.p<N>`, pull:
//! `gw.route.feed.<name>.p<N>`), all copies at once with their confirms awaited together.
//!
//! # What a copy carries, and why
//! A copy is the accepted envelope itself (same id, key, version and payload), not the
//! subscription's projection. What a subscription's route does with it needs the envelope:
//! the ledger is keyed by the envelope id (so a copy published twice is recognised), versions
//! and coalescing read the envelope's version, the push's `webhook-id` is the envelope's
//! natural key, the evidence of a delivery is the digest of the body projected and signed at
//! the send, and the dead letters a replay re-publishes hold envelopes. Carrying the envelope
//! keeps all of that, and the messages already waiting in subscription queues from before the
//! fan-out, one format. Projecting is a walk over the payload done once per delivery by the
//! subscription's connector; the costs the issue names (the edge's publishes and confirms, the
//! reads and decodes of one event per subscription at the front) are what this stage removes.
//!
//! # Invariants
//! - **Acked after every copy.** The fan-out answers delivered (and the runtime records, then
//!   acks the fan-out message) only when every taking subscription's copy was confirmed by
//!   the broker. A copy that fails makes the whole message retried by the route's policy;
//!   the copies already confirmed are published again then, marked
//!   [`super::route::HDR_MAY_BE_DUPLICATE`], so the subscription's ledger recognises one it
//!   already settled (the mark is set whenever this delivery may have been attempted before:
//!   a retry, a redelivery, a replay).
//! - **Order per dossier.** The fan-out queue is partitioned by key like every route, its
//!   lanes handle one key's messages one after another, and a copy goes to the subscription's
//!   partition for the same key: per dossier, copies enter a subscription's queue in the order
//!   the fan-out read them. A retried message that comes back behind a newer version of its
//!   dossier reaches the subscriptions, whose own version checks supersede it there.
//! - **Isolation.** The fan-out never waits for a delivery: a slow, dead or disabled
//!   subscription only sees its own queue grow (a disabled one dead-letters what it gets, as
//!   before, so `gateway agencies replay` still finds what it missed).
//! - **Versions are the subscriptions' business.** The fan-out reads no versions and noting
//!   the newest accepted version of a key for coalescing is done here, per subscription that
//!   got a copy, after the confirms (as the edge did before), never for the fan-out itself.
//! - **Metrics** ([`FanoutStats`]): events read by the fan-out, and copies handed out per
//!   subscription name (never a person's data).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use gw_broker::Broker;
use gw_store::AcceptedVersion;

use super::recorder::Recorder;
use super::route::{message_for, Route, HDR_MAY_BE_DUPLICATE};
use crate::connectors::{Attempted, Connector};
use crate::model::envelope::Envelope;
use crate::model::outcome::{Answer, Decision, Health, Reason, TransportFailure};
use crate::telemetry::metrics::Metrics;

/// The fan-out's route (and destination) name for `[broker] agencies_fanout = name`:
/// `agencies.<name>` (default `agencies.fanout`), its queues `gw.route.agencies.<name>.p<N>`. A
/// configured route cannot take it (route names have no `.`).
pub fn fanout_route(name: &str) -> String {
    format!("agencies.{name}")
}

/// What the fan-out did: events read, and copies handed to each subscription.
#[derive(Debug, Default)]
pub struct FanoutStats {
    /// Events the fan-out read (each delivery of a fan-out message, retries included).
    pub read: AtomicU64,
    /// Confirmed copies per subscription name.
    copies: Mutex<BTreeMap<String, u64>>,
}

impl FanoutStats {
    /// Confirmed copies handed to `subscription` so far.
    pub fn copies(&self, subscription: &str) -> u64 {
        self.lock().get(subscription).copied().unwrap_or(0)
    }
    /// Confirmed copies handed to every subscription so far.
    pub fn copies_total(&self) -> u64 {
        self.lock().values().sum()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.copies.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// `gateway_agency_fanout_read_total` and `gateway_agency_fanout_copies_total{subscription}`.
    pub fn render(&self) -> String {
        use crate::telemetry::metrics::{esc, family};
        let mut out = String::new();
        family(
            &mut out,
            "gateway_agency_fanout_read",
            "counter",
            "Events the agencies' fan-out read from its queues (once per event and attempt).",
        );
        out.push_str(&format!(
            "gateway_agency_fanout_read_total {}\n",
            self.read.load(Ordering::Relaxed)
        ));
        family(
            &mut out,
            "gateway_agency_fanout_copies",
            "counter",
            "Copies of an event the fan-out handed to a subscription's queue (confirmed), per subscription.",
        );
        for (name, n) in self.lock().iter() {
            out.push_str(&format!(
                "gateway_agency_fanout_copies_total{{subscription=\"{}\"}} {n}\n",
                esc(name)
            ));
        }
        out
    }
}

/// One subscription the fan-out feeds: its route and its name (the metric label).
struct Target {
    route: Arc<Route>,
    subscription: String,
}

/// The fan-out's connector: hands each taking subscription its copy.
pub struct Fanout {
    /// The fan-out's route name ([`fanout_route`]).
    pub name: String,
    broker: Arc<dyn Broker>,
    recorder: Recorder,
    targets: Vec<Target>,
    metrics: Arc<Metrics>,
    pub stats: Arc<FanoutStats>,
}

impl Fanout {
    /// The fan-out over `targets` (the routes of the agency subscriptions: those with an
    /// [`super::route::Admit`]); `None` when there is none.
    pub(super) fn new(
        name: String,
        broker: Arc<dyn Broker>,
        recorder: Recorder,
        targets: &[Arc<Route>],
        metrics: Arc<Metrics>,
    ) -> Option<Self> {
        let targets: Vec<Target> = targets
            .iter()
            .filter(|r| r.admit.is_some() && r.name != name)
            .map(|r| Target {
                route: r.clone(),
                subscription: r
                    .name
                    .split_once('.')
                    .map(|(_, n)| n.to_string())
                    .unwrap_or_else(|| r.name.clone()),
            })
            .collect();
        if targets.is_empty() {
            return None;
        }
        let stats = Arc::new(FanoutStats::default());
        {
            // Every subscription is listed from the first scrape, at 0.
            let mut copies = stats.lock();
            for t in &targets {
                copies.entry(t.subscription.clone()).or_default();
            }
        }
        let rendered = stats.clone();
        metrics.add_renderer(Arc::new(move || rendered.render()));
        Some(Fanout {
            name,
            broker,
            recorder,
            targets,
            metrics,
            stats,
        })
    }

    /// Whether the fan-out feeds the route named `route` (the edge then publishes to the
    /// fan-out instead of to it).
    pub fn feeds(&self, route: &str) -> bool {
        self.targets.iter().any(|t| t.route.name == route)
    }

    /// Whether some subscription takes `env` (the fan-out route's admit).
    pub fn takes(&self, env: &Envelope) -> bool {
        self.targets.iter().any(|t| t.route.takes(env))
    }

    /// Every kind some subscription may take (the fan-out route's kinds, for the edge's 422).
    fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self
            .targets
            .iter()
            .flat_map(|t| t.route.kinds.iter().cloned())
            .collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }

    /// Publish one copy of `env` to every subscription that takes it, confirms awaited
    /// together; `seen_before`: this fan-out message may have been handled before, so the
    /// copies may repeat confirmed ones.
    async fn copy(&self, env: &Envelope, seen_before: bool) -> Attempted {
        let started = Instant::now();
        self.stats.read.fetch_add(1, Ordering::Relaxed);
        let takers: Vec<&Target> = self.targets.iter().filter(|t| t.route.takes(env)).collect();
        let mut copy = env.clone();
        if seen_before {
            copy.headers
                .insert(HDR_MAY_BE_DUPLICATE.to_string(), "fanout".to_string());
        }
        let msg = message_for(&copy);
        let queues: Vec<String> = takers
            .iter()
            .map(|t| t.route.queue_for_key(&env.key))
            .collect();
        // Every copy is published at once and every confirm awaited (pipelined on the
        // broker's channel), failed ones included: the copies that did not fail are then
        // known to be confirmed, never left in flight.
        let sent =
            futures::future::join_all(queues.iter().map(|q| self.broker.publish(q, msg.clone())))
                .await;
        let failed = sent.iter().filter(|r| r.is_err()).count();
        if let Some(Err(e)) = sent.into_iter().find(|r| r.is_err()) {
            return Attempted {
                answer: Answer::Transport {
                    failure: TransportFailure::Broken,
                    detail: format!(
                        "{failed} of {} subscription copies not confirmed, first: {e}",
                        queues.len()
                    ),
                },
                decision: Decision::Retry {
                    reason: Reason::ConnectionError,
                    not_before: None,
                },
                latency: started.elapsed(),
                request_digest: String::new(),
                // The broker, not a destination: the fan-out's circuit stays out of it.
                health: Health::Silent,
            };
        }
        {
            let mut copies = self.stats.lock();
            for t in &takers {
                *copies.entry(t.subscription.clone()).or_default() += 1;
                self.metrics.inc_in(&t.route.name);
            }
        }
        if let Some(version) = env.version {
            // Note the newest queued version for each subscription's coalescing. Not
            // awaited: missing it costs a redundant send, never a loss.
            let accepted = takers
                .iter()
                .map(|t| AcceptedVersion {
                    route: t.route.name.clone(),
                    key: env.key.clone(),
                    version,
                })
                .collect::<Vec<_>>();
            self.recorder.note_accepted(accepted);
        }
        Attempted {
            answer: Answer::Http {
                status: 200,
                retry_after: None,
                body: format!("copied to {} subscription(s)", takers.len()),
            },
            decision: Decision::Delivered,
            latency: started.elapsed(),
            request_digest: String::new(),
            health: Health::Silent,
        }
    }
}

/// The fan-out's connector handle: the route's connector is this, sharing the [`Fanout`].
pub(super) struct FanoutConnector(pub Arc<Fanout>);

#[async_trait]
impl Connector for FanoutConnector {
    fn adapter(&self) -> &str {
        &self.0.name
    }

    async fn deliver(&self, env: &Envelope, _prior: Option<i64>) -> Attempted {
        // A caller that cannot tell whether it was seen before: mark the copies.
        self.0.copy(env, true).await
    }

    async fn deliver_seen(
        &self,
        env: &Envelope,
        _prior: Option<i64>,
        seen_before: bool,
    ) -> Attempted {
        self.0.copy(env, seen_before).await
    }

    fn reads_versions(&self) -> bool {
        false
    }
}

/// The fan-out's route over `fanout`: partitioned like the subscriptions (`partitions`),
/// retried by `policy`, taking what any subscription takes.
pub(super) fn route(
    fanout: Arc<Fanout>,
    partitions: u16,
    policy: super::retry::Policy,
    circuit: super::circuit::Circuit,
    concurrency: usize,
) -> Route {
    let kinds = fanout.kinds();
    let admit = fanout.clone();
    Route {
        name: fanout.name.clone(),
        source: String::new(),
        kinds,
        destination: fanout.name.clone(),
        partitions,
        connector: Arc::new(FanoutConnector(fanout)),
        policy,
        concurrency,
        circuit,
        admit: Some(Arc::new(move |env| admit.takes(env))),
    }
}
