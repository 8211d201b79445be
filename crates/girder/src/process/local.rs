//! What a process carries while its task is being polled, reachable from code below it.
//!
//! The process's task points this thread's slot at its [`ProcessLocal`] for the length of each
//! poll and restores the slot after (`ProcessTask::poll`): two pointer stores, cheaper than a
//! tokio task-local scope, which measured 15-20% of a ring or ping-pong hop, or moving the
//! value in and out.

use std::any::{Any, TypeId};
use std::cell::Cell;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Waker;

use tokio::time::Sleep;

use crate::server::slot::Slot;

/// A process's own state for code that runs inside it: its pid (so code below a process, such
/// as a remote send choosing its ordering stream, can tell which process it runs in) and what
/// its calls reuse.
pub(crate) struct ProcessLocal {
    pid: crate::Pid,
    /// Allocated at the first call, so a process that never calls stays small.
    calls: Option<Box<CallCache>>,
}

/// What a process's calls reuse from one call to the next.
#[derive(Default)]
pub(crate) struct CallCache {
    /// One timer for call timeouts: tokio's timer wheel takes a lock to register and to cancel
    /// an entry, but moving a registered deadline later is a single atomic update, so reusing
    /// one `Sleep` per process turns two locks per call into none.
    pub(crate) timer: Option<CallTimer>,
    /// Reply slots, at most one per reply type (see `server::slot`).
    slots: Vec<(TypeId, Arc<dyn Any + Send + Sync>)>,
}

/// A reusable call timer and the waker it was last polled with while still armed: a timer
/// polled pending with a waker wakes it when it fires, so a call that finds its timer armed
/// for the same waker need not poll it again.
pub(crate) struct CallTimer {
    pub(crate) sleep: Pin<Box<Sleep>>,
    pub(crate) armed_for: Option<Waker>,
    /// When `sleep` is set to fire, as an integer that is cheap to compare.
    pub(crate) set_at: crate::timer::Deadline,
}

/// Reply slots kept per process: a process calling more kinds of servers than this allocates
/// a slot per call for the rest, as before slots existed.
const SLOTS_KEPT: usize = 4;

impl ProcessLocal {
    pub(crate) fn new(pid: crate::Pid) -> Self {
        ProcessLocal { pid, calls: None }
    }

    pub(crate) fn calls(&mut self) -> &mut CallCache {
        self.calls.get_or_insert_with(Default::default)
    }
}

thread_local! {
    static CURRENT: Cell<*mut ProcessLocal> = const { Cell::new(std::ptr::null_mut()) };
}

/// Points this thread's slot at `local` and returns what it pointed at (restore it with
/// [`leave`] after the poll).
#[inline]
pub(crate) fn enter(local: *mut ProcessLocal) -> *mut ProcessLocal {
    CURRENT.replace(local)
}

/// Restores the slot [`enter`] replaced.
#[inline]
pub(crate) fn leave(outer: *mut ProcessLocal) {
    CURRENT.set(outer);
}

/// Runs `f` on the running process's slot, if a process is being polled on this thread.
pub(crate) fn with_current<R>(f: impl FnOnce(&mut ProcessLocal) -> R) -> Option<R> {
    let ptr = CURRENT.get();
    // SAFETY: the slot is non-null only while `ProcessTask::poll` polls its process, and points
    // at that pinned task's `ProcessLocal`, which nothing else touches during the poll. The
    // borrow ends before `f` returns and no `f` in this crate re-enters this function (they
    // move values in and out; drops of what they take out happen after they return).
    unsafe { ptr.as_mut() }.map(f)
}

/// The pid of the process whose task is running, if any.
pub(crate) fn current_pid() -> Option<crate::Pid> {
    with_current(|p| p.pid)
}

/// An idle reply slot for a call: the running process's own, or a new one.
pub(crate) fn take_slot<R: Send + 'static>() -> Arc<Slot<R>> {
    let kept = with_current(|p| {
        let slots = &mut p.calls().slots;
        let at = slots
            .iter()
            .position(|(t, _)| *t == TypeId::of::<Slot<R>>())?;
        Some(slots.swap_remove(at).1)
    })
    .flatten();
    match kept.map(|s| s.downcast::<Slot<R>>()) {
        Some(Ok(slot)) => slot,
        _ => Arc::new(Slot::new()),
    }
}

/// Keeps an idle reply slot for the running process's next call (dropped outside a process,
/// or if the process already keeps one of its type or as many as it may).
pub(crate) fn give_back_slot<R: Send + 'static>(slot: Arc<Slot<R>>) {
    let refused = with_current(move |p| {
        let slots = &mut p.calls().slots;
        let kind = TypeId::of::<Slot<R>>();
        if slots.len() >= SLOTS_KEPT || slots.iter().any(|(t, _)| *t == kind) {
            return Some(slot);
        }
        slots.push((kind, slot));
        None
    });
    // Dropped here, after the borrow of the process's slot ended.
    drop(refused);
}
