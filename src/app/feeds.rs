//! The agencies' pull feeds of a running gateway, wired from the subscriptions with
//! `delivery = "pull"`: one route each (its own durable queues, lanes, claims, retries and dead
//! letters) whose destination is the feed writer (`connectors::feed`), the feed endpoint on
//! the inbound listener (`edge::feeds`) and the feeds' jobs (`jobs::feeds`).
//!
//! # Invariants
//! - Built once at start; no pull subscription, no feed route, no endpoint, no job.
//! - Every engine of a configuration has the feed routes (the CLI's too), so whatever it
//!   publishes reaches the feeds, through the agencies' fan-out (`runtime::fanout`, which
//!   appends nothing itself: it publishes each feed route's copy); only a running gateway
//!   consumes them.
//! - A pull subscription's token and signing key are read at start: a token that cannot be
//!   read, a profile without a P-256 key, or two feeds with one token stop the start with the
//!   key to fix.

use std::collections::BTreeMap;
use std::sync::Arc;

use gw_store::Store;
use tokio_util::sync::CancellationToken;

use crate::agencies::feed::{Bounds, Feeds, PageSigner};
use crate::agencies::{Delivery, Subscription};
use crate::config::Loaded;
use crate::connectors::feed::{destination, FeedWriter};
use crate::edge::feeds::{FeedsHttp, PullFeed};
use crate::jobs::{Singleton, FEED_RETENTION};
use crate::runtime::retry::Policy;
use crate::runtime::{Engine, Route};
use crate::telemetry::metrics::Metrics;

/// Why the pull feeds cannot be wired, by step (each names the key to fix).
#[derive(Debug, thiserror::Error)]
pub enum FeedWireError {
    #[error("{0}")]
    Subscription(#[from] crate::agencies::SubscriptionError),
    #[error("{at}.token: {problem}")]
    Token {
        at: String,
        problem: crate::config::SecretProblem,
    },
    #[error(
        "{at}.token: the same token as subscriptions.{other}.pull.token: give each agency its own"
    )]
    SharedToken { at: String, other: String },
    #[error("{at}.signing: no signing profile named `{profile}`")]
    NoProfile { at: String, profile: String },
    #[error("{at}.signing: {problem}")]
    Signer {
        at: String,
        problem: crate::agencies::feed::FeedError,
    },
}

/// The pull subscriptions' routes, and what their writers share (`None`: no pull subscription).
pub type FeedRoutes = (Vec<Arc<Route>>, Option<Arc<Feeds>>);

/// The routes of the pull subscriptions and what their writers share; `(vec![], None)` when no
/// subscription is pulled. The feeds' metric families join `metrics`.
pub fn routes(
    loaded: &Loaded,
    store: &Arc<dyn Store>,
    metrics: &Arc<Metrics>,
) -> Result<FeedRoutes, FeedWireError> {
    let c = &loaded.config;
    let subs: Vec<Arc<Subscription>> = c
        .subscriptions
        .iter()
        .filter(|(_, s)| s.pull.is_some())
        .map(|(n, s)| Subscription::from_section(n, s).map(Arc::new))
        .collect::<Result<_, _>>()?;
    let subs: Vec<_> = subs
        .into_iter()
        .filter(|s| s.delivery == Delivery::Pull)
        .collect();
    if subs.is_empty() {
        return Ok((Vec::new(), None));
    }
    let feeds = Arc::new(Feeds::new(store.clone().feeds(), subs.clone()));
    let rendered = feeds.clone();
    metrics.add_renderer(Arc::new(move || {
        rendered.metrics.render(crate::model::time::now_ms())
    }));
    let routes = subs
        .iter()
        .map(|sub| {
            let name = destination(&sub.name);
            let admit = sub.clone();
            Arc::new(Route {
                name: name.clone(),
                source: String::new(),
                kinds: sub.filter.kinds.clone(),
                destination: name.clone(),
                partitions: c.broker.partitions,
                connector: Arc::new(FeedWriter::new(sub.clone(), feeds.clone())),
                policy: Policy::from(c.retry),
                concurrency: crate::config::defaults::AGENCY_CONCURRENCY,
                circuit: crate::runtime::circuit::Circuit::new(
                    &name,
                    &name,
                    &c.circuit,
                    metrics.clone(),
                ),
                admit: Some(Arc::new(move |env| admit.matches(env))),
            })
        })
        .collect();
    Ok((routes, Some(feeds)))
}

/// The feed endpoint's state: each pull subscription's token read and signer loaded.
pub fn http(
    loaded: &Loaded,
    profiles: &crate::signing::Profiles,
    engine: &Arc<Engine>,
    cancel: &CancellationToken,
) -> Result<Option<Arc<FeedsHttp>>, FeedWireError> {
    let Some(feeds) = &engine.feeds else {
        return Ok(None);
    };
    let mut pulls = BTreeMap::new();
    let mut tokens: BTreeMap<String, String> = BTreeMap::new();
    for sub in &feeds.subscriptions {
        let pull = sub
            .pull
            .as_ref()
            .expect("a pull subscription has its table");
        let at = format!("subscriptions.{}.pull", sub.name);
        let token = pull
            .token
            .resolve(&loaded.base)
            .map_err(|problem| FeedWireError::Token {
                at: at.clone(),
                problem,
            })?;
        if let Some(other) = tokens.insert(token.expose().to_string(), sub.name.clone()) {
            return Err(FeedWireError::SharedToken { at, other });
        }
        let material =
            profiles
                .material(&pull.signing)
                .ok_or_else(|| FeedWireError::NoProfile {
                    at: at.clone(),
                    profile: pull.signing.clone(),
                })?;
        let signer = PageSigner::new(&pull.signing, material.key.as_ref()).map_err(|problem| {
            FeedWireError::Signer {
                at: at.clone(),
                problem,
            }
        })?;
        pulls.insert(
            sub.name.clone(),
            PullFeed {
                name: sub.name.clone(),
                token,
                signer,
                bounds: Bounds {
                    max_limit: pull.max_limit,
                    max_wait: pull.max_wait.0,
                },
                legal_basis: sub.legal_basis.clone(),
                certificate: profiles.signing_certificate_sha256(&pull.signing),
            },
        );
    }
    Ok(Some(Arc::new(FeedsHttp {
        pulls,
        feeds: feeds.clone(),
        evidence: engine.evidence.clone(),
        ledger: engine.store.clone(),
        cancel: cancel.clone(),
    })))
}

/// Start the feeds' retention (one instance at a time) and gauges, if any subscription is
/// pulled.
pub fn spawn_jobs(
    loaded: &Loaded,
    engine: &Arc<Engine>,
    cancel: &CancellationToken,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let Some(feeds) = &engine.feeds else {
        return;
    };
    let retention = feeds
        .subscriptions
        .iter()
        .filter_map(|s| Some((s.name.clone(), s.pull.as_ref()?.retention.0)))
        .collect();
    let lead = Singleton::for_engine(FEED_RETENTION, engine, &loaded.config.gateway.instance);
    crate::jobs::feeds::spawn(feeds.clone(), retention, lead, cancel, tasks);
}
