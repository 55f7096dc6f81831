//! Wiring of agency push subscriptions: each becomes a route of its own (its own durable
//! queues, lanes, claims, retry schedule and dead letters) whose destination is its
//! `connectors::agency` connector, so a slow or dead agency never delays another.

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
    format!("agency.{subscription}")
}

/// Why the push subscriptions cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum PushRoutesError {
    #[error(transparent)]
    Subscription(#[from] crate::agencies::SubscriptionError),
    #[error(transparent)]
    Settings(#[from] crate::connectors::agency::SettingsError),
}

/// The routes of every push subscription, their states' metrics registered in `metrics`.
pub fn push_routes(
    loaded: &Loaded,
    metrics: &Arc<Metrics>,
) -> Result<Vec<Arc<Route>>, PushRoutesError> {
    let c = &loaded.config;
    let mut routes = Vec::new();
    let mut states = Vec::new();
    for sub in Subscription::all(c)? {
        if sub.delivery != Delivery::Push {
            continue;
        }
        let push = sub.push.clone().expect("a push subscription has its table");
        let settings = PushSettings::resolve(&sub, &loaded.base)?;
        let state = Arc::new(SubscriptionState::new(&sub.name, &c.gateway.data_dir));
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
        metrics.add_renderer(Arc::new(move || {
            crate::connectors::agency::state::render(&states)
        }));
    }
    Ok(routes)
}

/// What [`replay_since`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayCount {
    /// Open dead letters of the subscription since the time.
    pub found: usize,
    /// Re-published to the subscription's queue.
    pub replayed: usize,
    /// Settled meanwhile by someone else.
    pub already_settled: usize,
}

/// Replay what a push subscription missed: every open dead letter of its route dead-lettered
/// at or after `since_ms` (while it was disabled, or after its retries ran out), oldest first,
/// so per dossier the versions go back in order (the runtime still supersedes older ones).
/// `progress` is called after each.
pub async fn replay_since(
    broker: &dyn gw_broker::Broker,
    store: &dyn gw_store::Store,
    subscription: &str,
    since_ms: i64,
    who: &str,
    mut progress: impl FnMut(usize, usize),
) -> Result<ReplayCount, crate::runtime::ReplayError> {
    let mut letters = store
        .dead_letters(&gw_store::DeadLetterFilter {
            route: Some(route_name(subscription)),
            key: None,
            state: Some(gw_store::DeadLetterState::Open),
            limit: 0,
        })
        .await?;
    letters.retain(|d| d.letter.dead_at_ms >= since_ms);
    letters.sort_by_key(|d| (d.letter.dead_at_ms, d.letter.id.clone()));
    let mut count = ReplayCount {
        found: letters.len(),
        ..Default::default()
    };
    for (i, d) in letters.iter().enumerate() {
        match crate::runtime::replay(broker, store, &d.letter.id, who).await? {
            crate::runtime::ReplayResult::Replayed => count.replayed += 1,
            _ => count.already_settled += 1,
        }
        progress(i + 1, letters.len());
    }
    Ok(count)
}
