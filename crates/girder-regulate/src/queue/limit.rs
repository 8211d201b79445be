//! The concurrency limit: fixed (the count regulator) or found from observed latency (the
//! adaptive regulator), and the run-time controls that move it.

use std::time::Duration;

/// How an adaptive regulator finds its concurrency limit from the latency and outcome of the
/// permits it granted, after Netflix's concurrency-limits. Given to
/// [`QueueBuilder::adaptive`](crate::queue::QueueBuilder::adaptive).
///
/// * [`Adaptive::aimd`]: additive increase, multiplicative decrease. A permit released slower
///   than the threshold, or reported [`dropped`](crate::Permit::dropped), multiplies the limit
///   by the back-off ratio; any other, while at least half the limit is in use, adds one.
/// * [`Adaptive::gradient`]: compares the recent latency (a short average) with the long-run
///   one. While recent latency stays within `tolerance` times the long-run one the limit
///   grows (by a few each sample, smoothed); past it, the limit shrinks in proportion (at most
///   halved per sample, smoothed). No threshold to pick; the long-run average follows a lasting
///   change slowly, and falls back at once when latency recovers.
///
/// Both stay within `min..=max` and leave the limit alone while less than half of it is in
/// use (an idle system says nothing about its capacity).
///
/// ```
/// use std::time::Duration;
/// use girder_regulate::{queue::Adaptive, Queue};
///
/// let queue = Queue::builder()
///     .adaptive(Adaptive::gradient().initial(20).min(2).max(200))
///     .build();
/// assert_eq!(queue.limit(), Some(20));
/// let aimd = Adaptive::aimd(Duration::from_millis(50)).backoff(0.5);
/// # let _ = aimd;
/// ```
#[derive(Debug, Clone)]
pub struct Adaptive {
    algo: Algo,
    initial: usize,
    min: usize,
    max: usize,
    backoff: f64,
}

#[derive(Debug, Clone, Copy)]
enum Algo {
    Aimd { threshold: Duration },
    Gradient { tolerance: f64 },
}

impl Adaptive {
    /// Additive increase, multiplicative decrease around a latency `threshold`. Starts at 20,
    /// within 1..=1000, back-off ratio 0.9.
    ///
    /// ```
    /// use std::time::Duration;
    /// use girder_regulate::{queue::Adaptive, Queue};
    /// let queue = Queue::builder().adaptive(Adaptive::aimd(Duration::from_millis(20))).build();
    /// assert_eq!(queue.limit(), Some(20));
    /// ```
    pub fn aimd(threshold: Duration) -> Adaptive {
        Adaptive {
            algo: Algo::Aimd { threshold },
            initial: 20,
            min: 1,
            max: 1000,
            backoff: 0.9,
        }
    }

    /// The gradient of recent to long-run latency, tolerance 2.0. Starts at 20, within
    /// 1..=1000, back-off ratio (for dropped permits) 0.9.
    ///
    /// ```
    /// use girder_regulate::{queue::Adaptive, Queue};
    /// let queue = Queue::builder().adaptive(Adaptive::gradient()).build();
    /// assert_eq!(queue.limit(), Some(20));
    /// ```
    pub fn gradient() -> Adaptive {
        Adaptive {
            algo: Algo::Gradient { tolerance: 2.0 },
            initial: 20,
            min: 1,
            max: 1000,
            backoff: 0.9,
        }
    }

    /// The limit to start from.
    ///
    /// ```
    /// use girder_regulate::{queue::Adaptive, Queue};
    /// let queue = Queue::builder().adaptive(Adaptive::gradient().initial(5)).build();
    /// assert_eq!(queue.limit(), Some(5));
    /// ```
    pub fn initial(mut self, n: usize) -> Adaptive {
        self.initial = n;
        self
    }

    /// The lowest the limit goes (at least 1).
    ///
    /// ```
    /// use girder_regulate::{queue::Adaptive, Queue};
    /// let queue = Queue::builder().adaptive(Adaptive::gradient().initial(5).min(4)).build();
    /// queue.tighten();
    /// assert_eq!(queue.tighten(), Some(4));
    /// ```
    pub fn min(mut self, n: usize) -> Adaptive {
        self.min = n.max(1);
        self
    }

    /// The highest the limit goes.
    ///
    /// ```
    /// use girder_regulate::{queue::Adaptive, Queue};
    /// let queue = Queue::builder().adaptive(Adaptive::gradient().initial(5).max(6)).build();
    /// queue.loosen();
    /// assert_eq!(queue.loosen(), Some(6));
    /// ```
    pub fn max(mut self, n: usize) -> Adaptive {
        self.max = n.max(1);
        self
    }

    /// The ratio a decrease multiplies the limit by (clamped to `0.1..=0.99`).
    ///
    /// ```
    /// use girder_regulate::{queue::Adaptive, Queue};
    /// let queue = Queue::builder().adaptive(Adaptive::gradient().initial(10).backoff(0.5)).build();
    /// assert_eq!(queue.tighten(), Some(5));
    /// ```
    pub fn backoff(mut self, ratio: f64) -> Adaptive {
        self.backoff = ratio.clamp(0.1, 0.99);
        self
    }

    /// For [`gradient`](Self::gradient): how many times the long-run latency recent latency
    /// may reach before the limit shrinks (at least 1.0). Ignored by AIMD.
    ///
    /// ```
    /// let a = girder_regulate::queue::Adaptive::gradient().tolerance(1.5);
    /// # let _ = a;
    /// ```
    pub fn tolerance(mut self, tolerance: f64) -> Adaptive {
        if let Algo::Gradient { tolerance: t } = &mut self.algo {
            *t = tolerance.max(1.0);
        }
        self
    }
}

/// What a released permit says about the resource behind the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It was served; its latency is a sample.
    Success,
    /// It was dropped, timed out or refused downstream: an overload signal.
    Dropped,
    /// Nothing to learn (cancelled, or the caller said so).
    Ignore,
}

/// The current concurrency limit and how it moves.
#[derive(Debug)]
pub(crate) struct Limiter {
    limit: f64,
    min: usize,
    /// The minimum it was built with (`set` lowers `min` only while the limit is below it).
    floor: usize,
    max: usize,
    backoff: f64,
    algo: Option<Algo>,
    short: f64,
    long: f64,
    samples: u64,
}

/// Samples averaged for the gradient's recent latency and its long-run one.
const SHORT_WINDOW: f64 = 10.0;
const LONG_WINDOW: f64 = 600.0;
/// How far each gradient sample moves the limit toward its new estimate.
const SMOOTHING: f64 = 0.2;

impl Limiter {
    /// The count regulator: `n` at most, tightened down to 1 and loosened back up to `n`.
    pub(crate) fn fixed(n: usize) -> Limiter {
        Limiter {
            limit: n as f64,
            min: 1.min(n),
            floor: 1,
            max: n,
            backoff: 0.9,
            algo: None,
            short: 0.0,
            long: 0.0,
            samples: 0,
        }
    }

    /// The adaptive regulator, its maximum capped at `ceiling` (a count regulator beside it).
    pub(crate) fn adaptive(a: &Adaptive, ceiling: Option<usize>) -> Limiter {
        let max = ceiling.map_or(a.max, |c| a.max.min(c)).max(1);
        let min = a.min.min(max);
        Limiter {
            limit: a.initial.clamp(min, max) as f64,
            min,
            floor: a.min,
            max,
            backoff: a.backoff,
            algo: Some(a.algo),
            short: 0.0,
            long: 0.0,
            samples: 0,
        }
    }

    /// The limit now: grants in use may not reach it.
    pub(crate) fn current(&self) -> usize {
        self.limit as usize
    }

    /// Sets the limit and makes it the ceiling (0 sheds everything).
    pub(crate) fn set(&mut self, n: usize) {
        self.max = n;
        self.min = self.floor.min(n);
        self.limit = n as f64;
    }

    /// Multiplies the limit by the back-off ratio (at least one less), never below `min`.
    pub(crate) fn tighten(&mut self) {
        let lower = (self.limit * self.backoff).min(self.limit.floor() - 1.0);
        self.limit = lower.max(self.min as f64);
    }

    /// Adds one, never past `max`.
    pub(crate) fn loosen(&mut self) {
        self.limit = (self.limit.floor() + 1.0).min(self.max as f64);
    }

    /// Learns from a released permit: its latency, its outcome and how many were in use with
    /// it (it included).
    pub(crate) fn sample(&mut self, latency: Duration, outcome: Outcome, in_use: usize) {
        let Some(algo) = self.algo else { return };
        match outcome {
            Outcome::Ignore => {}
            Outcome::Dropped => self.tighten(),
            Outcome::Success => match algo {
                Algo::Aimd { threshold } => {
                    if latency > threshold {
                        self.tighten();
                    } else if in_use as f64 * 2.0 >= self.limit {
                        self.loosen();
                    }
                }
                Algo::Gradient { tolerance } => self.gradient(latency, in_use, tolerance),
            },
        }
    }

    fn gradient(&mut self, latency: Duration, in_use: usize, tolerance: f64) {
        let rtt = latency.as_secs_f64().max(1e-7);
        self.samples += 1;
        if self.samples == 1 {
            self.short = rtt;
            self.long = rtt;
        } else {
            // The long average warms up as a plain mean, then moves slowly.
            let n = (self.samples as f64).min(LONG_WINDOW);
            self.long += (rtt - self.long) / n;
            self.short += (rtt - self.short) * 2.0 / (SHORT_WINDOW + 1.0);
        }
        // Latency back well under the long-run average: the long-run one catches up faster,
        // so the limit is not held down by the memory of an overload.
        if self.long / self.short > 2.0 {
            self.long *= 0.95;
        }
        if (in_use as f64) < self.limit / 2.0 {
            return;
        }
        let gradient = (tolerance * self.long / self.short).clamp(0.5, 1.0);
        let headroom = self.limit.sqrt().max(1.0);
        let estimate = self.limit * gradient + headroom;
        let next = self.limit * (1.0 - SMOOTHING) + estimate * SMOOTHING;
        self.limit = next.clamp(self.min as f64, self.max as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tighten_and_loosen_stay_within_bounds() {
        let mut l = Limiter::fixed(10);
        for _ in 0..100 {
            l.tighten();
        }
        assert_eq!(l.current(), 1);
        for _ in 0..100 {
            l.loosen();
        }
        assert_eq!(l.current(), 10);
        l.tighten();
        assert_eq!(l.current(), 9);
        // Shedding (0) and back: tightening stops at 1 again, not 0.
        l.set(0);
        assert_eq!(l.current(), 0);
        l.set(3);
        for _ in 0..10 {
            l.tighten();
        }
        assert_eq!(l.current(), 1);
    }

    #[test]
    fn aimd_backs_off_on_slow_or_dropped_and_grows_when_used() {
        let mut l = Limiter::adaptive(&Adaptive::aimd(Duration::from_millis(10)).initial(20), None);
        l.sample(Duration::from_millis(50), Outcome::Success, 20);
        assert_eq!(l.current(), 18);
        l.sample(Duration::from_millis(1), Outcome::Dropped, 5);
        assert_eq!(l.current(), 16);
        l.sample(Duration::from_millis(1), Outcome::Success, 16);
        assert_eq!(l.current(), 17);
        // Mostly idle: nothing learnt.
        l.sample(Duration::from_millis(1), Outcome::Success, 2);
        assert_eq!(l.current(), 17);
        l.sample(Duration::from_millis(50), Outcome::Ignore, 17);
        assert_eq!(l.current(), 17);
    }

    #[test]
    fn gradient_shrinks_on_rising_latency_and_recovers() {
        let mut l = Limiter::adaptive(&Adaptive::gradient().initial(50).max(100), None);
        for _ in 0..200 {
            let used = l.current();
            l.sample(Duration::from_millis(10), Outcome::Success, used);
        }
        let calm = l.current();
        assert!(calm >= 50, "grew under steady latency: {calm}");
        for _ in 0..50 {
            let used = l.current();
            l.sample(Duration::from_millis(100), Outcome::Success, used);
        }
        let loaded = l.current();
        assert!(loaded < calm / 2, "shrank: {calm} -> {loaded}");
        for _ in 0..200 {
            let used = l.current();
            l.sample(Duration::from_millis(10), Outcome::Success, used);
        }
        assert!(
            l.current() > loaded * 2,
            "recovered: {loaded} -> {}",
            l.current()
        );
    }
}
