//! The per-process record that senders, links, monitors and the node table point at.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use super::small_map::SmallMap;
use crate::mailbox::{Mailbox, SysMsg};
use crate::{ExitReason, Pid};

/// The untyped half of a process: identity, flags, links, monitors.
pub(crate) struct Header {
    pub(crate) pid: Pid,
    pub(crate) trap_exit: AtomicBool,
    pub(crate) restarts: AtomicU32,
    /// Messages in the receiver's private batch (for introspection only).
    pub(crate) local_len: AtomicUsize,
    pub(crate) meta: Mutex<Meta>,
}

/// The processes a process is linked to (a set: a supervisor may have a hundred thousand).
pub(crate) type Links = SmallMap<Pid, ()>;

/// How to end a process's task from outside it.
pub(crate) enum Abort {
    /// A task of the ambient tokio runtime.
    Tokio(AbortHandle),
    /// A task on Girder's schedulers: dropping its handle cancels it.
    Scheduled(crate::scheduler::ScheduledTask),
}

impl Abort {
    /// Ends the task: its future is dropped without being polled again (after the poll under
    /// way, if any), which runs the process's exit guard.
    pub(crate) fn abort(self) {
        match self {
            Abort::Tokio(h) => h.abort(),
            Abort::Scheduled(task) => drop(task),
        }
    }
}

/// State that changes rarely (links, monitors, names, life cycle), behind one short lock.
pub(crate) struct Meta {
    pub(crate) links: Links,
    pub(crate) behaviour: &'static str,
    pub(crate) abort: Option<Abort>,
    pub(crate) life: Life,
    /// Rarely used parts, allocated on first use so that an idle process stays small.
    extra: Option<Box<Extra>>,
}

#[derive(Default)]
pub(crate) struct Extra {
    /// Both ends of this process's monitors, so either side's exit can clean up the other:
    /// `(id, other end)` → whether this process is the watched end.
    monitors: SmallMap<(u64, Pid), bool>,
    pub(crate) name: Option<Arc<str>>,
    /// The process's task waker, once it has made a call: what a callee wakes it with.
    pub(crate) task_waker: Option<std::task::Waker>,
    /// Waits on this process and escaped calls of its own, made on first use.
    pub(crate) watches: Option<Box<Watches>>,
    /// Timers armed for this process, cancelled at its exit.
    pub(crate) timers: crate::timer::Owned,
}

/// What waits on a process, and what its calls left behind, that most processes never have:
/// boxed, three empty lists cost a process that has an `Extra` (a name, a timer, a monitor)
/// 8 bytes rather than 80.
#[derive(Default)]
pub(crate) struct Watches {
    /// Tasks outside any process waiting for this one to exit.
    pub(crate) waiters: Vec<oneshot::Sender<ExitReason>>,
    /// Calls of this process whose reply handle escaped their callee's handler.
    pub(crate) escapes: Vec<crate::call::watch::Escape>,
    /// Escapes were dropped to keep `escapes` bounded (cleared when it empties).
    pub(crate) escapes_dropped: bool,
    /// Tells left by handlers of this process that were interrupted, sent at its exit.
    pub(crate) pending_tells: Vec<crate::call::watch::Pending>,
}

/// Where a process is in its life.
pub(crate) enum Life {
    Running,
    /// An exit was decided (a kill, or a behaviour stopping) and is not handled yet.
    Ending(ExitReason),
    /// The exit is being handled: links, process table, monitors.
    Exited(ExitReason),
    /// The exit has been fully handled.
    Gone(ExitReason),
}

impl Extra {
    /// Its watches, made on first use.
    pub(crate) fn watches(&mut self) -> &mut Watches {
        self.watches.get_or_insert_with(Default::default)
    }

    pub(crate) fn monitor_ends(&self) -> impl Iterator<Item = MonitorEnd> + '_ {
        self.monitors
            .iter()
            .map(|(&(id, other), &watched)| MonitorEnd { id, other, watched })
    }
}

impl Meta {
    pub(crate) fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Default::default)
    }

    /// The rarely used part, if the process ever used it (most never do: their exit skips it).
    pub(crate) fn take_extra(&mut self) -> Option<Box<Extra>> {
        self.extra.take()
    }

    /// Both ends of this process's monitors.
    pub(crate) fn monitors(&self) -> impl Iterator<Item = MonitorEnd> + '_ {
        self.extra.iter().flat_map(|e| e.monitor_ends())
    }

    /// Records one end of a monitor.
    pub(crate) fn add_monitor(&mut self, end: MonitorEnd) {
        self.extra()
            .monitors
            .insert((end.id, end.other), end.watched);
    }

    /// Forgets the monitor `id` whose other end is `other` (ids are unique per watcher's node,
    /// so a monitor from another node is told apart by its pid).
    pub(crate) fn forget_monitor(&mut self, id: u64, other: Pid) -> bool {
        match &mut self.extra {
            Some(e) => e.monitors.remove(&(id, other)).is_some(),
            None => false,
        }
    }

    /// Forgets the monitors for which `f` is false.
    pub(crate) fn retain_monitors(&mut self, mut f: impl FnMut(MonitorEnd) -> bool) {
        if let Some(e) = &mut self.extra {
            e.monitors
                .retain(|&(id, other), &watched| f(MonitorEnd { id, other, watched }));
        }
    }

    pub(crate) fn name(&self) -> Option<&Arc<str>> {
        self.extra.as_ref().and_then(|e| e.name.as_ref())
    }

    /// True once the exit is being handled or done.
    pub(crate) fn has_exited(&self) -> bool {
        matches!(self.life, Life::Exited(_) | Life::Gone(_))
    }

    /// The reason the process exited, or is exiting with.
    pub(crate) fn reason(&self) -> Option<&ExitReason> {
        match &self.life {
            Life::Running => None,
            Life::Ending(r) | Life::Exited(r) | Life::Gone(r) => Some(r),
        }
    }
}

impl Header {
    pub(crate) fn new(pid: Pid, behaviour: &'static str) -> Self {
        Header {
            pid,
            trap_exit: AtomicBool::new(false),
            restarts: AtomicU32::new(0),
            local_len: AtomicUsize::new(0),
            meta: Mutex::new(Meta {
                links: Links::new(),
                behaviour,
                abort: None,
                life: Life::Running,
                extra: None,
            }),
        }
    }

    pub(crate) fn traps_exits(&self) -> bool {
        self.trap_exit.load(Ordering::Acquire)
    }

    pub(crate) fn set_trap_exit(&self, on: bool) {
        self.trap_exit.store(on, Ordering::Release);
    }

    /// The exit reason once the exit has been fully handled, or a receiver that gets it then.
    pub(crate) fn exit_or_waiter(&self) -> Result<ExitReason, oneshot::Receiver<ExitReason>> {
        let mut meta = self.meta.lock();
        if let Life::Gone(r) = &meta.life {
            return Ok(r.clone());
        }
        let (tx, rx) = oneshot::channel();
        let waiters = &mut meta.extra().watches().waiters;
        // Waiters that gave up (a timed-out wait) are dropped when the list doubles, so it stays
        // small at a constant cost per wait.
        if waiters.len() >= 8 && waiters.len().is_power_of_two() {
            waiters.retain(|w| !w.is_closed());
        }
        waiters.push(tx);
        Err(rx)
    }

    /// The reason the process exited, or is exiting with, if any.
    pub(crate) fn exit_reason(&self) -> Option<ExitReason> {
        self.meta.lock().reason().cloned()
    }
}

/// One end of a monitor, kept by both the watcher and the watched process.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct MonitorEnd {
    pub(crate) id: u64,
    /// The process at the other end.
    pub(crate) other: Pid,
    /// True on the watched process's side.
    pub(crate) watched: bool,
}

/// A process as seen by code that does not know its message type.
pub(crate) trait AnyProcess: Send + Sync + 'static {
    fn header(&self) -> &Header;
    fn push_sys(&self, msg: SysMsg) -> bool;
    fn mailbox_len(&self) -> usize;
    /// User messages ever queued in the mailbox.
    fn messages_in(&self) -> u64;
    /// A bounded mailbox's capacity, policy and counts.
    fn mailbox_stats(&self) -> Option<crate::MailboxStats>;
    /// Closes the mailbox and drops what was queued.
    fn close_mailbox(&self);
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// The typed process record: header plus mailbox, in one allocation.
pub(crate) struct Core<M> {
    pub(crate) header: Header,
    pub(crate) mailbox: Mailbox<M>,
}

impl<M: Send + 'static> AnyProcess for Core<M> {
    fn header(&self) -> &Header {
        &self.header
    }

    fn push_sys(&self, msg: SysMsg) -> bool {
        self.mailbox.push_sys(msg)
    }

    fn mailbox_len(&self) -> usize {
        self.mailbox.queued() + self.header.local_len.load(Ordering::Relaxed)
    }

    fn messages_in(&self) -> u64 {
        self.mailbox.delivered()
    }

    fn mailbox_stats(&self) -> Option<crate::MailboxStats> {
        self.mailbox.stats()
    }

    fn close_mailbox(&self) {
        let queued = self.mailbox.close();
        drop(queued);
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}
