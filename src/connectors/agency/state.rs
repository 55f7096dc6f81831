//! Whether a subscription is disabled, since when it has been failing, what it delivered, how
//! far behind it is, and the progress of its last replay.
//!
//! # Invariants
//! - **The store holds the state, shared by every instance.** Disabled (why, since when) and
//!   failing since are rows of [`gw_store::subscriptions`] (migration 13): a restart does not
//!   reset the `disable_after` clock, and `gateway agencies enable` or the ops API (another
//!   process, another instance) enables it for all. A running gateway re-reads the row at most
//!   once a second while enabled and at every delivery while disabled.
//! - **Never enabled by accident.** A store that does not answer leaves the last state read in
//!   place (and is logged); a legacy file `<data_dir>/agencies/<name>.disabled` (before the
//!   state moved to the store) is adopted once, at the first read: written to the store as
//!   disabled (a file that does not parse counts as disabled), then renamed `.adopted`.
//! - **Lag is the oldest undelivered.** An attempted event stays pending (per dossier, its
//!   oldest `created_ms`) until a delivery of that dossier succeeds or it is settled without
//!   one (refused, dead-lettered while disabled); the lag is the age of the oldest pending one
//!   (0 when none). At most [`MAX_PENDING`] dossiers are tracked.
//! - Counters and gauges are per subscription name only (a metric label), never a person's
//!   data.
//! - **Every change is told once.** The store's transitions answer exactly one caller across
//!   every instance (`disable` that disabled it, `enable` that cleared it); that caller, and
//!   only it, hands a [`StateChange`] to the [`StateEvents`] set on the state (the running
//!   gateway publishes it as an operational event, `subscription.disabled` /
//!   `subscription.enabled`, see `app::agencies`). The event names the subscription, the
//!   reason and since when; it carries nothing of a person.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gw_store::subscriptions::SubscriptionStates;
use serde::Deserialize;
use serde_json::json;
use tracing::{info, warn};

use crate::model::envelope::Envelope;
use crate::model::events::EventKind;
use crate::model::time::{now_ms, rfc3339};

pub use gw_store::subscriptions::Disabled;

/// The most dossiers whose oldest undelivered event is tracked for the lag.
pub const MAX_PENDING: usize = 100_000;

/// The legacy file of a subscription's disabled state (before migration 13).
pub fn legacy_disabled_path(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("agencies").join(format!("{name}.disabled"))
}

#[derive(Deserialize)]
struct LegacyFile {
    since_ms: i64,
    reason: String,
}

/// Adopt a legacy disabled file into the store (once; the file is renamed `.adopted`).
/// Returns whether a file was adopted.
pub async fn adopt_legacy_file(
    states: &dyn SubscriptionStates,
    data_dir: &Path,
    name: &str,
) -> Result<bool, gw_store::StoreError> {
    let path = legacy_disabled_path(data_dir, name);
    let Ok(text) = std::fs::read(&path) else {
        return Ok(false);
    };
    // A file that does not parse still means disabled: never enable by accident.
    let f = serde_json::from_slice::<LegacyFile>(&text).unwrap_or(LegacyFile {
        since_ms: now_ms(),
        reason: "unreadable".into(),
    });
    states.disable(name, &f.reason, f.since_ms).await?;
    if let Err(e) = std::fs::rename(&path, path.with_extension("disabled.adopted")) {
        warn!(subscription = name, error = %e, "legacy disabled file adopted but not renamed");
    }
    info!(
        subscription = name,
        reason = %f.reason,
        "legacy disabled file adopted into the store"
    );
    Ok(true)
}

/// A change of a subscription's disabled state that this process made (see the module's
/// invariants: told once across every instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    /// It was disabled: why and since when.
    Disabled(Disabled),
    /// It was enabled at `at_ms`; `was` is the disabling that ended.
    Enabled { was: Disabled, at_ms: i64 },
}

impl StateChange {
    /// The event kind that tells it.
    pub fn kind(&self) -> EventKind {
        match self {
            StateChange::Disabled(_) => EventKind::SubscriptionDisabled,
            StateChange::Enabled { .. } => EventKind::SubscriptionEnabled,
        }
    }

    /// The operational event of `subscription`'s change: source [`crate::config::OPS_SOURCE`],
    /// key the subscription's name (its events keep their order), payload
    /// `{subscription, state, reason, since_ms, since[, enabled_ms, enabled]}` (times also as
    /// RFC 3339 UTC). Nothing of a person: the reason is the gateway's word (`gone`,
    /// `failing`, …), never an agency's answer.
    pub fn envelope(&self, subscription: &str) -> Envelope {
        let (state, was, enabled) = match self {
            StateChange::Disabled(d) => ("disabled", d, None),
            StateChange::Enabled { was, at_ms } => ("enabled", was, Some(*at_ms)),
        };
        let mut payload = json!({
            "subscription": subscription,
            "state": state,
            "reason": was.reason,
            "since_ms": was.since_ms,
            "since": rfc3339(was.since_ms),
        });
        if let Some(at) = enabled {
            payload["enabled_ms"] = json!(at);
            payload["enabled"] = json!(rfc3339(at));
        }
        Envelope::new(
            self.kind().as_str(),
            subscription,
            crate::config::OPS_SOURCE,
            payload,
        )
    }
}

/// Where a state's changes are told (the running gateway publishes them to the broker).
#[async_trait]
pub trait StateEvents: Send + Sync + 'static {
    /// `subscription` changed; failures are the teller's to log (the state is already
    /// stored).
    async fn changed(&self, subscription: &str, change: &StateChange);
}

/// The progress of a subscription's replay (the last one started by this instance).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplayProgress {
    /// `running`, `done` or `failed`.
    pub state: String,
    pub since_ms: i64,
    pub by: String,
    pub started_ms: i64,
    pub found: usize,
    pub done: usize,
    pub replayed: usize,
    pub already_settled: usize,
    /// Why it failed (`failed`).
    pub error: Option<String>,
}

struct Cached {
    read_at: Option<Instant>,
    disabled: Option<Disabled>,
    /// The stored row says failing (a success then clears it in the store).
    failing: bool,
}

/// One subscription's live state, shared by its lanes.
pub struct SubscriptionState {
    pub name: String,
    states: Arc<dyn SubscriptionStates>,
    /// A legacy file to adopt at the first read (taken then).
    legacy: Mutex<Option<PathBuf>>,
    cache: Mutex<Cached>,
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub refused: AtomicU64,
    pub disabled_total: AtomicU64,
    /// Per dossier key, the `created_ms` of its oldest attempted, undelivered event.
    pending: Mutex<HashMap<String, i64>>,
    /// The last replay started here.
    pub replay: Mutex<Option<ReplayProgress>>,
    /// Where this state's changes are told; none: only logged (set once, at wiring).
    events: std::sync::OnceLock<Arc<dyn StateEvents>>,
}

impl SubscriptionState {
    /// The state of subscription `name` kept in `states`; a legacy file under `data_dir` is
    /// adopted at the first read.
    pub fn new(name: &str, states: Arc<dyn SubscriptionStates>, data_dir: &Path) -> Self {
        SubscriptionState {
            name: name.into(),
            states,
            legacy: Mutex::new(Some(data_dir.to_path_buf())),
            cache: Mutex::new(Cached {
                read_at: None,
                disabled: None,
                failing: false,
            }),
            delivered: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            disabled_total: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
            replay: Mutex::new(None),
            events: std::sync::OnceLock::new(),
        }
    }

    /// Tell this state's changes to `events` (once; a second call is ignored).
    pub fn set_events(&self, events: Arc<dyn StateEvents>) {
        let _ = self.events.set(events);
    }

    async fn tell(&self, change: StateChange) {
        if let Some(e) = self.events.get() {
            e.changed(&self.name, &change).await;
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The disabled state: while enabled, re-read from the store at most once a second (a
    /// disabling by another instance is seen within a second); while disabled, at every call
    /// (an `enable` followed at once by a replay finds it enabled).
    pub async fn disabled(&self) -> Option<Disabled> {
        let legacy = self.legacy.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(dir) = legacy {
            if let Err(e) = adopt_legacy_file(self.states.as_ref(), &dir, &self.name).await {
                warn!(subscription = %self.name, error = %e, "legacy disabled file not adopted; tried again at the next read");
                *self.legacy.lock().unwrap_or_else(|p| p.into_inner()) = Some(dir);
            }
        }
        {
            let c = self.cache();
            let fresh = c
                .read_at
                .is_some_and(|at| at.elapsed() < Duration::from_secs(1));
            if c.disabled.is_none() && fresh {
                return None;
            }
        }
        match self.states.state(&self.name).await {
            Ok(row) => {
                let mut c = self.cache();
                c.read_at = Some(Instant::now());
                c.disabled = row.as_ref().and_then(|r| r.disabled.clone());
                c.failing = row.is_some_and(|r| r.failing_since_ms.is_some());
                c.disabled.clone()
            }
            Err(e) => {
                warn!(subscription = %self.name, error = %e, "subscription state not read; the last one read holds");
                self.cache().disabled.clone()
            }
        }
    }

    /// The disabled state as last read (for metrics; no store call).
    pub fn cached_disabled(&self) -> Option<Disabled> {
        self.cache().disabled.clone()
    }

    /// Disable it (idempotent across instances). Returns `true` when this call disabled it.
    pub async fn disable(&self, reason: &str) -> Result<bool, gw_store::StoreError> {
        let now = now_ms();
        let did = self.states.disable(&self.name, reason, now).await?;
        if did {
            self.disabled_total.fetch_add(1, Ordering::Relaxed);
        }
        // Read back what is stored (the first reason when another instance was first); a
        // failed read still tells the change this call made.
        let row = self.states.state(&self.name).await;
        let stored = row
            .as_ref()
            .ok()
            .and_then(|r| r.as_ref())
            .and_then(|r| r.disabled.clone())
            .unwrap_or(Disabled {
                since_ms: now,
                reason: reason.into(),
            });
        {
            let mut c = self.cache();
            c.read_at = Some(Instant::now());
            c.disabled = Some(stored.clone());
        }
        if did {
            self.tell(StateChange::Disabled(stored)).await;
        }
        row?;
        Ok(did)
    }

    /// Enable it (for every instance; the failure clock restarts). Returns the disabling that
    /// ended, `None` when it was not disabled (then nothing is told).
    pub async fn enable(&self) -> Result<Option<Disabled>, gw_store::StoreError> {
        let at_ms = now_ms();
        let was = self.states.enable(&self.name, at_ms).await?;
        {
            let mut c = self.cache();
            c.read_at = Some(Instant::now());
            c.disabled = None;
            c.failing = false;
        }
        if let Some(was) = &was {
            self.tell(StateChange::Enabled {
                was: was.clone(),
                at_ms,
            })
            .await;
        }
        Ok(was)
    }

    /// A success: not failing any more (a store write only when the row says failing).
    pub async fn succeeded(&self) {
        if !self.cache().failing {
            return;
        }
        match self.states.succeeded(&self.name, now_ms()).await {
            Ok(()) => self.cache().failing = false,
            Err(e) => warn!(subscription = %self.name, error = %e, "success not recorded"),
        }
    }

    /// A failure at `now`: how long it has been failing, counted from the first failure any
    /// instance recorded (a store that does not answer: zero, so nothing is disabled on it).
    pub async fn failed(&self, now: i64) -> Duration {
        match self.states.failing(&self.name, now).await {
            Ok(since) => {
                self.cache().failing = true;
                Duration::from_millis((now - since).max(0) as u64)
            }
            Err(e) => {
                warn!(subscription = %self.name, error = %e, "failure not recorded");
                Duration::ZERO
            }
        }
    }

    /// An event of dossier `key` created at `created_ms` is being attempted.
    pub fn attempting(&self, key: &str, created_ms: i64) {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = p.get_mut(key) {
            *at = (*at).min(created_ms);
        } else if p.len() < MAX_PENDING {
            p.insert(key.to_string(), created_ms);
        }
    }

    /// Dossier `key` has nothing undelivered any more (delivered, or settled without it).
    pub fn settled(&self, key: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// The age in ms at `now` of the oldest attempted, undelivered event (0: none).
    pub fn lag_ms(&self, now: i64) -> i64 {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .min()
            .map_or(0, |oldest| (now - oldest).max(0))
    }

    /// The store this state is kept in.
    pub fn store(&self) -> &Arc<dyn SubscriptionStates> {
        &self.states
    }
}

/// The families of every subscription's state, as OpenMetrics text.
pub fn render(states: &[Arc<SubscriptionState>]) -> String {
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
            "Times this instance disabled a subscription (410 or failing too long).",
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
        "1 while a subscription is disabled (nothing is pushed to it), as last read from the store.",
    );
    for s in states {
        out.push_str(&format!(
            "gateway_subscription_disabled{{subscription=\"{}\"}} {}\n",
            esc(&s.name),
            i32::from(s.cached_disabled().is_some())
        ));
    }
    family(
        &mut out,
        "gateway_subscription_lag_seconds",
        "gauge",
        "Age of the oldest event attempted to the agency and not delivered yet (0: none).",
    );
    let now = now_ms();
    for s in states {
        out.push_str(&format!(
            "gateway_subscription_lag_seconds{{subscription=\"{}\"}} {:.3}\n",
            esc(&s.name),
            s.lag_ms(now) as f64 / 1000.0
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sqlite(dir: &Path) -> Arc<dyn SubscriptionStates> {
        let path = dir.join("store.db");
        let s = tokio::task::spawn_blocking(move || gw_store::sqlite::SqliteStore::open(path))
            .await
            .unwrap()
            .unwrap();
        Arc::new(s)
    }

    #[tokio::test]
    async fn disabled_is_shared_through_the_store_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(dir.path()).await;
        let s = SubscriptionState::new("ioc", store.clone(), dir.path());
        let other = SubscriptionState::new("ioc", store.clone(), dir.path());
        assert_eq!(s.disabled().await, None);
        assert_eq!(other.disabled().await, None);
        assert!(s.disable("gone").await.unwrap());
        assert!(!other.disable("failing").await.unwrap(), "idempotent");
        assert_eq!(other.disabled().await.unwrap().reason, "gone", "first kept");
        let again = SubscriptionState::new("ioc", store.clone(), dir.path());
        assert_eq!(
            again.disabled().await.unwrap().reason,
            "gone",
            "after a restart"
        );
        assert_eq!(
            store.enable("ioc", 1).await.unwrap().unwrap().reason,
            "gone"
        );
        assert_eq!(
            s.disabled().await,
            None,
            "re-read at every call while disabled"
        );
        let text = render(&[Arc::new(s)]);
        assert!(
            text.contains("gateway_subscription_disablings_total{subscription=\"ioc\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("gateway_subscription_disabled{subscription=\"ioc\"} 0"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_legacy_file_is_adopted_once_and_an_unreadable_one_stays_disabled() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(dir.path()).await;
        std::fs::create_dir_all(dir.path().join("agencies")).unwrap();
        std::fs::write(
            legacy_disabled_path(dir.path(), "old"),
            br#"{"since_ms":1234,"reason":"gone"}"#,
        )
        .unwrap();
        std::fs::write(legacy_disabled_path(dir.path(), "bad"), b"garbage").unwrap();
        let old = SubscriptionState::new("old", store.clone(), dir.path());
        let d = old.disabled().await.unwrap();
        assert_eq!((d.since_ms, d.reason.as_str()), (1234, "gone"));
        assert!(!legacy_disabled_path(dir.path(), "old").exists(), "renamed");
        assert!(dir.path().join("agencies/old.disabled.adopted").exists());
        let bad = SubscriptionState::new("bad", store.clone(), dir.path());
        assert_eq!(bad.disabled().await.unwrap().reason, "unreadable");
        // Enabled in the store: the adopted file does not come back.
        store.enable("old", 2).await.unwrap();
        let restarted = SubscriptionState::new("old", store.clone(), dir.path());
        assert_eq!(restarted.disabled().await, None);
    }

    #[tokio::test]
    async fn failing_since_the_first_failure_across_instances_until_a_success() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(dir.path()).await;
        let a = SubscriptionState::new("a", store.clone(), dir.path());
        let b = SubscriptionState::new("a", store.clone(), dir.path());
        assert_eq!(a.failed(1_000).await, Duration::ZERO);
        assert_eq!(b.failed(61_000).await, Duration::from_secs(60), "shared");
        let restarted = SubscriptionState::new("a", store.clone(), dir.path());
        restarted.disabled().await;
        assert_eq!(restarted.failed(121_000).await, Duration::from_secs(120));
        restarted.succeeded().await;
        assert_eq!(a.failed(200_000).await, Duration::ZERO, "a new period");
    }

    #[tokio::test]
    async fn the_lag_is_the_oldest_undelivered_dossier() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(dir.path()).await;
        let s = SubscriptionState::new("a", store, dir.path());
        assert_eq!(s.lag_ms(10_000), 0, "nothing pending");
        s.attempting("D-1", 4_000);
        s.attempting("D-2", 7_000);
        s.attempting("D-1", 6_000);
        assert_eq!(s.lag_ms(10_000), 6_000, "D-1's oldest");
        s.settled("D-1");
        assert_eq!(s.lag_ms(10_000), 3_000);
        s.settled("D-2");
        assert_eq!(s.lag_ms(10_000), 0);
    }
}
