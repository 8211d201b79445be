//! Regulated queues: a [`Queue`] in front of a scarce resource hands out [`Permit`]s, and says
//! no early when it cannot.
//!
//! As in Ulf Wiger's Erlang `jobs`, a request *asks* the queue and gets a grant or a rejection;
//! the queue's regulators decide when a grant can be made, and its limits decide how long and
//! how many may wait for one.
//!
//! **Regulators** (any combination; none means unlimited):
//!
//! * rate ([`QueueBuilder::rate`]): a token bucket, so many grants a second with a burst;
//! * count ([`QueueBuilder::count`]): at most so many permits held at once;
//! * adaptive ([`QueueBuilder::adaptive`]): a concurrency limit found from the latency and
//!   outcome of the permits granted ([`Adaptive`]: AIMD or gradient); with a count beside it,
//!   the count is its ceiling.
//!
//! **Waiting** is bounded: past [`max_queue_len`](QueueBuilder::max_queue_len) waiters (1,024
//! by default) an ask is rejected on arrival ([`Rejected::QueueFull`]), and past
//! [`max_client_queue_len`](QueueBuilder::max_client_queue_len) of one client's
//! ([`Rejected::ClientQueueFull`]); a waiter is rejected once it has waited
//! [`max_queue_time`](QueueBuilder::max_queue_time) ([`Rejected::QueueTimeout`]) or its own
//! deadline has come ([`Queue::ask_until`], [`Ask::deadline`]: [`Rejected::DeadlinePassed`]),
//! and never waits past either. With a rate regulator, an ask whose deadline could not be met
//! even if everything surely ahead of it were served first (higher priorities and its client's
//! own earlier asks) is rejected at once.
//!
//! **Order**: waiters are served by priority ([`Ask::priority`], higher first, among
//! [`priority_levels`](QueueBuilder::priority_levels)); within a priority, round-robin across
//! clients ([`Ask::client`]), so a client with a thousand waiting asks delays another's single
//! ask by at most one grant per client waiting; within a client, first come first served. A
//! grant is handed to the waiter under the queue's lock (it cannot be taken by a newcomer), and
//! the waiter's task is woken after the lock is released.
//!
//! **Run-time control**, for samplers and operators: [`Queue::set_limit`] sets the concurrency
//! limit (and its ceiling; 0 sheds every ask with [`Rejected::Overloaded`]),
//! [`Queue::tighten`] multiplies it by the back-off ratio (0.9, at least one less, never below
//! the minimum: 1 for a count, the adaptive's `min`), [`Queue::loosen`] adds one (never past the
//! ceiling: the count, or the adaptive's `max`), [`Queue::set_rate`] changes the rate. An
//! overload signal, whether a sampler's `tighten` or a permit released with
//! [`Permit::dropped`], shrinks the limit at once; recovery is gradual: a sampler's `loosen`
//! per period, or (adaptive) one step per good sample while the limit is in use.
//!
//! **Cost.** A grant on arrival (nobody waiting, capacity free) is one short `parking_lot` lock
//! taken once to grant and once to release, plus the `Arc` clone the permit holds; no task, no
//! timer, no allocation. The clock is read only with a rate regulator, a deadline, or (at grant
//! and release) an adaptive one. `try_ask` and the drop of its permit take about
//! 55 ns together on the dev machine (43 to 99 ns across runs, its 2 cores shared with other
//! builds; count regulator, one thread, no contention; a little less without a regulator),
//! measured by the `fast_path_cost` test in `tests/queue.rs` (`--release -- --ignored`). A waiter costs an entry in a map, one timer if it has a
//! deadline, and a wake-up when granted.
//!
//! ```
//! use std::time::Duration;
//! use girder_regulate::{Ask, Queue, Rejected};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let queue = Queue::builder()
//!     .count(2)
//!     .rate(1000.0, 50)
//!     .max_queue_len(100)
//!     .max_queue_time(Duration::from_millis(500))
//!     .build();
//! let permit = queue.ask().await.unwrap();
//! // ... use the scarce resource ...
//! drop(permit);
//!
//! let urgent = Ask::new().client("tenant-7").priority(1);
//! let _permit = queue.ask_with(urgent).await.unwrap();
//! # let _ = Rejected::Overloaded;
//! # }
//! ```

mod asking;
mod fair;
mod limit;
mod permit;
mod rate;
mod state;
mod stats;

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

pub use asking::Asking;
pub use limit::Adaptive;
pub use permit::Permit;
pub use stats::{QueueStats, Rejections};

use crate::Rejected;
use limit::Limiter;
use rate::Bucket;
use state::{Config, State};

/// A regulated queue: cheap to clone (an `Arc` inside), every clone the same queue. See the
/// [module documentation](self) for what it does and what it costs.
///
/// ```
/// use girder_regulate::{Queue, Rejected};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let queue = Queue::builder().count(1).max_queue_len(0).build();
/// let permit = queue.ask().await.unwrap();
/// assert_eq!(queue.ask().await.unwrap_err(), Rejected::QueueFull { max: 0 });
/// drop(permit);
/// assert!(queue.ask().await.is_ok());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    cfg: Config,
    state: Mutex<State>,
}

impl std::fmt::Debug for Inner {
    /// The limits and, if the lock is free, what is in use and waiting (not the waiters).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Queue");
        d.field("max_queue_len", &self.cfg.max_queue_len)
            .field("max_client_queue_len", &self.cfg.max_client_queue_len)
            .field("max_queue_time", &self.cfg.max_queue_time);
        if let Some(s) = self.state.try_lock() {
            d.field("limit", &s.limit())
                .field("rate", &s.bucket.as_ref().map(Bucket::rate))
                .field("in_use", &s.in_use)
                .field("queued", &s.queued());
        }
        d.finish_non_exhaustive()
    }
}

impl Queue {
    /// A builder with no regulator, 1,024 waiters at most, no time limit, one priority level.
    ///
    /// ```
    /// let queue = girder_regulate::Queue::builder().build();
    /// assert_eq!(queue.limit(), None);
    /// ```
    pub fn builder() -> QueueBuilder {
        QueueBuilder {
            rate: None,
            count: None,
            adaptive: None,
            max_queue_len: 1024,
            max_client_queue_len: None,
            max_queue_time: None,
            levels: 1,
        }
    }

    /// Asks for a permit: granted at once, after a wait in the queue, or rejected.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let queue = girder_regulate::Queue::builder().count(4).build();
    /// let permit = queue.ask().await.unwrap();
    /// # drop(permit);
    /// # }
    /// ```
    pub fn ask(&self) -> Asking<'_> {
        Asking::new(self, Ask::new())
    }

    /// Asks for a permit that is no use after `deadline`: rejected with
    /// [`Rejected::DeadlinePassed`] when it comes, or at once if it could not be met.
    ///
    /// ```
    /// use std::time::Duration;
    /// use girder_regulate::{Queue, Rejected};
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let queue = Queue::builder().rate(10.0, 1).build();
    /// let _first = queue.ask().await.unwrap(); // the one token
    /// // The next token is 100 ms away: a 10 ms deadline cannot be met.
    /// let soon = Instant::now() + Duration::from_millis(10);
    /// assert_eq!(queue.ask_until(soon).await.unwrap_err(), Rejected::DeadlinePassed);
    /// # }
    /// ```
    pub fn ask_until(&self, deadline: Instant) -> Asking<'_> {
        Asking::new(self, Ask::new().deadline(deadline))
    }

    /// Asks with a client, a priority and a deadline.
    ///
    /// ```
    /// use girder_regulate::{Ask, Queue};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let queue = Queue::builder().count(1).priority_levels(3).build();
    /// let permit = queue.ask_with(Ask::new().client(42u64).priority(2)).await.unwrap();
    /// # drop(permit);
    /// # }
    /// ```
    pub fn ask_with(&self, ask: Ask) -> Asking<'_> {
        Asking::new(self, ask)
    }

    /// A permit now, or [`Rejected::Overloaded`]: never waits, never jumps the queue (with
    /// asks waiting it is refused).
    ///
    /// ```
    /// let queue = girder_regulate::Queue::builder().count(1).build();
    /// let permit = queue.try_ask().unwrap();
    /// assert!(queue.try_ask().is_err());
    /// # drop(permit);
    /// ```
    pub fn try_ask(&self) -> Result<Permit, Rejected> {
        self.inner.state.lock().try_now()?;
        Ok(Permit::new(Arc::clone(&self.inner)))
    }

    /// The concurrency limit now, if the queue has one.
    ///
    /// ```
    /// assert_eq!(girder_regulate::Queue::builder().count(8).build().limit(), Some(8));
    /// ```
    pub fn limit(&self) -> Option<usize> {
        self.inner.state.lock().limit()
    }

    /// Sets the concurrency limit, and the ceiling `loosen` and an adaptive regulator grow to;
    /// a queue without a concurrency regulator gets one. Permits held past a lowered limit
    /// stay held; no new one is granted until they are below it. 0 sheds: waiters and new asks
    /// are rejected with [`Rejected::Overloaded`] until the limit is raised.
    ///
    /// ```
    /// let queue = girder_regulate::Queue::builder().build();
    /// queue.set_limit(3);
    /// assert_eq!(queue.limit(), Some(3));
    /// queue.set_limit(0);
    /// assert!(queue.try_ask().is_err());
    /// ```
    pub fn set_limit(&self, n: usize) {
        self.control(|s| match &mut s.limiter {
            Some(l) => l.set(n),
            None => s.limiter = Some(Limiter::fixed(n)),
        });
    }

    /// The overload signal: multiplies the limit by the back-off ratio (at least one less,
    /// never below the minimum) and returns the new limit; `None` without a concurrency
    /// regulator.
    ///
    /// ```
    /// let queue = girder_regulate::Queue::builder().count(10).build();
    /// assert_eq!(queue.tighten(), Some(9));
    /// assert_eq!(queue.loosen(), Some(10));
    /// assert_eq!(queue.loosen(), Some(10)); // the count is the ceiling
    /// ```
    pub fn tighten(&self) -> Option<usize> {
        self.control(|s| {
            s.limiter.as_mut()?.tighten();
            s.limit()
        })
    }

    /// Recovery: adds one to the limit, never past its ceiling, and returns the new limit;
    /// `None` without a concurrency regulator.
    ///
    /// ```
    /// let queue = girder_regulate::Queue::builder().count(2).build();
    /// queue.tighten();
    /// assert_eq!(queue.loosen(), Some(2));
    /// ```
    pub fn loosen(&self) -> Option<usize> {
        self.control(|s| {
            s.limiter.as_mut()?.loosen();
            s.limit()
        })
    }

    /// The rate regulator's rate now, grants a second.
    ///
    /// ```
    /// assert_eq!(girder_regulate::Queue::builder().rate(50.0, 5).build().rate(), Some(50.0));
    /// ```
    pub fn rate(&self) -> Option<f64> {
        self.inner.state.lock().bucket.as_ref().map(Bucket::rate)
    }

    /// Changes the rate regulator's rate (grants a second); returns false, changing nothing, if
    /// the queue was built without one.
    ///
    /// ```
    /// let queue = girder_regulate::Queue::builder().rate(50.0, 5).build();
    /// assert!(queue.set_rate(10.0));
    /// assert_eq!(queue.rate(), Some(10.0));
    /// ```
    pub fn set_rate(&self, per_second: f64) -> bool {
        self.control(|s| match &mut s.bucket {
            Some(b) => {
                b.set_rate(per_second, Instant::now());
                true
            }
            None => false,
        })
    }

    /// A snapshot of the queue's numbers.
    ///
    /// ```
    /// let s = girder_regulate::Queue::builder().build().stats();
    /// assert_eq!((s.granted, s.queued, s.in_use), (0, 0, 0));
    /// ```
    pub fn stats(&self) -> QueueStats {
        let s = self.inner.state.lock();
        let micros = |q: f64| Duration::from_micros(s.waits.value_at_quantile(q));
        QueueStats {
            granted: s.granted,
            rejected: Rejections::from_counts(&s.rejected),
            queued: s.queued(),
            in_use: s.in_use,
            limit: s.limit(),
            rate: s.bucket.as_ref().map(Bucket::rate),
            wait_p50: micros(0.5),
            wait_p99: micros(0.99),
            wait_max: Duration::from_micros(s.waits.max()),
        }
    }

    /// Runs a change of the regulators, then hands whatever it freed to the waiters.
    fn control<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut wakers = Vec::new();
        let out = {
            let mut s = self.inner.state.lock();
            let out = f(&mut s);
            s.dispatch(Instant::now(), &mut wakers);
            out
        };
        wakers.into_iter().for_each(std::task::Waker::wake);
        out
    }
}

/// How a [`Queue`] is built: its regulators and limits.
///
/// ```
/// use std::time::Duration;
/// use girder_regulate::{queue::Adaptive, Queue};
///
/// let queue = Queue::builder()
///     .rate(200.0, 20)
///     .count(16)
///     .adaptive(Adaptive::gradient().initial(8))
///     .max_queue_len(500)
///     .max_client_queue_len(50)
///     .max_queue_time(Duration::from_secs(1))
///     .priority_levels(3)
///     .build();
/// assert_eq!(queue.limit(), Some(8));
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build`"]
pub struct QueueBuilder {
    rate: Option<(f64, u32)>,
    count: Option<usize>,
    adaptive: Option<Adaptive>,
    max_queue_len: usize,
    max_client_queue_len: Option<usize>,
    max_queue_time: Option<Duration>,
    levels: usize,
}

impl QueueBuilder {
    /// The rate regulator: `per_second` grants a second on average, up to `burst` at once
    /// (at least 1) after a quiet spell. The bucket starts full.
    ///
    /// ```
    /// let queue = girder_regulate::Queue::builder().rate(100.0, 10).build();
    /// assert_eq!(queue.rate(), Some(100.0));
    /// ```
    pub fn rate(mut self, per_second: f64, burst: u32) -> QueueBuilder {
        self.rate = Some((per_second, burst));
        self
    }

    /// The count regulator: at most `n` permits held at once (0 sheds everything).
    ///
    /// ```
    /// let queue = girder_regulate::Queue::builder().count(4).build();
    /// assert_eq!(queue.limit(), Some(4));
    /// ```
    pub fn count(mut self, n: usize) -> QueueBuilder {
        self.count = Some(n);
        self
    }

    /// The adaptive regulator: a concurrency limit found from observed latency. With
    /// [`count`](Self::count) too, the count is its ceiling.
    ///
    /// ```
    /// use girder_regulate::{queue::Adaptive, Queue};
    /// let queue = Queue::builder().count(50).adaptive(Adaptive::gradient().initial(100)).build();
    /// assert_eq!(queue.limit(), Some(50)); // the count is the ceiling
    /// ```
    pub fn adaptive(mut self, adaptive: Adaptive) -> QueueBuilder {
        self.adaptive = Some(adaptive);
        self
    }

    /// At most `n` asks wait; more are rejected on arrival with [`Rejected::QueueFull`]
    /// (1,024 by default; 0: never wait).
    ///
    /// ```
    /// let queue = girder_regulate::Queue::builder().count(1).max_queue_len(0).build();
    /// let _held = queue.try_ask().unwrap();
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// assert!(rt.block_on(queue.ask()).is_err()); // no room to wait
    /// ```
    pub fn max_queue_len(mut self, n: usize) -> QueueBuilder {
        self.max_queue_len = n;
        self
    }

    /// At most `n` asks of one client wait; more are rejected on arrival with
    /// [`Rejected::ClientQueueFull`] (no cap by default beyond `max_queue_len`).
    ///
    /// ```
    /// let queue = girder_regulate::Queue::builder().max_client_queue_len(10).build();
    /// # let _ = queue;
    /// ```
    pub fn max_client_queue_len(mut self, n: usize) -> QueueBuilder {
        self.max_client_queue_len = Some(n);
        self
    }

    /// No ask waits longer than `max`: past it, it is rejected with
    /// [`Rejected::QueueTimeout`] (no limit by default).
    ///
    /// ```
    /// use std::time::Duration;
    /// let queue = girder_regulate::Queue::builder().max_queue_time(Duration::from_millis(250)).build();
    /// # let _ = queue;
    /// ```
    pub fn max_queue_time(mut self, max: Duration) -> QueueBuilder {
        self.max_queue_time = Some(max);
        self
    }

    /// How many priorities are told apart (1 by default, at most 256): priority `p` is served
    /// at level `min(p, n - 1)`, higher levels first.
    ///
    /// ```
    /// use girder_regulate::{Ask, Queue};
    /// let queue = Queue::builder().count(1).priority_levels(2).build();
    /// let urgent = Ask::new().priority(1);
    /// # let _ = (queue, urgent);
    /// ```
    pub fn priority_levels(mut self, n: usize) -> QueueBuilder {
        self.levels = n.clamp(1, 256);
        self
    }

    /// The queue.
    ///
    /// ```
    /// let queue = girder_regulate::Queue::builder().count(2).build();
    /// let also = queue.clone(); // the same queue
    /// let _p = also.try_ask().unwrap();
    /// assert_eq!(queue.stats().in_use, 1);
    /// ```
    pub fn build(self) -> Queue {
        let limiter = match (&self.adaptive, self.count) {
            (Some(a), ceiling) => Some(Limiter::adaptive(a, ceiling)),
            (None, Some(n)) => Some(Limiter::fixed(n)),
            (None, None) => None,
        };
        let bucket = self.rate.map(|(r, b)| Bucket::new(r, b, Instant::now()));
        let cfg = Config {
            max_queue_len: self.max_queue_len,
            max_client_queue_len: self.max_client_queue_len,
            max_queue_time: self.max_queue_time,
            timed: self.adaptive.is_some(),
        };
        let state = State::new(limiter, bucket, self.levels);
        Queue {
            inner: Arc::new(Inner {
                cfg,
                state: Mutex::new(state),
            }),
        }
    }
}

/// One ask's particulars: who asks ([`client`](Self::client)), how urgent
/// ([`priority`](Self::priority)), until when it is worth a grant
/// ([`deadline`](Self::deadline)). Given to [`Queue::ask_with`].
///
/// ```
/// use std::time::Duration;
/// use girder_regulate::Ask;
/// use tokio::time::Instant;
///
/// let ask = Ask::new()
///     .client("tenant-7")
///     .priority(2)
///     .deadline(Instant::now() + Duration::from_millis(200));
/// # let _ = ask;
/// ```
#[derive(Debug, Clone, Default)]
pub struct Ask {
    client: u64,
    priority: u8,
    deadline: Option<Instant>,
}

impl Ask {
    /// Client 0 (every ask without a client is the same client), priority 0, no deadline.
    ///
    /// ```
    /// let ask = girder_regulate::Ask::new();
    /// # let _ = ask;
    /// ```
    pub fn new() -> Ask {
        Ask::default()
    }

    /// The client asking, for fairness and the per-client cap: any hashable key, hashed to
    /// 64 bits (two keys that collide share a client's turn and cap).
    ///
    /// ```
    /// use girder_regulate::Ask;
    /// let by_name = Ask::new().client("tenant-7");
    /// let by_id = Ask::new().client(7u64);
    /// # let _ = (by_name, by_id);
    /// ```
    pub fn client(mut self, key: impl Hash) -> Ask {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        self.client = h.finish();
        self
    }

    /// The priority: higher is served first (see
    /// [`QueueBuilder::priority_levels`]).
    ///
    /// ```
    /// let ask = girder_regulate::Ask::new().priority(3);
    /// # let _ = ask;
    /// ```
    pub fn priority(mut self, priority: u8) -> Ask {
        self.priority = priority;
        self
    }

    /// After `deadline` a grant is no use: the ask is rejected with
    /// [`Rejected::DeadlinePassed`] when it comes, or at once if it could not be met.
    ///
    /// ```
    /// use std::time::Duration;
    /// let ask = girder_regulate::Ask::new().deadline(tokio::time::Instant::now() + Duration::from_secs(1));
    /// # let _ = ask;
    /// ```
    pub fn deadline(mut self, deadline: Instant) -> Ask {
        self.deadline = Some(deadline);
        self
    }
}
