//! The pool's task: a process's future on the heap, with one word that says whether it is
//! queued, running or done and how many references to it are alive.
//!
//! Girder keeps its own task type, as tokio and the BEAM do, because a task switch is most of
//! what a message costs on a busy scheduler, and on the machines this project measures on an
//! atomic read-modify-write is most of what a task switch costs (5-9 ns each). A switch here is
//! three: the wake-up that queues the task (a compare-and-swap; `fetch_or` compiles to one on
//! x86), and the start and the end of its run (one `lock xadd` each). async-task, used before, spent four or five. Decision 008's
//! amendment has the numbers.
//!
//! # The state word
//!
//! Flags in the low bits, the count of references above them ([`REF`] is one reference).
//! Counted references are held by every [`Waker`] made by cloning (the one lent to a poll is
//! not counted) and by the [`TaskHandle`] until it is dropped or detached. The task's [`Job`]
//! holds one that is not counted but implied by the flags: until the task is done, a job exists
//! exactly while `SCHEDULED` or `RUNNING` is set, so queueing and running a task move no count.
//! The task is freed by whoever leaves it done with no references: the job's end, or the last
//! reference to go.
//!
//! * `SCHEDULED`: a job exists (queued, or being handed to the queue). With `RUNNING`: the task
//!   was woken during its run and is queued again when the run ends.
//! * `RUNNING`: a scheduler is polling the future.
//! * `DONE`: the future is gone (finished, panicked, cancelled or dropped); wake-ups do nothing
//!   (`wake_by_ref` may leave a stray `SCHEDULED` beside it, which nothing reads).
//! * `CANCELLED`: the handle was dropped, or nothing refers to the idle task any more: the next
//!   run drops the future instead of polling it. A cancel also sets `SCHEDULED`, as a wake-up
//!   does, so a run under way always sees it.
//!
//! Whoever holds the job (or runs it) owns the future. A wake-up creates a job only if the task
//! is idle (none of the flags). A future is only ever dropped by its owner, on a scheduler
//! thread while the pool runs: even a task whose last reference goes while it is idle (nothing
//! can wake it any more) is queued once more, cancelled, so its process ends where processes
//! run. Once the pool has stopped, a refused job is dropped by the thread that woke the task
//! or let go of it last.

use std::cell::UnsafeCell;
use std::future::Future;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

const SCHEDULED: usize = 1 << 0;
const RUNNING: usize = 1 << 1;
const DONE: usize = 1 << 2;
const CANCELLED: usize = 1 << 3;
/// One reference.
const REF: usize = 1 << 4;
/// Past this many references something leaks wakers; abort rather than wrap (as `Arc` does).
const MAX_REFS: usize = usize::MAX / REF / 2;

fn refs(state: usize) -> usize {
    state / REF
}

/// Where a woken task goes: the pool's queues, or a test's.
pub(crate) trait Schedule: Sized + 'static {
    /// What every task carries for the scheduler (its home scheduler, its pool).
    type Meta: Send + Sync + 'static;

    /// Queues `job` to run. Dropping it instead drops the task's future (a stopped pool).
    fn schedule(job: Job<Self>);
}

/// The part of a task that does not depend on its future's type; a task pointer, a job and
/// every waker point here.
#[repr(C)]
struct Header<S: Schedule> {
    state: AtomicUsize,
    vtable: &'static TaskVtable,
    meta: S::Meta,
}

/// What needs the future's type.
struct TaskVtable {
    poll: unsafe fn(*const (), &mut Context<'_>) -> Poll<()>,
    drop_future: unsafe fn(*const ()),
    dealloc: unsafe fn(*const ()),
}

#[repr(C)]
struct Cell<F, S: Schedule> {
    header: Header<S>,
    future: UnsafeCell<ManuallyDrop<F>>,
}

impl<F: Future<Output = ()> + Send + 'static, S: Schedule> Cell<F, S> {
    const VTABLE: TaskVtable = TaskVtable {
        poll: Self::poll,
        drop_future: Self::drop_future,
        dealloc: Self::dealloc,
    };

    /// # Safety
    ///
    /// `ptr` is this cell; the caller owns the future (module docs) and it is not dropped.
    unsafe fn poll(ptr: *const (), cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: the future lives in a heap cell that never moves, and only its owner
        // reaches it.
        unsafe {
            let cell = &*(ptr as *const Self);
            Pin::new_unchecked(&mut **cell.future.get()).poll(cx)
        }
    }

    /// # Safety
    ///
    /// As `poll`; the future is not used again.
    unsafe fn drop_future(ptr: *const ()) {
        // SAFETY: see above.
        unsafe { ManuallyDrop::drop(&mut *(*(ptr as *const Self)).future.get()) }
    }

    /// # Safety
    ///
    /// No references are left and the future was dropped.
    unsafe fn dealloc(ptr: *const ()) {
        // SAFETY: the cell came from `Box::into_raw` in `spawn`.
        drop(unsafe { Box::from_raw(ptr as *mut Self) });
    }
}

/// Puts `future` on the heap as a task: the job that runs it first, and its handle.
pub(crate) fn spawn<F, S>(meta: S::Meta, future: F) -> (Job<S>, TaskHandle<S>)
where
    F: Future<Output = ()> + Send + 'static,
    S: Schedule,
{
    let cell = Box::new(Cell::<F, S> {
        header: Header {
            // The handle's reference; the job's is implied by SCHEDULED.
            state: AtomicUsize::new(SCHEDULED | REF),
            vtable: &Cell::<F, S>::VTABLE,
            meta,
        },
        future: UnsafeCell::new(ManuallyDrop::new(future)),
    });
    // SAFETY: `Box::into_raw` is never null.
    let ptr = unsafe { NonNull::new_unchecked(Box::into_raw(cell)) }.cast::<Header<S>>();
    (Job::at(ptr), TaskHandle { ptr })
}

/// A task's right to run once: the task is queued as its job.
pub(crate) struct Job<S: Schedule> {
    ptr: NonNull<Header<S>>,
    _schedule: PhantomData<S>,
}

// SAFETY: a job owns the future (`Send`, required by `spawn`) and shares the header, whose
// state is atomic and whose `Meta` is `Send + Sync`.
unsafe impl<S: Schedule> Send for Job<S> {}

impl<S: Schedule> Job<S> {
    fn at(ptr: NonNull<Header<S>>) -> Self {
        Job {
            ptr,
            _schedule: PhantomData,
        }
    }

    fn header(&self) -> &Header<S> {
        // SAFETY: the job holds a reference, so the task is alive.
        unsafe { self.ptr.as_ref() }
    }

    /// What the task carries for its scheduler.
    pub(crate) fn metadata(&self) -> &S::Meta {
        &self.header().meta
    }

    /// Polls the task once (or drops its future, if it was cancelled). A task woken while it
    /// ran is queued again; one whose future finished or panicked is done. A panic does not
    /// leave this function: the task's end is its exit.
    pub(crate) fn run(self) {
        let ptr = self.ptr;
        std::mem::forget(self);
        // SAFETY: the job keeps the task alive until this function gives it up.
        let header = unsafe { ptr.as_ref() };
        // SCHEDULED -> RUNNING. A job waiting to run has SCHEDULED set and RUNNING clear, so
        // adding the difference flips both: one `lock xadd`, where a compare-and-swap needs
        // a load first and may retry.
        const _: () = assert!(RUNNING - SCHEDULED == SCHEDULED);
        let before = header
            .state
            .fetch_add(RUNNING - SCHEDULED, Ordering::AcqRel);
        debug_assert_eq!(before & (SCHEDULED | RUNNING | DONE), SCHEDULED);
        if before & CANCELLED != 0 {
            // SAFETY: RUNNING: this side owns the future.
            unsafe { finish(ptr) };
            return;
        }
        // Not counted: the run keeps the task alive for as long as the waker is lent.
        // SAFETY: the vtable's functions treat the data pointer as this header.
        let waker = ManuallyDrop::new(unsafe {
            Waker::from_raw(RawWaker::new(
                ptr.as_ptr() as *const (),
                &Header::<S>::WAKER,
            ))
        });
        let mut cx = Context::from_waker(&waker);
        // SAFETY: RUNNING: this side owns the future.
        let polled = catch_unwind(AssertUnwindSafe(|| unsafe {
            (header.vtable.poll)(ptr.as_ptr() as *const (), &mut cx)
        }));
        if !matches!(polled, Ok(Poll::Pending)) {
            // SAFETY: still RUNNING.
            unsafe { finish(ptr) };
            if let Err(panic) = polled {
                drop_payload(panic);
            }
            return;
        }
        // RUNNING -> idle, or back to the queue if woken (or cancelled) during the run.
        let before = header.state.fetch_sub(RUNNING, Ordering::AcqRel);
        if before & SCHEDULED != 0 {
            S::schedule(Job::at(ptr));
        } else if refs(before) == 0 {
            // Idle, and nothing can wake it any more: end it here, on the scheduler.
            // SAFETY: no references and no job: this side is alone with the task.
            unsafe { drop_idle(ptr) };
        }
    }
}

impl<S: Schedule> Drop for Job<S> {
    /// A job dropped unrun (a stopped pool) drops the task's future: its process ends.
    fn drop(&mut self) {
        // SAFETY: the job owns the future.
        unsafe { finish(self.ptr) }
    }
}

/// The task's handle: dropping it cancels the task (its future is dropped at its next run,
/// unpolled), unless it was detached.
pub(crate) struct TaskHandle<S: Schedule> {
    ptr: NonNull<Header<S>>,
}

// SAFETY: the handle only touches the atomic state (and `Meta`, `Send + Sync`, when it frees).
unsafe impl<S: Schedule> Send for TaskHandle<S> {}
// SAFETY: a shared handle gives access to nothing.
unsafe impl<S: Schedule> Sync for TaskHandle<S> {}

impl<S: Schedule> TaskHandle<S> {
    /// Lets the task run to its end.
    pub(crate) fn detach(self) {
        let ptr = self.ptr;
        std::mem::forget(self);
        // SAFETY: the handle's reference.
        unsafe { release(ptr) }
    }
}

impl<S: Schedule> Drop for TaskHandle<S> {
    fn drop(&mut self) {
        // Marked as woken too, so the job's owner looks at it: a queued job runs and drops the
        // future, a run under way queues the job again, an idle task gets a job here.
        // SAFETY: the handle's reference, given up here.
        unsafe { wake_and_release(self.ptr, CANCELLED) }
    }
}

/// Gives up one reference and wakes the task, setting `flags` too (a waker woken by value, or
/// a dropped handle with `CANCELLED`): one atomic step. A done task is only let go of.
///
/// # Safety
///
/// The caller holds that reference and does not use it after.
unsafe fn wake_and_release<S: Schedule>(ptr: NonNull<Header<S>>, flags: usize) {
    // SAFETY: alive while the caller's reference is.
    let header = unsafe { ptr.as_ref() };
    let update = |state: usize| {
        Some(if state & DONE != 0 {
            state - REF
        } else {
            (state | SCHEDULED | flags) - REF
        })
    };
    let Ok(before) = header
        .state
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, update)
    else {
        unreachable!("the update always applies")
    };
    if before & (SCHEDULED | RUNNING | DONE) == 0 {
        // Idle: the job created here keeps it, whatever the count.
        S::schedule(Job::at(ptr));
    } else if before & DONE != 0 && refs(before) == 1 {
        // SAFETY: done, and that was the last reference.
        unsafe { dealloc(ptr) };
    }
}

/// Frees the task.
///
/// # Safety
///
/// The task is done and nothing refers to it.
unsafe fn dealloc<S: Schedule>(ptr: NonNull<Header<S>>) {
    // SAFETY: the vtable is the cell's own; the caller is the last to touch it.
    unsafe { (ptr.as_ref().vtable.dealloc)(ptr.as_ptr() as *const ()) }
}

/// Drops the future of a task whose job the caller holds or runs, and marks it done: the job
/// ends.
///
/// # Safety
///
/// The caller owns the future (module docs) and uses neither it nor the job after.
unsafe fn finish<S: Schedule>(ptr: NonNull<Header<S>>) {
    // SAFETY: alive while the job is.
    let header = unsafe { ptr.as_ref() };
    // A panicking drop is a process ending badly; it must not take the scheduler with it.
    // SAFETY: the caller owns the future.
    let dropped = catch_unwind(AssertUnwindSafe(|| unsafe {
        (header.vtable.drop_future)(ptr.as_ptr() as *const ())
    }));
    // A wake-up during the run may have set SCHEDULED without a reference of its own.
    let done = |state: usize| Some((state & !(SCHEDULED | RUNNING)) | DONE);
    let Ok(before) = header
        .state
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, done)
    else {
        unreachable!("the update always applies")
    };
    if refs(before) == 0 {
        // SAFETY: no references, and the job was the last thing keeping it.
        unsafe { dealloc(ptr) };
    }
    if let Err(panic) = dropped {
        drop_payload(panic);
    }
}

/// Drops a caught panic's payload, whose own drop may panic too (`panic_any` of a value that
/// panics when dropped): that must not unwind out of the scheduler either. The new panic's
/// payload is dropped the same way; a chain that never ends is cut and leaked.
fn drop_payload(mut payload: Box<dyn std::any::Any + Send>) {
    for _ in 0..8 {
        match catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            Ok(()) => return,
            Err(again) => payload = again,
        }
    }
    std::mem::forget(payload);
}

/// Gives up one reference (a waker's, or a detached handle's).
///
/// # Safety
///
/// The caller holds that reference and does not use it after.
unsafe fn release<S: Schedule>(ptr: NonNull<Header<S>>) {
    // SAFETY: alive while the caller's reference is.
    let header = unsafe { ptr.as_ref() };
    let old = header.state.fetch_sub(REF, Ordering::AcqRel);
    if refs(old) != 1 {
        return;
    }
    if old & DONE != 0 {
        // SAFETY: the last reference, and the future is gone.
        unsafe { dealloc(ptr) };
    } else if old & (SCHEDULED | RUNNING) == 0 {
        // Idle and unreachable.
        // SAFETY: no references and no job: the caller is alone with the task.
        unsafe { drop_idle(ptr) };
    }
    // Otherwise the job deals with the end.
}

/// Ends a task that is idle and that nothing refers to any more: it can never be woken, so its
/// future is dropped, by a last job so that this happens on a scheduler.
///
/// # Safety
///
/// The task is idle, not done, and has no references.
unsafe fn drop_idle<S: Schedule>(ptr: NonNull<Header<S>>) {
    // SAFETY: alive (not freed: it has not been done), and nobody else can reach it.
    let header = unsafe { ptr.as_ref() };
    header.state.store(SCHEDULED | CANCELLED, Ordering::Relaxed);
    S::schedule(Job::at(ptr));
}

impl<S: Schedule> Header<S> {
    const WAKER: RawWakerVTable = RawWakerVTable::new(
        Self::clone_waker,
        Self::wake,
        Self::wake_by_ref,
        Self::drop_waker,
    );

    /// # Safety (all four): `ptr` is a task's header, and the waker holds a reference.
    unsafe fn clone_waker(ptr: *const ()) -> RawWaker {
        // SAFETY: the waker's reference keeps the task alive.
        let header = unsafe { &*(ptr as *const Self) };
        if refs(header.state.fetch_add(REF, Ordering::Relaxed)) > MAX_REFS {
            std::process::abort();
        }
        RawWaker::new(ptr, &Self::WAKER)
    }

    unsafe fn wake_by_ref(ptr: *const ()) {
        // SAFETY: as above.
        let header = unsafe { &*(ptr as *const Self) };
        // Also written when already set: the write publishes what the waker did before waking
        // (a mailbox's flags) to the run that takes the job, which reads this word. A stray
        // SCHEDULED on a done task means nothing.
        let before = header.state.fetch_or(SCHEDULED, Ordering::AcqRel);
        if before & (SCHEDULED | RUNNING | DONE) == 0 {
            // SAFETY: not null: it is a waker's data pointer.
            let ptr = unsafe { NonNull::new_unchecked(ptr as *mut Self) };
            S::schedule(Job::at(ptr));
        }
    }

    unsafe fn wake(ptr: *const ()) {
        // SAFETY: the waker's reference, given up here; not null.
        unsafe { wake_and_release(NonNull::new_unchecked(ptr as *mut Self), 0) }
    }

    unsafe fn drop_waker(ptr: *const ()) {
        // SAFETY: the waker's reference; not null.
        unsafe { release(NonNull::new_unchecked(ptr as *mut Self)) }
    }
}

#[cfg(test)]
mod tests;
