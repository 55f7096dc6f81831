//! Process metrics, rendered in the Prometheus text format on the ops listener.
//!
//! # Invariants
//! - Label values come from bounded sets only: route and adapter names (configuration),
//!   outcomes and [`crate::retry::Reason`] labels. Never a dossier code, never personal data.
//! - Counters only go up; the render is a consistent snapshot per metric family.

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
    /// route → accepted count
    messages_in: BTreeMap<String, u64>,
    /// (route, outcome, reason) → count
    outcomes: BTreeMap<(String, String, String), u64>,
    /// (source, status) → count
    inbound: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
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

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let g = self.inner.lock().unwrap();
        let mut out = String::new();
        out.push_str("# HELP gateway_messages_in_total Envelopes accepted and queued, per route.\n# TYPE gateway_messages_in_total counter\n");
        for (r, v) in &g.messages_in {
            let _ = writeln!(out, "gateway_messages_in_total{{route=\"{}\"}} {v}", esc(r));
        }
        out.push_str("# HELP gateway_outcomes_total Delivery outcomes per route, outcome and reason.\n# TYPE gateway_outcomes_total counter\n");
        for ((r, o, why), v) in &g.outcomes {
            let _ = writeln!(
                out,
                "gateway_outcomes_total{{route=\"{}\",outcome=\"{}\",reason=\"{}\"}} {v}",
                esc(r),
                esc(o),
                esc(why)
            );
        }
        out.push_str("# HELP gateway_inbound_requests_total Inbound requests per source and HTTP status.\n# TYPE gateway_inbound_requests_total counter\n");
        for ((s, st), v) in &g.inbound {
            let _ = writeln!(
                out,
                "gateway_inbound_requests_total{{source=\"{}\",status=\"{st}\"}} {v}",
                esc(s)
            );
        }
        out.push_str("# HELP gateway_delivery_seconds Time of one delivery attempt to the destination.\n# TYPE gateway_delivery_seconds histogram\n");
        for (r, h) in &g.latency {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "gateway_delivery_seconds_bucket{{route=\"{}\",le=\"{b}\"}} {}",
                    esc(r),
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "gateway_delivery_seconds_bucket{{route=\"{}\",le=\"+Inf\"}} {}",
                esc(r),
                h.count
            );
            let _ = writeln!(
                out,
                "gateway_delivery_seconds_sum{{route=\"{}\"}} {}",
                esc(r),
                h.sum
            );
            let _ = writeln!(
                out,
                "gateway_delivery_seconds_count{{route=\"{}\"}} {}",
                esc(r),
                h.count
            );
        }
        out
    }
}

fn esc(s: &str) -> String {
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
        m.inc_in("sync");
        m.inc_outcome("sync", "delivered", "accepted");
        m.inc_outcome("sync", "delivered", "accepted");
        m.observe_latency("sync", Duration::from_millis(3));
        let t = m.render();
        assert!(
            t.contains("gateway_messages_in_total{route=\"sync\"} 1"),
            "{t}"
        );
        assert!(t.contains("gateway_outcomes_total{route=\"sync\",outcome=\"delivered\",reason=\"accepted\"} 2"), "{t}");
        assert!(
            t.contains("gateway_delivery_seconds_bucket{route=\"sync\",le=\"0.005\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("gateway_delivery_seconds_bucket{route=\"sync\",le=\"0.001\"} 0"),
            "{t}"
        );
        assert_eq!(m.outcome_count("sync", "delivered"), 2);
    }
}
