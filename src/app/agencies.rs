//! Wiring of agency push subscriptions: each becomes a route of its own (its own durable
//! queues, lanes, claims, retry schedule and dead letters) whose destination is its
//! `connectors::agency` connector, so a slow or dead agency never delays another. The edge
//! does not publish to these queues: the agencies' fan-out (`runtime::fanout`) reads each event
//! once and hands each subscription that takes it its copy.
//!
//! A subscription disabled or enabled is an operational event ([`tell_changes`],
//! [`publish_change`]): `subscription.disabled` / `subscription.enabled` from source
//! [`crate::config::OPS_SOURCE`], published through the route runtime (with the broker's
//! confirm) to the routes that take it (`from = "gateway"`), told once across instances by the
//! instance whose store transition it was. Not published (no route takes it, or the broker
//! failed) is logged; the stored state, the log line and the `gateway_subscription_disabled`
//! gauge (and its alert) stand either way.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use tracing::{error, info, warn};

use crate::agencies::{Delivery, Subscription};
use crate::config::Loaded;
use crate::connectors::agency::{
    AgencyConnector, PushSettings, StateChange, StateEvents, SubscriptionState,
};
use crate::runtime::retry::Policy;
use crate::runtime::{Engine, Route};
use crate::telemetry::metrics::Metrics;

/// Why an operational event was not published, by step.
#[derive(Debug, thiserror::Error)]
pub enum ChangeEventError {
    /// No route takes the event's kind from the gateway's source.
    #[error("no route takes {kind} from source {source_name}: add a [[routes]] from = \"{source_name}\" to receive it")]
    NoRoute { kind: String, source_name: String },
    /// The broker refused or did not confirm the publish.
    #[error("broker: {0}")]
    Broker(#[from] gw_broker::BrokerError),
}

/// Publish `subscription`'s `change` to the routes that take it; their names.
pub async fn publish_change(
    engine: &Engine,
    subscription: &str,
    change: &StateChange,
) -> Result<Vec<String>, ChangeEventError> {
    let env = change.envelope(subscription);
    let routes = engine.publish(&env).await?;
    if routes.is_empty() {
        return Err(ChangeEventError::NoRoute {
            kind: env.kind,
            source_name: env.source,
        });
    }
    Ok(routes)
}

/// Tells the push subscriptions' changes through an engine (weakly held: the engine holds
/// the states).
struct EngineEvents(Weak<Engine>);

#[async_trait]
impl StateEvents for EngineEvents {
    async fn changed(&self, subscription: &str, change: &StateChange) {
        let Some(engine) = self.0.upgrade() else {
            return;
        };
        let kind = change.kind();
        match publish_change(&engine, subscription, change).await {
            Ok(routes) => {
                info!(subscription, event = %kind, routes = ?routes, "operational event published")
            }
            Err(e @ ChangeEventError::NoRoute { .. }) => {
                warn!(subscription, event = %kind, error = %e, "operational event not published")
            }
            Err(e) => {
                error!(subscription, event = %kind, error = %e, "operational event not published")
            }
        }
    }
}

/// Publish every push subscription's state changes made by this process through `engine`.
pub fn tell_changes(engine: &Arc<Engine>) {
    for s in &engine.subscriptions {
        s.set_events(Arc::new(EngineEvents(Arc::downgrade(engine))));
    }
}

/// The route name (and destination adapter name) of a push subscription: `agency.<name>`. A
/// configured route cannot take it (route names have no `.`).
pub fn route_name(subscription: &str) -> String {
    crate::agencies::push_route_name(subscription)
}

/// Why the push subscriptions cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum PushRoutesError {
    #[error(transparent)]
    Subscription(#[from] crate::agencies::SubscriptionError),
    #[error(transparent)]
    Settings(#[from] crate::connectors::agency::SettingsError),
}

/// The push subscriptions' routes and their live states, in the same order.
pub type PushRoutes = (Vec<Arc<Route>>, Vec<Arc<SubscriptionState>>);

/// The routes of every push subscription and their states (kept in `store`, shared by every
/// instance), the states' metrics registered in `metrics`.
pub fn push_routes(
    loaded: &Loaded,
    store: &Arc<dyn gw_store::Store>,
    metrics: &Arc<Metrics>,
) -> Result<PushRoutes, PushRoutesError> {
    let c = &loaded.config;
    let mut routes = Vec::new();
    let mut states = Vec::new();
    for sub in Subscription::all(c)? {
        if sub.delivery != Delivery::Push {
            continue;
        }
        let push = sub.push.clone().expect("a push subscription has its table");
        let settings = PushSettings::resolve(&sub, &loaded.base)?;
        let state = Arc::new(SubscriptionState::new(
            &sub.name,
            store.clone().subscription_states(),
            &c.gateway.data_dir,
        ));
        states.push(state.clone());
        let sub = Arc::new(sub);
        let name = route_name(&sub.name);
        let admit_sub = sub.clone();
        routes.push(Arc::new(Route {
            name: name.clone(),
            source: String::new(),
            kinds: sub.filter.kinds.clone(),
            destination: name.clone(),
            partitions: c.broker.partitions,
            connector: Arc::new(AgencyConnector::new(sub.clone(), settings, state)),
            policy: Policy {
                initial: push.retry.first().map(|d| d.0).unwrap_or_default(),
                max_delay: push.retry.last().map(|d| d.0).unwrap_or_default(),
                max_elapsed: c.retry.max_elapsed.0.max(push.disable_after.0),
                max_attempts: 0,
                schedule: Some(push.retry.iter().map(|d| d.0).collect()),
            },
            concurrency: push.concurrency,
            circuit: crate::runtime::circuit::Circuit::new(
                &name,
                &name,
                &c.circuit,
                metrics.clone(),
            ),
            admit: Some(Arc::new(move |env| admit_sub.matches(env))),
        }));
    }
    // Rendered with no subscription too (the families' HELP and TYPE, no sample): the alert
    // rules name them whatever the configuration.
    let rendered = states.clone();
    metrics.add_renderer(Arc::new(move || {
        crate::connectors::agency::state::render(&rendered)
    }));
    Ok((routes, states))
}

pub use crate::jobs::agency_replay::{replay_since, ReplayCount};

/// Re-read every push subscription's state from the store once a second until `cancel`, so
/// the `gateway_subscription_disabled` gauge of an instance that delivers nothing follows
/// what another instance (or `gateway agencies enable`) changed; it also adopts a legacy
/// disabled file at start.
pub async fn refresh_states(
    states: Vec<Arc<SubscriptionState>>,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        for s in &states {
            s.disabled().await;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}
