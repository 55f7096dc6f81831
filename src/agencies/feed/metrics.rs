//! The pull feeds' metric families, per subscription (the label is the subscription's name from
//! the configuration, never a dossier or a person), rendered as text into `/metrics` through
//! `Metrics::add_renderer`.
//!
//! Families: `gateway_feed_entries_appended_total`, `gateway_feed_duplicates_total` (events
//! already in the feed, not appended again), `gateway_feed_pages_served_total`,
//! `gateway_feed_entries_served_total`, `gateway_feed_entries_purged_total` (counters, this
//! process); `gateway_feed_entries` (entries kept) and `gateway_feed_lag_seconds` (age of the
//! oldest entry the agency has not fetched; 0 when it has everything) and
//! `gateway_feed_cursor_behind` (entries between the agency's cursor and the head), gauges read
//! from the store by the feeds' job and aged at each scrape.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use gw_store::feeds::FeedStats;

use crate::telemetry::metrics::{esc, family};

#[derive(Debug, Default)]
struct Counters {
    appended: AtomicU64,
    duplicates: AtomicU64,
    pages: AtomicU64,
    served: AtomicU64,
    purged: AtomicU64,
    kept: AtomicI64,
    /// `at_ms` of the oldest unfetched entry; 0: none.
    oldest_unfetched_ms: AtomicI64,
    /// Entries after the agency's cursor (and after what retention purged), up to the head.
    behind: AtomicI64,
}

/// Counters of the pull subscriptions, fixed at start.
#[derive(Debug, Default)]
pub struct FeedMetrics {
    feeds: BTreeMap<String, Counters>,
}

/// What a counter of [`FeedMetrics::count`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Appended,
    Duplicates,
    Pages,
    Served,
    Purged,
}

impl FeedMetrics {
    pub fn new<S: Into<String>>(subscriptions: impl IntoIterator<Item = S>) -> Self {
        FeedMetrics {
            feeds: subscriptions
                .into_iter()
                .map(|s| (s.into(), Counters::default()))
                .collect(),
        }
    }

    fn with(&self, sub: &str, f: impl FnOnce(&Counters)) {
        if let Some(c) = self.feeds.get(sub) {
            f(c)
        }
    }

    pub fn appended(&self, sub: &str) {
        self.with(sub, |c| {
            c.appended.fetch_add(1, Ordering::Relaxed);
        })
    }

    pub fn duplicate(&self, sub: &str) {
        self.with(sub, |c| {
            c.duplicates.fetch_add(1, Ordering::Relaxed);
        })
    }

    /// A page holding `entries` entries was served.
    pub fn page_served(&self, sub: &str, entries: usize) {
        self.with(sub, |c| {
            c.pages.fetch_add(1, Ordering::Relaxed);
            c.served.fetch_add(entries as u64, Ordering::Relaxed);
        })
    }

    pub fn purged(&self, sub: &str, removed: u64) {
        self.with(sub, |c| {
            c.purged.fetch_add(removed, Ordering::Relaxed);
        })
    }

    /// The store's counters of `sub`, read by the feeds' job.
    pub fn set_stats(&self, sub: &str, s: &FeedStats) {
        self.with(sub, |c| {
            c.kept.store(s.entries, Ordering::Relaxed);
            c.oldest_unfetched_ms
                .store(s.oldest_unfetched_ms.unwrap_or(0), Ordering::Relaxed);
            c.behind.store(
                (s.head - s.fetched_through.max(s.purged_through)).max(0),
                Ordering::Relaxed,
            );
        })
    }

    /// How many entries the agency's cursor of `sub` is behind the head (as last read).
    pub fn behind(&self, sub: &str) -> i64 {
        self.feeds
            .get(sub)
            .map_or(0, |c| c.behind.load(Ordering::Relaxed))
    }

    pub fn count(&self, sub: &str, what: Counted) -> u64 {
        self.feeds.get(sub).map_or(0, |c| {
            match what {
                Counted::Appended => &c.appended,
                Counted::Duplicates => &c.duplicates,
                Counted::Pages => &c.pages,
                Counted::Served => &c.served,
                Counted::Purged => &c.purged,
            }
            .load(Ordering::Relaxed)
        })
    }

    /// Seconds since the oldest unfetched entry of `sub` was appended, at `now_ms`.
    pub fn lag_seconds(&self, sub: &str, now_ms: i64) -> f64 {
        self.feeds.get(sub).map_or(0.0, |c| {
            match c.oldest_unfetched_ms.load(Ordering::Relaxed) {
                0 => 0.0,
                at => (now_ms - at).max(0) as f64 / 1000.0,
            }
        })
    }

    /// The families as OpenMetrics text, the lag aged to `now_ms`.
    pub fn render(&self, now_ms: i64) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, Counted); 5] = [
            (
                "gateway_feed_entries_appended_total",
                "Entries appended to a pull feed by this process",
                Counted::Appended,
            ),
            (
                "gateway_feed_duplicates_total",
                "Events already in a pull feed, not appended again",
                Counted::Duplicates,
            ),
            (
                "gateway_feed_pages_served_total",
                "Pull feed pages served by this process",
                Counted::Pages,
            ),
            (
                "gateway_feed_entries_served_total",
                "Entries in the pull feed pages served by this process",
                Counted::Served,
            ),
            (
                "gateway_feed_entries_purged_total",
                "Pull feed entries removed by retention by this process",
                Counted::Purged,
            ),
        ];
        for (name, help, what) in counters {
            family(&mut out, name, "counter", help);
            for sub in self.feeds.keys() {
                let _ = writeln!(
                    out,
                    "{name}{{subscription=\"{}\"}} {}",
                    esc(sub),
                    self.count(sub, what)
                );
            }
        }
        family(
            &mut out,
            "gateway_feed_entries",
            "gauge",
            "Entries kept in a pull feed",
        );
        for (sub, c) in &self.feeds {
            let _ = writeln!(
                out,
                "gateway_feed_entries{{subscription=\"{}\"}} {}",
                esc(sub),
                c.kept.load(Ordering::Relaxed)
            );
        }
        family(
            &mut out,
            "gateway_feed_lag_seconds",
            "gauge",
            "Age of the oldest pull feed entry the agency has not fetched (0: none)",
        );
        for sub in self.feeds.keys() {
            let _ = writeln!(
                out,
                "gateway_feed_lag_seconds{{subscription=\"{}\"}} {}",
                esc(sub),
                self.lag_seconds(sub, now_ms)
            );
        }
        family(
            &mut out,
            "gateway_feed_cursor_behind",
            "gauge",
            "Entries of a pull feed after the agency's cursor, up to the head (0: it has everything)",
        );
        for sub in self.feeds.keys() {
            let _ = writeln!(
                out,
                "gateway_feed_cursor_behind{{subscription=\"{}\"}} {}",
                esc(sub),
                self.behind(sub)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_subscription_and_ages_the_lag() {
        let m = FeedMetrics::new(["ioc", "so-tnmt"]);
        m.appended("ioc");
        m.appended("ioc");
        m.duplicate("ioc");
        m.page_served("ioc", 3);
        m.appended("unknown"); // not configured: not a label
        m.set_stats(
            "ioc",
            &FeedStats {
                head: 2,
                entries: 2,
                fetched_through: 1,
                oldest_unfetched_ms: Some(1_000),
                ..Default::default()
            },
        );
        assert_eq!(m.count("ioc", Counted::Appended), 2);
        assert_eq!(m.count("so-tnmt", Counted::Appended), 0);
        assert_eq!(m.lag_seconds("ioc", 4_500), 3.5);
        assert_eq!(m.lag_seconds("so-tnmt", 4_500), 0.0);
        let t = m.render(4_500);
        for line in [
            "# TYPE gateway_feed_entries_appended counter",
            "gateway_feed_entries_appended_total{subscription=\"ioc\"} 2",
            "gateway_feed_duplicates_total{subscription=\"ioc\"} 1",
            "gateway_feed_pages_served_total{subscription=\"ioc\"} 1",
            "gateway_feed_entries_served_total{subscription=\"ioc\"} 3",
            "gateway_feed_entries{subscription=\"ioc\"} 2",
            "gateway_feed_lag_seconds{subscription=\"ioc\"} 3.5",
            "gateway_feed_lag_seconds{subscription=\"so-tnmt\"} 0",
            "gateway_feed_cursor_behind{subscription=\"ioc\"} 1",
            "gateway_feed_cursor_behind{subscription=\"so-tnmt\"} 0",
        ] {
            assert!(t.contains(line), "{line} missing in\n{t}");
        }
        assert!(!t.contains("unknown"));
    }
}
