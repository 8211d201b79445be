//! Credit-based flow control for a stream of messages between two processes, on one node or
//! across nodes: the producer sends only against demand the consumer has signalled, as
//! Reactive Streams' `request(n)` and Elixir's GenStage (`max_demand`/`min_demand`) do. At
//! most `window` messages are ever in flight or queued at the consumer, whatever the two
//! processes' speeds, so the consumer's mailbox needs no more room than that and nothing is
//! dropped.
//!
//! Two halves, independent of how messages travel (they are the processes' own messages, so
//! they cross nodes like any other):
//!
//! * the consumer keeps a [`Demand`]: it asks for [`Demand::initial`] at the start, tells it of
//!   every message it has handled ([`Demand::handled`]), and sends the producer the top-up it
//!   returns once half the window is used;
//! * the producer keeps a [`Credit`]: it [`grant`](Credit::grant)s what each demand message
//!   says and [`take`](Credit::take)s one before each send.
//!
//! ```
//! use girder_regulate::flow::{Credit, Demand};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let (credit, mut demand) = (Credit::new(), Demand::new(4));
//! credit.grant(demand.initial()); // the consumer's first request, delivered
//! let mut in_flight = 0;
//! for _ in 0..4 {
//!     credit.take().await; // the producer sends one
//!     in_flight += 1;
//! }
//! assert!(!credit.try_take(), "a fifth would pass the window");
//! // The consumer handles two: half the window, so it asks for two more.
//! assert_eq!(demand.handled(), None);
//! assert_eq!(demand.handled(), Some(2));
//! credit.grant(2);
//! assert!(credit.try_take());
//! # let _ = in_flight;
//! # }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Semaphore;

/// The producer's side: how many messages it may still send. Cheap to share (`Arc` it) between
/// the task that receives demand and the one that sends.
#[derive(Debug)]
pub struct Credit {
    permits: Semaphore,
    sent: AtomicU64,
}

impl Default for Credit {
    fn default() -> Self {
        Self::new()
    }
}

impl Credit {
    /// No credit yet: nothing may be sent until the consumer asks.
    ///
    /// ```
    /// assert_eq!(girder_regulate::flow::Credit::new().available(), 0);
    /// ```
    pub fn new() -> Self {
        Credit {
            permits: Semaphore::new(0),
            sent: AtomicU64::new(0),
        }
    }

    /// The consumer asked for `n` more.
    ///
    /// ```
    /// let c = girder_regulate::flow::Credit::new();
    /// c.grant(3);
    /// assert_eq!(c.available(), 3);
    /// ```
    pub fn grant(&self, n: u64) {
        // The semaphore's bound is far above any sane window; a consumer asking for more is
        // capped rather than allowed to overflow it.
        let room = Semaphore::MAX_PERMITS.saturating_sub(self.permits.available_permits());
        self.permits.add_permits((n as usize).min(room));
    }

    /// Waits for credit for one message and uses it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let c = girder_regulate::flow::Credit::new();
    /// c.grant(1);
    /// c.take().await;
    /// assert_eq!((c.available(), c.sent()), (0, 1));
    /// # }
    /// ```
    pub async fn take(&self) {
        // The semaphore is never closed: acquiring can only succeed.
        if let Ok(p) = self.permits.acquire().await {
            p.forget();
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Uses credit for one message if there is any, without waiting.
    ///
    /// ```
    /// let c = girder_regulate::flow::Credit::new();
    /// assert!(!c.try_take());
    /// ```
    pub fn try_take(&self) -> bool {
        match self.permits.try_acquire() {
            Ok(p) => {
                p.forget();
                self.sent.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    /// Credit left now.
    pub fn available(&self) -> u64 {
        self.permits.available_permits() as u64
    }

    /// Messages sent against credit so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// The consumer's side: what it has asked for and when to ask for more.
#[derive(Debug, Clone)]
pub struct Demand {
    window: u64,
    /// Asked for and not yet handled.
    outstanding: u64,
    /// Ask again once `outstanding` falls to this.
    low: u64,
}

impl Demand {
    /// At most `window` messages (at least 1) in flight or queued; more is asked for when half
    /// of them have been handled.
    ///
    /// ```
    /// assert_eq!(girder_regulate::flow::Demand::new(100).window(), 100);
    /// ```
    pub fn new(window: u64) -> Self {
        let window = window.max(1);
        Demand {
            window,
            outstanding: 0,
            low: window / 2,
        }
    }

    /// The window.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// What to ask the producer for at the start (or after asking it to resume): the whole
    /// window, less what is already asked for.
    ///
    /// ```
    /// let mut d = girder_regulate::flow::Demand::new(8);
    /// assert_eq!(d.initial(), 8);
    /// assert_eq!(d.initial(), 0, "already asked");
    /// ```
    pub fn initial(&mut self) -> u64 {
        let n = self.window - self.outstanding;
        self.outstanding = self.window;
        n
    }

    /// One message handled; `Some(n)` when it is time to ask the producer for `n` more.
    ///
    /// ```
    /// let mut d = girder_regulate::flow::Demand::new(2);
    /// d.initial();
    /// assert_eq!(d.handled(), Some(1));
    /// ```
    pub fn handled(&mut self) -> Option<u64> {
        self.outstanding = self.outstanding.saturating_sub(1);
        (self.outstanding <= self.low).then(|| self.initial())
    }
}
