//! The signing flow's metrics, rendered into `/metrics` (OpenMetrics text):
//!
//! - `gateway_signature_requests{service,state}` (gauge): requests per service and state, as
//!   the store counted them at the end of the last round;
//! - `gateway_signature_confirm_seconds{service}` (histogram): from the request's acceptance
//!   to the service returning the official's signature;
//! - `gateway_signature_outcomes_total{service,outcome,reason}` (counter): published outcomes
//!   (`completed`, `rejected`, `expired`, `failed`, `cancelled`) by reason kind
//!   (`bad_signature`, `in_doubt`, …; `none` for completed): expiries and refusals by reason;
//! - `gateway_signature_polls_total{service}` (counter): status calls made to the service
//!   (what its quota is spent on);
//! - `gateway_signature_cancel_notices_total{service,reason}` (counter): cancels the service
//!   was told of, by what it answered (`cancelled`, `not_supported_by_service`, `gave_up`, …).
//!
//! # Invariants
//! - Labels are configured service names and fixed codes only: never an official's user id
//!   (it may be a citizen id), a dossier code or a reason's words.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use gw_store::signatures::StateCount;

/// Upper bounds of the confirmation histogram, seconds.
pub const CONFIRM_BUCKETS: [f64; 9] = [1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; CONFIRM_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Inner {
    by_state: Vec<StateCount>,
    confirm: BTreeMap<String, Histogram>,
    outcomes: BTreeMap<(String, String, String), u64>,
    polls: BTreeMap<String, u64>,
    cancel_notices: BTreeMap<(String, String), u64>,
}

/// The flow's counters (see the module doc).
#[derive(Default)]
pub struct SignatureMetrics {
    inner: Mutex<Inner>,
}

impl SignatureMetrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_by_state(&self, counts: Vec<StateCount>) {
        self.lock().by_state = counts;
    }

    pub fn observe_confirm(&self, service: &str, seconds: f64) {
        let mut m = self.lock();
        let h = m.confirm.entry(service.to_owned()).or_default();
        for (i, b) in CONFIRM_BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    pub fn count_outcome(&self, service: &str, outcome: &str, reason: &str) {
        *self
            .lock()
            .outcomes
            .entry((service.into(), outcome.into(), reason.into()))
            .or_default() += 1;
    }

    pub fn count_polls(&self, service: &str, n: u64) {
        if n > 0 {
            *self.lock().polls.entry(service.into()).or_default() += n;
        }
    }

    pub fn count_cancel_notice(&self, service: &str, reason: &str) {
        *self
            .lock()
            .cancel_notices
            .entry((service.into(), reason.into()))
            .or_default() += 1;
    }

    /// Status calls counted for `service`.
    pub fn polls(&self, service: &str) -> u64 {
        self.lock().polls.get(service).copied().unwrap_or(0)
    }

    /// Outcomes counted for `service` and `outcome`, every reason.
    pub fn outcomes(&self, service: &str, outcome: &str) -> u64 {
        self.lock()
            .outcomes
            .iter()
            .filter(|((s, o, _), _)| s == service && o == outcome)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn render(&self) -> String {
        use crate::telemetry::metrics::{esc, family};
        let m = self.lock();
        let mut out = String::new();
        family(
            &mut out,
            "gateway_signature_requests",
            "gauge",
            "Remote signing requests per service and state (at the last round).",
        );
        for c in &m.by_state {
            let _ = writeln!(
                out,
                "gateway_signature_requests{{service=\"{}\",state=\"{}\"}} {}",
                esc(&c.service),
                c.state.as_str(),
                c.count
            );
        }
        family(
            &mut out,
            "gateway_signature_confirm_seconds",
            "histogram",
            "From a signing request's acceptance to the official's signature.",
        );
        for (service, h) in &m.confirm {
            let s = esc(service);
            for (i, b) in CONFIRM_BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "gateway_signature_confirm_seconds_bucket{{service=\"{s}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "gateway_signature_confirm_seconds_bucket{{service=\"{s}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "gateway_signature_confirm_seconds_sum{{service=\"{s}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "gateway_signature_confirm_seconds_count{{service=\"{s}\"}} {}",
                h.count
            );
        }
        family(
            &mut out,
            "gateway_signature_outcomes_total",
            "counter",
            "Published outcomes of signing requests, by reason kind.",
        );
        for ((s, o, r), n) in &m.outcomes {
            let _ = writeln!(
                out,
                "gateway_signature_outcomes_total{{service=\"{}\",outcome=\"{}\",reason=\"{}\"}} {n}",
                esc(s),
                esc(o),
                esc(r)
            );
        }
        family(
            &mut out,
            "gateway_signature_polls_total",
            "counter",
            "Status calls made to remote signing services.",
        );
        for (s, n) in &m.polls {
            let _ = writeln!(
                out,
                "gateway_signature_polls_total{{service=\"{}\"}} {n}",
                esc(s)
            );
        }
        family(
            &mut out,
            "gateway_signature_cancel_notices_total",
            "counter",
            "Cancels the remote signing service was told of, by its answer.",
        );
        for ((s, r), n) in &m.cancel_notices {
            let _ = writeln!(
                out,
                "gateway_signature_cancel_notices_total{{service=\"{}\",reason=\"{}\"}} {n}",
                esc(s),
                esc(r)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_buckets_cumulatively_and_no_official() {
        let m = SignatureMetrics::default();
        m.observe_confirm("smartca", 3.0);
        m.observe_confirm("smartca", 100.0);
        m.count_outcome("smartca", "failed", "bad_signature");
        let text = m.render();
        assert!(text
            .contains("gateway_signature_confirm_seconds_bucket{service=\"smartca\",le=\"5\"} 1"));
        assert!(text.contains(
            "gateway_signature_confirm_seconds_bucket{service=\"smartca\",le=\"120\"} 2"
        ));
        assert!(text.contains("gateway_signature_confirm_seconds_count{service=\"smartca\"} 2"));
        assert!(text.contains("reason=\"bad_signature\"} 1"));
        assert_eq!(m.outcomes("smartca", "failed"), 1);
        m.count_polls("smartca", 3);
        m.count_polls("smartca", 0);
        m.count_cancel_notice("smartca", "not_supported_by_service");
        let text = m.render();
        assert!(text.contains("gateway_signature_polls_total{service=\"smartca\"} 3"));
        assert!(text.contains("gateway_signature_cancel_notices_total{service=\"smartca\",reason=\"not_supported_by_service\"} 1"));
        assert_eq!(m.polls("smartca"), 3);
    }
}
