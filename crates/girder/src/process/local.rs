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

use std::ptr::NonNull;

use crate::call::slot::Slot;
use crate::process::core::Header;

/// A process's own state for code that runs inside it: its record (so code below a process,
/// such as a remote send choosing its ordering stream, can tell which process it runs in),
/// what its calls reuse, and the call its behaviour is handling.
pub(crate) struct ProcessLocal {
    /// The process's record: alive while its task is, which holds it.
    header: NonNull<Header>,
    /// Allocated at the first call, so a process that never calls stays small.
    calls: Option<Box<CallCache>>,
    /// The reply slot of the call whose handler runs now (0: none), to tell a reply handle
    /// that escaped its handler from one answered in it (see `call::watch`).
    pub(crate) replying: usize,
}

/// What a process's calls reuse from one call to the next.
#[derive(Default)]
pub(crate) struct CallCache {
    /// One timer for call timeouts: tokio's timer wheel takes a lock to register and to cancel
    /// an entry, but moving a registered deadline later is a single atomic update, so reusing
    /// one `Sleep` per process turns two locks per call into none.
    pub(crate) timer: Option<CallTimer>,
    /// Reply slots, at most one per reply type (see `call::slot`).
    slots: Vec<(TypeId, Arc<dyn Any + Send + Sync>)>,
    /// The waker the process's calls wait with, also left in the process's record for callees
    /// to wake it with (see `call::watch`).
    published: Option<Waker>,
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

// SAFETY: the record pointed at is `Sync` and outlives the task that carries this; nothing
// here is tied to a thread.
unsafe impl Send for ProcessLocal {}

impl ProcessLocal {
    pub(crate) fn new(header: &Header) -> Self {
        ProcessLocal {
            header: NonNull::from(header),
            calls: None,
            replying: 0,
        }
    }

    pub(crate) fn calls(&mut self) -> &mut CallCache {
        self.calls.get_or_insert_with(Default::default)
    }

    fn header(&self) -> &Header {
        // SAFETY: the record is alive while the process's task is, and this is only reached
        // while the task is being polled.
        unsafe { self.header.as_ref() }
    }

    /// This process's record.
    pub(crate) fn header_ptr(&self) -> NonNull<Header> {
        self.header
    }

    /// Whether `header` is this process's record.
    pub(crate) fn is(&self, header: NonNull<Header>) -> bool {
        self.header == header
    }

    /// Starts watching a call of this process for escapes.
    #[inline]
    fn watch_calls(&mut self) -> crate::call::watch::Caller {
        crate::call::watch::Caller::inside(self.header)
    }

    /// Whether a callee that wakes this process's published waker wakes `waker`'s future
    /// (see `call::watch`). The first call publishes its waker: the process's task waker when
    /// the call is awaited in the process's own future, as it nearly always is.
    #[inline]
    pub(crate) fn wakes(&mut self, waker: &Waker) -> bool {
        let calls = self.calls();
        match &calls.published {
            Some(w) => w.will_wake(waker),
            None => self.publish(waker),
        }
    }

    /// Publishes `waker`; false if an escape came before it could be woken (this first call
    /// then watches its callee itself).
    #[cold]
    fn publish(&mut self, waker: &Waker) -> bool {
        self.calls().published = Some(waker.clone());
        let mut meta = self.header().meta.lock();
        let extra = meta.extra();
        extra.task_waker = Some(waker.clone());
        extra.watches.as_ref().is_none_or(|w| w.escapes.is_empty())
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

/// The running process's slot (null outside any process), for code that keeps using it
/// through the raw pointer within the process's own task (see `call::watch::Handling`).
#[inline]
pub(crate) fn current_ptr() -> *mut ProcessLocal {
    CURRENT.get()
}

/// Runs `f` on the running process's slot, if a process is being polled on this thread.
#[inline]
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
    with_current(|p| p.header().pid)
}

/// An idle reply slot for a call: the running process's own, or a new one.
/// An idle reply slot for a call: the running process's own, or a new one; and, inside a
/// process, what its call watches for escapes with (see `call::watch`).
pub(crate) fn take_slot<R: Send + 'static>() -> (Arc<Slot<R>>, crate::call::watch::Caller) {
    let taken = with_current(|p| {
        let watch = p.watch_calls();
        let slots = &mut p.calls().slots;
        let kept = slots
            .iter()
            .position(|(t, _)| *t == TypeId::of::<Slot<R>>())
            .map(|at| slots.swap_remove(at).1);
        (kept, watch)
    });
    match taken {
        Some((kept, watch)) => match kept.map(|s| s.downcast::<Slot<R>>()) {
            Some(Ok(slot)) => (slot, watch),
            _ => {
                let home = with_current(|p| p.header.as_ptr() as usize).unwrap_or(0);
                (Arc::new(Slot::new(current_pid(), home)), watch)
            }
        },
        None => (
            Arc::new(Slot::new(None, 0)),
            crate::call::watch::Caller::outside(),
        ),
    }
}

/// Keeps an idle reply slot for the running process's next call (dropped outside a process,
/// or if the process already keeps one of its type or as many as it may).
pub(crate) fn give_back_slot<R: Send + 'static>(slot: Arc<Slot<R>>) {
    let refused = with_current(move |p| {
        // Another process's slot (a call future moved between processes) would tell the wrong
        // process of escapes: not kept.
        if slot.home() != p.header.as_ptr() as usize {
            return Some(slot);
        }
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
