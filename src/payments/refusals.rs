//! Counting refused provider messages, and the per-minute sample that reaches the evidence log.
//!
//! # Invariants
//! - Every refusal is counted; at most [`REFUSED_EVIDENCE_PER_MINUTE`] per (provider, reason)
//!   a minute reach the evidence log, so a flood of forged callbacks cannot fill the disk.
//! - Labels are the provider's configured name and the bounded reason, never message data.

use std::collections::BTreeMap;

use super::hooks::RefusedBecause;

/// How many refused messages per (provider, reason) reach the evidence log in one minute;
/// beyond that they are only counted, so a flood of forged callbacks cannot fill the disk.
pub const REFUSED_EVIDENCE_PER_MINUTE: u32 = 10;

/// Counts of refused provider messages, and the per-minute sample that goes to the evidence
/// log. Labels are the provider's configured name and the bounded reason, never message data.
#[derive(Default)]
pub struct Refusals {
    inner: std::sync::Mutex<BTreeMap<(String, &'static str), RefusalCount>>,
}

#[derive(Default)]
struct RefusalCount {
    total: u64,
    unsampled: u64,
    minute: i64,
    in_minute: u32,
}

impl Refusals {
    /// Count one refusal at `now_ms`; whether it is in the evidence sample.
    pub fn admit(&self, provider: &str, because: RefusedBecause, now_ms: i64) -> bool {
        let mut g = self.inner.lock().expect("refusals lock");
        let c = g
            .entry((provider.to_string(), because.as_str()))
            .or_default();
        c.total += 1;
        let minute = now_ms.div_euclid(60_000);
        if c.minute != minute {
            c.minute = minute;
            c.in_minute = 0;
        }
        if c.in_minute < REFUSED_EVIDENCE_PER_MINUTE {
            c.in_minute += 1;
            true
        } else {
            c.unsampled += 1;
            false
        }
    }

    /// (refused, of which not written to the evidence log) for a provider and reason.
    pub fn count(&self, provider: &str, because: RefusedBecause) -> (u64, u64) {
        let g = self.inner.lock().expect("refusals lock");
        g.get(&(provider.to_string(), because.as_str()))
            .map(|c| (c.total, c.unsampled))
            .unwrap_or_default()
    }

    pub fn render(&self) -> String {
        use std::fmt::Write;
        let g = self.inner.lock().expect("refusals lock");
        let mut out = String::new();
        crate::telemetry::metrics::family(
            &mut out,
            "gateway_payment_refused_total",
            "counter",
            "Provider messages (callbacks, IPNs) refused: bad checksum, unknown order, wrong amount, ...",
        );
        for ((p, b), c) in g.iter() {
            let _ = writeln!(
                out,
                "gateway_payment_refused_total{{provider=\"{}\",because=\"{b}\"}} {}",
                crate::telemetry::metrics::esc(p),
                c.total
            );
        }
        crate::telemetry::metrics::family(
            &mut out,
            "gateway_payment_refused_unsampled_total",
            "counter",
            "Refused provider messages counted but not written to the evidence log (over the per-minute sample).",
        );
        for ((p, b), c) in g.iter() {
            let _ = writeln!(
                out,
                "gateway_payment_refused_unsampled_total{{provider=\"{}\",because=\"{b}\"}} {}",
                crate::telemetry::metrics::esc(p),
                c.unsampled
            );
        }
        out
    }
}
