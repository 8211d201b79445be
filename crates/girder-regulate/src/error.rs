//! Why a regulator said no.

use std::time::Duration;

/// Why a request was not let through: the "no" of a regulator, said as early as it can be.
///
/// A [`Queue`](crate::Queue) answers with every variant but [`CircuitOpen`](Self::CircuitOpen),
/// which is a [`Breaker`](crate::Breaker)'s; sharing one type lets a caller that goes through
/// both handle one error.
///
/// ```
/// use girder_regulate::{Queue, Rejected};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let queue = Queue::builder().count(1).max_queue_len(0).build();
/// let _held = queue.ask().await.unwrap();
/// assert_eq!(queue.ask().await.unwrap_err(), Rejected::QueueFull { max: 0 });
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// The queue already holds its maximum of waiting requests; rejected on arrival.
    #[error("queue full ({max} waiting)")]
    QueueFull {
        /// The queue's `max_queue_len`.
        max: usize,
    },
    /// This client already has its maximum of waiting requests; rejected on arrival, whatever
    /// room the queue has for other clients.
    #[error("client queue full ({max} waiting for this client)")]
    ClientQueueFull {
        /// The queue's `max_client_queue_len`.
        max: usize,
    },
    /// The request waited the queue's `max_queue_time` without being granted.
    #[error("waited {waited:?} in the queue without a grant")]
    QueueTimeout {
        /// How long it waited.
        waited: Duration,
    },
    /// The request's own deadline passed while it waited, or had passed on arrival, or could
    /// not be met even if it were served next (so it was rejected at once).
    #[error("the request's deadline passed or could not be met")]
    DeadlinePassed,
    /// No capacity free now and the request does not wait: a [`try_ask`](crate::Queue::try_ask)
    /// with every permit taken, no token left or others already waiting, or any ask while the
    /// queue's limit is set to zero (shedding everything).
    #[error("overloaded: no capacity free now")]
    Overloaded,
    /// A circuit breaker is open (or half-open with its trial calls taken).
    #[error("circuit open")]
    CircuitOpen,
}

impl Rejected {
    /// The reason's short name, as [`QueueStats::rejected`](crate::queue::QueueStats) counts it:
    /// `"queue_full"`, `"client_queue_full"`, `"queue_timeout"`, `"deadline_passed"`,
    /// `"overloaded"` or `"circuit_open"`.
    ///
    /// ```
    /// use girder_regulate::Rejected;
    /// assert_eq!(Rejected::DeadlinePassed.reason(), "deadline_passed");
    /// ```
    pub fn reason(&self) -> &'static str {
        REASONS[self.index()]
    }

    pub(crate) fn index(&self) -> usize {
        match self {
            Rejected::QueueFull { .. } => 0,
            Rejected::ClientQueueFull { .. } => 1,
            Rejected::QueueTimeout { .. } => 2,
            Rejected::DeadlinePassed => 3,
            Rejected::Overloaded => 4,
            Rejected::CircuitOpen => 5,
        }
    }
}

/// Every reason's short name, in [`Rejected::index`] order.
pub(crate) const REASONS: [&str; 6] = [
    "queue_full",
    "client_queue_full",
    "queue_timeout",
    "deadline_passed",
    "overloaded",
    "circuit_open",
];
