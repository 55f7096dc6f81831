//! Wiring: from a loaded configuration to a running gateway (broker, store, connectors, route
//! runtime, inbound and ops listeners), and its graceful shutdown.
//!
//! Shutdown order (SIGTERM/SIGINT or the cancel token): stop accepting inbound requests, stop
//! consuming, let each lane finish the message it is on (unstarted ones are handed back), then
//! flush acks and close the broker. In-flight work gets `gateway.shutdown_grace`.
//!
//! Files: `mod.rs` (start, run, shutdown), `datalock.rs` (one process per data directory),
//! `payments.rs` (the payment wiring), `feeds.rs` (the agencies' pull feeds), `service.rs` (systemd: sd_notify readiness and
//! stopping, the watchdog, SIGHUP).

pub mod agencies;
pub mod backends;
pub mod datalock;
pub mod feeds;
pub mod payments;
pub mod service;
pub mod signatures;

pub use backends::store_tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use gw_broker::Broker;
use gw_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Loaded;
use crate::edge::{self, InboundState, SourceRuntime};
use crate::runtime::retry::Policy;
use crate::runtime::{Engine, Route};
use crate::telemetry::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("configuration: store TLS: {0}")]
    StoreTls(#[from] gw_store::TlsError),
    #[error("configuration: broker TLS: {0}")]
    BrokerTls(#[from] gw_broker::amqp::AmqpTlsError),
    #[error("broker: {0}")]
    Broker(#[from] gw_broker::BrokerError),
    #[error("store: {0}")]
    Store(#[from] gw_store::StoreError),
    #[error(transparent)]
    Connector(#[from] crate::connectors::ConnectorError),
    #[error("cannot listen on {addr}: {detail}")]
    Listen { addr: String, detail: String },
    #[error("cannot create the data directory {0}: {1}")]
    DataDir(String, String),
    #[error(transparent)]
    Signing(#[from] crate::signing::SigningError),
    #[error(transparent)]
    DataDirLock(#[from] crate::app::datalock::LockError),
    #[error("configuration: {0}")]
    Job(#[from] crate::jobs::JobError),
    #[error("configuration: {0}")]
    Ops(#[from] crate::ops::state::OpsSetupError),
    #[error("configuration: {0}")]
    Timestamping(#[from] crate::evidence::tsa::TsaError),
    #[error("configuration: {0}")]
    Feeds(#[from] feeds::FeedWireError),
    #[error("configuration: {0}")]
    AgencyPush(#[from] agencies::PushRoutesError),
}

/// Open the broker and store a configuration names.
pub async fn open_backends(loaded: &Loaded) -> Result<(Arc<dyn Broker>, Arc<dyn Store>), AppError> {
    let data = loaded.data_dir();
    if loaded.config.broker.url.is_none() || loaded.config.store.url.is_none() {
        std::fs::create_dir_all(&data)
            .map_err(|e| AppError::DataDir(data.display().to_string(), e.to_string()))?;
    }
    let broker_url = loaded
        .broker_url()
        .map_err(|e| AppError::Config(e.to_string()))?;
    let store_url = loaded
        .store_url()
        .map_err(|e| AppError::Config(e.to_string()))?;
    let (store_tls, broker_tls) = backend_tls(loaded)?;
    let broker =
        gw_broker::open_tls(&broker_url, &loaded.config.gateway.instance, broker_tls).await?;
    let store = gw_store::open_tls(&store_url, store_tls).await?;
    Ok((broker, store))
}

/// The store a configuration names, over TLS where `[store] ca` is set: what the commands that
/// read or repair the store without running the gateway open (ops, dlq, evidence, payments).
pub async fn open_store(loaded: &Loaded) -> Result<Arc<dyn Store>, AppError> {
    let data = loaded.data_dir();
    if loaded.config.store.url.is_none() {
        std::fs::create_dir_all(&data)
            .map_err(|e| AppError::DataDir(data.display().to_string(), e.to_string()))?;
    }
    let url = loaded
        .store_url()
        .map_err(|e| AppError::Config(e.to_string()))?;
    Ok(gw_store::open_tls(&url, store_tls(loaded)?).await?)
}

/// TLS to the backends from the files the configuration names (`[store]` / `[broker]` `ca`,
/// `client_cert`, `client_key`), read and checked now: `None` where no CA is set.
pub fn backend_tls(
    loaded: &Loaded,
) -> Result<(Option<gw_store::PgTls>, Option<gw_broker::amqp::AmqpTls>), AppError> {
    let store = store_tls(loaded)?;
    let broker = match loaded.broker_tls_files() {
        Some((ca, cert, key)) => Some(gw_broker::amqp::AmqpTls::from_files(
            &ca,
            cert.as_deref(),
            key.as_deref(),
        )?),
        None => None,
    };
    Ok((store, broker))
}

/// Build the engine (routes and connectors) over open backends; loads the signing profiles.
pub fn build_engine(
    loaded: &Loaded,
    broker: Arc<dyn Broker>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
) -> Result<Engine, AppError> {
    let profiles = crate::signing::Profiles::load(loaded)?;
    build_engine_with(loaded, broker, store, metrics, &profiles)
}

/// Build the engine with signing profiles already loaded (keys are read once, at start).
pub fn build_engine_with(
    loaded: &Loaded,
    broker: Arc<dyn Broker>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    profiles: &crate::signing::Profiles,
) -> Result<Engine, AppError> {
    let c = &loaded.config;
    let mut connectors = HashMap::new();
    for (name, a) in &c.adapters {
        connectors.insert(
            name.clone(),
            crate::connectors::build(name, a, &loaded.base, profiles.for_adapter(a)?, &metrics)?,
        );
    }
    let routes = c
        .routes
        .iter()
        .map(|r| {
            Arc::new(Route {
                name: r.name.clone(),
                source: r.from.clone(),
                kinds: r.kinds.clone(),
                destination: r.to.clone(),
                partitions: c.broker.partitions,
                connector: connectors[&r.to].clone(),
                policy: Policy::from(r.retry_policy(&c.retry)),
                concurrency: r.concurrency,
                circuit: crate::runtime::circuit::Circuit::new(
                    &r.name,
                    &r.to,
                    &c.circuit,
                    metrics.clone(),
                ),
                admit: None,
            })
        })
        .collect::<Vec<_>>();
    let mut routes = routes;
    let (push_routes, push_states) = agencies::push_routes(loaded, &store, &metrics)?;
    routes.extend(push_routes);
    let (feed_routes, feeds) = feeds::routes(loaded, &store, &metrics)?;
    routes.extend(feed_routes);
    let mut log = crate::evidence::EvidenceLog::new(&c.evidence, &c.gateway.instance, &loaded.base)
        .map_err(|e| AppError::Config(e.to_string()))?;
    // The evidence log's time-stamping families join this engine's `/metrics`.
    metrics.register_collector(Box::new(crate::evidence::tsa::Collector));
    for (name, a) in &c.adapters {
        if let Some(fp) = a
            .signing
            .as_deref()
            .and_then(|p| profiles.signing_certificate_sha256(p))
        {
            log.set_certificate(name, fp);
        }
    }
    Ok(Engine::new(
        broker,
        store,
        routes,
        metrics,
        c.broker.prefetch,
        c.broker.delivery_limit,
    )
    .with_agency_fanout(&c.broker.agencies_fanout, Policy::from(c.retry), &c.circuit)
    .with_claims(&c.gateway.instance, c.gateway.claim_lease.0)
    .with_evidence(Arc::new(log))
    .with_feeds(feeds)
    .with_subscriptions(push_states))
}

/// A running gateway.
pub struct Running {
    pub engine: Arc<Engine>,
    pub inbound_addr: SocketAddr,
    pub ops_addr: SocketAddr,
    pub cancel: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
    /// The data-directory lock when an embedded backend is in use; released after the
    /// broker is closed (when `wait` returns and this is dropped).
    _data_lock: Option<crate::app::datalock::DataDirLock>,
    /// Fires once every route queue has a consumer ([`Running::consuming`]).
    consuming: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Running {
    /// Wait until every route queue has a consumer: `true` then (at once if it already
    /// happened), `false` if the route runtime stopped before (a consume failed; the error
    /// is logged). The listeners are bound before `start` returns, so after `true` the
    /// gateway accepts, delivers and answers `/readyz`.
    pub async fn consuming(&mut self) -> bool {
        match self.consuming.take() {
            Some(rx) => rx.await.is_ok(),
            None => true,
        }
    }

    /// Wait until shutdown completes (after `cancel`).
    pub async fn wait(mut self) {
        while let Some(r) = self.tasks.join_next().await {
            if let Err(e) = r {
                warn!(error = %e, "a gateway task ended abnormally");
            }
        }
        self.engine.broker.close().await;
        // The last spans (an exporter that is not running makes this a no-op).
        let _ = tokio::task::spawn_blocking(|| {
            crate::telemetry::flush(std::time::Duration::from_secs(5))
        })
        .await;
        info!("gateway stopped");
    }

    /// Cancel and wait.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.wait().await
    }
}

/// SIGTERM or SIGINT: the signals that stop a running gateway (and the lab's demo).
pub async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

async fn bind(addr: &str) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr).await.map_err(|e| AppError::Listen {
        addr: addr.into(),
        detail: e.to_string(),
    })
}

/// Start everything; returns once listening and consuming. The steps, in order: lock the
/// data directory (embedded backends), open the backends and build the engine, resolve the
/// sources, bind both listeners, then spawn the servers, the route runtime and the jobs.
pub async fn start(loaded: &Loaded, cancel: CancellationToken) -> Result<Running, AppError> {
    for w in loaded.warnings() {
        tracing::warn!("{w}");
    }
    let data_lock = lock_data_dir(loaded)?;
    let (broker, store) = open_backends(loaded).await?;
    let metrics = Arc::new(Metrics::new());
    let profiles = crate::signing::Profiles::load(loaded)?;
    let engine = build_engine_with(loaded, broker, store, metrics.clone(), &profiles)?;
    let engine = Arc::new(match &loaded.config.indicators {
        Some(_) => engine.with_indicators(crate::runtime::route::INDICATORS_QUEUE),
        None => engine,
    });
    engine.declare().await?;
    agencies::tell_changes(&engine);
    let c = &loaded.config;
    let sources = source_runtimes(loaded, &profiles)?;
    let payments = payments::Wired::from_config(loaded, &engine)
        .await
        .map_err(|e| AppError::Config(e.to_string()))?;
    let signatures = signatures::from_config(loaded)
        .await
        .map_err(|e| AppError::Config(e.to_string()))?;
    let inbound_state = Arc::new(InboundState {
        signatures: signatures.clone(),
        payments: payments.as_ref().map(|p| p.http.payments.clone()),
        engine: engine.clone(),
        sources,
        metrics,
        max_body_bytes: c.inbound.max_body_bytes,
    });
    let mut ops_options = crate::ops::OpsOptions::from_config(loaded)?;
    ops_options.signatures = signatures
        .as_ref()
        .map(|s| crate::ops::state::SignatureRequests(s.store.clone()));
    let indicators = match &loaded.config.indicators {
        Some(section) => {
            let mut wired = crate::jobs::indicators::Wired::open(
                section,
                &loaded
                    .store_url()
                    .map_err(|e| AppError::Config(e.to_string()))?,
                store_tls(loaded)?,
            )
            .await
            .map_err(|e| AppError::Config(e.to_string()))?;
            // The catalogue's statutory times and paper results, as the last sync wrote them.
            wired.rules = crate::indicators::live_rules_of(loaded)
                .map_err(|e| AppError::Config(e.to_string()))?;
            Some(Arc::new(wired))
        }
        None => None,
    };
    ops_options.indicators = indicators.clone();
    let inbound_l = bind(&c.inbound.listen).await?;
    let ops_l = bind(&c.ops.listen).await?;
    let inbound_addr = inbound_l.local_addr().expect("bound");
    let ops_addr = ops_l.local_addr().expect("bound");

    let mut tasks = tokio::task::JoinSet::new();
    let limits = c.inbound.limits();
    let inbound = edge::router(inbound_state, c.inbound.max_body_bytes);
    let inbound = edge::with_payments(inbound, payments.as_ref().map(|p| p.http.clone()));
    let inbound = edge::with_feeds(inbound, feeds::http(loaded, &profiles, &engine, &cancel)?);
    tasks.spawn(crate::transport::serve::serve(
        inbound_l,
        inbound,
        limits,
        cancel.clone(),
    ));
    if let Some(endpoint) = &c.ops.otlp_endpoint {
        if let Err(e) = crate::telemetry::start(endpoint, &c.gateway.instance, c.ops.otlp_protocol)
        {
            tracing::warn!(error = %e, "spans are not exported");
        }
    }
    let ops = crate::ops::router(engine.clone(), ops_options);
    tasks.spawn(crate::transport::serve::serve(
        ops_l,
        ops,
        limits,
        cancel.clone(),
    ));
    tasks.spawn(cert_expiry(&profiles, &engine, cancel.clone()));
    if !engine.subscriptions.is_empty() {
        tasks.spawn(agencies::refresh_states(
            engine.subscriptions.clone(),
            cancel.clone(),
        ));
    }
    let (consuming_tx, consuming) = tokio::sync::oneshot::channel();
    tasks.spawn(route_runtime(
        engine.clone(),
        cancel.clone(),
        c.gateway.shutdown_grace.0,
        consuming_tx,
    ));
    spawn_jobs(loaded, &engine, payments.as_ref(), &cancel, &mut tasks)?;
    if let Some(service) = signatures {
        let instance = &c.gateway.instance;
        tasks.spawn(signatures::scheduled(
            service,
            &engine,
            instance,
            cancel.clone(),
        ));
    }
    if let (Some(i), Some(section)) = (&indicators, &loaded.config.indicators) {
        i.spawn(&engine, section.refresh.0, &cancel, &mut tasks);
    }
    info!(inbound = %inbound_addr, ops = %ops_addr, broker = engine.broker.kind(), store = engine.store.kind(), routes = engine.routes.len(), "gateway started");
    Ok(Running {
        engine,
        inbound_addr,
        ops_addr,
        cancel,
        tasks,
        _data_lock: data_lock,
        consuming: Some(consuming),
    })
}

/// An embedded backend serves one process: refuse a second one on this data directory
/// before anything is opened (see `crate::app::datalock`).
fn lock_data_dir(loaded: &Loaded) -> Result<Option<datalock::DataDirLock>, AppError> {
    if loaded.config.broker.url.is_some() && loaded.config.store.url.is_some() {
        return Ok(None);
    }
    let data = loaded.data_dir();
    std::fs::create_dir_all(&data)
        .map_err(|e| AppError::DataDir(data.display().to_string(), e.to_string()))?;
    Ok(Some(datalock::DataDirLock::acquire(
        &data,
        &loaded.config.gateway.instance,
    )?))
}

/// Each `[sources.NAME]` as the edge uses it: its token read, its verifier and adapter loaded.
fn source_runtimes(
    loaded: &Loaded,
    profiles: &crate::signing::Profiles,
) -> Result<HashMap<String, SourceRuntime>, AppError> {
    let c = &loaded.config;
    let mut sources = HashMap::new();
    for (name, s) in &c.sources {
        let token = match &s.token {
            Some(r) => Some(
                r.resolve(&loaded.base)
                    .map_err(|e| AppError::Config(format!("sources.{name}.token: {e}")))?,
            ),
            None => None,
        };
        sources.insert(
            name.clone(),
            SourceRuntime {
                token,
                kinds: s.kinds.clone(),
                verify: profiles.for_source(s)?,
                adapter: match &s.adapter {
                    Some(dir) => Some(Arc::new(load_adapter(&loaded.base, dir)?)),
                    None => None,
                },
                slots: Arc::new(tokio::sync::Semaphore::new(c.inbound.source_concurrency)),
            },
        );
    }
    Ok(sources)
}

/// Certificate days to expiry for `/metrics`, refreshed hourly (they count down).
fn cert_expiry(
    profiles: &crate::signing::Profiles,
    engine: &Arc<Engine>,
    cancel: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (certs, m) = (profiles.certs_days_to_expiry(), engine.metrics.clone());
    async move {
        let started = std::time::Instant::now();
        loop {
            let elapsed_days = started.elapsed().as_secs_f64() / 86_400.0;
            for c in &certs {
                // Anchors are named by serial: a subject may name a person.
                let id = if c.role == "anchor" {
                    &c.serial
                } else {
                    &c.key_id
                };
                let cert = format!("{}/{id}", c.role);
                m.set_cert_days(&c.profile, &cert, c.days as f64 - elapsed_days);
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
            }
        }
    }
}

/// The route runtime until cancelled, then at most `grace` for the work in flight; sends on
/// `consuming` once every route queue has a consumer.
async fn route_runtime(
    engine: Arc<Engine>,
    cancel: CancellationToken,
    grace: std::time::Duration,
    consuming: tokio::sync::oneshot::Sender<()>,
) {
    let run = engine.run_signalling(cancel.clone(), Some(consuming));
    tokio::pin!(run);
    tokio::select! {
        r = &mut run => { if let Err(err) = r { warn!(error = %err, "route runtime stopped with an error"); } }
        _ = async { cancel.cancelled().await; tokio::time::sleep(grace).await } => {
            warn!("in-flight work did not finish within the shutdown grace; unacked messages will be redelivered");
        }
    }
}

/// The singleton jobs: payments' schedule, the portal's catalogue sync and online poll (each
/// run awaits the previous one), the evidence log's time-stamping and retention. Each runs on
/// the instance that leads it (`crate::jobs`).
fn spawn_jobs(
    loaded: &Loaded,
    engine: &Arc<Engine>,
    payments: Option<&payments::Wired>,
    cancel: &CancellationToken,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Result<(), AppError> {
    use crate::jobs::{Singleton, CATALOGUE_SYNC, ONLINE_POLL, PAYMENTS};
    let instance = loaded.config.gateway.instance.as_str();
    if let Some(p) = payments {
        let lead = Singleton::for_engine(PAYMENTS, engine, instance);
        tasks.spawn(p.scheduled(lead, cancel.clone()));
    }
    if let Some(job) = crate::jobs::catalogue::CatalogueSync::from_config(loaded)? {
        let lead = Singleton::for_engine(CATALOGUE_SYNC, engine, instance);
        tasks.spawn(job.run_periodic(engine.clone(), lead, cancel.clone()));
    }
    if let Some(job) = crate::jobs::online::OnlinePoll::from_config(loaded)? {
        let lead = Singleton::for_engine(ONLINE_POLL, engine, instance);
        tasks.spawn(job.run_periodic(engine.clone(), lead, cancel.clone()));
    }
    for job in crate::jobs::axis::AxisPoll::from_config(loaded)
        .map_err(|e| AppError::Config(e.to_string()))?
    {
        let lead = Singleton::for_engine(crate::jobs::axis::AXIS_POLL, engine, instance).with_key(
            format!("{}:{}", crate::jobs::axis::AXIS_POLL, job.adapter()),
        );
        tasks.spawn(job.run_periodic(engine.clone(), lead, cancel.clone()));
    }
    crate::jobs::evidence::spawn(loaded, engine, cancel, tasks)?;
    feeds::spawn_jobs(loaded, engine, cancel, tasks);
    Ok(())
}

/// Load a one-stop adapter folder (relative to the config's folder), every problem reported.
pub fn load_adapter(
    base: &std::path::Path,
    dir: &std::path::Path,
) -> Result<crate::mapping::Adapter, AppError> {
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        base.join(dir)
    };
    crate::mapping::Adapter::load(&dir).map_err(|problems| {
        AppError::Config(
            problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })
}

/// Check the files a configuration refers to that `config::load` does not open: one-stop
/// adapter folders (mapping, schemas, procedure tables) and the portal's procedure tables.
/// Each problem as `file:key: what: fix`.
pub fn check_files(loaded: &Loaded) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, s) in &loaded.config.sources {
        if let Some(dir) = &s.adapter {
            if let Err(AppError::Config(text)) = load_adapter(&loaded.base, dir) {
                problems.push(format!(
                    "{}:sources.{name}.adapter: the adapter folder has problems:",
                    loaded.origin
                ));
                problems.extend(text.lines().map(|l| format!("  {l}")));
            }
        }
    }
    for (name, a) in &loaded.config.adapters {
        if let Some(p) = a.dvcqg.as_ref().and_then(|d| d.procedures.as_ref()) {
            let p = if p.is_absolute() {
                p.clone()
            } else {
                loaded.base.join(p)
            };
            if let Err(e) = crate::connectors::dvcqg::translate::ProcedureTable::load(&p) {
                problems.push(format!(
                    "{}:adapters.{name}.dvcqg.procedures: {e}: fix the table or the path",
                    loaded.origin
                ));
            }
        }
    }
    for (key, what) in loaded.config.evidence.problems(&loaded.base) {
        problems.push(format!("{}:{key}: {what}", loaded.origin));
    }
    if let Err(e) = backend_tls(loaded) {
        let key = match e {
            AppError::StoreTls(_) => "store",
            _ => "broker",
        };
        problems.push(format!(
            "{}:{key}: {e}: fix the path or the file",
            loaded.origin
        ));
    }
    problems
}
