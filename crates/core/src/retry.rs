//! One retry policy for every stage that tries an operation again: the
//! store's transient failures, a sink's failed deliveries, an aborted
//! transaction.
//!
//! The nominal wait doubles from [`RetryPolicy::initial_backoff`] and never
//! exceeds [`RetryPolicy::max_backoff`] (capped exponential backoff). With
//! jitter on (the default) each wait is drawn uniformly between the nominal
//! wait and half as long again, so many workers that failed at the same
//! moment (a database restarting, a broker's leader moving) do not all
//! retry at the same moment again, while no wait is shorter than the
//! nominal one: jitter never makes a policy less patient.
//!
//! ```
//! use std::time::Duration;
//! use sluicegate_core::RetryPolicy;
//!
//! let policy = RetryPolicy::new(5, Duration::from_millis(100), Duration::from_secs(1))
//!     .jitter(false);
//! let waits: Vec<_> = (1..5).map(|retry| policy.backoff(retry)).collect();
//! assert_eq!(
//!     waits,
//!     [100, 200, 400, 800].map(Duration::from_millis),
//! );
//! // The cap holds however many retries a policy allows.
//! assert_eq!(policy.backoff(60), Duration::from_secs(1));
//! ```

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often and how patiently an operation is tried: at most
/// `max_attempts` attempts in all, waiting [`backoff`](Self::backoff)
/// between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The nominal wait before the second attempt.
    pub initial_backoff: Duration,
    /// The longest nominal wait between attempts.
    pub max_backoff: Duration,
    /// Whether each wait is drawn between its nominal value and 1.5 times
    /// it.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    /// 6 attempts, waiting 100 ms, 200 ms, ... up to 5 s (3.1 s in all
    /// before the sixth), each up to half as long again with jitter.
    fn default() -> Self {
        RetryPolicy::new(6, Duration::from_millis(100), Duration::from_secs(5))
    }
}

impl RetryPolicy {
    /// `max_attempts` attempts (at least 1), backing off from `initial`,
    /// doubling, up to `max`; with jitter.
    pub fn new(max_attempts: u32, initial: Duration, max: Duration) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            initial_backoff: initial,
            max_backoff: max.max(initial),
            jitter: true,
        }
    }

    /// One attempt, no retries.
    pub fn none() -> Self {
        RetryPolicy::new(1, Duration::ZERO, Duration::ZERO)
    }

    /// The same policy with `max_attempts` attempts (at least 1).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The same policy with its first wait set to `initial` (the cap is
    /// raised to it if lower).
    #[must_use]
    pub fn initial_backoff(mut self, initial: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = self.max_backoff.max(initial);
        self
    }

    /// The same policy with jitter on or off (off: the waits are exact,
    /// for tests that count time).
    #[must_use]
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// Whether an operation that failed at attempt `attempt` (1 = the
    /// first) may be tried again.
    pub fn allows_another(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// The nominal wait before retry `retry` (1 = the wait after the first
    /// failed attempt): `initial_backoff × 2^(retry-1)`, capped at
    /// `max_backoff`, without jitter.
    pub fn nominal_backoff(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(63);
        let factor = 1u64 << doublings;
        let nanos = self
            .initial_backoff
            .as_nanos()
            .saturating_mul(u128::from(factor));
        let max = self.max_backoff.as_nanos();
        let capped = nanos.min(max);
        Duration::from_nanos(u64::try_from(capped).unwrap_or(u64::MAX))
    }

    /// The wait before retry `retry`: [`nominal_backoff`](Self::nominal_backoff),
    /// or with jitter a uniformly random wait between it and 1.5 times it
    /// (so at most 1.5 × `max_backoff`).
    pub fn backoff(&self, retry: u32) -> Duration {
        let nominal = self.nominal_backoff(retry);
        if !self.jitter || nominal.is_zero() {
            return nominal;
        }
        nominal.saturating_add((nominal / 2).mul_f64(unit_random()))
    }
}

/// A uniformly distributed number in `[0, 1)`, without a random number
/// crate: the standard library's randomly keyed hasher over a counter.
fn unit_random() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    // 53 bits: exactly representable in an f64.
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_double_up_to_the_cap_without_jitter() {
        let p = RetryPolicy::new(10, 100 * MS, 1000 * MS).jitter(false);
        let waits: Vec<u128> = (1..10).map(|r| p.backoff(r).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000, 1000, 1000, 1000]);
    }

    #[test]
    fn the_cap_holds_for_any_number_of_retries() {
        // The sinks' former `backoff * 2^(attempt-1)` waited 100 ms × 2^31
        // (almost 7 years) before the 33rd attempt.
        let p = RetryPolicy::new(u32::MAX, 100 * MS, Duration::from_secs(5));
        for retry in [32, 33, 64, 65, 1000, u32::MAX] {
            assert_eq!(
                p.nominal_backoff(retry),
                Duration::from_secs(5),
                "retry {retry}"
            );
            let wait = p.backoff(retry);
            assert!(
                wait >= Duration::from_secs(5) && wait <= Duration::from_millis(7_500),
                "retry {retry}: {wait:?}"
            );
        }
        let huge = RetryPolicy::new(3, Duration::MAX, Duration::MAX);
        assert_eq!(huge.nominal_backoff(40), Duration::from_nanos(u64::MAX));
        assert!(huge.backoff(40) >= Duration::from_nanos(u64::MAX));
    }

    /// Jitter only lengthens a wait, never shortens it: a policy with jitter
    /// is at least as patient as without (a transactional sink waiting out
    /// a rebalance gave up too soon when jitter halved its waits).
    #[test]
    fn jitter_only_lengthens_and_spreads() {
        let p = RetryPolicy::new(5, 100 * MS, Duration::from_secs(5));
        let nominal = p.nominal_backoff(3); // 400 ms
        assert_eq!(nominal, 400 * MS);
        let waits: Vec<Duration> = (0..2000).map(|_| p.backoff(3)).collect();
        for w in &waits {
            assert!(
                *w >= 400 * MS && *w <= 600 * MS,
                "{w:?} outside [400 ms, 600 ms]"
            );
        }
        // Uniform over [400, 600] ms: 2,000 draws all above 440 ms, or all
        // below 560 ms, has a chance of 0.8^2000.
        let min = waits.iter().min().copied().unwrap_or_default();
        let max = waits.iter().max().copied().unwrap_or_default();
        assert!(min < 440 * MS, "no draw below 440 ms: min {min:?}");
        assert!(max > 560 * MS, "no draw above 560 ms: max {max:?}");
    }

    #[test]
    fn attempts_count_the_first_one() {
        let p = RetryPolicy::new(3, MS, MS);
        assert!(p.allows_another(1));
        assert!(p.allows_another(2));
        assert!(!p.allows_another(3));
        assert!(!RetryPolicy::none().allows_another(1));
        assert_eq!(RetryPolicy::new(0, MS, MS).max_attempts, 1);
        assert_eq!(RetryPolicy::none().backoff(1), Duration::ZERO);
    }

    #[test]
    fn a_cap_below_the_first_wait_is_raised_to_it() {
        let p = RetryPolicy::new(3, 500 * MS, 100 * MS).jitter(false);
        assert_eq!(p.backoff(1), 500 * MS);
        assert_eq!(p.backoff(2), 500 * MS);
        let q = RetryPolicy::default().initial_backoff(Duration::from_secs(10));
        assert_eq!(q.max_backoff, Duration::from_secs(10));
    }
}
