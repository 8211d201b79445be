//! How a caller learns that its callee died while another process or task holds the reply
//! handle (a deferred reply handed to a worker, say): OTP's `gen:call` monitors the callee for
//! every call; a monitor per call here would cost a lock on the callee and an allocation, a
//! tenth of a call. So only the calls whose handle escapes pay:
//!
//! 1. Before a behaviour runs a handler with a call's reply handle, it notes the handle's slot
//!    ([`begin`]); the handle clears the note when it is answered or dropped ([`answered`]).
//! 2. After the handler, a note still there means the handle escaped ([`end`]): the callee
//!    tells its caller process (found by pid, so safely, whatever happened to the handle) by
//!    leaving an [`Escape`] in the caller's record and waking its task.
//! 3. The caller's waiting call ([`Caller`]), woken without its answer, finds the escape meant
//!    for it and from then on also waits for the callee's exit, which ends the call with the
//!    exit reason.
//!
//! A caller outside any process, or a call polled with a waker other than the one its process
//! published (a combinator's own), cannot be told: it watches the callee's exit from the
//! start, as `gen:call` does.

use std::ptr::NonNull;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::process::core::Header;
use crate::process::local::{current_ptr, with_current};
use crate::{Addr, ExitReason, Node, Pid};

/// Escapes a process keeps until its calls look at them; older ones are dropped (a process
/// has one call under way, or a few in a combinator).
const ESCAPES_KEPT: usize = 16;

/// A reply handle of a call from this process that left its callee's handler unanswered: the
/// callee and the caller's reply slot. (No generation: a stale escape matching a later call of
/// the same slot to the same callee only makes that call watch its callee too.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Escape {
    pub(crate) callee: Pid,
    pub(crate) slot: usize,
}

/// A call's identity, as its request carries it (small: every call message carries it): the
/// caller's reply slot and the calling process's id on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CallId {
    pub(crate) slot: std::num::NonZeroUsize,
    pub(crate) caller: u64,
}

/// What a behaviour notes before running a handler with a call's reply handle.
pub(crate) struct Handling {
    slot: usize,
    caller: u64,
    /// The callee's record, alive while its task is (whose future holds this): where an
    /// interrupted handler leaves its tell.
    callee: NonNull<Header>,
}

// SAFETY: `callee` points at the record of the process whose future holds this, kept alive by
// that process's task; only used under the record's own lock.
unsafe impl Send for Handling {}

/// Notes the call whose reply handle a handler is about to get. `None` for handles with nobody
/// to tell (a caller outside any process watches the callee itself; a remote caller's node
/// watches for it).
#[inline]
pub(crate) fn begin(id: Option<CallId>) -> Option<Handling> {
    let CallId { slot, caller } = id?;
    let slot = slot.get();
    let local = NonNull::new(current_ptr())?;
    // SAFETY: the running process's slot, read fresh from the thread-local (as `with_current`
    // does), written through the raw pointer so no reference outlives this line.
    let callee = unsafe {
        std::ptr::addr_of_mut!((*local.as_ptr()).replying).write(slot);
        (*local.as_ptr()).header_ptr()
    };
    Some(Handling {
        slot,
        caller,
        callee,
    })
}

/// A reply handle answered (or dropped) the call of `slot`: if it is the one the running
/// behaviour noted, it did not escape.
#[inline]
pub(crate) fn answered(slot: usize) {
    with_current(|p| {
        if p.replying == slot {
            p.replying = 0;
        }
    });
}

/// After the handler (and what the behaviour did with its outcome, such as a state machine's
/// reply actions): tells the caller if the handle escaped.
#[inline]
pub(crate) fn end(handling: Option<Handling>, node: &Node, callee: Pid) {
    let Some(h) = handling else { return };
    let noted = with_current(|p| std::mem::replace(&mut p.replying, 0));
    let (slot, caller) = (h.slot, h.caller);
    // Ended normally: nothing for the drop to do.
    std::mem::forget(h);
    if noted == Some(slot) {
        tell(node, callee, caller, slot);
    }
}

impl Drop for Handling {
    /// The handler never finished (its process was killed while it awaited): the handle may
    /// have escaped, so the caller is told once the process's exit is handled (`on_exit`
    /// reads what is left here). A handle answered already makes this a stale tell, which the
    /// caller ignores.
    fn drop(&mut self) {
        // SAFETY: see `Handling::callee`.
        let header = unsafe { self.callee.as_ref() };
        header
            .meta
            .lock()
            .extra()
            .watches()
            .pending_tells
            .push(Pending {
                caller: self.caller,
                slot: self.slot,
            });
    }
}

/// A tell left by an interrupted handler, sent when its process's exit is handled.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pending {
    caller: u64,
    slot: usize,
}

/// Sends the tells an exiting process's interrupted handlers left.
pub(crate) fn tell_pending(node: &Node, callee: Pid, pending: Vec<Pending>) {
    for p in pending {
        tell(node, callee, p.caller, p.slot);
    }
}

/// Leaves the escape in the caller's record and wakes the caller.
#[cold]
fn tell(node: &Node, callee: Pid, caller: u64, slot: usize) {
    // The caller is a process of this node (a call between two node objects of one OS process
    // goes through the distribution layer, which watches for it).
    let Some(caller) = node.lookup_any(Pid::new(0, node.creation(), caller)) else {
        return;
    };
    let header = caller.header();
    let waker = {
        let mut meta = header.meta.lock();
        if meta.has_exited() {
            return;
        }
        let extra = meta.extra();
        let waker = extra.task_waker.clone();
        let w = extra.watches();
        if w.escapes.len() >= ESCAPES_KEPT {
            // Waits that find no escape of theirs now watch their callee, to be safe.
            w.escapes.remove(0);
            w.escapes_dropped = true;
        }
        w.escapes.push(Escape { callee, slot });
        waker
    };
    if let Some(w) = waker {
        w.wake();
    }
}

/// Whether callees of the calling process (`own`) wake `waker` (publishing it if the process
/// has published none): false outside any process, or once the call moved out of its process.
pub(crate) fn wakes(waker: &std::task::Waker, own: Option<NonNull<Header>>) -> bool {
    let Some(own) = own else { return false };
    with_current(|p| p.is(own) && p.wakes(waker)).unwrap_or(false)
}

/// The caller's side of one call.
pub(crate) struct Caller {
    /// The calling process's record, if the call is made from a process's own task.
    own: Option<NonNull<Header>>,
    /// Whether the first wait has checked the waker it is polled with.
    checked: bool,
    /// The callee's exit, once it is worth waiting for.
    exit: Option<oneshot::Receiver<ExitReason>>,
}

// SAFETY: `own` is only dereferenced while the process it belongs to is the one being polled
// on this thread (see `Caller::header`), and `Header` is `Sync`.
unsafe impl Send for Caller {}
// SAFETY: as above; `&Caller` gives access to nothing.
unsafe impl Sync for Caller {}

impl Caller {
    /// The calling process's record, if any.
    pub(crate) fn own(&self) -> Option<NonNull<Header>> {
        self.own
    }

    /// A call from inside a process, whose record is `own`.
    pub(crate) fn inside(own: NonNull<Header>) -> Caller {
        Caller {
            own: Some(own),
            checked: false,
            exit: None,
        }
    }

    /// A call from outside any process: it watches the callee's exit from the start.
    pub(crate) fn outside() -> Caller {
        Caller {
            own: None,
            checked: false,
            exit: None,
        }
    }

    /// The fast path of a wait that found no answer: true when there is nothing to look at.
    /// The first wait of a call needs nothing when the slot's waker is the one the caller's
    /// callees wake (`told`): an escape would wake it and poll again.
    #[inline]
    pub(crate) fn quiet(&mut self, told: bool) -> bool {
        if self.checked || self.own.is_none() || !told {
            return false;
        }
        self.checked = true;
        true
    }

    /// Ready with the callee's exit reason once the call should end with it.
    #[cold]
    pub(crate) fn poll_exit<M: Send + 'static>(
        &mut self,
        cx: &mut Context<'_>,
        callee: &Addr<M>,
        slot: usize,
        told: bool,
    ) -> Poll<ExitReason> {
        if self.exit.is_none() {
            // The first wait, with a waker callees would not wake (a combinator's), or nobody
            // to tell; or a later wait with such a waker (the call moved into a combinator):
            // watch from now on. Otherwise, watch if the callee said the handle escaped.
            let watch_now = !self.checked || !told || self.escaped_here(callee.pid(), slot);
            self.checked = true;
            if !watch_now {
                return Poll::Pending;
            }
            match callee.exit_waiter() {
                Some(Ok(reason)) => return Poll::Ready(reason),
                Some(Err(rx)) => self.exit = Some(rx),
                // A remote callee: its node fails the call if the callee exits.
                None => return Poll::Pending,
            }
        }
        let rx = self.exit.as_mut().expect("set above");
        match std::pin::Pin::new(rx).poll(cx) {
            Poll::Ready(reason) => Poll::Ready(reason.unwrap_or(ExitReason::NoProc)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The calling process's record, if that process is the one being polled now (a call
    /// future boxed and moved to another task after its first poll has nobody to tell it).
    fn header<'a>(own: Option<NonNull<Header>>) -> Option<&'a Header> {
        let own = own?;
        if !with_current(|p| p.is(own)).unwrap_or(false) {
            return None;
        }
        // SAFETY: the process whose record this is is being polled on this thread: its record
        // lives at least as long as its task, which is running, and the reference is used only
        // within this poll.
        Some(unsafe { own.as_ref() })
    }

    /// Whether the callee told this call its handle escaped. A call that can no longer be
    /// told (moved out of its process) is answered `true`: it watches the callee itself.
    fn escaped_here(&mut self, callee: Pid, slot: usize) -> bool {
        let Some(header) = Self::header(self.own) else {
            return true;
        };
        // Only a wake without the answer gets here (rare): the lock is affordable.
        let wanted = Escape { callee, slot };
        let mut meta = header.meta.lock();
        let w = meta.extra().watches();
        let found = match w.escapes.iter().position(|e| *e == wanted) {
            Some(i) => {
                w.escapes.remove(i);
                true
            }
            // Escapes were dropped for room: this call's may have been one.
            None => w.escapes_dropped,
        };
        if w.escapes.is_empty() {
            w.escapes_dropped = false;
        }
        found
    }
}

use std::future::Future as _;
