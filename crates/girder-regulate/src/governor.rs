//! A queue that follows the node's load: the [`Governor`] reads a load signal every period
//! (scheduling lag from `girder::Node::load`, say), tightens the queue's limit while the signal
//! is above its line and loosens it one step a period once it is back below the lower line,
//! telling a listener when overload starts and ends (girder-ops raises and clears an alarm).
//!
//! Two lines, not one, so a signal hovering at the line does not flap: tighten above `high`,
//! declare recovery below `low`, hold in between. Tightening is multiplicative and loosening
//! additive (AIMD), as in TCP and in the adaptive regulator: the limit falls fast when the
//! node is in trouble and comes back carefully.

use std::time::Duration;

use crate::Queue;

/// What a [`Governor`] tells its listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overload {
    /// The signal crossed the high line: the queue is being tightened.
    Started,
    /// The signal fell below the low line: the queue is being loosened back.
    Ended,
}

type Signal = Box<dyn FnMut() -> f64 + Send>;
type Listener = Box<dyn FnMut(Overload, f64) + Send>;

/// Tightens a [`Queue`] while a load signal is high and loosens it when it recovers.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use girder_regulate::{governor::Overload, Governor, Queue};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let queue = Queue::builder().count(10).build();
/// let lag_ms = Arc::new(AtomicU64::new(500)); // stands for `node.load().lag`
/// let signal = lag_ms.clone();
/// let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
/// let governor = Governor::new(&queue, move || signal.load(Ordering::Relaxed) as f64)
///     .tighten_above(200.0)
///     .loosen_below(50.0)
///     .every(Duration::from_millis(100))
///     .on_change(move |o, _| { let _ = tx.send(o); });
/// let task = tokio::spawn(governor.run());
/// assert_eq!(events.recv().await, Some(Overload::Started));
/// tokio::time::sleep(Duration::from_millis(250)).await;
/// assert!(queue.limit().unwrap() < 10);
/// lag_ms.store(10, Ordering::Relaxed);
/// assert_eq!(events.recv().await, Some(Overload::Ended));
/// tokio::time::sleep(Duration::from_secs(2)).await;
/// assert_eq!(queue.limit(), Some(10));
/// task.abort();
/// # }
/// ```
pub struct Governor {
    queue: Queue,
    signal: Signal,
    high: f64,
    low: f64,
    every: Duration,
    listener: Option<Listener>,
}

impl Governor {
    /// A governor of `queue` (which should have a concurrency regulator: `count` or
    /// `adaptive`; without one it only tells its listener) reading `signal`. By default it
    /// tightens above 1.0 and declares recovery below 0.5, every second.
    pub fn new(queue: &Queue, signal: impl FnMut() -> f64 + Send + 'static) -> Self {
        Governor {
            queue: queue.clone(),
            signal: Box::new(signal),
            high: 1.0,
            low: 0.5,
            every: Duration::from_secs(1),
            listener: None,
        }
    }

    /// Tightens the queue each period the signal is above `line`.
    pub fn tighten_above(mut self, line: f64) -> Self {
        self.high = line;
        self
    }

    /// Declares recovery, and loosens the queue each period, once the signal is below `line`
    /// (kept at or under the high line).
    pub fn loosen_below(mut self, line: f64) -> Self {
        self.low = line;
        self
    }

    /// How often the signal is read.
    pub fn every(mut self, period: Duration) -> Self {
        self.every = period.max(Duration::from_millis(1));
        self
    }

    /// Called when overload starts and ends, with the signal's value then: where an alarm is
    /// raised and cleared.
    pub fn on_change(mut self, f: impl FnMut(Overload, f64) + Send + 'static) -> Self {
        self.listener = Some(Box::new(f));
        self
    }

    /// Runs until its future is dropped (spawn it as a task of the node it watches).
    pub async fn run(mut self) {
        let low = self.low.min(self.high);
        let mut overloaded = false;
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let v = (self.signal)();
            if v > self.high {
                self.queue.tighten();
                if !overloaded {
                    overloaded = true;
                    tracing::warn!(signal = v, line = self.high, limit = ?self.queue.limit(), "overload: tightening the queue");
                    if let Some(l) = &mut self.listener {
                        l(Overload::Started, v);
                    }
                }
            } else if v < low {
                if overloaded {
                    overloaded = false;
                    tracing::info!(signal = v, line = low, "overload over: loosening the queue");
                    if let Some(l) = &mut self.listener {
                        l(Overload::Ended, v);
                    }
                }
                self.queue.loosen();
            }
        }
    }
}
