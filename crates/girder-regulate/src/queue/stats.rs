//! A queue's numbers, as a snapshot.

use std::time::Duration;

/// A snapshot of a [`Queue`](crate::Queue), from [`Queue::stats`](crate::Queue::stats).
///
/// ```
/// use girder_regulate::Queue;
///
/// let queue = Queue::builder().count(2).build();
/// let _a = queue.try_ask().unwrap();
/// let _b = queue.try_ask().unwrap();
/// assert!(queue.try_ask().is_err());
/// let s = queue.stats();
/// assert_eq!((s.granted, s.in_use, s.limit), (2, 2, Some(2)));
/// assert_eq!(s.rejected.overloaded, 1);
/// assert_eq!(s.rejected.total(), 1);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct QueueStats {
    /// Permits granted since the queue was built.
    pub granted: u64,
    /// Asks rejected since the queue was built, by reason.
    pub rejected: Rejections,
    /// Asks waiting now.
    pub queued: usize,
    /// Permits held now.
    pub in_use: usize,
    /// The concurrency limit now, if the queue has one (count, adaptive, or set at run time).
    pub limit: Option<usize>,
    /// The rate regulator's rate now (grants a second), if the queue has one.
    pub rate: Option<f64>,
    /// Time from ask to grant, median (a grant on arrival counts as zero).
    pub wait_p50: Duration,
    /// Time from ask to grant, 99th percentile.
    pub wait_p99: Duration,
    /// Time from ask to grant, the longest.
    pub wait_max: Duration,
}

/// Rejections by reason (each a [`Rejected`](crate::Rejected) variant).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejections {
    /// [`Rejected::QueueFull`](crate::Rejected::QueueFull).
    pub queue_full: u64,
    /// [`Rejected::ClientQueueFull`](crate::Rejected::ClientQueueFull).
    pub client_queue_full: u64,
    /// [`Rejected::QueueTimeout`](crate::Rejected::QueueTimeout).
    pub queue_timeout: u64,
    /// [`Rejected::DeadlinePassed`](crate::Rejected::DeadlinePassed).
    pub deadline_passed: u64,
    /// [`Rejected::Overloaded`](crate::Rejected::Overloaded).
    pub overloaded: u64,
}

impl Rejections {
    pub(crate) fn from_counts(c: &[u64]) -> Rejections {
        Rejections {
            queue_full: c[0],
            client_queue_full: c[1],
            queue_timeout: c[2],
            deadline_passed: c[3],
            overloaded: c[4],
        }
    }

    /// All of them.
    ///
    /// ```
    /// let r = girder_regulate::queue::Rejections { queue_full: 2, overloaded: 1, ..Default::default() };
    /// assert_eq!(r.total(), 3);
    /// ```
    pub fn total(&self) -> u64 {
        self.queue_full
            + self.client_queue_full
            + self.queue_timeout
            + self.deadline_passed
            + self.overloaded
    }
}
