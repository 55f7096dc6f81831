//! `[circuit]`: the circuit breaker of every route (each route has its own; see
//! `src/circuit.rs`).

use serde::Deserialize;

use super::defaults;
use super::duration::Dur;

/// The circuit breaker of each route (see `src/circuit.rs`): when at least `failure_percent`
/// % of at least `min_calls` exchanges in the last `window` failed (transport errors,
/// timeouts, 5xx; never 429 or a business refusal), the route stops calling its destination
/// for `open_for` (nothing is lost: the deliveries wait), then lets `probes` calls through.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct CircuitSection {
    /// Share (%) of failed exchanges in the window that opens the circuit, 1 to 100. Default 50.
    #[serde(default = "d_circuit_failure_percent")]
    pub failure_percent: u32,
    /// Fewest exchanges in the window before the rate counts; 0 = no breaker. Default 20.
    #[serde(default = "d_circuit_min_calls")]
    pub min_calls: u32,
    /// The sliding window. Default 10s.
    #[serde(default = "d_circuit_window")]
    pub window: Dur,
    /// How long an open circuit keeps away from the destination before probing. Default 30s.
    #[serde(default = "d_circuit_open_for")]
    pub open_for: Dur,
    /// Probes when half-open; that many healthy answers close it. Default 3.
    #[serde(default = "d_circuit_probes")]
    pub probes: u32,
}

impl Default for CircuitSection {
    fn default() -> Self {
        Self {
            failure_percent: d_circuit_failure_percent(),
            min_calls: d_circuit_min_calls(),
            window: d_circuit_window(),
            open_for: d_circuit_open_for(),
            probes: d_circuit_probes(),
        }
    }
}

fn d_circuit_failure_percent() -> u32 {
    defaults::CIRCUIT_FAILURE_PERCENT
}
fn d_circuit_min_calls() -> u32 {
    defaults::CIRCUIT_MIN_CALLS
}
fn d_circuit_window() -> Dur {
    Dur(defaults::CIRCUIT_WINDOW)
}
fn d_circuit_probes() -> u32 {
    defaults::CIRCUIT_PROBES
}
fn d_circuit_open_for() -> Dur {
    Dur(defaults::CIRCUIT_OPEN_FOR)
}

/// Check `[circuit]` (only while the breaker is on).
pub(super) fn validate(c: &CircuitSection, p: &mut impl FnMut(String, String, &str)) {
    if c.min_calls > 0 {
        if c.open_for.0.is_zero() {
            p(
                "circuit.open_for".into(),
                "must be more than 0 while the breaker is on".into(),
                "set a cool-down such as 30s, or circuit.min_calls = 0 to turn the breaker off",
            );
        }
        if c.window.0.is_zero() {
            p(
                "circuit.window".into(),
                "must be more than 0 while the breaker is on".into(),
                "set a window such as 10s",
            );
        }
        if !(1..=100).contains(&c.failure_percent) {
            p(
                "circuit.failure_percent".into(),
                format!("{} is not a share from 1 to 100", c.failure_percent),
                "set a share such as 50",
            );
        }
        if c.probes == 0 {
            p(
                "circuit.probes".into(),
                "must be at least 1".into(),
                "set a few probes, such as 3",
            );
        }
    }
}
