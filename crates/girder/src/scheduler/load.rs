//! How much work waits on a scheduler, in time: what decides whether moving processes between
//! schedulers pays.
//!
//! Moving a process to another core costs its cache lines, and if it keeps talking to processes
//! left behind, every message after that is a cross-core wake-up: about half a microsecond of
//! cache misses per call round trip on the 2-core machines this project measures on, more than
//! a short process run itself. A server with 100 callers spread over two schedulers ran at
//! 2.3 M calls/s; the same processes gathered on one scheduler ran at 3.5 M (decision 008).
//! So the pool spreads work only when there is enough of it: each scheduler publishes the mean
//! length of its recent runs, and its queue is worth stealing from, or waking a sleeping
//! scheduler for, only when the queue's length times that mean reaches [`SPREAD_AT`]. Below
//! that, work stays on the scheduler that is already running it: light load runs on as few
//! schedulers as it needs, heavy load on all (the BEAM's load compaction, in spirit).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Queued work (in nanoseconds of runs) from which a queue is worth spreading to another
/// scheduler: well above what moving a process costs, well below what a soft real-time
/// system notices as delay. Not lower: a server's run that answers a batch of calls is one
/// long run among many short ones, so the mean overstates what each queued caller costs; at
/// 50 µs a server with 100 callers sat on the line and was split across cores every few
/// milliseconds, which put call_c100's p99 at 35–60 µs instead of 30 (decision 008).
pub(super) const SPREAD_AT: u64 = 100_000;
/// Before a scheduler has measured its runs, its queue is worth spreading from this length
/// on (a single queued process is the next hop of a message chain its scheduler is about to
/// run; taking it would split the chain across cores).
const SPREAD_AT_UNMEASURED: usize = 2;
/// Runs timed together, so the clock is read once per window rather than once per run.
const WINDOW: u32 = 64;
/// A window cut short by idleness still counts if it had this many runs.
const WINDOW_AT_LEAST: u32 = 8;

/// A scheduler's published load: the mean length of its recent runs. Written by its owner only,
/// read by the schedulers deciding whether to steal from it.
#[derive(Default)]
pub(super) struct Load {
    /// Nanoseconds, smoothed over windows; 0 until the first window is measured.
    mean_run_ns: AtomicU64,
}

impl Load {
    /// Whether `queued` processes waiting behind this scheduler's current run are enough work
    /// to move some of them to another scheduler.
    pub(super) fn worth_spreading(&self, queued: usize) -> bool {
        match self.mean_run_ns.load(Ordering::Relaxed) {
            0 => queued >= SPREAD_AT_UNMEASURED,
            mean => (queued as u64).saturating_mul(mean) >= SPREAD_AT,
        }
    }

    /// The mean length of recent runs in nanoseconds (0: not measured yet).
    pub(super) fn mean_run_ns(&self) -> u64 {
        self.mean_run_ns.load(Ordering::Relaxed)
    }

    fn record(&self, window: std::time::Duration, runs: u32) {
        let sample = (window.as_nanos() / u128::from(runs)).clamp(1, u128::from(u64::MAX >> 2));
        let sample = sample as u64;
        let old = self.mean_run_ns.load(Ordering::Relaxed);
        let mean = if old == 0 {
            sample
        } else {
            // Weighted towards the past so one odd window does not swing the policy.
            (old * 3 + sample) / 4
        };
        self.mean_run_ns.store(mean.max(1), Ordering::Relaxed);
    }

    #[cfg(test)]
    fn mean(&self) -> u64 {
        self.mean_run_ns.load(Ordering::Relaxed)
    }
}

/// The owning scheduler's stopwatch: times windows of consecutive runs into its [`Load`].
pub(super) struct RunClock {
    start: Option<Instant>,
    runs: u32,
}

impl RunClock {
    pub(super) fn new() -> Self {
        RunClock {
            start: None,
            runs: 0,
        }
    }

    /// One more run ended.
    #[inline]
    pub(super) fn ran(&mut self, load: &Load) {
        self.runs += 1;
        if self.runs < WINDOW && self.start.is_some() {
            return;
        }
        self.restart(load);
    }

    /// The scheduler found nothing to run at `now`: idle time is not run time, so the window
    /// ends here.
    pub(super) fn idle(&mut self, load: &Load, now: Instant) {
        if let Some(start) = self.start.take() {
            if self.runs >= WINDOW_AT_LEAST {
                load.record(now - start, self.runs);
            }
        }
        self.runs = 0;
    }

    #[cold]
    fn restart(&mut self, load: &Load) {
        let now = Instant::now();
        if let Some(start) = self.start {
            load.record(now - start, self.runs);
        }
        self.start = Some(now);
        self.runs = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unmeasured_load_spreads_from_two_queued() {
        let load = Load::default();
        assert!(!load.worth_spreading(0));
        assert!(!load.worth_spreading(1));
        assert!(load.worth_spreading(2));
    }

    #[test]
    fn short_runs_are_not_worth_spreading_until_they_add_up() {
        let load = Load::default();
        load.record(Duration::from_nanos(64 * 250), 64);
        assert_eq!(load.mean(), 250);
        // 100 queued runs of 250 ns: 25 µs of work, cheaper to run here than to move.
        assert!(!load.worth_spreading(100));
        assert!(!load.worth_spreading(399));
        assert!(load.worth_spreading(400));
        assert!(load.worth_spreading(usize::MAX), "no overflow");
    }

    #[test]
    fn one_long_run_queued_is_worth_spreading() {
        let load = Load::default();
        load.record(Duration::from_millis(64), 64);
        assert!(load.worth_spreading(1));
        assert!(!load.worth_spreading(0));
    }

    #[test]
    fn the_mean_follows_the_runs_smoothed() {
        let load = Load::default();
        load.record(Duration::from_nanos(1000 * 64), 64);
        load.record(Duration::from_nanos(200 * 64), 64);
        assert_eq!(load.mean(), (1000 * 3 + 200) / 4);
        for _ in 0..40 {
            load.record(Duration::from_nanos(200 * 64), 64);
        }
        assert!((200..=210).contains(&load.mean()), "{}", load.mean());
    }

    #[test]
    fn the_clock_times_windows_and_ignores_idle_time() {
        let load = Load::default();
        let mut clock = RunClock::new();
        // The first run only starts the window.
        clock.ran(&load);
        assert_eq!(load.mean(), 0);
        for _ in 0..WINDOW {
            std::thread::sleep(Duration::from_micros(50));
            clock.ran(&load);
        }
        let busy = load.mean();
        assert!(busy >= 50_000, "runs took at least 50 µs each: {busy}");
        // Idle with a short window: nothing recorded, and the idle time is not counted.
        clock.ran(&load);
        clock.idle(&load, Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        for _ in 0..WINDOW + 1 {
            clock.ran(&load);
        }
        assert!(
            load.mean() < busy,
            "fast runs after idling lower the mean: {} vs {busy}",
            load.mean()
        );
    }
}
