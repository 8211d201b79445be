//! Logging what can happen a thousand times a second: at most one line a second, with the count
//! of those left out, as OTP's `logger` limits bursts. A node under attack or in a failure loop
//! (refused peers, dropped datagrams, a listener out of descriptors) must say so without its
//! log becoming the next problem.

use std::time::{Duration, Instant};

/// Permission to write one line a second at most; what was not written is counted and
/// reported with the next line that is.
///
/// ```
/// let mut budget = girder::log::LogBudget::default();
/// for _ in 0..3 {
///     if let Some(left_out) = budget.spend() {
///         eprintln!("peer refused ({left_out} more since the last line)");
///     }
/// }
/// // The first line went out; the other two wait to be counted in the next one.
/// assert_eq!(budget.spend(), None);
/// ```
#[derive(Debug, Clone)]
pub struct LogBudget {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Default for LogBudget {
    fn default() -> Self {
        LogBudget::every(Duration::from_secs(1))
    }
}

impl LogBudget {
    /// One line per `every` at most.
    pub fn every(every: Duration) -> Self {
        LogBudget {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(lines left out since the last one written)` if a line may be written now;
    /// `None` (and one more left out) if not.
    pub fn spend(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < self.every)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_within_the_window_are_counted_and_reported_with_the_next() {
        let mut b = LogBudget::every(Duration::from_millis(50));
        assert_eq!(b.spend(), Some(0));
        for _ in 0..1_000 {
            assert_eq!(b.spend(), None);
        }
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.spend(), Some(1_000));
        assert_eq!(b.spend(), None);
    }
}
