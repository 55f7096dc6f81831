//! Wiring of agency push subscriptions: each becomes a route of its own (its own durable
//! queues, lanes, claims, retry schedule and dead letters) whose destination is its
//! `connectors::agency` connector, so a slow or dead agency never delays another. The edge
//! does not publish to these queues: the agencies' fan-out (`runtime::fanout`) reads each event
//! once and hands each subscription that takes it its copy.

use std::sync::Arc;

use crate::agencies::{Delivery, Subscription};
use crate::config::Loaded;
use crate::connectors::agency::{AgencyConnector, PushSettings, SubscriptionState};
use crate::runtime::retry::Policy;
use crate::runtime::Route;
use crate::telemetry::metrics::Metrics;

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
    if !states.is_empty() {
        let rendered = states.clone();
        metrics.add_renderer(Arc::new(move || {
            crate::connectors::agency::state::render(&rendered)
        }));
    }
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
