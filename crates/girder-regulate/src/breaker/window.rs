//! The sliding window a closed breaker counts outcomes in.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The sliding window a closed breaker judges the failure rate over.
///
/// ```
/// use std::time::Duration;
/// use girder_regulate::breaker::{Breaker, Window};
/// let by_count = Breaker::builder().window(Window::Count(50)).build();
/// let by_time = Breaker::builder()
///     .window(Window::Time { span: Duration::from_secs(60), buckets: 12 })
///     .build();
/// # let _ = (by_count, by_time);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last `n` calls.
    Count(usize),
    /// The calls of the last `span`, counted in `buckets` slices (the oldest slice leaves
    /// whole, so the window is between `span - span / buckets` and `span` long).
    Time {
        /// How far back.
        span: Duration,
        /// In how many slices (at least 1).
        buckets: u32,
    },
}

/// The sliding window's outcomes.
#[derive(Debug)]
pub(super) enum Outcomes {
    Count {
        last: VecDeque<bool>,
        n: usize,
        failures: usize,
    },
    Time {
        slices: VecDeque<Slice>,
        span: Duration,
        width: Duration,
    },
}

#[derive(Debug)]
pub(super) struct Slice {
    start: Instant,
    calls: usize,
    failures: usize,
}

impl Outcomes {
    pub(super) fn new(window: Window) -> Outcomes {
        match window {
            Window::Count(n) => Outcomes::Count {
                last: VecDeque::with_capacity(n.max(1)),
                n: n.max(1),
                failures: 0,
            },
            Window::Time { span, buckets } => {
                let width = (span / buckets.max(1)).max(Duration::from_millis(1));
                Outcomes::Time {
                    slices: VecDeque::new(),
                    span,
                    width,
                }
            }
        }
    }

    pub(super) fn clear(&mut self) {
        match self {
            Outcomes::Count { last, failures, .. } => {
                last.clear();
                *failures = 0;
            }
            Outcomes::Time { slices, .. } => slices.clear(),
        }
    }

    pub(super) fn push(&mut self, failed: bool, now: Instant) {
        match self {
            Outcomes::Count { last, n, failures } => {
                if last.len() == *n && last.pop_front() == Some(true) {
                    *failures -= 1;
                }
                last.push_back(failed);
                *failures += usize::from(failed);
            }
            Outcomes::Time { slices, width, .. } => {
                match slices.back_mut() {
                    Some(s) if now < s.start + *width => {
                        s.calls += 1;
                        s.failures += usize::from(failed);
                    }
                    _ => slices.push_back(Slice {
                        start: now,
                        calls: 1,
                        failures: usize::from(failed),
                    }),
                }
                self.expire(now);
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        if let Outcomes::Time { slices, span, .. } = self {
            while slices.front().is_some_and(|s| s.start + *span <= now) {
                slices.pop_front();
            }
        }
    }

    /// (calls, failures) in the window now.
    pub(super) fn totals(&mut self, now: Instant) -> (usize, usize) {
        self.expire(now);
        match self {
            Outcomes::Count { last, failures, .. } => (last.len(), *failures),
            Outcomes::Time { slices, .. } => slices
                .iter()
                .fold((0, 0), |(c, f), s| (c + s.calls, f + s.failures)),
        }
    }
}
