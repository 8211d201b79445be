//! One log line a second at most for a thing that can happen a thousand times a second (an
//! attack), with the count of those not logged.

use std::time::{Duration, Instant};

#[derive(Default)]
pub(crate) struct LogBudget {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogBudget {
    /// `Some(suppressed since the last line)` if a line may be written now.
    pub(crate) fn spend(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}
