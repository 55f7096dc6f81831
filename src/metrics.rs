//! Process metrics, rendered in the Prometheus text format on the ops listener.
//!
//! # Invariants
//! - Label values come from bounded sets only: route, adapter, signing profile and certificate
//!   names (configuration), outcomes and [`crate::model::outcome::Reason`] labels. Never a dossier code,
//!   never personal data, never a token.
//! - Counters only go up; the render is a consistent snapshot (one lock for all families).
//! - Every family is rendered with its `# HELP` and `# TYPE` lines even before its first sample,
//!   so dashboards and alert rules can rely on the names existing.
//! - Gauges that need the broker or the store (queue depth, open dead letters) are rendered by
//!   [`crate::ops`] at scrape time, not kept here.
//!
//! Families (all prefixed `gateway_`): `messages_in_total`, `messages_out_total`,
//! `outcomes_total`, `inbound_requests_total`, `delivery_seconds` (histogram),
//! `message_age_seconds`, `token_refresh_failures_total`, `certificate_expiry_days`,
//! `circuit_state`, `circuit_transitions_total`, `job_runs_total`, `job_leader` (singleton jobs,
//! set by [`crate::jobs`] only); from the pipeline's recorder:
//! `ledger_writes_total`, `ledger_write_requests_total`, `ledger_write_seconds_total`; from ops: `queue_ready`, `queue_unacked`,
//! `queue_delayed`, `queue_oldest_ready_age_seconds`, `broker_orphaned_retries`,
//! `dead_letters_open`, `build_info`, `up`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Latency buckets in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Inner {
    /// route → destination adapter (registered when the engine is built).
    adapters: BTreeMap<String, String>,
    /// route → accepted count
    messages_in: BTreeMap<String, u64>,
    /// (route, outcome, reason) → count
    outcomes: BTreeMap<(String, String, String), u64>,
    /// (source, status) → count
    inbound: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    /// route → age in seconds of the last message it picked up (how far behind it runs).
    age: BTreeMap<String, f64>,
    /// adapter → failed token refreshes (OAuth2 / session logins).
    token_refresh_failures: BTreeMap<String, u64>,
    /// (signing profile, certificate) → days until the certificate expires.
    cert_days: BTreeMap<(String, String), f64>,
    /// (route, destination) → circuit state (0 closed, 1 half-open, 2 open).
    circuit: BTreeMap<(String, String), u8>,
    /// (route, destination, state entered) → transitions.
    circuit_transitions: BTreeMap<(String, String, String), u64>,
    /// (singleton job, outcome) → ticks (`ran`, `skipped_not_leader`, `failed`).
    job_runs: BTreeMap<(String, String), u64>,
    /// singleton job → 1 while this instance leads it.
    job_leader: BTreeMap<String, u8>,
}

impl Inner {
    fn adapter(&self, route: &str) -> &str {
        self.adapters.get(route).map(String::as_str).unwrap_or("")
    }
}

/// Renders a family kept elsewhere (e.g. payment reconciliation), appended to [`Metrics::render`].
pub type FamilyRenderer = std::sync::Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    extra: Mutex<Vec<FamilyRenderer>>,
}

/// Counts of one route since the process started, for the ops API.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RouteCounts {
    pub messages_in: u64,
    /// outcome (`delivered`, `retried`, `dead_lettered`, …) → count, over all reasons.
    pub outcomes: BTreeMap<String, u64>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append a family rendered by another module (its names and labels follow the same rules).
    pub fn add_renderer(&self, r: FamilyRenderer) {
        self.extra.lock().unwrap().push(r);
    }

    /// Name the destination adapter of a route (the `adapter` label of its samples).
    pub fn register_route(&self, route: &str, adapter: &str) {
        self.inner
            .lock()
            .unwrap()
            .adapters
            .insert(route.to_string(), adapter.to_string());
    }

    pub fn inc_in(&self, route: &str) {
        *self
            .inner
            .lock()
            .unwrap()
            .messages_in
            .entry(route.to_string())
            .or_default() += 1;
    }

    pub fn inc_outcome(&self, route: &str, outcome: &str, reason: &str) {
        *self
            .inner
            .lock()
            .unwrap()
            .outcomes
            .entry((route.to_string(), outcome.to_string(), reason.to_string()))
            .or_default() += 1;
    }

    pub fn inc_inbound(&self, source: &str, status: u16) {
        *self
            .inner
            .lock()
            .unwrap()
            .inbound
            .entry((source.to_string(), status))
            .or_default() += 1;
    }

    pub fn observe_latency(&self, route: &str, d: Duration) {
        let secs = d.as_secs_f64();
        let mut g = self.inner.lock().unwrap();
        let h = g.latency.entry(route.to_string()).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// The age (since it was accepted) of the message a route just picked up. Retries keep
    /// their original acceptance time, so a route stuck on an outage shows a growing age.
    pub fn observe_age(&self, route: &str, age: Duration) {
        self.inner
            .lock()
            .unwrap()
            .age
            .insert(route.to_string(), age.as_secs_f64());
    }

    /// A token refresh (OAuth2 client credentials, a session login) of `adapter` failed.
    pub fn inc_token_refresh_failure(&self, adapter: &str) {
        *self
            .inner
            .lock()
            .unwrap()
            .token_refresh_failures
            .entry(adapter.to_string())
            .or_default() += 1;
    }

    /// Days until a signing or TLS certificate expires (negative once expired). `profile` and
    /// `cert` are configuration names, never a subject.
    pub fn set_cert_days(&self, profile: &str, cert: &str, days: f64) {
        self.inner
            .lock()
            .unwrap()
            .cert_days
            .insert((profile.to_string(), cert.to_string()), days);
    }

    /// The circuit breaker state of a route (0 closed, 1 half-open, 2 open).
    pub fn set_circuit_state(&self, route: &str, destination: &str, state: u8) {
        self.inner
            .lock()
            .unwrap()
            .circuit
            .insert((route.to_string(), destination.to_string()), state);
    }

    /// A route's circuit entered state `to` (`closed`, `half_open`, `open`; gauge `state`).
    pub fn circuit_transition(&self, route: &str, destination: &str, state: u8, to: &str) {
        let mut g = self.inner.lock().unwrap();
        g.circuit
            .insert((route.to_string(), destination.to_string()), state);
        *g.circuit_transitions
            .entry((route.to_string(), destination.to_string(), to.to_string()))
            .or_default() += 1;
    }

    /// A singleton job's tick: `ran`, `skipped_not_leader` or `failed` ([`crate::jobs`]).
    pub fn inc_job_run(&self, job: &str, outcome: &str) {
        *self
            .inner
            .lock()
            .unwrap()
            .job_runs
            .entry((job.to_string(), outcome.to_string()))
            .or_default() += 1;
    }

    /// Whether this instance leads a singleton job ([`crate::jobs`]).
    pub fn set_job_leader(&self, job: &str, leading: bool) {
        self.inner
            .lock()
            .unwrap()
            .job_leader
            .insert(job.to_string(), leading as u8);
    }

    /// Ticks of a singleton job with this outcome so far.
    pub fn job_runs(&self, job: &str, outcome: &str) -> u64 {
        self.inner
            .lock()
            .unwrap()
            .job_runs
            .get(&(job.to_string(), outcome.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// The leader gauge of a job (`None` before the job started).
    pub fn job_leader(&self, job: &str) -> Option<bool> {
        self.inner
            .lock()
            .unwrap()
            .job_leader
            .get(job)
            .map(|v| *v == 1)
    }

    /// How many times circuits entered state `to`, over all routes (the demo's summary).
    pub fn circuit_transitions_total(&self, to: &str) -> u64 {
        self.inner
            .lock()
            .unwrap()
            .circuit_transitions
            .iter()
            .filter(|((_, _, t), _)| t == to)
            .map(|(_, v)| *v)
            .sum()
    }

    /// A counter's value, for tests and the demo summary.
    pub fn outcome_count(&self, route: &str, outcome: &str) -> u64 {
        self.inner
            .lock()
            .unwrap()
            .outcomes
            .iter()
            .filter(|((r, o, _), _)| r == route && o == outcome)
            .map(|(_, v)| *v)
            .sum()
    }

    /// Sum of an outcome over all routes.
    pub fn outcome_total(&self, outcome: &str) -> u64 {
        self.inner
            .lock()
            .unwrap()
            .outcomes
            .iter()
            .filter(|((_, o, _), _)| o == outcome)
            .map(|(_, v)| *v)
            .sum()
    }

    /// A route's counts since start (for `/api/v1/routes`).
    pub fn route_counts(&self, route: &str) -> RouteCounts {
        let g = self.inner.lock().unwrap();
        let mut c = RouteCounts {
            messages_in: g.messages_in.get(route).copied().unwrap_or(0),
            ..Default::default()
        };
        for ((r, o, _), v) in &g.outcomes {
            if r == route {
                *c.outcomes.entry(o.clone()).or_default() += v;
            }
        }
        c
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let g = self.inner.lock().unwrap();
        let mut out = String::new();
        family(
            &mut out,
            "gateway_messages_in_total",
            "counter",
            "Envelopes accepted and queued, per route and destination adapter.",
        );
        for (r, v) in &g.messages_in {
            let _ = writeln!(
                out,
                "gateway_messages_in_total{{route=\"{}\",adapter=\"{}\"}} {v}",
                esc(r),
                esc(g.adapter(r))
            );
        }
        family(
            &mut out,
            "gateway_messages_out_total",
            "counter",
            "Envelopes delivered to (accepted by) the destination, per route and adapter.",
        );
        let mut out_counts: BTreeMap<&str, u64> = BTreeMap::new();
        for ((r, o, _), v) in &g.outcomes {
            if o == "delivered" {
                *out_counts.entry(r).or_default() += v;
            }
        }
        for (r, v) in out_counts {
            let _ = writeln!(
                out,
                "gateway_messages_out_total{{route=\"{}\",adapter=\"{}\"}} {v}",
                esc(r),
                esc(g.adapter(r))
            );
        }
        family(
            &mut out,
            "gateway_outcomes_total",
            "counter",
            "Delivery outcomes per route, adapter, outcome and reason.",
        );
        for ((r, o, why), v) in &g.outcomes {
            let _ = writeln!(
                out,
                "gateway_outcomes_total{{route=\"{}\",adapter=\"{}\",outcome=\"{}\",reason=\"{}\"}} {v}",
                esc(r),
                esc(g.adapter(r)),
                esc(o),
                esc(why)
            );
        }
        family(
            &mut out,
            "gateway_inbound_requests_total",
            "counter",
            "Inbound requests per source and HTTP status.",
        );
        for ((s, st), v) in &g.inbound {
            let _ = writeln!(
                out,
                "gateway_inbound_requests_total{{source=\"{}\",status=\"{st}\"}} {v}",
                esc(s)
            );
        }
        family(
            &mut out,
            "gateway_delivery_seconds",
            "histogram",
            "Time of one delivery attempt to the destination.",
        );
        for (r, h) in &g.latency {
            let labels = format!("route=\"{}\",adapter=\"{}\"", esc(r), esc(g.adapter(r)));
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "gateway_delivery_seconds_bucket{{{labels},le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "gateway_delivery_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "gateway_delivery_seconds_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(
                out,
                "gateway_delivery_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        family(
            &mut out,
            "gateway_message_age_seconds",
            "gauge",
            "Age since acceptance of the last message each route picked up (how far behind it runs).",
        );
        for (r, v) in &g.age {
            let _ = writeln!(
                out,
                "gateway_message_age_seconds{{route=\"{}\",adapter=\"{}\"}} {v}",
                esc(r),
                esc(g.adapter(r))
            );
        }
        family(
            &mut out,
            "gateway_token_refresh_failures_total",
            "counter",
            "Failed token refreshes (OAuth2, session logins) per adapter.",
        );
        for (a, v) in &g.token_refresh_failures {
            let _ = writeln!(
                out,
                "gateway_token_refresh_failures_total{{adapter=\"{}\"}} {v}",
                esc(a)
            );
        }
        family(
            &mut out,
            "gateway_certificate_expiry_days",
            "gauge",
            "Days until a configured certificate expires, per signing profile and certificate.",
        );
        for ((p, c), v) in &g.cert_days {
            let _ = writeln!(
                out,
                "gateway_certificate_expiry_days{{profile=\"{}\",cert=\"{}\"}} {v}",
                esc(p),
                esc(c)
            );
        }
        family(
            &mut out,
            "gateway_circuit_state",
            "gauge",
            "Circuit breaker state per route and destination: 0 closed, 1 half-open (probing), 2 open (deliveries deferred).",
        );
        for ((r, d), v) in &g.circuit {
            let _ = writeln!(
                out,
                "gateway_circuit_state{{route=\"{}\",destination=\"{}\"}} {v}",
                esc(r),
                esc(d)
            );
        }
        family(
            &mut out,
            "gateway_circuit_transitions_total",
            "counter",
            "Circuit breaker state changes per route, destination and state entered.",
        );
        for ((r, d, to), v) in &g.circuit_transitions {
            let _ = writeln!(
                out,
                "gateway_circuit_transitions_total{{route=\"{}\",destination=\"{}\",to=\"{}\"}} {v}",
                esc(r),
                esc(d),
                esc(to)
            );
        }
        family(
            &mut out,
            "gateway_job_runs_total",
            "counter",
            "Ticks of singleton jobs by outcome: ran, skipped_not_leader (another instance leads), failed.",
        );
        for ((j, o), v) in &g.job_runs {
            let _ = writeln!(
                out,
                "gateway_job_runs_total{{job=\"{}\",outcome=\"{}\"}} {v}",
                esc(j),
                esc(o)
            );
        }
        family(
            &mut out,
            "gateway_job_leader",
            "gauge",
            "1 while this instance leads the singleton job (runs it), 0 on standby.",
        );
        for (j, v) in &g.job_leader {
            let _ = writeln!(out, "gateway_job_leader{{job=\"{}\"}} {v}", esc(j));
        }
        drop(g);
        out.push_str(&crate::evidence::tsa::render_metrics());
        for r in self.extra.lock().unwrap().iter() {
            out.push_str(&r());
        }
        out
    }
}

/// The `# HELP` and `# TYPE` lines of a family.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
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
                "gateway_delivery_seconds_bucket{route=\"sync\",adapter=\"dvcqg\",le=\"0.005\"} 1"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "gateway_delivery_seconds_bucket{route=\"sync\",adapter=\"dvcqg\",le=\"0.001\"} 0"
            ),
            "{t}"
        );
        assert_eq!(m.outcome_count("sync", "delivered"), 2);
        assert_eq!(m.route_counts("sync").outcomes["delivered"], 2);
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
}
