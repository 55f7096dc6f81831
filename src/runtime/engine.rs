//! The engine: every route of this instance, their queues and their lanes, and the publish
//! path of accepted envelopes.
//!
//! # Invariants
//! - `publish` returns `Ok` only when every route that takes the envelope has its copy
//!   confirmed by the broker (and the index's queue its message, with `[indicators]`): the
//!   edge answers 202 after that, never before.
//! - With agency subscriptions, the edge publishes an event at most once for all of them: to
//!   the agencies' fan-out ([`super::fanout`]) when some subscription takes it, never to a
//!   subscription's own queue (the fan-out hands out those copies). Configured routes get
//!   their copies from the edge as before.
//! - The newest accepted version of a key is noted for coalescing without being awaited:
//!   missing it costs a redundant send, never a loss. The edge notes it for the configured
//!   routes; the fan-out for the subscriptions it copied to.
//! - `run` returns only after every lane finished its in-flight delivery.

use std::sync::Arc;
use std::time::Duration;

use gw_broker::{dead_letter_queue, Broker, QueueSpec};
use gw_store::{AcceptedVersion, Claim, ClaimRequest, Store, Versions, VersionsAsk};
use tokio_util::sync::CancellationToken;

use super::batcher::Batcher;
use super::context::Ctx;
use super::dead_letter::drain_broker_dead_letters;
use super::lane::consume_queue;
use super::recorder::Recorder;
use super::route::{message_for, Route};
use crate::model::envelope::Envelope;
use crate::telemetry::metrics::Metrics;

/// The running engine of all routes.
pub struct Engine {
    pub broker: Arc<dyn Broker>,
    pub store: Arc<dyn Store>,
    pub routes: Vec<Arc<Route>>,
    pub metrics: Arc<Metrics>,
    pub prefetch: u16,
    pub delivery_limit: u32,
    recorder: Recorder,
    versions: Batcher<VersionsAsk, Versions>,
    claims: Batcher<ClaimRequest, Claim>,
    /// The evidence log (absent: nothing recorded), see [`Engine::with_evidence`].
    pub evidence: Option<Arc<crate::evidence::EvidenceLog>>,
    /// Claim holders are `<instance>/<fresh id>`, see [`Engine::with_claims`].
    pub instance: String,
    /// How long a delivery claim lasts without a heartbeat.
    pub claim_lease: Duration,
    /// The agencies' pull feeds, when some subscription is pulled: what their writers (routes
    /// of this engine), the feed endpoint and the feeds' jobs share.
    pub feeds: Option<Arc<crate::agencies::feed::Feeds>>,
    /// What publishes the fact of every event the indicators read to their queue (see
    /// [`Engine::with_indicators`]).
    pub indicators: Option<Arc<crate::indicators::publisher::FactPublisher>>,
    /// The push subscriptions' live states (their routes are among this engine's), for the
    /// ops API: disabled, lag, counts, replay progress.
    pub subscriptions: Vec<Arc<crate::connectors::agency::SubscriptionState>>,
    /// The agencies' fan-out, when some route is an agency subscription (see
    /// [`Engine::with_agency_fanout`]); its route is among [`Engine::routes`].
    pub fanout: Option<Arc<super::fanout::Fanout>>,
}

impl Engine {
    pub fn new(
        broker: Arc<dyn Broker>,
        store: Arc<dyn Store>,
        routes: Vec<Arc<Route>>,
        metrics: Arc<Metrics>,
        prefetch: u16,
        delivery_limit: u32,
    ) -> Self {
        let recorder = Recorder::start(store.clone());
        let versions = {
            let store = store.clone();
            Batcher::start(move |asks: Vec<VersionsAsk>| {
                let store = store.clone();
                Box::pin(async move { store.versions_many(&asks).await })
            })
        };
        let claims = {
            let store = store.clone();
            Batcher::start(move |reqs: Vec<ClaimRequest>| {
                let store = store.clone();
                Box::pin(async move { store.claim_many(&reqs).await })
            })
        };
        let stats = recorder.stats.clone();
        metrics.add_renderer(Arc::new(move || stats.render()));
        for r in &routes {
            metrics.register_route(&r.name, &r.destination);
        }
        Engine {
            broker,
            store,
            routes,
            metrics,
            prefetch,
            delivery_limit,
            recorder,
            versions,
            claims,
            evidence: None,
            instance: format!("gw-{}", std::process::id()),
            claim_lease: crate::config::defaults::CLAIM_LEASE,
            feeds: None,
            indicators: None,
            subscriptions: Vec::new(),
            fanout: None,
        }
    }

    /// Put the agencies' fan-out ([`super::fanout`]) between the edge and the routes of the
    /// agency subscriptions (the routes with an admit test), if there are any: a route of its
    /// own, `agencies.<name>` (`[broker] agencies_fanout`), partitioned like them, retried by
    /// `policy`. Without subscriptions, nothing changes.
    pub fn with_agency_fanout(
        mut self,
        name: &str,
        policy: super::retry::Policy,
        circuit: &crate::config::CircuitSection,
    ) -> Self {
        let Some(fanout) = super::fanout::Fanout::new(
            super::fanout::fanout_route(name),
            self.broker.clone(),
            self.recorder.clone(),
            &self.routes,
            self.metrics.clone(),
        ) else {
            return self;
        };
        let fanout = Arc::new(fanout);
        let partitions = self
            .routes
            .iter()
            .filter(|r| fanout.feeds(&r.name))
            .map(|r| r.partitions)
            .max()
            .unwrap_or(1);
        let name = fanout.name.as_str();
        let route = super::fanout::route(
            fanout.clone(),
            partitions,
            policy,
            super::circuit::Circuit::new(name, name, circuit, self.metrics.clone()),
            crate::config::defaults::AGENCY_FANOUT_CONCURRENCY,
        );
        self.metrics.register_route(name, name);
        self.routes.push(Arc::new(route));
        self.fanout = Some(fanout);
        self
    }

    /// The push subscriptions' states (see [`Engine::subscriptions`]).
    pub fn with_subscriptions(
        mut self,
        states: Vec<Arc<crate::connectors::agency::SubscriptionState>>,
    ) -> Self {
        self.subscriptions = states;
        self
    }

    /// The pull feeds whose writers are among this engine's routes (see [`Engine::feeds`]).
    pub fn with_feeds(mut self, feeds: Option<Arc<crate::agencies::feed::Feeds>>) -> Self {
        self.feeds = feeds;
        self
    }

    /// Also publish the fact of every event the index reads (the dossier kinds and paid
    /// `payment.settled`, made from the envelope already parsed) to `queue` (the gateway's is
    /// [`super::route::INDICATORS_QUEUE`]), grouped with the facts of the events accepted at
    /// the same time ([`crate::indicators::publisher`]) and confirmed in the same round as the
    /// routes' copies: the service-quality index then misses no event that was accepted.
    /// Starts the publisher's task: call within a Tokio runtime.
    pub fn with_indicators(mut self, queue: &str) -> Self {
        let publisher =
            crate::indicators::publisher::FactPublisher::start(self.broker.clone(), queue);
        let counts = publisher.counts.clone();
        self.metrics.add_renderer(Arc::new(move || counts.render()));
        self.indicators = Some(Arc::new(publisher));
        self
    }

    /// Name this instance's claim holders and set the claims' lease (`[gateway] instance`,
    /// `claim_lease`). A process id is added to the name: two processes configured with one
    /// name still hold distinct claims.
    pub fn with_claims(mut self, instance: &str, lease: Duration) -> Self {
        self.instance = format!("{instance}-{}", std::process::id());
        self.claim_lease = lease;
        self
    }

    /// Record every exchange of the routes' connectors in `log`.
    pub fn with_evidence(mut self, log: Arc<crate::evidence::EvidenceLog>) -> Self {
        self.evidence = Some(log);
        self
    }

    /// Declare every route queue (idempotent).
    pub async fn declare(&self) -> Result<(), gw_broker::BrokerError> {
        let specs: Vec<QueueSpec> = self
            .routes
            .iter()
            .flat_map(|r| r.queues())
            .map(|name| QueueSpec {
                name,
                delivery_limit: self.delivery_limit,
            })
            .collect();
        let mut specs = specs;
        if let Some(p) = &self.indicators {
            specs.push(QueueSpec {
                name: p.queue().to_string(),
                delivery_limit: self.delivery_limit,
            });
        }
        self.broker.declare(&specs).await
    }

    /// Publish an accepted envelope to every route that takes it. Returns the routes' names.
    /// `Ok` only when every publish was confirmed.
    pub async fn publish(&self, env: &Envelope) -> Result<Vec<String>, gw_broker::BrokerError> {
        let msg = message_for(env);
        // A subscription fed by the fan-out gets its copy from there, not from the edge.
        let fed = |route: &str| self.fanout.as_ref().is_some_and(|f| f.feeds(route));
        let targets: Vec<&Arc<Route>> = self
            .routes
            .iter()
            .filter(|r| !fed(&r.name) && r.takes(env))
            .collect();
        // Every route's copy, and the index's message, is published at once and the confirms
        // awaited together (they are pipelined on the broker's channel), not one
        // publish-and-confirm after another.
        let queues: Vec<String> = targets.iter().map(|r| r.queue_for_key(&env.key)).collect();
        let copies = queues.iter().map(|q| self.broker.publish(q, msg.clone()));
        let index = async {
            match &self.indicators {
                Some(p) => p.publish(env).await,
                None => Ok(()),
            }
        };
        futures::try_join!(futures::future::try_join_all(copies), index)?;
        let mut routed = Vec::with_capacity(targets.len());
        for r in targets {
            self.metrics.inc_in(&r.name);
            routed.push(r.name.clone());
        }
        if let Some(version) = env.version {
            // Note the newest queued version for coalescing. Not awaited: it only lets older
            // queued snapshots be skipped; missing it costs a redundant send, never a loss.
            // The fan-out reads no versions: the subscriptions' are noted where it copies.
            let accepted: Vec<AcceptedVersion> = routed
                .iter()
                .filter(|r| self.fanout.as_ref().is_none_or(|f| f.name != **r))
                .map(|r| AcceptedVersion {
                    route: r.clone(),
                    key: env.key.clone(),
                    version,
                })
                .collect();
            self.recorder.note_accepted(accepted);
        }
        Ok(routed)
    }

    /// Routes that would take an envelope of this source and kind.
    pub fn routes_for(&self, source: &str, kind: &str) -> Vec<Arc<Route>> {
        self.routes
            .iter()
            .filter(|r| r.matches(source, kind))
            .cloned()
            .collect()
    }

    /// Run every route until `cancel`; returns after in-flight work finished.
    pub async fn run(&self, cancel: CancellationToken) -> Result<(), gw_broker::BrokerError> {
        self.run_signalling(cancel, None).await
    }

    /// [`Engine::run`], sending on `consuming` once every queue of every route (and its
    /// dead-letter queue) has a consumer: the moment a service manager may be told the gateway
    /// is ready. A consume that fails drops `consuming` unsent.
    pub async fn run_signalling(
        &self,
        cancel: CancellationToken,
        mut consuming: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<(), gw_broker::BrokerError> {
        let mut tasks = tokio::task::JoinSet::new();
        for route in &self.routes {
            for queue in route.queues() {
                let consumer = self.broker.consume(&queue, self.prefetch).await?;
                let ctx = Arc::new(Ctx {
                    route: route.clone(),
                    store: self.store.clone(),
                    recorder: self.recorder.clone(),
                    versions: self.versions.clone(),
                    claims: self.claims.clone(),
                    metrics: self.metrics.clone(),
                    cancel: cancel.clone(),
                    evidence: self.evidence.clone(),
                    instance: self.instance.clone(),
                    claim_lease: self.claim_lease,
                });
                tasks.spawn(consume_queue(ctx.clone(), consumer, route.concurrency));
                let dlq = self.broker.consume(&dead_letter_queue(&queue), 16).await?;
                tasks.spawn(drain_broker_dead_letters(ctx, dlq, queue.clone()));
            }
        }
        if let Some(tx) = consuming.take() {
            // The receiver may be gone (nobody waits for readiness): nothing to tell then.
            let _ = tx.send(());
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}
