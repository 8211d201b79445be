//! Starting a process: the task that drives it and the guard that reports its exit.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll};

use futures_util::FutureExt;

use super::core::{Abort, AnyProcess, Core, Header, Life};
use super::signal;
use crate::mailbox::Mailbox;
use crate::{Addr, Context, ExitReason, Node, Pid};

/// How to start a process: mailbox capacity, a link to the parent, exit trapping.
///
/// ```
/// use girder::SpawnOptions;
/// let opts = SpawnOptions::new().capacity(1024).trap_exit(true);
/// assert_eq!(opts.mailbox_capacity(), Some(1024));
/// ```
#[derive(Clone, Debug)]
pub struct SpawnOptions {
    capacity: Option<usize>,
    overflow: crate::Overflow,
    link: Option<Pid>,
    trap_exit: bool,
    behaviour: &'static str,
}

impl Default for SpawnOptions {
    fn default() -> Self {
        SpawnOptions {
            capacity: None,
            overflow: crate::Overflow::Wait,
            link: None,
            trap_exit: false,
            behaviour: "process",
        }
    }
}

impl SpawnOptions {
    /// Unbounded mailbox, no link, not trapping exits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bounds the mailbox to `n` messages (at least 1). A full mailbox refuses `send` with
    /// [`SendError::Full`](crate::SendError::Full) and makes `send_wait` wait.
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = Some(n.max(1));
        self
    }

    /// What a bounded mailbox does when full (default [`Overflow::Wait`](crate::Overflow::Wait));
    /// no effect on an unbounded one.
    ///
    /// ```
    /// use girder::{Overflow, SpawnOptions};
    /// let opts = SpawnOptions::new().capacity(100).overflow(Overflow::DropOldest);
    /// assert_eq!(opts.mailbox_overflow(), Overflow::DropOldest);
    /// ```
    pub fn overflow(mut self, policy: crate::Overflow) -> Self {
        self.overflow = policy;
        self
    }

    /// The mailbox's overflow policy.
    pub fn mailbox_overflow(&self) -> crate::Overflow {
        self.overflow
    }

    /// The mailbox bound, if any.
    pub fn mailbox_capacity(&self) -> Option<usize> {
        self.capacity
    }

    /// Links the new process to `parent` before it runs, so neither can miss the other's exit.
    pub fn link(mut self, parent: Pid) -> Self {
        self.link = Some(parent);
        self
    }

    /// The behaviour name shown by introspection.
    pub fn behaviour_name(&self) -> &'static str {
        self.behaviour
    }

    /// The parent this process will be linked to, if any.
    pub fn parent(&self) -> Option<Pid> {
        self.link
    }

    /// Starts the process already trapping exits.
    pub fn trap_exit(mut self, on: bool) -> Self {
        self.trap_exit = on;
        self
    }

    /// The behaviour name shown by introspection (`"server"`, `"supervisor"`, ...).
    pub fn behaviour(mut self, name: &'static str) -> Self {
        self.behaviour = name;
        self
    }
}

/// Reports the process's exit when dropped: on completion with the returned reason (or panic), or
/// without one when the task is aborted by a kill.
struct ExitGuard {
    armed: Option<(Node, Arc<dyn AnyProcess>)>,
}

impl ExitGuard {
    fn finish(mut self, reason: ExitReason) {
        if let Some((node, proc_)) = self.armed.take() {
            signal::on_exit(&node, &*proc_, Some(reason));
        }
    }
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        if let Some((node, proc_)) = self.armed.take() {
            signal::on_exit(&node, &*proc_, None);
        }
    }
}

pin_project_lite::pin_project! {
    /// The future a process's tokio task runs: the user's future, panics caught, plus the guard
    /// that reports the exit. A struct rather than an `async` block keeps the task small: an
    /// idle process's task fits in fewer cache lines.
    struct ProcessTask<F> {
        #[pin]
        inner: futures_util::future::CatchUnwind<AssertUnwindSafe<F>>,
        guard: Option<ExitGuard>,
        // The thread's slot points here while the process runs (see `process::local`).
        local: crate::process::local::ProcessLocal,
    }
}

impl<F: Future<Output = ExitReason>> Future for ProcessTask<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<()> {
        let this = self.project();
        let outer = crate::process::local::enter(this.local);
        let polled = this.inner.poll(cx);
        crate::process::local::leave(outer);
        let result = std::task::ready!(polled);
        let reason = result.unwrap_or_else(ExitReason::from_panic);
        if let Some(guard) = this.guard.take() {
            guard.finish(reason);
        }
        Poll::Ready(())
    }
}

pub(crate) fn spawn_process<M, F, Fut>(node: &Node, opts: SpawnOptions, f: F) -> Addr<M>
where
    M: Send + 'static,
    F: FnOnce(Context<M>) -> Fut + Send + 'static,
    Fut: Future<Output = ExitReason> + Send + 'static,
{
    let pid = node.next_pid();
    let core = Arc::new(Core {
        header: Header::new(pid, opts.behaviour),
        mailbox: Mailbox::new(opts.capacity, opts.overflow),
    });
    if opts.trap_exit {
        core.header.set_trap_exit(true);
    }
    let as_any: Arc<dyn AnyProcess> = core.clone();
    node.insert_process(pid, as_any.clone());
    if let Some(parent) = opts.link {
        if signal::link(node, &*as_any, parent).is_err() {
            // The parent is already gone: the link would have delivered its exit at once.
            core.header.meta.lock().life = Life::Ending(ExitReason::NoProc);
        }
    }
    let ctx = Context::new(core.clone(), node.clone());
    // The guard exists before the first poll, so even a task aborted before it ever ran reports
    // its exit.
    let task = ProcessTask {
        inner: AssertUnwindSafe(f(ctx)).catch_unwind(),
        guard: Some(ExitGuard {
            armed: Some((node.clone(), as_any)),
        }),
        local: crate::process::local::ProcessLocal::new(&core.header),
    };
    let abort = match &node.inner.spawner {
        Some(pool) => Abort::Scheduled(pool.spawn(task)),
        None => Abort::Tokio(tokio::spawn(task).abort_handle()),
    };
    let killed_while_spawning = {
        let mut meta = core.header.meta.lock();
        if matches!(meta.life, Life::Running) {
            meta.abort = Some(abort);
            None
        } else {
            matches!(meta.life, Life::Ending(_)).then_some(abort)
        }
    };
    if let Some(abort) = killed_while_spawning {
        abort.abort();
    }
    Addr::local(core)
}
