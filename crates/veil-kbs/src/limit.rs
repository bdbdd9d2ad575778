//! Per-client rate limits, shared by the key broker (per client address) and the serving
//! runtime (per API key, client certificate or address): a token bucket for each key.
//!
//! Written here rather than taken from a crate: a bucket is a dozen lines, and the
//! crates that offer keyed limiters (`governor`) bring their own clock and map types for
//! lock-free scaling this service does not need (every admitted request then does
//! milliseconds of work).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How fast requests may come: `per_sec` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    /// Tokens added per second.
    pub per_sec: f64,
    /// The bucket's size (and a new key's starting tokens).
    pub burst: f64,
}

impl Quota {
    /// Checks that both numbers are finite and positive, and that a burst admits at least
    /// one request.
    pub fn check(&self) -> Result<(), &'static str> {
        if !(self.per_sec.is_finite() && self.per_sec > 0.0) {
            return Err("the rate must be a positive number of requests per second");
        }
        if !(self.burst.is_finite() && self.burst >= 1.0) {
            return Err("the burst must be at least 1");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, q: Quota, now: Instant) {
        self.tokens = (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * q.per_sec).min(q.burst);
        self.at = now;
    }
}

/// Token buckets by key. Memory is bounded: past `MAX_KEYS` keys, the buckets that have
/// refilled completely (and so hold no state worth keeping) are forgotten.
#[derive(Debug)]
pub struct Limiter<K> {
    default: Quota,
    buckets: Mutex<HashMap<K, (Bucket, Quota)>>,
}

/// Above this many keys, full buckets are dropped.
const MAX_KEYS: usize = 10_000;

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// A limiter giving each key `default` unless [`Limiter::admit_with`] says otherwise.
    pub fn new(default: Quota) -> Self {
        Self { default, buckets: Mutex::new(HashMap::new()) }
    }

    /// The default quota.
    pub fn quota(&self) -> Quota {
        self.default
    }

    /// Takes one token from `key`'s bucket under the default quota.
    pub fn admit(&self, key: &K) -> Result<(), Duration> {
        self.admit_with(key, self.default)
    }

    /// Takes one token from `key`'s bucket under `quota`; when it is empty, says how long
    /// until the next token.
    pub fn admit_with(&self, key: &K, quota: Quota) -> Result<(), Duration> {
        self.admit_at(key, quota, Instant::now())
    }

    fn admit_at(&self, key: &K, quota: Quota, now: Instant) -> Result<(), Duration> {
        // A poisoned lock only means another request panicked mid-update; the buckets
        // are plain numbers and stay usable.
        let mut b = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if b.len() >= MAX_KEYS && !b.contains_key(key) {
            b.retain(|_, (bucket, q)| {
                let mut full = *bucket;
                full.refill(*q, now);
                full.tokens < q.burst
            });
        }
        let (bucket, q) = b.entry(key.clone()).or_insert((Bucket { tokens: quota.burst, at: now }, quota));
        *q = quota;
        bucket.refill(quota, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(((1.0 - bucket.tokens) / quota.per_sec).min(86_400.0)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Quota = Quota { per_sec: 2.0, burst: 3.0 };

    #[test]
    fn a_burst_then_the_rate() {
        let l = Limiter::new(Q);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.admit_at(&"a", Q, t0).is_ok());
        }
        let wait = l.admit_at(&"a", Q, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Another key has its own bucket.
        assert!(l.admit_at(&"b", Q, t0).is_ok());
        // Half a second later, one more.
        assert!(l.admit_at(&"a", Q, t0 + Duration::from_millis(500)).is_ok());
        assert!(l.admit_at(&"a", Q, t0 + Duration::from_millis(500)).is_err());
        // Never more than the burst, however long the pause.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(l.admit_at(&"a", Q, later).is_ok());
        }
        assert!(l.admit_at(&"a", Q, later).is_err());
    }

    #[test]
    fn a_key_may_have_its_own_quota() {
        let l = Limiter::new(Q);
        let t0 = Instant::now();
        let one = Quota { per_sec: 0.1, burst: 1.0 };
        assert!(l.admit_at(&"slow", one, t0).is_ok());
        assert_eq!(l.admit_at(&"slow", one, t0).unwrap_err(), Duration::from_secs(10));
        assert!(l.admit_at(&"fast", Q, t0).is_ok());
    }

    #[test]
    fn memory_stays_bounded() {
        let l = Limiter::new(Q);
        let t0 = Instant::now();
        for k in 0..MAX_KEYS {
            assert!(l.admit_at(&k, Q, t0).is_ok());
        }
        // Two seconds on, every bucket is full again and is forgotten to make room.
        assert!(l.admit_at(&usize::MAX, Q, t0 + Duration::from_secs(2)).is_ok());
        assert_eq!(l.buckets.lock().unwrap().len(), 1);
    }

    #[test]
    fn quotas_are_checked() {
        assert!(Q.check().is_ok());
        for bad in [
            Quota { per_sec: 0.0, burst: 1.0 },
            Quota { per_sec: f64::NAN, burst: 1.0 },
            Quota { per_sec: 1.0, burst: 0.5 },
            Quota { per_sec: 1.0, burst: f64::INFINITY },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
