//! Girder's own schedulers: one thread per core, each with a run queue of processes, like the
//! BEAM's schedulers.
//!
//! A node runs its processes either as tasks of the ambient tokio runtime (the default: nothing
//! to set up, fine for most systems) or on a [`Schedulers`] pool given to
//! [`NodeBuilder::schedulers`](crate::NodeBuilder::schedulers). The pool exists because message
//! passing between processes is where an actor system spends its time, and a general-purpose
//! work-stealing runtime moves woken tasks between threads far more than an actor system wants:
//! each hand-off is a cross-core cache miss and, often, a futex wake. The pool follows the
//! BEAM's rules instead (see `docs/decisions/008-schedulers.md`):
//!
//! * **a process has a home scheduler** and is queued there when woken, so processes that talk
//!   to each other on one scheduler stay there, and a message is a local queue push;
//! * **spawn is local**: a process spawned by a process starts on its parent's scheduler; one
//!   spawned from outside the pool goes to the schedulers in turn;
//! * **idle schedulers steal work worth moving**: a scheduler with nothing to run takes half of
//!   another's queue (the stolen processes move home) when that queue holds enough work, its
//!   length times the mean length of that scheduler's recent runs reaching 100 µs; a busy
//!   scheduler wakes a sleeping one by the same rule. A lone chain of messages, or a server
//!   and its callers exchanging microsecond messages, stays on one core: moved, every message
//!   would be a cross-core wake-up costing more than the work;
//! * **a process woken towards a sleeping scheduler comes to the waker's scheduler instead**:
//!   waking a sleeping thread costs a futex call, running the process where its message came
//!   from costs nothing.
//!
//! Timers and I/O stay tokio's: every scheduler thread runs a tokio current-thread runtime of its
//! own, polls it between runs (every 100 µs when busy, every 20 µs while its polls find sockets
//! ready or timers due) and sleeps in its I/O driver, so `tokio::time`, tokio's sockets and
//! `tokio::spawn` work inside processes as they do anywhere else, and a socket opened by a
//! process is polled by the thread that runs it. (A `tokio::spawn` from a process starts a tokio task pinned to that
//! thread; [`Node::spawn_task`](crate::Node::spawn_task) starts one on the pool instead.)
//! The converse holds too: a socket opened outside the pool (a listener bound in `main`, on
//! another tokio runtime) stays on that runtime's driver, and each of its events wakes that
//! runtime's thread, which then wakes a scheduler. Open sockets inside a process or a
//! [`spawn_task`](crate::Node::spawn_task), or hand a std socket over and register it there
//! (`TcpListener::from_std`): girder-mqtt's accept loops do, which took a sixth off the
//! broker's CPU per connect.
//!
//! A process must not block its scheduler (a long computation or a blocking system call stalls
//! everything queued behind it until an idle scheduler steals it, ~10 ms later). Blocking work
//! goes to `tokio::task::spawn_blocking`, which works on the schedulers' threads: the role of
//! the BEAM's dirty schedulers.
//!
//! ```
//! use girder::{Context, ExitReason, Node, Schedulers};
//!
//! let pool = Schedulers::new(2);
//! let answer = pool.block_on(async {
//!     let node = Node::builder("pooled").schedulers(Schedulers::current().unwrap()).build();
//!     let (tx, rx) = tokio::sync::oneshot::channel();
//!     node.spawn(move |_ctx: Context<()>| async move {
//!         let _ = tx.send(6 * 7);
//!         ExitReason::Normal
//!     });
//!     rx.await.unwrap()
//! });
//! assert_eq!(answer, 42);
//! pool.shutdown();
//! ```

mod load;
mod pool;
mod task;

use std::future::Future;
use std::sync::{Arc, OnceLock};

use pool::Shared;
pub(crate) use pool::StopWatcher;

/// A pool of scheduler threads that run processes (see the [module docs](self)).
///
/// Cloning gives another handle to the same pool. The threads stop when [`shutdown`] is called;
/// processes still queued then are dropped, which ends them with `Shutdown`.
///
/// [`shutdown`]: Schedulers::shutdown
pub struct Schedulers {
    shared: Arc<Shared>,
}

impl Clone for Schedulers {
    fn clone(&self) -> Self {
        self.shared.add_handle();
        Schedulers {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Schedulers {
    fn drop(&mut self) {
        self.shared.drop_handle();
    }
}

/// How a node reaches its pool: unlike a [`Schedulers`] handle it does not keep the pool
/// running (processes hold their node, so a counted handle there would never let it stop).
#[derive(Clone)]
pub(crate) struct Spawner(Arc<Shared>);

/// A task on the pool. Dropping it cancels the task (the pool drops its future unpolled, the
/// way tokio's abort does): how a process on the pool is killed.
pub(crate) struct ScheduledTask {
    task: task::TaskHandle<pool::Pool>,
}

impl ScheduledTask {
    /// Lets the task run to its end without this handle.
    pub(crate) fn detach(self) {
        self.task.detach();
    }
}

impl Spawner {
    /// Queues `fut` on the pool; it runs until it ends or the returned handle is dropped.
    pub(crate) fn spawn<F>(&self, fut: F) -> ScheduledTask
    where
        F: Future<Output = ()> + Send + 'static,
    {
        ScheduledTask {
            task: self.0.spawn(fut),
        }
    }

    /// Queues `fut` on the pool to run to its end.
    pub(crate) fn spawn_detached<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.0.spawn(fut).detach();
    }

    /// What the pool has done so far.
    pub(crate) fn stats(&self) -> SchedulerStats {
        self.0.stats()
    }

    /// Each scheduler's queue and counters.
    pub(crate) fn loads(&self) -> Vec<SchedulerLoad> {
        self.0.loads()
    }

    /// Has `w` told when the pool stops.
    pub(crate) fn watch(&self, w: std::sync::Weak<dyn StopWatcher>) {
        self.0.watch(w);
    }
}

impl std::fmt::Debug for Schedulers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedulers")
            .field("threads", &self.threads())
            .finish()
    }
}

/// One scheduler's queue and counters, as [`Schedulers::loads`] reports them; the node's load
/// sampler ([`Node::load`](crate::Node::load)) turns them into rates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SchedulerLoad {
    /// Processes (and tasks) queued on it now.
    pub queued: usize,
    /// Times it polled a process or task, ever.
    pub runs: u64,
    /// The mean length of its recent runs, in nanoseconds (0 until measured).
    pub mean_run_ns: u64,
    /// Nanoseconds it spent asleep with nothing to run, ever.
    pub parked_ns: u64,
}

/// What the pool has done so far, summed over its schedulers.
///
/// ```
/// let pool = girder::Schedulers::new(1);
/// pool.block_on(async {});
/// assert!(pool.stats().runs >= 1);
/// pool.shutdown();
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SchedulerStats {
    /// Scheduler threads in the pool.
    pub threads: usize,
    /// Processes (and tasks) queued to run right now, over all schedulers: the run-queue
    /// length an operator watches for overload, like `erlang:statistics(run_queue)`.
    pub queued: usize,
    /// Times a process (or a `block_on` future) was polled.
    pub runs: u64,
    /// Processes taken from another scheduler's queue by an idle one.
    pub steals: u64,
    /// Times a scheduler went to sleep with nothing to run.
    pub parks: u64,
    /// Wake-ups queued for another scheduler (a cross-thread hand-off).
    pub remote_wakes: u64,
}

impl Schedulers {
    /// A pool of `threads` schedulers (at least 1), each a thread with its own tokio
    /// current-thread runtime for the timers and I/O of the processes it runs. Works inside or
    /// outside a tokio runtime.
    ///
    /// ```
    /// let pool = girder::Schedulers::new(2);
    /// assert_eq!(pool.threads(), 2);
    /// pool.shutdown();
    /// ```
    pub fn new(threads: usize) -> Self {
        Schedulers {
            shared: Shared::start(threads.max(1)),
        }
    }

    /// One scheduler per available core.
    ///
    /// ```
    /// let pool = girder::Schedulers::per_core();
    /// assert!(pool.threads() >= 1);
    /// pool.shutdown();
    /// ```
    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// A program's scheduler setting (its `--schedulers N`) as a pool: not set, one per core;
    /// `0`, none (the node's processes run as tokio tasks, see
    /// [`NodeBuilder::schedulers_or_tasks`](crate::NodeBuilder::schedulers_or_tasks)); `n`,
    /// `n` of them.
    ///
    /// ```
    /// use girder::Schedulers;
    ///
    /// assert!(Schedulers::from_setting(Some(0)).is_none());
    /// let two = Schedulers::from_setting(Some(2)).unwrap();
    /// assert_eq!(two.threads(), 2);
    /// let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    /// assert_eq!(Schedulers::from_setting(None).unwrap().threads(), cores);
    /// ```
    pub fn from_setting(setting: Option<usize>) -> Option<Self> {
        match setting {
            Some(0) => None,
            Some(n) => Some(Self::new(n)),
            None => Some(Self::per_core()),
        }
    }

    /// The pool whose scheduler thread is running the caller, if any.
    ///
    /// ```
    /// assert!(girder::Schedulers::current().is_none());
    /// let pool = girder::Schedulers::new(1);
    /// assert!(pool.block_on(async { girder::Schedulers::current().is_some() }));
    /// pool.shutdown();
    /// ```
    pub fn current() -> Option<Schedulers> {
        pool::current().map(|shared| Schedulers { shared })
    }

    /// How many scheduler threads the pool has.
    pub fn threads(&self) -> usize {
        self.shared.threads()
    }

    /// Runs `fut` on the pool and blocks the calling thread until it finishes. Processes the
    /// future spawns start on its scheduler. A panic in `fut` is resumed on the caller.
    ///
    /// # Panics
    ///
    /// On one of this pool's scheduler threads: blocking there would stall the scheduler that
    /// has to run `fut` (a process should spawn or call instead).
    ///
    /// ```
    /// let pool = girder::Schedulers::new(1);
    /// assert_eq!(pool.block_on(async { 1 + 1 }), 2);
    /// pool.shutdown();
    /// ```
    pub fn block_on<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        use futures_util::FutureExt;
        assert!(
            !self.shared.is_own_thread(),
            "Schedulers::block_on called on one of the pool's own scheduler threads"
        );
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.shared
            .spawn(async move {
                let out = std::panic::AssertUnwindSafe(fut).catch_unwind().await;
                let _ = tx.send(out);
            })
            .detach();
        match rx.recv() {
            Ok(Ok(out)) => out,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => panic!("the schedulers were shut down before the future finished"),
        }
    }

    /// What the pool has done so far.
    pub fn stats(&self) -> SchedulerStats {
        self.shared.stats()
    }

    /// Each scheduler's queue length and counters (one entry per thread).
    ///
    /// ```
    /// let pool = girder::Schedulers::new(2);
    /// assert_eq!(pool.loads().len(), 2);
    /// pool.shutdown();
    /// ```
    pub fn loads(&self) -> Vec<SchedulerLoad> {
        self.shared.loads()
    }

    /// Stops the scheduler threads and waits for them to finish. Whatever they still hold is
    /// dropped: processes end with `Shutdown`, a pending [`block_on`](Self::block_on) panics.
    /// Calling it from a scheduler thread stops the pool without waiting for the threads. The
    /// last handle dropped does the same.
    pub fn shutdown(&self) {
        self.shared.shutdown();
    }

    pub(crate) fn spawner(&self) -> Spawner {
        Spawner(self.shared.clone())
    }
}

/// The variable that puts nodes built without an explicit choice on one shared pool, like the
/// BEAM's `+S` flag: `GIRDER_SCHEDULERS=4`.
pub const SCHEDULERS_ENV: &str = "GIRDER_SCHEDULERS";

/// The pool [`SCHEDULERS_ENV`] asks for, started on first use and kept for the life of the OS
/// process (its threads carry their own tokio runtimes, so it outlives whichever runtime was
/// current then).
pub(crate) fn from_env() -> Option<Spawner> {
    static POOL: OnceLock<Option<Schedulers>> = OnceLock::new();
    POOL.get_or_init(|| {
        let n: usize = std::env::var(SCHEDULERS_ENV).ok()?.trim().parse().ok()?;
        (n > 0).then(|| Schedulers {
            shared: Shared::start(n),
        })
    })
    .as_ref()
    .map(Schedulers::spawner)
}
