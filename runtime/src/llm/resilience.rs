//! Retries and a circuit breaker for a remote model endpoint.
//!
//! [`RetryPolicy`]: a failed call (429, 5xx, transport error, timeout) is retried up to
//! `max_attempts` times. The pause is the server's `Retry-After` when it sent one (a `Retry-After`
//! longer than `max_retry_after` ends the retries: the turn is retried later instead), else
//! exponential backoff from `base` capped at `max_backoff`, with full jitter.
//!
//! [`CircuitBreaker`]: after `failure_threshold` failed calls in a row the breaker opens and calls
//! fail at once for `cooldown`; then one probe goes through (half-open): success closes it, failure
//! opens it again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub max_backoff: Duration,
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The pause before attempt `attempt + 1` (attempt counts from 1), or `None` to stop.
    pub fn pause(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        if let Some(wait) = retry_after {
            return (wait <= self.max_retry_after).then_some(wait);
        }
        let exp = self
            .base
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.max_backoff);
        // Full jitter: anywhere in [0, exp], so many callers do not retry in step.
        Some(exp.mul_f64(jitter()))
    }
}

/// A number in [0, 1) from the OS's randomness.
fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

/// Parses `Retry-After`: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let wait = when - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

#[derive(Debug)]
pub struct CircuitBreaker {
    failure_threshold: u32,
    cooldown: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BreakerState {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is in flight since then. A probe that never reports (its caller was dropped)
    /// gives way to another after the cooldown.
    HalfOpen {
        since: Instant,
    },
}

/// The breaker refused a call: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open(pub Duration);

impl CircuitBreaker {
    pub fn new(failure_threshold: u32, cooldown: Duration) -> Self {
        Self {
            failure_threshold: failure_threshold.max(1),
            cooldown,
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
        }
    }

    /// Asks to make a call.
    pub fn acquire(&self) -> Result<(), Open> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *state {
            BreakerState::Closed { .. } => Ok(()),
            BreakerState::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *state = BreakerState::HalfOpen { since: now };
                    Ok(())
                } else {
                    Err(Open(until - now))
                }
            }
            BreakerState::HalfOpen { since } => {
                let now = Instant::now();
                if now >= since + self.cooldown {
                    *state = BreakerState::HalfOpen { since: now };
                    Ok(())
                } else {
                    Err(Open(since + self.cooldown - now))
                }
            }
        }
    }

    pub fn succeeded(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) =
            BreakerState::Closed { failures: 0 };
    }

    pub fn failed(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *state = match *state {
            BreakerState::Closed { failures } if failures + 1 < self.failure_threshold => {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            BreakerState::Closed { .. } | BreakerState::HalfOpen { .. } => {
                tracing::warn!(cooldown = ?self.cooldown, "model endpoint failing: circuit breaker open");
                BreakerState::Open {
                    until: Instant::now() + self.cooldown,
                }
            }
            open @ BreakerState::Open { .. } => open,
        };
    }

    pub fn is_open(&self) -> bool {
        !matches!(
            *self.state.lock().unwrap_or_else(|p| p.into_inner()),
            BreakerState::Closed { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            max_retry_after: Duration::from_secs(5),
        };
        for attempt in 1..10 {
            let pause = policy.pause(attempt, None).unwrap();
            let ceiling = Duration::from_millis(100 * (1 << (attempt - 1))).min(policy.max_backoff);
            assert!(
                pause <= ceiling,
                "attempt {attempt}: {pause:?} > {ceiling:?}"
            );
        }
        assert_eq!(policy.pause(10, None), None, "the last attempt is the last");
        assert_eq!(
            policy.pause(1, Some(Duration::from_secs(2))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            policy.pause(1, Some(Duration::from_secs(60))),
            None,
            "a Retry-After beyond the cap ends the retries"
        );
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a plain test thread, never async
    fn the_breaker_opens_after_the_threshold_and_probes_once() {
        let breaker = CircuitBreaker::new(3, Duration::from_millis(50));
        for _ in 0..2 {
            assert!(breaker.acquire().is_ok());
            breaker.failed();
        }
        assert!(breaker.acquire().is_ok(), "two failures keep it closed");
        breaker.failed();
        assert!(breaker.acquire().is_err(), "the third opens it");
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            breaker.acquire().is_ok(),
            "after the cooldown one probe passes"
        );
        assert!(breaker.acquire().is_err(), "and only one");
        breaker.failed();
        assert!(breaker.acquire().is_err(), "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(60));
        assert!(breaker.acquire().is_ok());
        // A probe whose caller vanished (no success, no failure) does not wedge the breaker.
        std::thread::sleep(Duration::from_millis(60));
        assert!(breaker.acquire().is_ok(), "a new probe after the cooldown");
        breaker.succeeded();
        assert!(breaker.acquire().is_ok() && !breaker.is_open());
    }
}
