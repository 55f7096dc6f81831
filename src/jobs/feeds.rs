//! The pull feeds' background work: retention (a singleton: one instance purges) and the
//! feeds' gauges (every instance reads them for its own `/metrics`).
//!
//! # Invariants
//! - Retention removes, per pull subscription, the entries appended longer ago than its
//!   `retention`; the store purges a prefix only and remembers how far, so an agency whose
//!   cursor was behind is told `410` with the oldest cursor, never served a shorter feed.
//! - A purge is safe to repeat and to race (the store locks the feed's head), so a tick
//!   abandoned by a lost leadership is finished by the next one.
//! - A failed purge or read is logged and retried at the next tick; nothing else depends on it.

use std::sync::Arc;
use std::time::Duration;

use gw_store::feeds::{FeedStore, Purged};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Singleton, FEED_RETENTION};
use crate::agencies::feed::{FeedMetrics, Feeds};
use crate::model::time::now_ms;

/// How often the feeds' gauges are read from the store.
pub const STATS_EVERY: Duration = Duration::from_secs(15);

/// The time between retention runs for the shortest `retention`: a tenth of it, between 1 s
/// and 10 min.
pub fn retention_tick(shortest: Duration) -> Duration {
    (shortest / 10).clamp(Duration::from_secs(1), Duration::from_secs(600))
}

/// Purge every feed once at `now_ms`: `(subscription, what was purged)` for each.
pub async fn purge_once(
    store: &dyn FeedStore,
    feeds: &[(String, Duration)],
    now_ms: i64,
    metrics: &FeedMetrics,
) -> Result<Vec<(String, Purged)>, gw_store::StoreError> {
    let mut out = Vec::with_capacity(feeds.len());
    for (name, keep) in feeds {
        let cutoff = now_ms - keep.as_millis() as i64;
        let p = store.purge(name, cutoff).await?;
        if p.removed > 0 {
            metrics.purged(name, p.removed);
            info!(subscription = %name, removed = p.removed, through = p.through, "feed retention: entries removed");
        }
        out.push((name.clone(), p));
    }
    Ok(out)
}

/// Start retention (under `lead`) for `retention` (name, how long) and the gauges' refresh.
pub fn spawn(
    shared: Arc<Feeds>,
    feeds: Vec<(String, Duration)>,
    lead: Singleton,
    cancel: &CancellationToken,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    debug_assert_eq!(lead.job(), FEED_RETENTION);
    let Some(shortest) = feeds.iter().map(|(_, k)| *k).min() else {
        return;
    };
    let tick = retention_tick(shortest);
    {
        let (shared, feeds, cancel) = (shared.clone(), feeds.clone(), cancel.clone());
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(tick) => {}
                }
                let run = lead
                    .tick(|| purge_once(shared.store.as_ref(), &feeds, now_ms(), &shared.metrics))
                    .await;
                if let Some(Err(e)) = run {
                    warn!(error = %e, "feed retention failed; retrying at the next tick");
                }
            }
            lead.step_down().await;
        });
    }
    let cancel = cancel.clone();
    tasks.spawn(async move {
        loop {
            for (name, _) in &feeds {
                match shared.store.stats(name).await {
                    Ok(s) => shared.metrics.set_stats(name, &s),
                    Err(e) => warn!(subscription = %name, error = %e, "feed gauges not read"),
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(STATS_EVERY) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_runs_a_tenth_of_the_shortest_retention_within_bounds() {
        assert_eq!(
            retention_tick(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
        assert_eq!(
            retention_tick(Duration::from_secs(300)),
            Duration::from_secs(30)
        );
        assert_eq!(
            retention_tick(Duration::from_secs(30 * 86_400)),
            Duration::from_secs(600)
        );
    }

    #[tokio::test]
    async fn purge_once_removes_what_is_older_than_each_feeds_retention() {
        let dir = tempfile::tempdir().unwrap();
        let store = gw_store::open(dir.path().join("s.db").to_str().unwrap())
            .await
            .unwrap()
            .feeds();
        for (sub, id, at) in [("a", "1", 1_000), ("a", "2", 9_000), ("b", "3", 1_000)] {
            store
                .append(sub, gw_store::feeds::suite::entry(id, at))
                .await
                .unwrap();
        }
        let metrics = FeedMetrics::new(["a", "b"]);
        let feeds = vec![
            ("a".to_string(), Duration::from_secs(5)),
            ("b".to_string(), Duration::from_secs(60)),
        ];
        let got = purge_once(store.as_ref(), &feeds, 10_000, &metrics)
            .await
            .unwrap();
        assert_eq!(got[0].1.removed, 1, "a keeps 5 s: the entry at 1 s goes");
        assert_eq!(got[1].1.removed, 0, "b keeps a minute");
        assert_eq!(
            metrics.count("a", crate::agencies::feed::Counted::Purged),
            1
        );
    }
}
