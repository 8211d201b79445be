//! A node: the home of a set of processes, their names and their pids.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use dashmap::DashMap;

use crate::process::core::{AnyProcess, Core};
use crate::process::{signal, spawn_process};
use crate::remote::Distribution;
use crate::{Addr, Context, ExitReason, Pid, SpawnOptions};

/// A node: a named group of processes with its own process table and name registry.
///
/// Processes run on the ambient tokio runtime. Several nodes may live in one OS process (tests
/// do this); each has its own pids, names and creation number.
///
/// ```
/// # #[tokio::main] async fn main() {
/// use girder::{ExitReason, Node};
/// let node = Node::new("docs");
/// let worker = node.spawn(|_ctx: girder::Context<()>| async { ExitReason::Normal });
/// assert_eq!(worker.wait_exit().await, ExitReason::Normal);
/// assert!(!node.is_alive(worker.pid()));
/// # }
/// ```
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<NodeInner>,
}

pub(crate) struct NodeInner {
    name: String,
    creation: u32,
    next_id: AtomicU64,
    next_ref: AtomicU64,
    /// Local processes by pid number, hashed for locality (`process::table`).
    pub(crate) procs: crate::process::table::ProcessTable,
    /// Registered names. Names can come from peers (an MQTT client id): foldhash is seeded
    /// per process, so no one can pick names that collide, and costs a fraction of SipHash.
    pub(crate) names: DashMap<Arc<str>, Pid, foldhash::fast::RandomState>,
    pub(crate) counters: crate::stats::Counters,
    pub(crate) lifecycle: tokio::sync::broadcast::Sender<crate::lifecycle::Lifecycle>,
    /// Set once when a distribution layer makes this node reachable.
    pub(crate) dist: OnceLock<Arc<dyn Distribution>>,
    /// Girder's schedulers, if the node runs its processes on them rather than on the ambient
    /// tokio runtime.
    pub(crate) spawner: Option<crate::scheduler::Spawner>,
    /// The load sampler, started by the first `Node::load`.
    pub(crate) sampler: OnceLock<Arc<crate::sampler::Sampler>>,
}

/// Sets up a [`Node`]: its name, creation number and where its processes run.
///
/// ```
/// use girder::{Node, Schedulers};
/// let pool = Schedulers::new(1);
/// let node = Node::builder("built").creation(7).schedulers(pool.clone()).build();
/// assert_eq!(node.creation(), 7);
/// assert!(node.runs_on_schedulers());
/// pool.shutdown();
/// ```
#[derive(Debug)]
pub struct NodeBuilder {
    name: String,
    creation: Option<u32>,
    schedulers: Option<crate::Schedulers>,
    /// Tokio tasks chosen explicitly: `GIRDER_SCHEDULERS` is not consulted.
    tokio_tasks: bool,
}

impl NodeBuilder {
    /// An explicit creation number (the distribution layer assigns these); by default one is
    /// derived from the clock.
    pub fn creation(mut self, creation: u32) -> Self {
        self.creation = Some(creation);
        self
    }

    /// Runs the node's processes on `pool` instead of as tasks of the ambient tokio runtime.
    /// Without this, the node uses the shared pool that
    /// [`GIRDER_SCHEDULERS`](crate::scheduler::SCHEDULERS_ENV) asks for, if it is set.
    pub fn schedulers(mut self, pool: crate::Schedulers) -> Self {
        self.schedulers = Some(pool);
        self.tokio_tasks = false;
        self
    }

    /// Runs the node's processes as tasks of the ambient tokio runtime, whatever
    /// [`GIRDER_SCHEDULERS`](crate::scheduler::SCHEDULERS_ENV) says: a program's own
    /// `--schedulers 0`. The last of this and [`schedulers`](Self::schedulers) wins.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let node = girder::Node::builder("on-tokio").tokio_tasks().build();
    /// assert!(node.scheduler_stats().is_none());
    /// # }
    /// ```
    pub fn tokio_tasks(mut self) -> Self {
        self.schedulers = None;
        self.tokio_tasks = true;
        self
    }

    /// Runs the node's processes on `pool` if there is one ([`schedulers`](Self::schedulers)),
    /// else as tokio tasks ([`tokio_tasks`](Self::tokio_tasks)): with
    /// [`Schedulers::from_setting`](crate::Schedulers::from_setting), a program's
    /// `--schedulers` flag.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use girder::{Node, Schedulers};
    ///
    /// let pool = Schedulers::from_setting(Some(0));
    /// let node = Node::builder("flagged").schedulers_or_tasks(pool.clone()).build();
    /// assert!(node.scheduler_stats().is_none());
    /// # }
    /// ```
    pub fn schedulers_or_tasks(self, pool: Option<crate::Schedulers>) -> Self {
        match pool {
            Some(pool) => self.schedulers(pool),
            None => self.tokio_tasks(),
        }
    }

    /// The node.
    pub fn build(self) -> Node {
        let creation = self.creation.unwrap_or_else(fresh_creation);
        let node = Node {
            inner: Arc::new(NodeInner {
                name: self.name,
                creation,
                next_id: AtomicU64::new(1),
                next_ref: AtomicU64::new(1),
                procs: crate::process::table::new_table(),
                names: DashMap::default(),
                dist: OnceLock::new(),
                sampler: OnceLock::new(),
                counters: Default::default(),
                lifecycle: tokio::sync::broadcast::channel(crate::lifecycle::BUFFER).0,
                spawner: match &self.schedulers {
                    Some(pool) => Some(pool.spawner()),
                    None if self.tokio_tasks => None,
                    None => crate::scheduler::from_env(),
                },
            }),
        };
        if let Some(pool) = &node.inner.spawner {
            let weak = Arc::downgrade(&node.inner);
            pool.watch(weak);
        }
        node
    }
}

impl crate::scheduler::StopWatcher for NodeInner {
    fn pool_stopped(&self) {
        // Taken first, cancelled after: a stopped pool drops a cancelled task's future at once,
        // which runs the exit handling, and that must not happen while the table is walked.
        let tasks: Vec<crate::process::core::Abort> = self
            .procs
            .iter()
            .filter_map(|p| {
                let mut meta = p.value().header().meta.lock();
                match meta.abort {
                    Some(crate::process::core::Abort::Scheduled(_)) => meta.abort.take(),
                    _ => None,
                }
            })
            .collect();
        for task in tasks {
            task.abort();
        }
    }
}

/// The last creation this OS process handed out, so nodes started in the same millisecond (or
/// while the clock steps back) still get newer ones.
static LAST_CREATION: AtomicU32 = AtomicU32::new(0);

fn fresh_creation() -> u32 {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut last = LAST_CREATION.load(Ordering::Relaxed);
    loop {
        let next = creation_after(last, unix_ms);
        match LAST_CREATION.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// The creation for a node started at `unix_ms` after one with creation `last` (0: none):
/// the clock's milliseconds modulo 2^32, or `last + 1` if that would not be newer. Never 0.
fn creation_after(last: u32, unix_ms: u64) -> u32 {
    let now = (unix_ms as u32).max(1);
    if last == 0 || Node::is_newer_creation(now, last) {
        now
    } else {
        last.wrapping_add(1).max(1)
    }
}

/// Why a link could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The process to link to is not alive.
    #[error("cannot link to {0}: no such process")]
    NoProc(Pid),
}

/// Why a typed handle could not be had for a name or pid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// Nothing is registered under that name.
    #[error("no process is registered as {0:?}")]
    NotRegistered(String),
    /// The process is not alive.
    #[error("process {0} is not alive")]
    NoProc(Pid),
    /// The process exists but takes another message type.
    #[error("process {pid} does not take messages of type {expected}")]
    WrongType {
        /// The process found.
        pid: Pid,
        /// The message type asked for.
        expected: &'static str,
    },
}

impl Node {
    /// A new node with a fresh creation number, whose processes run as tasks of the ambient
    /// tokio runtime.
    pub fn new(name: impl Into<String>) -> Self {
        Self::builder(name).build()
    }

    /// A node with an explicit creation number (the distribution layer assigns these).
    pub fn with_creation(name: impl Into<String>, creation: u32) -> Self {
        Self::builder(name).creation(creation).build()
    }

    /// Sets up a node with more choices: see [`NodeBuilder`].
    pub fn builder(name: impl Into<String>) -> NodeBuilder {
        NodeBuilder {
            name: name.into(),
            creation: None,
            schedulers: None,
            tokio_tasks: false,
        }
    }

    /// Runs `fut` where the node's processes run: on its [`Schedulers`](crate::Schedulers) if
    /// it has them, else as a tokio task. For plumbing that talks to processes all the time
    /// (a distribution connection's reader, writer and dispatcher): beside them, a hand-off is
    /// a local queue push instead of a wake-up of another thread. The task is not a process:
    /// no pid, no links; it ends when `fut` does (or with the pool).
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let node = girder::Node::new("tasks");
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// node.spawn_task(async move { let _ = tx.send(1); });
    /// assert_eq!(rx.await.unwrap(), 1);
    /// # }
    /// ```
    pub fn spawn_task<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        match &self.inner.spawner {
            Some(pool) => pool.spawn_detached(fut),
            None => drop(tokio::spawn(fut)),
        }
    }

    /// Like [`spawn_task`](Self::spawn_task), for a task its owner must be able to end: it is
    /// cancelled (its future dropped, not polled again) when the returned [`OwnedTask`] is
    /// dropped, as an agent's reader loop ends with the agent.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let node = girder::Node::new("tasks");
    /// let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    /// let task = node.spawn_owned(async move {
    ///     std::future::pending::<()>().await;
    ///     drop(tx);
    /// });
    /// drop(task); // cancels it: the future is dropped, and `tx` with it
    /// assert!(rx.await.is_err());
    /// # }
    /// ```
    pub fn spawn_owned<F>(&self, fut: F) -> OwnedTask
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        OwnedTask(Some(match &self.inner.spawner {
            Some(pool) => Owned::Pool(pool.spawn(fut)),
            None => Owned::Tokio(tokio::spawn(fut).abort_handle()),
        }))
    }

    /// What the node's [`Schedulers`](crate::Schedulers) have done (runs, steals, sleeps,
    /// cross-thread wake-ups, processes queued now), if it runs on them. Shared by every node
    /// on the same pool.
    ///
    /// ```
    /// let pool = girder::Schedulers::new(1);
    /// let node = girder::Node::builder("s").schedulers(pool.clone()).build();
    /// assert_eq!(node.scheduler_stats().unwrap().threads, 1);
    /// assert!(girder::Node::new("t").scheduler_stats().is_none() || std::env::var_os("GIRDER_SCHEDULERS").is_some());
    /// pool.shutdown();
    /// ```
    pub fn scheduler_stats(&self) -> Option<crate::SchedulerStats> {
        self.inner.spawner.as_ref().map(|s| s.stats())
    }

    /// True if the node's processes run on Girder's [`Schedulers`](crate::Schedulers).
    pub fn runs_on_schedulers(&self) -> bool {
        self.inner.spawner.is_some()
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The node's incarnation number: by default the milliseconds since the Unix epoch at its
    /// start, modulo 2^32, so a restarted node's is newer than its last one (compare them with
    /// [`is_newer_creation`](Self::is_newer_creation), not `>`: they wrap every ~49.7 days).
    pub fn creation(&self) -> u32 {
        self.inner.creation
    }

    /// Whether creation `a` is a later incarnation than `than`. Creations wrap (see
    /// [`creation`](Self::creation)), so they compare by serial-number arithmetic (RFC 1982):
    /// `a` is newer if it is ahead of `than` by less than half the circle, 2^31 ms (~24.8
    /// days). A node restarted after a wrap is still newer than its last incarnation.
    ///
    /// ```
    /// use girder::Node;
    /// assert!(Node::is_newer_creation(2, 1));
    /// assert!(!Node::is_newer_creation(1, 2));
    /// assert!(!Node::is_newer_creation(7, 7));
    /// // Across the wrap: 5 ms after u32::MAX.
    /// assert!(Node::is_newer_creation(4, u32::MAX));
    /// assert!(!Node::is_newer_creation(u32::MAX, 4));
    /// ```
    pub fn is_newer_creation(a: u32, than: u32) -> bool {
        a != than && a.wrapping_sub(than) < (1 << 31)
    }

    /// Spawns a process with an unbounded mailbox. `f` receives the process's [`Context`] and
    /// returns its exit reason. Must be called within a tokio runtime.
    pub fn spawn<M, F, Fut>(&self, f: F) -> Addr<M>
    where
        M: Send + 'static,
        F: FnOnce(Context<M>) -> Fut + Send + 'static,
        Fut: Future<Output = ExitReason> + Send + 'static,
    {
        spawn_process(self, SpawnOptions::new(), f)
    }

    /// Spawns a process with options (mailbox bound, parent link, exit trapping).
    pub fn spawn_opts<M, F, Fut>(&self, opts: SpawnOptions, f: F) -> Addr<M>
    where
        M: Send + 'static,
        F: FnOnce(Context<M>) -> Fut + Send + 'static,
        Fut: Future<Output = ExitReason> + Send + 'static,
    {
        spawn_process(self, opts, f)
    }

    /// Sends an exit signal to `pid` from outside any process (Erlang's `exit(Pid, Reason)`).
    /// `Kill` always ends it; a trapping process receives any other reason as a message; a
    /// non-trapping one ignores `Normal` and ends with any other reason.
    pub fn exit(&self, pid: Pid, reason: ExitReason) {
        self.send_exit(Pid::new(0, self.creation(), 0), pid, reason);
    }

    pub(crate) fn send_exit(&self, from: Pid, to: Pid, reason: ExitReason) {
        if !to.is_local() {
            if let Some(d) = self.distribution() {
                d.exit(from, to, reason, false);
            }
        } else if let Some(p) = self.lookup_any(to) {
            signal::exit_signal(&*p, from, reason, false);
        }
    }

    /// True while `pid` is a process of this node. A process counts as alive until its exit has
    /// been signalled to its links, so once `is_alive` turns false every linked process already
    /// has the exit signal (and a monitor's `Down` arrives only after `is_alive` is false).
    pub fn is_alive(&self, pid: Pid) -> bool {
        self.inner.procs.contains_key(&pid.id())
            && pid.is_local()
            && pid.creation() == self.inner.creation
    }

    /// True once `pid`, a process of this node, has begun to exit: its exit reason is decided
    /// (it may still be running a behaviour's `terminate`, or its exit may not have reached its
    /// links yet, so [`is_alive`](Self::is_alive) can still be true). A registry asks this to
    /// treat a holder known dead as no holder (a restarted child re-registering its name before
    /// its old incarnation's exit was seen everywhere).
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use girder::{ExitReason, Node};
    /// let node = Node::new("docs");
    /// let p = node.spawn(|mut ctx: girder::Context<()>| async move {
    ///     ctx.recv().await;
    ///     ExitReason::Normal
    /// });
    /// assert!(!node.is_exiting(p.pid()));
    /// node.exit(p.pid(), ExitReason::Kill);
    /// // Exiting, or already gone from the table.
    /// assert!(node.is_exiting(p.pid()) || !node.is_alive(p.pid()));
    /// # }
    /// ```
    pub fn is_exiting(&self, pid: Pid) -> bool {
        self.lookup_any(pid)
            .is_some_and(|p| p.header().meta.lock().reason().is_some())
    }

    /// Waits until `pid` exits and returns why (`NoProc` at once if it is not alive: a pid does
    /// not remember its reason; [`Addr::wait_exit`] does). For code outside processes; a process
    /// uses [`Context::monitor`].
    pub async fn wait_exit(&self, pid: Pid) -> ExitReason {
        let Some(p) = self.lookup_any(pid) else {
            return ExitReason::NoProc;
        };
        let waiter = p.header().exit_or_waiter();
        drop(p);
        match waiter {
            Ok(reason) => reason,
            Err(rx) => rx.await.unwrap_or(ExitReason::NoProc),
        }
    }

    /// A typed handle to a live process of this node.
    pub fn addr<M: Send + 'static>(&self, pid: Pid) -> Result<Addr<M>, LookupError> {
        let p = self.lookup_any(pid).ok_or(LookupError::NoProc(pid))?;
        p.as_any()
            .downcast::<Core<M>>()
            .map(Addr::local)
            .map_err(|_| LookupError::WrongType {
                pid,
                expected: std::any::type_name::<M>(),
            })
    }

    /// How many processes are alive on this node.
    pub fn process_count(&self) -> usize {
        self.inner.procs.len()
    }

    /// Processes ever spawned (pids are numbered from 1).
    pub(crate) fn spawned(&self) -> u64 {
        self.inner.next_id.load(Ordering::Relaxed) - 1
    }

    pub(crate) fn distribution(&self) -> Option<&Arc<dyn Distribution>> {
        self.inner.dist.get()
    }

    pub(crate) fn next_pid(&self) -> Pid {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        Pid::new(0, self.inner.creation, id)
    }

    pub(crate) fn next_ref(&self) -> u64 {
        self.inner.next_ref.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn insert_process(&self, pid: Pid, p: Arc<dyn AnyProcess>) {
        self.inner.procs.insert(pid.id(), p);
    }

    pub(crate) fn remove_process(&self, pid: Pid) {
        self.inner.procs.remove(&pid.id());
    }

    pub(crate) fn unregister_if(&self, name: &str, pid: Pid) {
        self.inner.names.remove_if(name, |_, owner| *owner == pid);
    }

    pub(crate) fn lookup_any(&self, pid: Pid) -> Option<Arc<dyn AnyProcess>> {
        if !pid.is_local() || pid.creation() != self.inner.creation {
            return None;
        }
        self.inner.procs.get(&pid.id()).map(|p| p.value().clone())
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.inner.name)
            .field("creation", &self.inner.creation)
            .field("processes", &self.inner.procs.len())
            .finish()
    }
}

/// A task started by [`Node::spawn_owned`]: cancelled when dropped.
#[must_use = "dropping an OwnedTask cancels its task"]
pub struct OwnedTask(Option<Owned>);

enum Owned {
    Pool(crate::scheduler::ScheduledTask),
    Tokio(tokio::task::AbortHandle),
}

impl OwnedTask {
    /// Lets the task run to its end, owned by nobody.
    pub fn detach(mut self) {
        if let Some(Owned::Pool(task)) = self.0.take() {
            task.detach();
        }
    }
}

impl Drop for OwnedTask {
    fn drop(&mut self) {
        match self.0.take() {
            // Dropping a pool task's handle cancels it.
            Some(Owned::Pool(task)) => drop(task),
            Some(Owned::Tokio(h)) => h.abort(),
            None => {}
        }
    }
}

impl fmt::Debug for OwnedTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OwnedTask")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: u64 = 24 * 3600 * 1000;

    #[test]
    fn a_restart_after_the_clock_wraps_is_still_a_newer_incarnation() {
        // Creations are the clock's milliseconds modulo 2^32: they wrap every ~49.7 days. A node
        // started one day before a wrap and restarted five days later (after it) must still
        // count as the newer incarnation, as a shifted clock once showed it did not.
        let wrap = 1u64 << 32;
        let before = creation_after(0, 40 * wrap - DAY_MS);
        let after = creation_after(0, 40 * wrap + 4 * DAY_MS);
        assert!(after < before, "the numbers wrapped: {after} < {before}");
        assert!(Node::is_newer_creation(after, before));
        assert!(!Node::is_newer_creation(before, after));
        // Any restart less than ~24.8 days later is newer, wrap or not.
        for gap_days in [0u64, 1, 5, 20, 24] {
            for start in [0, wrap - DAY_MS, wrap - 1, 7 * wrap + 12_345] {
                let old = creation_after(0, start);
                let new = creation_after(old, start + gap_days * DAY_MS + 1);
                assert!(
                    Node::is_newer_creation(new, old),
                    "{start} + {gap_days} days"
                );
            }
        }
    }

    #[test]
    fn creations_handed_out_in_one_millisecond_or_a_clock_step_back_still_grow() {
        let first = creation_after(0, 1_000);
        let same_ms = creation_after(first, 1_000);
        let stepped_back = creation_after(same_ms, 500);
        assert!(Node::is_newer_creation(same_ms, first));
        assert!(Node::is_newer_creation(stepped_back, same_ms));
        // Never 0, even at the wrap.
        assert_ne!(creation_after(0, 1 << 32), 0);
        assert_ne!(creation_after(u32::MAX, 1 << 32), 0);
        let a = Node::new("first").creation();
        let b = Node::new("second").creation();
        assert!(Node::is_newer_creation(b, a), "{b} after {a}");
    }
}
