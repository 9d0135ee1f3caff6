//! Token buckets per key (client IP or account): `rate` requests per
//! second with a burst of `rate`. A refused request gets 429 with
//! `RateLimit-*` and `Retry-After` headers.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

pub struct RateLimiter<K> {
    rate: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

/// The outcome of one check.
#[derive(Clone, Copy, Debug)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until a token is available again.
    pub reset_secs: u32,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(rate: u32) -> RateLimiter<K> {
        RateLimiter {
            rate: rate.max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn check(&self, key: &K) -> Decision {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 100_000 {
            let rate = self.rate;
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < rate
            });
        }
        let (tokens, at) = buckets.entry(key.clone()).or_insert((self.rate, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.rate);
        *at = now;
        let allowed = *tokens >= 1.0;
        if allowed {
            *tokens -= 1.0;
        }
        let missing = (1.0 - *tokens).max(0.0);
        Decision {
            allowed,
            limit: self.rate as u32,
            remaining: tokens.floor().max(0.0) as u32,
            reset_secs: (missing / self.rate).ceil() as u32,
        }
    }
}

impl Decision {
    pub fn headers(&self) -> [(&'static str, String); 3] {
        [
            ("ratelimit-limit", self.limit.to_string()),
            ("ratelimit-remaining", self.remaining.to_string()),
            ("ratelimit-reset", self.reset_secs.max(1).to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn burst_then_refuse() {
        let limiter = super::RateLimiter::new(3);
        assert!(limiter.check(&1).allowed);
        assert!(limiter.check(&1).allowed);
        assert!(limiter.check(&1).allowed);
        let refused = limiter.check(&1);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert!(refused.reset_secs >= 1);
        assert!(limiter.check(&2).allowed, "keys are independent");
    }
}
