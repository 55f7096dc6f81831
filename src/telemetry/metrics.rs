//! Process metrics, rendered in the OpenMetrics 1.0 text format on the ops listener.
//!
//! # Invariants
//! - Label values come from bounded sets only: route, adapter, signing profile and certificate
//!   names (configuration), outcomes and [`crate::model::outcome::Reason`] labels. Never a dossier code,
//!   never personal data, never a token.
//! - Counters only go up. Each family is an atomic per label set, so counting takes no lock
//!   shared with other routes or with a scrape.
//! - Every family is rendered with its `# HELP` and `# TYPE` lines even before its first sample,
//!   so dashboards and alert rules can rely on the names existing.
//! - Sample names are the ones dashboards and alerts query: a counter family is declared
//!   without its `_total` suffix (`# TYPE gateway_messages_in counter`, as OpenMetrics wants)
//!   and its samples carry it (`gateway_messages_in_total{…}`).
//! - The exposition ends with `# EOF` and is served as [`CONTENT_TYPE`].
//! - This module imports no other gateway module: families kept elsewhere join the exposition
//!   through [`Metrics::register_collector`] (a `prometheus-client` collector, e.g. the
//!   evidence log's time-stamping families, registered where the engine is built) or
//!   [`Metrics::add_renderer`] (text written with [`family`] and [`esc`], e.g. the recorder's
//!   and the payments' families); gauges that need the broker or the store (queue depth, open
//!   dead letters) are rendered by the ops listener at scrape time and passed to
//!   [`Metrics::render_with`].
//!
//! Families (all prefixed `gateway_`, sample names): `messages_in_total`, `messages_out_total`,
//! `outcomes_total`, `inbound_requests_total`, `delivery_seconds` (histogram),
//! `message_age_seconds`, `token_refresh_failures_total`, `certificate_expiry_days`,
//! `circuit_state`, `circuit_transitions_total`, `job_runs_total`, `job_leader` (singleton jobs,
//! set by the job runner only); from the pipeline's recorder:
//! `ledger_writes_total`, `ledger_write_requests_total`, `ledger_write_seconds_total`; from ops: `queue_ready`, `queue_unacked`,
//! `queue_delayed`, `queue_oldest_ready_age_seconds`, `broker_orphaned_retries`,
//! `dead_letters_open`, `build_info`, `up`.
//!
//! Why `prometheus-client`: it is the Prometheus project's own Rust client, written for the
//! OpenMetrics format; its families are typed by their label set (a struct, so a label cannot
//! be misspelt or forgotten at one call site), its counters and gauges are atomics, and its
//! `Collector` lets other modules add families computed at scrape time. The `metrics` facade
//! with `metrics-exporter-prometheus` would give a global recorder and string-keyed labels,
//! which is what this module exists to avoid, and no typed read-back for the ops API.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Metric, Registry};

/// The `Content-Type` of [`Metrics::render`]'s output (OpenMetrics text 1.0).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    adapter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct OutcomeLabels {
    route: String,
    adapter: String,
    outcome: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InboundLabels {
    source: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdapterLabels {
    adapter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertLabels {
    profile: String,
    cert: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CircuitLabels {
    route: String,
    destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct TransitionLabels {
    route: String,
    destination: String,
    to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobOutcomeLabels {
    job: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// A family registered so that it is declared (`# HELP`, `# TYPE`) even with no sample yet:
/// the registry leaves out families that report themselves empty.
#[derive(Debug)]
struct Declared<M>(M);

impl<M: EncodeMetric> EncodeMetric for Declared<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

/// Register `metric` under `name`; the registry ends help texts with a period itself.
fn declare(r: &mut Registry, name: &str, help: &str, metric: impl Metric) {
    r.register(
        name,
        help.strip_suffix('.').unwrap_or(help),
        Declared(metric),
    );
}

/// Renders families kept elsewhere (e.g. payment reconciliation) as OpenMetrics text, written
/// with [`family`] and [`esc`]; appended to [`Metrics::render`] before `# EOF`.
pub type FamilyRenderer = Arc<dyn Fn() -> String + Send + Sync>;

pub struct Metrics {
    /// The core families below plus the collectors other modules registered; written only
    /// when a collector is added, read by each scrape.
    registry: RwLock<Registry>,
    /// Text renderers of families kept elsewhere.
    extra: RwLock<Vec<FamilyRenderer>>,
    /// route → destination adapter (registered when the engine is built): the `adapter` label.
    adapters: RwLock<HashMap<String, String>>,
    /// Label sets of `outcomes` seen so far, for the read-back sums (`outcome_count`, …).
    outcome_sets: RwLock<BTreeSet<OutcomeLabels>>,
    /// Label sets of `circuit_transitions` seen so far (`circuit_transitions_total`).
    transition_sets: RwLock<BTreeSet<TransitionLabels>>,
    messages_in: Family<RouteLabels, Counter>,
    messages_out: Family<RouteLabels, Counter>,
    outcomes: Family<OutcomeLabels, Counter>,
    inbound: Family<InboundLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Age in seconds of the last message each route picked up (how far behind it runs).
    age: Family<RouteLabels, FloatGauge>,
    /// Failed token refreshes (OAuth2 / session logins) per adapter.
    token_refresh_failures: Family<AdapterLabels, Counter>,
    /// Days until a certificate expires.
    cert_days: Family<CertLabels, FloatGauge>,
    /// Circuit state (0 closed, 1 half-open, 2 open).
    circuit: Family<CircuitLabels, Gauge>,
    circuit_transitions: Family<TransitionLabels, Counter>,
    /// Singleton job ticks (`ran`, `skipped_not_leader`, `failed`).
    job_runs: Family<JobOutcomeLabels, Counter>,
    /// 1 while this instance leads a singleton job.
    job_leader: Family<JobLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts of one route since the process started, for the ops API.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RouteCounts {
    pub messages_in: u64,
    /// outcome (`delivered`, `retried`, `dead_lettered`, …) → count, over all reasons.
    pub outcomes: BTreeMap<String, u64>,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    pub fn new() -> Self {
        let m = Metrics {
            registry: RwLock::new(Registry::default()),
            extra: RwLock::default(),
            adapters: RwLock::default(),
            outcome_sets: RwLock::default(),
            transition_sets: RwLock::default(),
            messages_in: Family::default(),
            messages_out: Family::default(),
            outcomes: Family::default(),
            inbound: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            age: Family::default(),
            token_refresh_failures: Family::default(),
            cert_days: Family::default(),
            circuit: Family::default(),
            circuit_transitions: Family::default(),
            job_runs: Family::default(),
            job_leader: Family::default(),
        };
        {
            let mut r = write(&m.registry);
            // Counters are registered without `_total`: the encoder appends it to samples.
            declare(
                &mut r,
                "gateway_messages_in",
                "Envelopes accepted and queued, per route and destination adapter.",
                m.messages_in.clone(),
            );
            declare(
                &mut r,
                "gateway_messages_out",
                "Envelopes delivered to (accepted by) the destination, per route and adapter.",
                m.messages_out.clone(),
            );
            declare(
                &mut r,
                "gateway_outcomes",
                "Delivery outcomes per route, adapter, outcome and reason.",
                m.outcomes.clone(),
            );
            declare(
                &mut r,
                "gateway_inbound_requests",
                "Inbound requests per source and HTTP status.",
                m.inbound.clone(),
            );
            declare(
                &mut r,
                "gateway_delivery_seconds",
                "Time of one delivery attempt to the destination.",
                m.latency.clone(),
            );
            declare(
                &mut r,
                "gateway_message_age_seconds",
                "Age since acceptance of the last message each route picked up (how far behind it runs).",
                m.age.clone(),
            );
            declare(
                &mut r,
                "gateway_token_refresh_failures",
                "Failed token refreshes (OAuth2, session logins) per adapter.",
                m.token_refresh_failures.clone(),
            );
            declare(
                &mut r,
                "gateway_certificate_expiry_days",
                "Days until a configured certificate expires, per signing profile and certificate.",
                m.cert_days.clone(),
            );
            declare(
                &mut r,
                "gateway_circuit_state",
                "Circuit breaker state per route and destination: 0 closed, 1 half-open (probing), 2 open (deliveries deferred).",
                m.circuit.clone(),
            );
            declare(
                &mut r,
                "gateway_circuit_transitions",
                "Circuit breaker state changes per route, destination and state entered.",
                m.circuit_transitions.clone(),
            );
            declare(
                &mut r,
                "gateway_job_runs",
                "Ticks of singleton jobs by outcome: ran, skipped_not_leader (another instance leads), failed.",
                m.job_runs.clone(),
            );
            declare(
                &mut r,
                "gateway_job_leader",
                "1 while this instance leads the singleton job (runs it), 0 on standby.",
                m.job_leader.clone(),
            );
        }
        m
    }

    /// Add families another module keeps, encoded at each scrape (their names and labels
    /// follow the same rules).
    pub fn register_collector(&self, c: Box<dyn Collector>) {
        write(&self.registry).register_collector(c);
    }

    /// Append families rendered as text by another module (their names and labels follow the
    /// same rules; descriptors written with [`family`]).
    pub fn add_renderer(&self, r: FamilyRenderer) {
        write(&self.extra).push(r);
    }

    /// Name the destination adapter of a route (the `adapter` label of its samples).
    pub fn register_route(&self, route: &str, adapter: &str) {
        write(&self.adapters).insert(route.to_string(), adapter.to_string());
    }

    fn route_labels(&self, route: &str) -> RouteLabels {
        RouteLabels {
            route: route.to_string(),
            adapter: read(&self.adapters).get(route).cloned().unwrap_or_default(),
        }
    }

    pub fn inc_in(&self, route: &str) {
        self.messages_in
            .get_or_create(&self.route_labels(route))
            .inc();
    }

    pub fn inc_outcome(&self, route: &str, outcome: &str, reason: &str) {
        let rl = self.route_labels(route);
        if outcome == "delivered" {
            self.messages_out.get_or_create(&rl).inc();
        }
        let l = OutcomeLabels {
            route: rl.route,
            adapter: rl.adapter,
            outcome: outcome.to_string(),
            reason: reason.to_string(),
        };
        self.outcomes.get_or_create(&l).inc();
        if !read(&self.outcome_sets).contains(&l) {
            write(&self.outcome_sets).insert(l);
        }
    }

    pub fn inc_inbound(&self, source: &str, status: u16) {
        self.inbound
            .get_or_create(&InboundLabels {
                source: source.to_string(),
                status: status.to_string(),
            })
            .inc();
    }

    pub fn observe_latency(&self, route: &str, d: Duration) {
        self.latency
            .get_or_create(&self.route_labels(route))
            .observe(d.as_secs_f64());
    }

    /// The age (since it was accepted) of the message a route just picked up. Retries keep
    /// their original acceptance time, so a route stuck on an outage shows a growing age.
    pub fn observe_age(&self, route: &str, age: Duration) {
        self.age
            .get_or_create(&self.route_labels(route))
            .set(age.as_secs_f64());
    }

    /// A token refresh (OAuth2 client credentials, a session login) of `adapter` failed.
    pub fn inc_token_refresh_failure(&self, adapter: &str) {
        self.token_refresh_failures
            .get_or_create(&AdapterLabels {
                adapter: adapter.to_string(),
            })
            .inc();
    }

    /// Days until a signing or TLS certificate expires (negative once expired). `profile` and
    /// `cert` are configuration names, never a subject.
    pub fn set_cert_days(&self, profile: &str, cert: &str, days: f64) {
        self.cert_days
            .get_or_create(&CertLabels {
                profile: profile.to_string(),
                cert: cert.to_string(),
            })
            .set(days);
    }

    /// The circuit breaker state of a route (0 closed, 1 half-open, 2 open).
    pub fn set_circuit_state(&self, route: &str, destination: &str, state: u8) {
        self.circuit
            .get_or_create(&CircuitLabels {
                route: route.to_string(),
                destination: destination.to_string(),
            })
            .set(i64::from(state));
    }

    /// A route's circuit entered state `to` (`closed`, `half_open`, `open`; gauge `state`).
    pub fn circuit_transition(&self, route: &str, destination: &str, state: u8, to: &str) {
        self.set_circuit_state(route, destination, state);
        let l = TransitionLabels {
            route: route.to_string(),
            destination: destination.to_string(),
            to: to.to_string(),
        };
        self.circuit_transitions.get_or_create(&l).inc();
        if !read(&self.transition_sets).contains(&l) {
            write(&self.transition_sets).insert(l);
        }
    }

    /// A singleton job's tick: `ran`, `skipped_not_leader` or `failed` (the job runner).
    pub fn inc_job_run(&self, job: &str, outcome: &str) {
        self.job_runs
            .get_or_create(&JobOutcomeLabels {
                job: job.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Whether this instance leads a singleton job (the job runner).
    pub fn set_job_leader(&self, job: &str, leading: bool) {
        self.job_leader
            .get_or_create(&JobLabels {
                job: job.to_string(),
            })
            .set(i64::from(leading));
    }

    /// Ticks of a singleton job with this outcome so far.
    pub fn job_runs(&self, job: &str, outcome: &str) -> u64 {
        self.job_runs
            .get(&JobOutcomeLabels {
                job: job.to_string(),
                outcome: outcome.to_string(),
            })
            .map(|c| c.get())
            .unwrap_or(0)
    }

    /// The leader gauge of a job (`None` before the job started).
    pub fn job_leader(&self, job: &str) -> Option<bool> {
        self.job_leader
            .get(&JobLabels {
                job: job.to_string(),
            })
            .map(|g| g.get() == 1)
    }

    /// How many times circuits entered state `to`, over all routes (the demo's summary).
    pub fn circuit_transitions_total(&self, to: &str) -> u64 {
        read(&self.transition_sets)
            .iter()
            .filter(|l| l.to == to)
            .filter_map(|l| self.circuit_transitions.get(l).map(|c| c.get()))
            .sum()
    }

    /// Sum of the outcome counters whose labels match `keep`.
    fn outcome_sum(&self, keep: impl Fn(&OutcomeLabels) -> bool) -> u64 {
        read(&self.outcome_sets)
            .iter()
            .filter(|l| keep(l))
            .filter_map(|l| self.outcomes.get(l).map(|c| c.get()))
            .sum()
    }

    /// A counter's value, for tests and the demo summary.
    pub fn outcome_count(&self, route: &str, outcome: &str) -> u64 {
        self.outcome_sum(|l| l.route == route && l.outcome == outcome)
    }

    /// Sum of an outcome over all routes.
    pub fn outcome_total(&self, outcome: &str) -> u64 {
        self.outcome_sum(|l| l.outcome == outcome)
    }

    /// A route's counts since start (for `/api/v1/routes`).
    pub fn route_counts(&self, route: &str) -> RouteCounts {
        let mut c = RouteCounts {
            messages_in: self
                .messages_in
                .get(&self.route_labels(route))
                .map(|c| c.get())
                .unwrap_or(0),
            ..Default::default()
        };
        for l in read(&self.outcome_sets).iter().filter(|l| l.route == route) {
            if let Some(v) = self.outcomes.get(l).map(|c| c.get()) {
                *c.outcomes.entry(l.outcome.clone()).or_default() += v;
            }
        }
        c
    }

    /// The OpenMetrics text exposition of every family, ending with `# EOF`.
    pub fn render(&self) -> String {
        self.render_with("")
    }

    /// [`Metrics::render`] with `scrape_time` (families rendered by the caller at scrape time,
    /// written with [`family`]) placed before `# EOF`.
    pub fn render_with(&self, scrape_time: &str) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; a collector's own error leaves its part out.
        let _ = encode_registry(&mut out, &read(&self.registry));
        for r in read(&self.extra).iter() {
            out.push_str(&r());
        }
        out.push_str(scrape_time);
        let _ = encode_eof(&mut out);
        out
    }
}

/// The `# HELP` and `# TYPE` lines of a family whose samples are written as text. `name` is
/// the sample name queries use; for a counter the OpenMetrics family name is declared without
/// the `_total` suffix its samples carry.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let name = match kind {
        "counter" => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    };
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escape a label value (backslash, quote, newline).
pub fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::new();
        m.register_route("sync", "dvcqg");
        m.inc_in("sync");
        m.inc_outcome("sync", "delivered", "accepted");
        m.inc_outcome("sync", "delivered", "accepted");
        m.observe_latency("sync", Duration::from_millis(3));
        let t = m.render();
        assert!(
            t.contains("gateway_messages_in_total{route=\"sync\",adapter=\"dvcqg\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("gateway_messages_out_total{route=\"sync\",adapter=\"dvcqg\"} 2"),
            "{t}"
        );
        assert!(t.contains("gateway_outcomes_total{route=\"sync\",adapter=\"dvcqg\",outcome=\"delivered\",reason=\"accepted\"} 2"), "{t}");
        assert!(
            t.contains(
                "gateway_delivery_seconds_bucket{le=\"0.005\",route=\"sync\",adapter=\"dvcqg\"} 1"
            ) || t.contains(
                "gateway_delivery_seconds_bucket{route=\"sync\",adapter=\"dvcqg\",le=\"0.005\"} 1"
            ),
            "{t}"
        );
        assert!(t.contains("le=\"0.001\"") && t.contains("} 0\n"), "{t}");
        assert_eq!(m.outcome_count("sync", "delivered"), 2);
        assert_eq!(m.outcome_total("delivered"), 2);
        assert_eq!(m.route_counts("sync").outcomes["delivered"], 2);
        assert_eq!(m.route_counts("sync").messages_in, 1);
    }

    #[test]
    fn token_and_certificate_gauges() {
        let m = Metrics::new();
        m.inc_token_refresh_failure("dvcqg");
        m.set_cert_days("smartca", "signing", 12.5);
        m.set_cert_days("smartca", "signing", 11.0);
        let t = m.render();
        assert!(
            t.contains("gateway_token_refresh_failures_total{adapter=\"dvcqg\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("gateway_certificate_expiry_days{profile=\"smartca\",cert=\"signing\"} 11"),
            "{t}"
        );
        assert!(
            t.contains("# TYPE gateway_message_age_seconds gauge"),
            "{t}"
        );
    }

    #[test]
    fn openmetrics_descriptors_and_eof() {
        let m = Metrics::new();
        m.add_renderer(Arc::new(|| {
            let mut out = String::new();
            family(&mut out, "gateway_other_total", "counter", "Other.");
            out.push_str("gateway_other_total 3\n");
            out
        }));
        let t = m.render_with("# HELP gateway_up Up.\n# TYPE gateway_up gauge\ngateway_up 1\n");
        // Declared before any sample, counters without their `_total`.
        assert!(t.contains("# TYPE gateway_messages_in counter\n"), "{t}");
        assert!(t.contains("# TYPE gateway_job_runs counter\n"), "{t}");
        assert!(
            t.contains("# TYPE gateway_delivery_seconds histogram\n"),
            "{t}"
        );
        assert!(
            t.contains("# TYPE gateway_other counter\ngateway_other_total 3\n"),
            "{t}"
        );
        assert!(t.ends_with("gateway_up 1\n# EOF\n"), "{t}");
        assert_eq!(t.matches("# EOF").count(), 1);
    }

    #[test]
    fn jobs_and_circuits_read_back() {
        let m = Metrics::new();
        assert_eq!(m.job_leader("sweep"), None);
        m.set_job_leader("sweep", true);
        m.inc_job_run("sweep", "ran");
        m.inc_job_run("sweep", "ran");
        m.circuit_transition("r", "d", 2, "open");
        m.circuit_transition("r2", "d", 2, "open");
        m.circuit_transition("r", "d", 1, "half_open");
        assert_eq!(m.job_leader("sweep"), Some(true));
        assert_eq!(m.job_runs("sweep", "ran"), 2);
        assert_eq!(m.job_runs("sweep", "failed"), 0);
        assert_eq!(m.circuit_transitions_total("open"), 2);
        let t = m.render();
        assert!(
            t.contains("gateway_circuit_state{route=\"r\",destination=\"d\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("gateway_job_runs_total{job=\"sweep\",outcome=\"ran\"} 2"),
            "{t}"
        );
    }
}
