//! A route's retry policy: when to try a failed delivery again, and when to give up.
//!
//! # Invariants
//! - Backoff is capped exponential with full jitter: `uniform(0, min(max_delay, initial·2^n))`,
//!   never earlier than a `Retry-After` the party gave.
//! - A route gives up when attempts reach `max_attempts` (0 = no cap) or the time since the
//!   first attempt exceeds `max_elapsed` (default 7 days: a portal outage of days is survived).
//! - A route with a **schedule** (an agency push subscription's `retry`) waits
//!   `schedule[n]` before retry `n + 1`, plus up to a fifth more of jitter, never earlier than
//!   a `Retry-After`; it gives up after the schedule's last wait was used (or `max_elapsed`).
//! - What an answer means (retry or not) is decided elsewhere, once:
//!   [`crate::model::outcome::classify`].

use std::time::Duration;

use rand::Rng;

use crate::config::RetrySection;

/// The retry policy of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub initial: Duration,
    pub max_delay: Duration,
    pub max_elapsed: Duration,
    pub max_attempts: u32,
    /// The wait before each retry, when the route has a fixed schedule (then `initial` and
    /// `max_delay` are not used, and the attempts are the schedule's length plus one).
    pub schedule: Option<std::sync::Arc<[Duration]>>,
}

impl From<RetrySection> for Policy {
    fn from(r: RetrySection) -> Self {
        Policy {
            initial: r.initial.0,
            max_delay: r.max_delay.0,
            max_elapsed: r.max_elapsed.0,
            max_attempts: r.max_attempts,
            schedule: None,
        }
    }
}

impl Policy {
    /// The delay before attempt number `failed + 1`, after `failed` failed attempts (>= 1).
    pub fn delay(&self, failed: u32, not_before: Option<Duration>, rng: &mut impl Rng) -> Duration {
        if let Some(s) = self.schedule.as_deref().filter(|s| !s.is_empty()) {
            let base = s[(failed.max(1) as usize - 1).min(s.len() - 1)];
            let extra = rng.random_range(0..=(base.as_millis() as u64 / 5));
            let jittered = base + Duration::from_millis(extra);
            return not_before.map_or(jittered, |nb| jittered.max(nb));
        }
        let exp = failed.saturating_sub(1).min(32);
        let ceiling = self
            .initial
            .saturating_mul(1u32 << exp.min(31))
            .min(self.max_delay);
        let jittered = Duration::from_millis(rng.random_range(0..=ceiling.as_millis() as u64));
        // A party's Retry-After wins over the jitter (never earlier than it asked).
        not_before.map_or(jittered, |nb| jittered.max(nb))
    }

    /// Whether to give up after `failed` failed attempts, the first made at `first_ms`.
    pub fn exhausted(&self, failed: u32, first_ms: i64, now_ms: i64) -> bool {
        if let Some(s) = &self.schedule {
            return failed as usize > s.len()
                || (now_ms - first_ms) as u128 >= self.max_elapsed.as_millis();
        }
        (self.max_attempts > 0 && failed >= self.max_attempts)
            || (now_ms - first_ms) as u128 >= self.max_elapsed.as_millis()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_jittered_and_honours_retry_after() {
        let p = Policy {
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_elapsed: Duration::from_secs(3600),
            max_attempts: 0,
            schedule: None,
        };
        let mut rng = rand::rng();
        let mut seen_distinct = std::collections::BTreeSet::new();
        for failed in 1..40 {
            let d = p.delay(failed, None, &mut rng);
            assert!(d <= Duration::from_secs(60), "capped: {d:?}");
            let ceiling =
                Duration::from_secs(1u64 << (failed - 1).min(20)).min(Duration::from_secs(60));
            assert!(d <= ceiling);
            seen_distinct.insert(d);
        }
        assert!(seen_distinct.len() > 5, "jitter varies the delays");
        for _ in 0..20 {
            assert!(p.delay(1, Some(Duration::from_secs(30)), &mut rng) >= Duration::from_secs(30));
        }
    }

    #[test]
    fn budget_by_attempts_and_elapsed() {
        let p = Policy {
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_elapsed: Duration::from_secs(10),
            max_attempts: 3,
            schedule: None,
        };
        assert!(!p.exhausted(2, 0, 1000));
        assert!(p.exhausted(3, 0, 1000));
        assert!(p.exhausted(1, 0, 10_000));
        let unlimited = Policy {
            max_attempts: 0,
            ..p.clone()
        };
        assert!(!unlimited.exhausted(1000, 0, 9_999));
        let d = Policy::from(RetrySection::default());
        assert!(
            !d.exhausted(10_000, 0, 24 * 3_600_000),
            "the default does not give up within a day"
        );
    }

    #[test]
    fn a_schedule_waits_its_steps_with_jitter_then_gives_up() {
        let s = |n| Duration::from_secs(n);
        let p = Policy {
            initial: s(1),
            max_delay: s(1),
            max_elapsed: s(100 * 86400),
            max_attempts: 0,
            schedule: Some(vec![s(5), s(300), s(1800)].into()),
        };
        let mut rng = rand::rng();
        let mut distinct = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let d = p.delay(1, None, &mut rng);
            assert!(d >= s(5) && d <= s(6), "{d:?}");
            distinct.insert(d);
            let d = p.delay(2, None, &mut rng);
            assert!(d >= s(300) && d <= s(360), "{d:?}");
            // Past the schedule: its last step.
            assert!(p.delay(9, None, &mut rng) >= s(1800));
            // A Retry-After longer than the step wins.
            assert!(p.delay(1, Some(s(60)), &mut rng) >= s(60));
        }
        assert!(distinct.len() > 5, "jitter varies the delays");
        assert!(
            !p.exhausted(3, 0, 1000),
            "three retries after the first attempt"
        );
        assert!(p.exhausted(4, 0, 1000));
    }
}
