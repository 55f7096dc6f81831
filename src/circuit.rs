//! A circuit breaker per route (and so per destination): stop calling a destination that keeps
//! failing, and try it again with one probe after a cool-down.
//!
//! # Invariants
//! - **Nothing is lost.** An open circuit does not refuse messages: the pipeline defers them
//!   through the normal durable retry path (the broker's delayed redelivery) without calling
//!   the destination. A deferral is not an attempt: it does not use the retry budget's
//!   attempts (`x-gw-deferred` counts them apart), and the ledger records no attempt for it.
//! - **Closed → open** after `failures` consecutive retryable failures (timeouts, connection
//!   errors, 5xx, 429, transient body errors). Any answer that shows the destination works —
//!   delivered, superseded, or a permanent refusal of the content — resets the count.
//! - **Open → half-open** once `open_for` has passed: the next delivery is let through as
//!   the single probe; every other delivery is deferred while it runs.
//! - **Half-open → closed** when the probe succeeds, **→ open** (another `open_for`) when it
//!   fails. A probe that ends without a result (a panic, a shutdown) frees the probe slot,
//!   so the circuit never stays stuck half-open.
//! - `failures = 0` turns the breaker off (always closed).
//! - State changes are counted (`gateway_circuit_transitions_total`) and the state is a gauge
//!   (`gateway_circuit_state`: 0 closed, 1 half-open, 2 open), labelled by route and
//!   destination only.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::config::CircuitSection;
use crate::metrics::Metrics;

/// A breaker's state, as the gauge and the ops API show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    HalfOpen,
    Open,
}

impl State {
    /// The gauge value: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> u8 {
        match self {
            State::Closed => 0,
            State::HalfOpen => 1,
            State::Open => 2,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::HalfOpen => "half_open",
            State::Open => "open",
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed { consecutive: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

impl Inner {
    fn state(&self) -> State {
        match self {
            Inner::Closed { .. } => State::Closed,
            Inner::Open { .. } => State::Open,
            Inner::HalfOpen { .. } => State::HalfOpen,
        }
    }
}

/// The breaker of one route.
pub struct Circuit {
    route: String,
    destination: String,
    failures: u32,
    open_for: Duration,
    inner: Mutex<Inner>,
    metrics: Arc<Metrics>,
}

/// Leave to call the destination. Report how it went with [`Permit::succeeded`] or
/// [`Permit::failed`]; dropping it unreported frees a probe slot and changes nothing else.
pub struct Permit<'a> {
    circuit: &'a Circuit,
    probe: bool,
    reported: bool,
}

impl Circuit {
    pub fn new(
        route: &str,
        destination: &str,
        cfg: &CircuitSection,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.set_circuit_state(route, destination, State::Closed.gauge());
        Circuit {
            route: route.to_string(),
            destination: destination.to_string(),
            failures: cfg.failures,
            open_for: cfg.open_for.0,
            inner: Mutex::new(Inner::Closed { consecutive: 0 }),
            metrics,
        }
    }

    pub fn state(&self) -> State {
        self.inner.lock().unwrap().state()
    }

    /// May a delivery call the destination now? `Err(wait)`: defer it by about `wait`.
    pub fn admit(&self) -> Result<Permit<'_>, Duration> {
        if self.failures == 0 {
            return Ok(self.permit(false));
        }
        let mut g = self.inner.lock().unwrap();
        match *g {
            Inner::Closed { .. } => Ok(self.permit(false)),
            Inner::Open { until } => {
                let now = Instant::now();
                if now < until {
                    return Err(until - now);
                }
                self.change(&mut g, Inner::HalfOpen { probing: true });
                Ok(self.permit(true))
            }
            Inner::HalfOpen { probing: true } => Err(self.probe_wait()),
            Inner::HalfOpen { probing: false } => {
                *g = Inner::HalfOpen { probing: true };
                Ok(self.permit(true))
            }
        }
    }

    /// How long a delivery waits while a probe runs: a fraction of the cool-down, so a
    /// successful probe is followed quickly.
    fn probe_wait(&self) -> Duration {
        (self.open_for / 4).clamp(Duration::from_millis(50), Duration::from_secs(5))
    }

    fn permit(&self, probe: bool) -> Permit<'_> {
        Permit {
            circuit: self,
            probe,
            reported: false,
        }
    }

    fn change(&self, g: &mut Inner, to: Inner) {
        let from = g.state();
        *g = to;
        let now = g.state();
        if from != now {
            self.metrics.circuit_transition(
                &self.route,
                &self.destination,
                now.gauge(),
                now.as_str(),
            );
            match now {
                State::Open => {
                    warn!(route = %self.route, destination = %self.destination, open_for_ms = self.open_for.as_millis() as u64, "circuit opened: deliveries are deferred")
                }
                _ => {
                    info!(route = %self.route, destination = %self.destination, state = now.as_str(), "circuit state changed")
                }
            }
        }
    }

    fn report(&self, probe: bool, ok: bool) {
        if self.failures == 0 {
            return;
        }
        let mut g = self.inner.lock().unwrap();
        if ok {
            // The destination answered: whatever the state, it works.
            self.change(&mut g, Inner::Closed { consecutive: 0 });
            return;
        }
        match *g {
            Inner::Closed { consecutive } => {
                let n = consecutive + 1;
                if n >= self.failures {
                    let until = Instant::now() + self.open_for;
                    self.change(&mut g, Inner::Open { until });
                } else {
                    *g = Inner::Closed { consecutive: n };
                }
            }
            Inner::HalfOpen { .. } if probe => {
                let until = Instant::now() + self.open_for;
                self.change(&mut g, Inner::Open { until });
            }
            // A call that started before the circuit opened, failing late: already counted.
            _ => {}
        }
    }

    fn abandon(&self, probe: bool) {
        if !probe {
            return;
        }
        let mut g = self.inner.lock().unwrap();
        if let Inner::HalfOpen { probing: true } = *g {
            *g = Inner::HalfOpen { probing: false };
        }
    }
}

impl Permit<'_> {
    /// The destination answered in a way that shows it works (delivered, superseded, or a
    /// permanent refusal of the content).
    pub fn succeeded(mut self) {
        self.reported = true;
        self.circuit.report(self.probe, true);
    }
    /// A retryable failure (timeout, connection error, 5xx, 429, transient body error).
    pub fn failed(mut self) {
        self.reported = true;
        self.circuit.report(self.probe, false);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.circuit.abandon(self.probe);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dur;

    fn circuit(failures: u32, open_for: Duration) -> Circuit {
        Circuit::new(
            "r",
            "d",
            &CircuitSection {
                failures,
                open_for: Dur(open_for),
            },
            Arc::new(Metrics::new()),
        )
    }

    #[test]
    fn opens_after_consecutive_failures_and_probes_once() {
        let c = circuit(3, Duration::from_millis(40));
        c.admit().unwrap().failed();
        c.admit().unwrap().failed();
        c.admit().unwrap().succeeded(); // resets the count
        for _ in 0..2 {
            c.admit().unwrap().failed();
        }
        assert_eq!(c.state(), State::Closed);
        c.admit().unwrap().failed();
        assert_eq!(c.state(), State::Open);
        let wait = c.admit().err().expect("open: deferred");
        assert!(wait <= Duration::from_millis(40));
        std::thread::sleep(Duration::from_millis(50));
        let probe = c.admit().expect("the probe goes through");
        assert_eq!(c.state(), State::HalfOpen);
        assert!(c.admit().is_err(), "one probe at a time");
        probe.failed();
        assert_eq!(c.state(), State::Open, "a failed probe reopens");
        std::thread::sleep(Duration::from_millis(50));
        let probe = c.admit().unwrap();
        drop(probe); // abandoned: the slot is free again
        assert_eq!(c.state(), State::HalfOpen);
        c.admit().expect("a new probe").succeeded();
        assert_eq!(c.state(), State::Closed);
        let m = c.metrics.render();
        assert!(
            m.contains("gateway_circuit_state{route=\"r\",destination=\"d\"} 0"),
            "{m}"
        );
        assert!(
            m.contains(
                "gateway_circuit_transitions_total{route=\"r\",destination=\"d\",to=\"open\"} 2"
            ),
            "{m}"
        );
    }

    #[test]
    fn zero_failures_turns_it_off() {
        let c = circuit(0, Duration::from_secs(60));
        for _ in 0..100 {
            c.admit().unwrap().failed();
        }
        assert_eq!(c.state(), State::Closed);
    }
}
