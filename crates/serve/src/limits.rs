//! Admission limits: engine sizes, request sizes (prompt bytes, stop
//! strings) and the per-key token-bucket rate limiter.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Engine limits and scheduling knobs.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct EngineLimits {
    /// Sequences decoding at once (the running batch). More requests wait in the queue.
    pub max_running: usize,
    /// Requests waiting to start; one more is refused (HTTP 429).
    pub max_queued: usize,
    /// Per-step token budget: every running decode costs one token, what is
    /// left goes to prompt prefill chunks (Sarathi-style chunked prefill).
    pub step_token_budget: usize,
    /// Upper bound on `max_tokens` when a request leaves it unset (the rest of
    /// the context otherwise).
    pub default_max_tokens: usize,
    /// Per-key request rate (requests per second); 0 disables rate limiting.
    pub rate_per_sec: f64,
    /// Per-key burst (bucket size, requests).
    pub rate_burst: f64,
    /// Largest prompt in bytes (text, or the chat messages' roles and
    /// contents), refused before it is tokenized; its token count is then
    /// bounded by the context.
    pub max_prompt_bytes: usize,
    /// Most stop strings a request may give (each is searched after every
    /// token of its sequence).
    pub max_stop_strings: usize,
    /// Longest stop string, in bytes.
    pub max_stop_bytes: usize,
}

impl Default for EngineLimits {
    fn default() -> Self {
        Self {
            max_running: 64,
            max_queued: 256,
            step_token_budget: 256,
            default_max_tokens: 256,
            rate_per_sec: 0.0,
            rate_burst: 10.0,
            max_prompt_bytes: 128 * 1024,
            max_stop_strings: 16,
            max_stop_bytes: 256,
        }
    }
}

/// A token bucket per opaque key: `burst` tokens, refilled at `rate` per
/// second; each request takes one.
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub(crate) fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key` at time `now`; on refusal returns how long
    /// until a token is available.
    pub(crate) fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut b = self.buckets.lock().expect("rate limiter lock");
        // Bound memory: drop buckets that have refilled completely.
        if b.len() > 100_000 {
            let full = self.burst / self.rate;
            b.retain(|_, (_, t)| now.saturating_duration_since(*t).as_secs_f64() < full);
        }
        let (tokens, last) = b.entry(key.to_owned()).or_insert((self.burst, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * self.rate;
        *tokens = (*tokens + refill).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_waits_for_refill_and_keys_are_independent() {
        let rl = RateLimiter::new(2.0, 3.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            rl.check("k", t0).unwrap();
        }
        let wait = rl.check("k", t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
        rl.check("other", t0).unwrap();
        rl.check("k", t0 + Duration::from_millis(500)).unwrap();
        assert!(rl.check("k", t0 + Duration::from_millis(500)).is_err());
        // Refill is capped at the burst.
        let later = t0 + Duration::from_secs(100);
        for _ in 0..3 {
            rl.check("k", later).unwrap();
        }
        assert!(rl.check("k", later).is_err());
    }

    #[test]
    fn a_zero_rate_disables_limiting() {
        let rl = RateLimiter::new(0.0, 1.0);
        let t = Instant::now();
        for _ in 0..1000 {
            rl.check("k", t).unwrap();
        }
    }
}
