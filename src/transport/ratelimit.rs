//! A per-adapter outbound rate limit: the portal and the providers publish call quotas, and a
//! gateway draining a backlog after an outage must stay under them instead of learning them
//! from 429s.
//!
//! The limiter is GCRA (the generic cell rate algorithm, the virtual-scheduling form of a token
//! bucket): one "theoretical arrival time" behind a mutex, no background task. A caller reserves
//! the next slot under the lock and sleeps outside it, so concurrent callers queue fairly in
//! the order they reserved and the lock is never held across an await.
//!
//! # Invariants
//! - Over any window of length `t`, at most `burst + per_sec * t` calls are let through.
//! - A reservation is never given back: a caller dropped while it waits (its message is being
//!   shut down) leaves a slot unused, which errs on the side of calling the party less.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Calls per second with a burst allowance.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    tolerance: Duration,
    tat: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// `per_sec` > 0 calls a second; `burst` ≥ 1 calls may go back to back after a quiet time.
    pub fn new(per_sec: f64, burst: u32) -> Self {
        let interval = Duration::from_secs_f64(1.0 / per_sec.max(1e-6));
        RateLimiter {
            interval,
            tolerance: interval * burst.max(1).saturating_sub(1),
            tat: Mutex::new(None),
        }
    }

    /// How long the next caller must wait, reserving its slot.
    fn reserve(&self, now: Instant) -> Duration {
        let mut tat = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        let t = tat.map_or(now, |t| t.max(now));
        *tat = Some(t + self.interval);
        (t.checked_sub(self.tolerance).unwrap_or(now)).saturating_duration_since(now)
    }

    /// Wait until a caller arriving now would be let through at once, without reserving
    /// anything. A batcher waits here before it gathers a batch, so that what arrives while
    /// the quota holds calls back joins the next call instead of waiting in a call of its own.
    pub async fn until_free(&self) {
        let now = tokio::time::Instant::now().into_std();
        let wait = {
            let tat = self.tat.lock().unwrap_or_else(|p| p.into_inner());
            tat.and_then(|t| t.checked_sub(self.tolerance))
                .map_or(Duration::ZERO, |at| at.saturating_duration_since(now))
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Wait for a slot. Returns how long the caller waited.
    pub async fn acquire(&self) -> Duration {
        let wait = self.reserve(tokio::time::Instant::now().into_std());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_call_per_interval() {
        let l = RateLimiter::new(10.0, 3);
        let t0 = Instant::now();
        let waits: Vec<Duration> = (0..6).map(|_| l.reserve(t0)).collect();
        assert_eq!(&waits[..3], &[Duration::ZERO; 3], "the burst goes at once");
        assert_eq!(waits[3], Duration::from_millis(100));
        assert_eq!(waits[4], Duration::from_millis(200));
        assert_eq!(waits[5], Duration::from_millis(300));
    }

    #[test]
    fn quiet_time_refills_the_burst_but_no_more() {
        let l = RateLimiter::new(10.0, 2);
        let t0 = Instant::now();
        for _ in 0..4 {
            l.reserve(t0);
        }
        // Ten seconds later the bucket is full again: two at once, then the rate.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(l.reserve(later), Duration::ZERO);
        assert_eq!(l.reserve(later), Duration::ZERO);
        assert_eq!(l.reserve(later), Duration::from_millis(100));
    }

    #[test]
    fn any_window_holds_at_most_burst_plus_rate_times_length() {
        let (per_sec, burst) = (50.0, 5u32);
        let l = RateLimiter::new(per_sec, burst);
        let t0 = Instant::now();
        // 1,000 callers arriving at random-ish times over two seconds.
        let mut release: Vec<Instant> = (0..1000u64)
            .map(|i| {
                let arrive = t0 + Duration::from_micros((i * 7919) % 2_000_000);
                (arrive, i)
            })
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_keys()
            .map(|arrive| arrive + l.reserve(arrive))
            .collect();
        release.sort();
        for w in [
            Duration::from_millis(100),
            Duration::from_secs(1),
            Duration::from_secs(5),
        ] {
            let allowed = f64::from(burst) + per_sec * w.as_secs_f64();
            let mut j = 0;
            for i in 0..release.len() {
                while release[i] - release[j] >= w {
                    j += 1;
                }
                let n = (i - j + 1) as f64;
                assert!(
                    n <= allowed + 1e-9,
                    "{n} calls within {w:?}, allowed {allowed}"
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn until_free_waits_for_the_next_slot_without_taking_it() {
        let l = RateLimiter::new(2.0, 1);
        let start = tokio::time::Instant::now();
        l.acquire().await;
        l.until_free().await;
        assert_eq!(start.elapsed(), Duration::from_millis(500));
        // The slot is still there: acquiring it now does not wait.
        assert_eq!(l.acquire().await, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_sleeps_for_the_reserved_slot() {
        let l = RateLimiter::new(4.0, 1);
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            l.acquire().await;
        }
        // Five calls at four a second, no burst: the fifth goes out after one second.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }
}
