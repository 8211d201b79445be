//! The rate regulator: a token bucket.

use std::time::Duration;

use tokio::time::Instant;

/// A token bucket: `rate` tokens a second, holding at most `burst`. A grant takes one token.
///
/// Tokens are counted as an `f64` and refilled lazily, from the time elapsed since the last
/// look, so an idle bucket costs nothing and no task ticks it.
#[derive(Debug)]
pub(crate) struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

/// Tokens this close to a whole one count as one, so rounding in `next_at` cannot leave a
/// waiter one wake-up short.
const EPSILON: f64 = 1e-9;

impl Bucket {
    /// A full bucket.
    pub(crate) fn new(rate: f64, burst: u32, now: Instant) -> Bucket {
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            f64::MIN_POSITIVE
        };
        let burst = f64::from(burst.max(1));
        Bucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    /// Changes the rate from now on; tokens already earned are kept.
    pub(crate) fn set_rate(&mut self, rate: f64, now: Instant) {
        self.refill(now);
        self.rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            f64::MIN_POSITIVE
        };
    }

    fn refill(&mut self, now: Instant) {
        if now > self.last {
            let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + earned).min(self.burst);
            self.last = now;
        }
    }

    /// Whether a token is there now (refilling first).
    pub(crate) fn ready(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens + EPSILON >= 1.0
    }

    /// Takes the token [`ready`](Self::ready) saw.
    pub(crate) fn take(&mut self) {
        self.tokens = (self.tokens - 1.0).max(0.0);
    }

    /// Gives back a token taken for a grant nobody used (its ask was cancelled).
    pub(crate) fn give_back(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }

    /// When the bucket next holds a whole token (rounded up to the next microsecond).
    pub(crate) fn next_at(&self) -> Instant {
        self.last + self.time_for(1.0)
    }

    /// How long until `n` tokens are there, from the last refill.
    pub(crate) fn time_for(&self, n: f64) -> Duration {
        let missing = (n - self.tokens).max(0.0);
        let micros = (missing / self.rate * 1e6).ceil().min(1e15);
        Duration::from_micros(micros as u64 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, 3, t0);
        for _ in 0..3 {
            assert!(b.ready(t0));
            b.take();
        }
        assert!(!b.ready(t0));
        let next = b.next_at();
        assert!(next > t0 + Duration::from_millis(99) && next <= t0 + Duration::from_millis(101));
        assert!(b.ready(next));
        b.take();
        assert!(!b.ready(next));
        // A long pause earns no more than the burst.
        assert!(b.ready(next + Duration::from_secs(60)));
        for _ in 0..3 {
            assert!(b.ready(next + Duration::from_secs(60)));
            b.take();
        }
        assert!(!b.ready(next + Duration::from_secs(60)));
    }
}
