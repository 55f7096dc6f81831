//! A circuit breaker per route (and so per destination): stop calling a destination that is
//! down, and try it again with a few probes after a cool-down.
//!
//! # Invariants
//! - **It measures the destination, not the traffic.** Its input is one [`Health`] per HTTP
//!   exchange (a batch of twenty items is one exchange: one item carries its health, the
//!   others are silent). Only transport errors, timeouts and 5xx count as failures; 429 is
//!   back-pressure (the adapter slows down, the circuit does not open); a business refusal or
//!   an expired session is the answer of a working service.
//! - **Closed → open** when, over the sliding `window`, at least `min_calls` exchanges were
//!   measured and at least `failure_percent` % of them failed. A destination failing a share
//!   of its calls below that keeps being called (retries take care of those calls); an outage
//!   opens it within a window of traffic.
//! - **Nothing is lost while open.** The route stops taking deliveries from its queues (the
//!   backlog stays where it is) and the deliveries already taken wait in their lanes for the
//!   circuit (a wait is not an attempt: no ledger record, no budget used); one held longer
//!   than [`MAX_HOLD`] is deferred through the durable retry path so the broker never sees a
//!   delivery held for long.
//! - **Open → half-open** once `open_for` has passed: up to `probes` deliveries go through as
//!   probes. **Half-open → closed** when `probes` exchanges answered as a working service
//!   does; **→ open** again (another `open_for`) on the first probe that fails. A probe that
//!   ends without a health signal (dropped, a 429, a shared batch) frees its slot, so the
//!   circuit never stays stuck half-open.
//! - On close the window starts empty, and the deliveries that waited re-enter through the
//!   lanes (at most `concurrency` per partition at once) while the queues are read again at
//!   the prefetch rate: the backlog is not released all at once.
//! - `min_calls = 0` turns the breaker off (always closed).
//! - State changes are counted (`gateway_circuit_transitions_total`) and the state is a gauge
//!   (`gateway_circuit_state`: 0 closed, 1 half-open, 2 open), labelled by route and
//!   destination only.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::{info, warn};

use crate::config::CircuitSection;
use crate::model::outcome::Health;
use crate::telemetry::metrics::Metrics;

/// The longest a lane holds a delivery waiting for the circuit before handing it back to the
/// broker's durable retry path (far below RabbitMQ's consumer timeout).
pub const MAX_HOLD: Duration = Duration::from_secs(60);

/// How many slices the sliding window is cut into.
const SLICES: u32 = 10;

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

/// Exchanges measured in one slice of the window.
#[derive(Debug, Clone, Copy)]
struct Slice {
    start: Instant,
    calls: u32,
    failed: u32,
}

#[derive(Debug)]
enum Inner {
    Closed { slices: VecDeque<Slice> },
    Open { until: Instant },
    HalfOpen { in_flight: u32, healthy: u32 },
}

impl Inner {
    fn closed() -> Inner {
        Inner::Closed {
            slices: VecDeque::new(),
        }
    }
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
    failure_percent: u32,
    min_calls: u32,
    window: Duration,
    open_for: Duration,
    probes: u32,
    inner: Mutex<Inner>,
    /// Woken on every state change, so waiting lanes move at once.
    changed: Notify,
    metrics: Arc<Metrics>,
}

/// Leave to call the destination. Report the exchange's [`Health`] with [`Permit::report`];
/// dropping it unreported frees a probe slot and changes nothing else.
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
            failure_percent: cfg.failure_percent.clamp(1, 100),
            min_calls: cfg.min_calls,
            window: cfg.window.0.max(Duration::from_millis(10)),
            open_for: cfg.open_for.0,
            probes: cfg.probes.max(1),
            inner: Mutex::new(Inner::closed()),
            changed: Notify::new(),
            metrics,
        }
    }

    fn off(&self) -> bool {
        self.min_calls == 0
    }

    pub fn state(&self) -> State {
        self.inner.lock().unwrap().state()
    }

    /// May a delivery call the destination now? `Err(wait)`: not before about `wait`
    /// (sooner if the state changes, see [`Circuit::changed`]).
    pub fn admit(&self) -> Result<Permit<'_>, Duration> {
        if self.off() {
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
                self.change(
                    &mut g,
                    Inner::HalfOpen {
                        in_flight: 1,
                        healthy: 0,
                    },
                );
                Ok(self.permit(true))
            }
            Inner::HalfOpen {
                ref mut in_flight, ..
            } => {
                if *in_flight < self.probes {
                    *in_flight += 1;
                    Ok(self.permit(true))
                } else {
                    Err(self.probe_wait())
                }
            }
        }
    }

    /// How long the route stays away from its queues: until the probes may go, or zero
    /// when the circuit lets deliveries through (closed, or half-open with a free slot).
    pub fn paused_for(&self) -> Duration {
        if self.off() {
            return Duration::ZERO;
        }
        match *self.inner.lock().unwrap() {
            Inner::Open { until } => until.saturating_duration_since(Instant::now()),
            _ => Duration::ZERO,
        }
    }

    /// Resolves at the next state change.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// How long a delivery waits while the probes run, at most (a state change wakes it).
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
                    warn!(route = %self.route, destination = %self.destination, open_for_ms = self.open_for.as_millis() as u64, "circuit opened: the destination is not called until the probes find it back")
                }
                _ => {
                    info!(route = %self.route, destination = %self.destination, state = now.as_str(), "circuit state changed")
                }
            }
            self.changed.notify_waiters();
        }
    }

    fn open(&self, g: &mut Inner) {
        let until = Instant::now() + self.open_for;
        self.change(g, Inner::Open { until });
    }

    fn report(&self, probe: bool, health: Health) {
        if self.off() {
            return;
        }
        let mut g = self.inner.lock().unwrap();
        match &mut *g {
            Inner::Closed { slices } => {
                if probe || health == Health::Silent {
                    // A probe answering after the circuit closed is already counted.
                    return;
                }
                let now = Instant::now();
                let slice = self.window / SLICES;
                while slices
                    .front()
                    .is_some_and(|s| now.duration_since(s.start) >= self.window)
                {
                    slices.pop_front();
                }
                if slices
                    .back()
                    .is_none_or(|s| now.duration_since(s.start) >= slice)
                {
                    slices.push_back(Slice {
                        start: now,
                        calls: 0,
                        failed: 0,
                    });
                }
                let s = slices.back_mut().expect("pushed");
                s.calls += 1;
                if health == Health::Down {
                    s.failed += 1;
                }
                let (calls, failed) = slices
                    .iter()
                    .fold((0u32, 0u32), |(c, f), s| (c + s.calls, f + s.failed));
                if health == Health::Down
                    && calls >= self.min_calls
                    && failed * 100 >= self.failure_percent * calls
                {
                    self.open(&mut g);
                }
            }
            Inner::HalfOpen { in_flight, healthy } if probe => {
                *in_flight = in_flight.saturating_sub(1);
                match health {
                    Health::Down => self.open(&mut g),
                    Health::Up => {
                        *healthy += 1;
                        if *healthy >= self.probes {
                            self.change(&mut g, Inner::closed());
                        }
                    }
                    Health::Silent => {}
                }
            }
            // A call that started before the circuit opened, answering late: the probes
            // decide now.
            _ => {}
        }
    }

    fn abandon(&self, probe: bool) {
        if !probe {
            return;
        }
        let mut g = self.inner.lock().unwrap();
        if let Inner::HalfOpen { in_flight, .. } = &mut *g {
            *in_flight = in_flight.saturating_sub(1);
        }
    }
}

impl Permit<'_> {
    /// Report what the exchange said about the destination.
    pub fn report(mut self, health: Health) {
        self.reported = true;
        self.circuit.report(self.probe, health);
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

    fn circuit(min_calls: u32, open_for: Duration) -> Circuit {
        Circuit::new(
            "r",
            "d",
            &CircuitSection {
                min_calls,
                open_for: Dur(open_for),
                ..CircuitSection::default()
            },
            Arc::new(Metrics::new()),
        )
    }

    fn report(c: &Circuit, h: Health, n: usize) {
        for _ in 0..n {
            c.admit().expect("admitted").report(h);
        }
    }

    #[test]
    fn a_failure_rate_over_the_window_opens_it_not_a_streak() {
        let c = circuit(20, Duration::from_millis(40));
        // A portal failing 40 % of its calls keeps being called: retries handle those.
        for _ in 0..10 {
            report(&c, Health::Down, 2);
            report(&c, Health::Up, 3);
        }
        assert_eq!(c.state(), State::Closed);
        // Too few calls measured: ten failures in a row do not open it on their own...
        let c = circuit(20, Duration::from_millis(40));
        report(&c, Health::Down, 10);
        assert_eq!(c.state(), State::Closed, "10 calls < min_calls");
        // ...and 429s and silent items are not failures at all.
        report(&c, Health::Silent, 100);
        assert_eq!(c.state(), State::Closed);
        // An outage: half of at least 20 calls failed.
        report(&c, Health::Down, 10);
        assert_eq!(c.state(), State::Open);
    }

    #[test]
    fn probes_close_it_and_a_failed_probe_reopens_it() {
        let c = circuit(4, Duration::from_millis(40));
        report(&c, Health::Down, 4);
        assert_eq!(c.state(), State::Open);
        let wait = c.admit().err().expect("open: wait");
        assert!(wait <= Duration::from_millis(40));
        assert!(c.paused_for() > Duration::ZERO);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(c.paused_for(), Duration::ZERO);
        let probes: Vec<_> = (0..3).map(|_| c.admit().expect("a probe")).collect();
        assert_eq!(c.state(), State::HalfOpen);
        assert!(c.admit().is_err(), "three probes at a time");
        let mut probes = probes.into_iter();
        probes.next().unwrap().report(Health::Up);
        probes.next().unwrap().report(Health::Down);
        assert_eq!(c.state(), State::Open, "a failed probe reopens");
        drop(probes);
        std::thread::sleep(Duration::from_millis(50));
        let p = c.admit().unwrap();
        drop(p); // abandoned: the slot is free again
        let p = c.admit().unwrap();
        p.report(Health::Silent); // a 429: frees the slot, proves nothing
        for _ in 0..2 {
            c.admit().unwrap().report(Health::Up);
        }
        assert_eq!(c.state(), State::HalfOpen, "two healthy probes of three");
        // A business refusal is the answer of a working portal: healthy.
        c.admit().unwrap().report(Health::Up);
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
    fn old_failures_leave_the_window() {
        let c = Circuit::new(
            "r",
            "d",
            &CircuitSection {
                min_calls: 4,
                window: Dur(Duration::from_millis(100)),
                ..CircuitSection::default()
            },
            Arc::new(Metrics::new()),
        );
        report(&c, Health::Down, 3);
        std::thread::sleep(Duration::from_millis(120));
        report(&c, Health::Up, 3);
        report(&c, Health::Down, 1);
        assert_eq!(c.state(), State::Closed, "1 of 4 in the window failed");
    }

    #[test]
    fn zero_min_calls_turns_it_off() {
        let c = circuit(0, Duration::from_secs(60));
        report(&c, Health::Down, 100);
        assert_eq!(c.state(), State::Closed);
    }

    #[test]
    fn the_shipped_default_needs_twenty_calls_at_half_failing() {
        let c = Circuit::new(
            "r",
            "d",
            &CircuitSection::default(),
            Arc::new(Metrics::new()),
        );
        report(&c, Health::Down, 19);
        assert_eq!(c.state(), State::Closed);
        report(&c, Health::Down, 1);
        assert_eq!(c.state(), State::Open);
        assert!(c.paused_for() > Duration::from_secs(25), "open for 30 s");
    }
}
