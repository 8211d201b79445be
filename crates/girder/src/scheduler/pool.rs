//! The scheduler threads: run queues, wake-ups, stealing and sleeping.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::CachePadded;
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;

use super::load::{Load, RunClock};
use super::task::{self, Schedule, TaskHandle};
use super::SchedulerStats;

/// Per task: the scheduler whose queue it joins when woken, and the pool.
pub(crate) struct TaskMeta {
    home: AtomicUsize,
    /// The pool the task's wake-ups go to.
    pool: Arc<Shared>,
}

/// The pool's tasks are scheduled onto its queues.
pub(crate) struct Pool;

impl Schedule for Pool {
    type Meta = TaskMeta;

    fn schedule(job: Job) {
        let pool: *const Shared = Arc::as_ptr(&job.metadata().pool);
        // SAFETY: the job's task holds this `Arc` while the job exists. `Shared::schedule`
        // either queues the job (the queue then keeps the task, and with it the pool) or hands
        // it back refused.
        let refused = unsafe { &*pool }.schedule(job);
        // Dropped after the borrow of the pool has ended: dropping the job may free its task,
        // and that may drop the last reference to the pool.
        drop(refused);
    }
}

type Job = task::Job<Pool>;

/// Every this many runs a scheduler looks at its inbox before its local queue, so wake-ups from
/// other threads are not starved by a busy local chain.
const INBOX_EVERY: u32 = 61;
/// Rounds an idle scheduler looks for work (its inbox, then stealing) before it sleeps.
const IDLE_SPINS: u32 = 64;
/// A busy scheduler lets its tokio runtime poll for I/O and timers (and run the tasks spawned
/// on it) once this much time has passed since it last did, looking every `IO_CHECK_EVERY`
/// runs. A plain count of runs (every 256) polled far more often than needed when runs are
/// short, each poll a system call that put the calls around it into call_c1's p99 (0.71 vs
/// 0.50 µs), and far too rarely when runs are long (256 runs of 1 ms: a quarter second).
const IO_AT_MOST: Duration = Duration::from_micros(100);
/// Runs between looks at the clock for `IO_AT_MOST` (a clock read is ~20 ns).
const IO_CHECK_EVERY: u32 = 64;
/// While its polls find work (sockets ready, timers due), a busy scheduler polls this often
/// instead, looking every `IO_BUSY_CHECK_EVERY` runs: processes fed by sockets (a broker's
/// clients) otherwise wait up to 100 µs and 64 runs for their readiness, which a saturated
/// scheduler turns into a collapse (decision 008, amendment of issue 15). A poll that finds
/// nothing puts the scheduler back on the slow rate, so message passing alone never pays it.
const IO_BUSY: Duration = Duration::from_micros(20);
const IO_BUSY_CHECK_EVERY: u32 = 8;
/// A sleeping scheduler wakes this often to steal from a scheduler stuck in a long poll.
const PARK_AT_MOST: Duration = Duration::from_millis(10);

pub(super) struct Shared {
    /// Padded so one scheduler's writes do not evict another's line.
    shards: Box<[CachePadded<Shard>]>,
    /// Wake-ups queued from threads outside the pool (scheduler threads count their own).
    outside_wakes: AtomicU64,
    /// Round-robin start for processes spawned from outside the pool.
    next: AtomicUsize,
    sleepers: AtomicUsize,
    stop: AtomicBool,
    /// User handles alive (`Schedulers`); the pool stops when the last one goes.
    handles: AtomicUsize,
    /// How long an idle scheduler keeps looking for work before it sleeps.
    spin_for: Duration,
    joins: Mutex<Vec<JoinHandle<()>>>,
    /// Told when the pool stops, so processes waiting for a message (in nobody's queue) end too.
    watchers: Mutex<Vec<Weak<dyn StopWatcher>>>,
}

/// Something with tasks on the pool that must hear when it stops (a node: it wakes its idle
/// processes, whose wake-ups the stopped pool turns into `Shutdown` exits).
pub(crate) trait StopWatcher: Send + Sync {
    fn pool_stopped(&self);
}

struct Shard {
    /// Wake-ups and spawns sent here from other threads.
    inbox: Injector<Job>,
    stealer: Stealer<Job>,
    sleeping: AtomicBool,
    /// Wakes the scheduler's tokio runtime out of its sleep in the I/O driver.
    waker: AtomicWaker,
    /// On a line of their own: the owner writes `runs` on every run, and a thread waking this
    /// scheduler reads `sleeping` on every wake-up; sharing a line, each such read was a miss.
    counters: CachePadded<Counters>,
}

/// Written by the owning thread only (plain load + store), read by `stats`; `remote_wakes`
/// counts the wake-ups this scheduler queued on others.
#[derive(Default)]
struct Counters {
    runs: AtomicU64,
    steals: AtomicU64,
    parks: AtomicU64,
    remote_wakes: AtomicU64,
    /// Nanoseconds spent asleep (parked with nothing to run): what is not, is busy.
    parked_ns: AtomicU64,
    load: Load,
}

/// What a scheduler thread keeps for itself; `LOCAL` points at it while the thread runs.
struct Local {
    shared: Arc<Shared>,
    index: usize,
    queue: Worker<Job>,
    /// True while the loop has yielded to the tokio runtime (its I/O driver and timers).
    polling: Cell<bool>,
    /// Jobs queued here while `polling`: what the last poll found.
    found: Cell<u32>,
}

impl Local {
    /// How often to poll I/O from now on (runs between looks at the clock, and the time), by
    /// what the last poll found; forgets what it found.
    fn io_rate(&self) -> (u32, Duration) {
        if self.found.replace(0) > 0 {
            (IO_BUSY_CHECK_EVERY, IO_BUSY)
        } else {
            (IO_CHECK_EVERY, IO_AT_MOST)
        }
    }
}

thread_local! {
    static LOCAL: Cell<*const Local> = const { Cell::new(std::ptr::null()) };
}

/// The running scheduler thread's state, if the caller is on one of `shared`'s threads.
fn local_of(shared: &Shared) -> Option<&'static Local> {
    let ptr = LOCAL.get();
    // SAFETY: `LOCAL` is non-null only while `schedule_loop` runs on this thread (polled to
    // completion by `block_on`, never moved: it is pinned there), and the `Local` it points at
    // lives in that future's state until after it is reset to null. The `'static` does not
    // escape this module's synchronous uses (a queue push, an index read).
    let local = unsafe { ptr.as_ref()? };
    std::ptr::eq(Arc::as_ptr(&local.shared), shared).then_some(local)
}

pub(super) fn current() -> Option<Arc<Shared>> {
    let ptr = LOCAL.get();
    // SAFETY: as in `local_of`.
    let local = unsafe { ptr.as_ref()? };
    local.shared.add_handle();
    Some(local.shared.clone())
}

fn bump(counter: &AtomicU64) {
    // Only the owning thread writes its counters, so no read-modify-write is needed.
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

impl Shared {
    /// Starts `threads` schedulers, each on a thread of its own that also runs a tokio
    /// current-thread runtime for the timers and I/O of the processes it runs.
    pub(super) fn start(threads: usize) -> Arc<Shared> {
        let queues: Vec<Worker<Job>> = (0..threads).map(|_| Worker::new_fifo()).collect();
        let shared = Arc::new(Shared {
            shards: queues
                .iter()
                .map(|q| {
                    CachePadded::new(Shard {
                        inbox: Injector::new(),
                        stealer: q.stealer(),
                        sleeping: AtomicBool::new(false),
                        waker: AtomicWaker::new(),
                        counters: CachePadded::default(),
                    })
                })
                .collect(),
            outside_wakes: AtomicU64::new(0),
            next: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            handles: AtomicUsize::new(1),
            spin_for: Duration::from_micros(
                std::env::var("GIRDER_SPIN_US")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            ),
            joins: Mutex::new(Vec::new()),
            watchers: Mutex::new(Vec::new()),
        });
        let mut joins = Vec::with_capacity(threads);
        for (index, queue) in queues.into_iter().enumerate() {
            let theirs = shared.clone();
            let join = std::thread::Builder::new()
                .name(format!("girder-sched-{index}"))
                .spawn(move || run_scheduler(theirs, index, queue))
                .expect("a scheduler thread");
            joins.push(join);
        }
        *shared.joins.lock() = joins;
        shared
    }

    pub(super) fn watch(&self, w: Weak<dyn StopWatcher>) {
        let mut watchers = self.watchers.lock();
        watchers.retain(|w| w.strong_count() > 0);
        watchers.push(w);
    }

    /// True on one of this pool's scheduler threads.
    pub(super) fn is_own_thread(&self) -> bool {
        local_of(self).is_some()
    }

    pub(super) fn threads(&self) -> usize {
        self.shards.len()
    }

    pub(super) fn add_handle(&self) {
        self.handles.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops a user handle; the last one stops the pool.
    pub(super) fn drop_handle(&self) {
        if self.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shutdown();
        }
    }

    /// Queues `fut` on the pool. Dropping the returned handle cancels the task: it is queued
    /// once more and its future dropped unpolled (`detach` it to let it run to its end).
    pub(super) fn spawn<F>(self: &Arc<Self>, fut: F) -> TaskHandle<Pool>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let home = match local_of(self) {
            Some(local) => local.index,
            None => self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len(),
        };
        let meta = TaskMeta {
            home: AtomicUsize::new(home),
            pool: self.clone(),
        };
        let (job, task) = task::spawn::<_, Pool>(meta, fut);
        Pool::schedule(job);
        task
    }

    /// Queues `job`; hands it back if the pool has stopped (nobody will run it: the caller
    /// drops it, which drops the future and ends a process as `Shutdown`).
    #[must_use = "a refused job is dropped by the caller, after its borrow of the pool"]
    fn schedule(&self, job: Job) -> Option<Job> {
        let home = job.metadata().home.load(Ordering::Relaxed);
        let here = local_of(self);
        if let Some(local) = here {
            // Woken on its home scheduler: a local push. Woken elsewhere towards a sleeping home:
            // it moves here rather than cost a futex wake (see the module docs).
            if local.index == home || self.shards[home].sleeping.load(Ordering::Relaxed) {
                if local.index != home {
                    job.metadata().home.store(local.index, Ordering::Relaxed);
                }
                local.queue.push(job);
                if local.polling.get() {
                    local.found.set(local.found.get() + 1);
                }
                // Woken by this thread's own I/O driver or timer while the scheduler sleeps
                // in it: end the sleep.
                if self.shards[local.index].sleeping.load(Ordering::Relaxed) {
                    self.wake(local.index);
                }
                return None;
            }
        }
        if self.stop.load(Ordering::Acquire) {
            return Some(job);
        }
        let shard = &self.shards[home];
        shard.inbox.push(job);
        match here {
            Some(local) => bump(&self.shards[local.index].counters.remote_wakes),
            None => {
                self.outside_wakes.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Pairs with the fence in `park`: either the sleeper sees the job, or we see it asleep.
        fence(Ordering::SeqCst);
        self.wake(home);
        None
    }

    /// Wakes scheduler `i` if it is asleep.
    fn wake(&self, i: usize) {
        let shard = &self.shards[i];
        if shard.sleeping.load(Ordering::Relaxed) && shard.sleeping.swap(false, Ordering::AcqRel) {
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
            shard.waker.wake();
        }
    }

    /// Wakes one sleeping scheduler other than `me`, so it can steal from a long queue.
    fn wake_other(&self, me: usize) {
        if self.sleepers.load(Ordering::Relaxed) == 0 {
            return;
        }
        for i in (0..self.shards.len()).filter(|&i| i != me) {
            if self.shards[i].sleeping.load(Ordering::Relaxed) {
                self.wake(i);
                return;
            }
        }
    }

    /// Each scheduler's queue and counters, for the load sampler.
    pub(super) fn loads(&self) -> Vec<super::SchedulerLoad> {
        self.shards
            .iter()
            .map(|shard| super::SchedulerLoad {
                queued: shard.stealer.len() + shard.inbox.len(),
                runs: shard.counters.runs.load(Ordering::Relaxed),
                mean_run_ns: shard.counters.load.mean_run_ns(),
                parked_ns: shard.counters.parked_ns.load(Ordering::Relaxed),
            })
            .collect()
    }

    pub(super) fn stats(&self) -> SchedulerStats {
        let mut s = SchedulerStats {
            threads: self.shards.len(),
            remote_wakes: self.outside_wakes.load(Ordering::Relaxed),
            ..SchedulerStats::default()
        };
        for shard in self.shards.iter() {
            s.queued += shard.stealer.len() + shard.inbox.len();
            s.runs += shard.counters.runs.load(Ordering::Relaxed);
            s.steals += shard.counters.steals.load(Ordering::Relaxed);
            s.parks += shard.counters.parks.load(Ordering::Relaxed);
            s.remote_wakes += shard.counters.remote_wakes.load(Ordering::Relaxed);
        }
        s
    }

    pub(super) fn shutdown(&self) {
        if self.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        for shard in self.shards.iter() {
            shard.sleeping.store(false, Ordering::Relaxed);
            shard.waker.wake();
        }
        let on_a_scheduler = !LOCAL.get().is_null();
        let joins = std::mem::take(&mut *self.joins.lock());
        if !on_a_scheduler {
            for j in joins {
                let _ = j.join();
            }
            // Wake-ups that raced with the threads' last drain.
            for shard in self.shards.iter() {
                drain(&shard.inbox);
            }
        }
        let watchers: Vec<_> = self.watchers.lock().drain(..).collect();
        for w in watchers.iter().filter_map(Weak::upgrade) {
            w.pool_stopped();
        }
    }

    /// The next job for scheduler `local`: its own queue, its inbox now and then first.
    fn next_job(&self, local: &Local, tick: u32) -> Option<Job> {
        let inbox = &self.shards[local.index].inbox;
        if tick.is_multiple_of(INBOX_EVERY) {
            if let Some(job) = take_from(inbox, &local.queue) {
                return Some(job);
            }
        }
        local.queue.pop().or_else(|| take_from(inbox, &local.queue))
    }

    /// Takes work from another scheduler whose queue is worth spreading (or, with `stalled`,
    /// from one whose run count is still what `stalled` says: stuck in a long poll); stolen
    /// processes move here.
    fn steal(&self, local: &Local, stalled: Option<&[u64]>) -> Option<Job> {
        let n = self.shards.len();
        for k in 1..n {
            let i = (local.index + k) % n;
            let other = &self.shards[i];
            let waiting = other.stealer.len() + other.inbox.len();
            let stuck =
                stalled.is_some_and(|seen| seen[i] == other.counters.runs.load(Ordering::Relaxed));
            if waiting == 0 || (!stuck && !other.counters.load.worth_spreading(waiting)) {
                continue;
            }
            let job = take_from(&other.inbox, &local.queue).or_else(|| loop {
                match other.stealer.steal_batch_and_pop(&local.queue) {
                    Steal::Success(job) => break Some(job),
                    Steal::Empty => break None,
                    Steal::Retry => continue,
                }
            });
            if let Some(job) = job {
                bump(&self.shards[local.index].counters.steals);
                job.metadata().home.store(local.index, Ordering::Relaxed);
                // The rest of the batch moved too.
                for _ in 0..local.queue.len() {
                    if let Some(j) = local.queue.pop() {
                        j.metadata().home.store(local.index, Ordering::Relaxed);
                        local.queue.push(j);
                    }
                }
                return Some(job);
            }
        }
        None
    }

    /// Sleeps in the thread's tokio runtime (its I/O driver) until woken or `PARK_AT_MOST`
    /// passes, unless work shows up first. I/O and timers that fire meanwhile run their
    /// processes' wake-ups on this thread.
    async fn park(&self, local: &Local) {
        let shard = &self.shards[local.index];
        shard.sleeping.store(true, Ordering::Relaxed);
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        // Pairs with the fence in `schedule`.
        fence(Ordering::SeqCst);
        if shard.inbox.is_empty() && local.queue.is_empty() && !self.stop.load(Ordering::Acquire) {
            bump(&shard.counters.parks);
            let asleep = std::time::Instant::now();
            let woken = std::future::poll_fn(|cx| {
                shard.waker.register(cx.waker());
                let woken = !shard.sleeping.load(Ordering::Acquire)
                    || !local.queue.is_empty()
                    || !shard.inbox.is_empty()
                    || self.stop.load(Ordering::Acquire);
                if woken {
                    std::task::Poll::Ready(())
                } else {
                    std::task::Poll::Pending
                }
            });
            let _ = tokio::time::timeout(PARK_AT_MOST, woken).await;
            // Owner-written only: a plain load and store.
            let c = &shard.counters.parked_ns;
            let slept = asleep.elapsed().as_nanos() as u64;
            c.store(c.load(Ordering::Relaxed) + slept, Ordering::Relaxed);
        }
        if shard.sleeping.swap(false, Ordering::AcqRel) {
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Takes a batch from `inbox` into `queue` and returns its first job.
fn take_from(inbox: &Injector<Job>, queue: &Worker<Job>) -> Option<Job> {
    if inbox.is_empty() {
        return None;
    }
    loop {
        match inbox.steal_batch_and_pop(queue) {
            Steal::Success(job) => return Some(job),
            Steal::Empty => return None,
            Steal::Retry => continue,
        }
    }
}

fn drain(inbox: &Injector<Job>) {
    loop {
        match inbox.steal() {
            Steal::Success(job) => drop(job),
            Steal::Empty => return,
            Steal::Retry => continue,
        }
    }
}

fn run_timed(shard: &Shard, clock: &mut RunClock, job: Job) {
    bump(&shard.counters.runs);
    // A panic in the task (a process catches its own; a `block_on` future, exit handling)
    // ends the task, not the scheduler: `run` keeps it in.
    job.run();
    clock.ran(&shard.counters.load);
}

fn run_scheduler(shared: Arc<Shared>, index: usize, queue: Worker<Job>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for a scheduler's timers and I/O");
    // Unconstrained: tokio's cooperative budget is per task, and here one task runs every
    // process; left on, it would make a ready reply channel look pending after 128 polls.
    // Processes get their fairness from the mailbox's receive budget instead.
    rt.block_on(tokio::task::unconstrained(schedule_loop(
        shared, index, queue,
    )));
}

async fn schedule_loop(shared: Arc<Shared>, index: usize, queue: Worker<Job>) {
    let local = Local {
        shared: shared.clone(),
        index,
        queue,
        polling: Cell::new(false),
        found: Cell::new(0),
    };
    LOCAL.set(&local);
    let shard = &shared.shards[index];
    let mut tick: u32 = 0;
    let mut clock = RunClock::new();
    let mut seen = vec![0u64; shared.shards.len()];
    let mut last_io = std::time::Instant::now();
    // The I/O poll's rate: slow until a poll finds work (see `IO_BUSY`).
    let (mut io_every, mut io_after) = local.io_rate();
    'run: while !shared.stop.load(Ordering::Relaxed) {
        if let Some(job) = shared.next_job(&local, tick) {
            tick = tick.wrapping_add(1);
            run_timed(shard, &mut clock, job);
            let queued = local.queue.len();
            // A sleeping scheduler is woken only for work worth taking (see `load`).
            if shard.counters.load.worth_spreading(queued) {
                shared.wake_other(index);
            }
            if tick.is_multiple_of(io_every) {
                let now = std::time::Instant::now();
                if now.saturating_duration_since(last_io) >= io_after {
                    // Lets the runtime poll I/O and timers (and run tasks spawned on it),
                    // which it does only while this loop is pending.
                    local.polling.set(true);
                    tokio::task::yield_now().await;
                    local.polling.set(false);
                    last_io = now;
                    (io_every, io_after) = local.io_rate();
                }
            }
            continue;
        }
        let idle_since = std::time::Instant::now();
        clock.idle(&shard.counters.load, idle_since);
        let mut round = 0u32;
        loop {
            if let Some(job) =
                take_from(&shard.inbox, &local.queue).or_else(|| shared.steal(&local, None))
            {
                run_timed(shard, &mut clock, job);
                continue 'run;
            }
            round += 1;
            if round >= IDLE_SPINS && idle_since.elapsed() >= shared.spin_for {
                break;
            }
            if round >= IDLE_SPINS {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        for (seen, other) in seen.iter_mut().zip(shared.shards.iter()) {
            *seen = other.counters.runs.load(Ordering::Relaxed);
        }
        local.polling.set(true);
        shared.park(&local).await;
        local.polling.set(false);
        // Parking polled I/O (as of about when the scheduler went idle).
        last_io = idle_since;
        (io_every, io_after) = local.io_rate();
        // A scheduler that ran nothing while this one slept is stuck in a long poll: what
        // waits behind it is taken even if it is a single process.
        if let Some(job) = shared.steal(&local, Some(&seen)) {
            run_timed(shard, &mut clock, job);
        }
    }
    LOCAL.set(std::ptr::null());
    // Dropping queued jobs drops their futures: processes end as `Shutdown`.
    while let Some(job) = local.queue.pop() {
        drop(job);
    }
    drain(&shard.inbox);
}
