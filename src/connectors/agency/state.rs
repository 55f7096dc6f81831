//! Whether a subscription is disabled, since when it has been failing, and what it delivered.
//!
//! # Invariants
//! - Disabled is a file, `<data_dir>/agencies/<name>.disabled` (JSON [`Disabled`]), written
//!   atomically: it survives a restart, and `gateway agencies enable` (another process)
//!   removes it; a running gateway re-reads it at most once a second while enabled, and at
//!   every delivery while disabled.
//! - Counters are per subscription name only (a metric label), never a person's data.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::model::time::now_ms;

/// Why and since when a subscription is disabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disabled {
    pub since_ms: i64,
    /// `gone` (the agency answered 410) or `failing` (no success for `disable_after`).
    pub reason: String,
}

/// The file of a subscription's disabled state.
pub fn disabled_path(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("agencies").join(format!("{name}.disabled"))
}

/// Read a subscription's disabled state (`None`: enabled).
pub fn read_disabled(data_dir: &Path, name: &str) -> Option<Disabled> {
    let text = std::fs::read(disabled_path(data_dir, name)).ok()?;
    // A file that does not parse still means disabled: never enable by accident.
    Some(serde_json::from_slice(&text).unwrap_or(Disabled {
        since_ms: 0,
        reason: "unreadable".into(),
    }))
}

/// Enable a subscription: remove its disabled file. Returns what it was, if it was disabled.
pub fn enable(data_dir: &Path, name: &str) -> std::io::Result<Option<Disabled>> {
    let was = read_disabled(data_dir, name);
    match std::fs::remove_file(disabled_path(data_dir, name)) {
        Ok(()) => Ok(was),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// One subscription's live state, shared by its lanes.
pub struct SubscriptionState {
    pub name: String,
    data_dir: PathBuf,
    cache: Mutex<(Option<Instant>, Option<Disabled>)>,
    /// Unix ms of the first failure since the last success (0: not failing).
    failing_since: AtomicI64,
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub refused: AtomicU64,
    pub disabled_total: AtomicU64,
    /// Age in ms of the last event attempted (how far behind the agency is).
    pub lag_ms: AtomicI64,
}

impl SubscriptionState {
    pub fn new(name: &str, data_dir: &Path) -> Self {
        SubscriptionState {
            name: name.into(),
            data_dir: data_dir.to_path_buf(),
            cache: Mutex::new((None, None)),
            failing_since: AtomicI64::new(0),
            delivered: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            disabled_total: AtomicU64::new(0),
            lag_ms: AtomicI64::new(0),
        }
    }

    /// The disabled state: while enabled, re-read from its file at most once a second (a
    /// disabling by another instance is seen within a second); while disabled, at every call
    /// (an `enable` followed at once by a replay finds it enabled).
    pub fn disabled(&self) -> Option<Disabled> {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.1.is_some() || c.0.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            *c = (
                Some(Instant::now()),
                read_disabled(&self.data_dir, &self.name),
            );
        }
        c.1.clone()
    }

    /// Disable it (idempotent). Returns `true` when this call disabled it.
    pub fn disable(&self, reason: &str) -> std::io::Result<bool> {
        if read_disabled(&self.data_dir, &self.name).is_some() {
            return Ok(false);
        }
        let d = Disabled {
            since_ms: now_ms(),
            reason: reason.into(),
        };
        let path = disabled_path(&self.data_dir, &self.name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("disabled.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&d).expect("serializes"))?;
        std::fs::rename(&tmp, &path)?;
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = (Some(Instant::now()), Some(d));
        self.disabled_total.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// A success: not failing any more.
    pub fn succeeded(&self) {
        self.failing_since.store(0, Ordering::Relaxed);
    }

    /// A failure at `now`: how long it has been failing.
    pub fn failed(&self, now: i64) -> Duration {
        let _ = self
            .failing_since
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        let since = self.failing_since.load(Ordering::Relaxed);
        Duration::from_millis((now - since).max(0) as u64)
    }
}

/// The families of every subscription's state, as OpenMetrics text.
pub fn render(states: &[std::sync::Arc<SubscriptionState>]) -> String {
    use crate::telemetry::metrics::{esc, family};
    let mut out = String::new();
    type Read = fn(&SubscriptionState) -> u64;
    let counters: [(&str, &str, Read); 4] = [
        (
            "gateway_subscription_delivered",
            "Pushes an agency accepted, per subscription.",
            |s| s.delivered.load(Ordering::Relaxed),
        ),
        (
            "gateway_subscription_retried",
            "Pushes to be retried (failed, 429), per subscription.",
            |s| s.retried.load(Ordering::Relaxed),
        ),
        (
            "gateway_subscription_refused",
            "Pushes refused or dead-lettered, per subscription.",
            |s| s.refused.load(Ordering::Relaxed),
        ),
        (
            "gateway_subscription_disablings",
            "Times a subscription was disabled (410 or failing too long).",
            |s| s.disabled_total.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, get) in counters {
        family(&mut out, name, "counter", help);
        for s in states {
            out.push_str(&format!(
                "{name}_total{{subscription=\"{}\"}} {}\n",
                esc(&s.name),
                get(s)
            ));
        }
    }
    family(
        &mut out,
        "gateway_subscription_disabled",
        "gauge",
        "1 while a subscription is disabled (nothing is pushed to it).",
    );
    for s in states {
        out.push_str(&format!(
            "gateway_subscription_disabled{{subscription=\"{}\"}} {}\n",
            esc(&s.name),
            i32::from(s.disabled().is_some())
        ));
    }
    family(
        &mut out,
        "gateway_subscription_lag_seconds",
        "gauge",
        "Age of the last event attempted to the agency (how far behind it is).",
    );
    for s in states {
        out.push_str(&format!(
            "gateway_subscription_lag_seconds{{subscription=\"{}\"}} {:.3}\n",
            esc(&s.name),
            s.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_survives_in_its_file_and_enable_clears_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = SubscriptionState::new("ioc", dir.path());
        assert_eq!(s.disabled(), None);
        assert!(s.disable("gone").unwrap());
        assert!(!s.disable("gone").unwrap(), "idempotent");
        assert_eq!(s.disabled().unwrap().reason, "gone");
        let again = SubscriptionState::new("ioc", dir.path());
        assert_eq!(again.disabled().unwrap().reason, "gone", "after a restart");
        assert_eq!(enable(dir.path(), "ioc").unwrap().unwrap().reason, "gone");
        assert_eq!(enable(dir.path(), "ioc").unwrap(), None);
        assert_eq!(SubscriptionState::new("ioc", dir.path()).disabled(), None);
        std::fs::create_dir_all(dir.path().join("agencies")).unwrap();
        std::fs::write(disabled_path(dir.path(), "x"), b"garbage").unwrap();
        assert!(
            read_disabled(dir.path(), "x").is_some(),
            "unreadable stays disabled"
        );
        let text = render(&[std::sync::Arc::new(s)]);
        assert!(
            text.contains("gateway_subscription_disablings_total{subscription=\"ioc\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn failing_since_the_first_failure_until_a_success() {
        let s = SubscriptionState::new("a", Path::new("/nonexistent"));
        assert_eq!(s.failed(1_000), Duration::ZERO);
        assert_eq!(s.failed(61_000), Duration::from_secs(60));
        s.succeeded();
        assert_eq!(s.failed(100_000), Duration::ZERO);
    }
}
