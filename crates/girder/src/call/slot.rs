//! Where a call's reply lands: a slot the calling process keeps and reuses call after call.
//!
//! A call used to allocate a one-shot channel, register the caller's waker in it, and free it
//! again: an allocation and about nine atomic read-modify-writes per call. A process makes one
//! call at a time in the common case, so it keeps one slot per reply type (in its
//! [`ProcessLocal`](crate::process::local::ProcessLocal)) and each call takes the next
//! *generation* of it, as an Erlang call tags its request with a fresh reference: a reply for
//! an older generation (a call that timed out) finds the slot moved on and is dropped. The
//! caller's waker stays in the slot across calls, so a reply costs one compare-and-swap on the
//! slot plus the wake-up.
//!
//! The slot's state word is `generation << 2 | tag`:
//!
//! * `EMPTY`: waiting for this generation's reply (or idle);
//! * `BUSY`: one side has the value and the waker to itself: the replier while it writes the
//!   value and wakes the caller, or the caller while it swaps in a new waker (rare: a process's
//!   waker does not change);
//! * `FULL`: the reply is in; only the caller moves the slot on from here.
//!
//! No reference count moves per call. During a call the slot's one counted reference travels
//! with the reply handle ([`SlotSender`]) and comes back inside the slot with the answer; the
//! caller's end holds a plain pointer, valid because the slot cannot be freed while the
//! counted reference is either in the replier's hands or parked in the slot itself. A caller
//! that gives up moves the slot to the next generation and lets go: the replier, finding the
//! slot moved on, drops the reference and with it the slot. A caller whose end is dropped from
//! inside the replier's wake-up (its task dropped on the waking thread, as a scheduler that is
//! shutting down does) cannot wait for the replier to finish, which is further up the same
//! stack: it leaves a mark in a thread-local, and the replier frees the slot when the wake-up
//! returns.

use std::cell::UnsafeCell;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::reply::Unanswered;

const EMPTY: u64 = 0;
const BUSY: u64 = 1;
const FULL: u64 = 2;
const TAG: u64 = 3;
/// One generation step (the tag takes the low two bits).
const NEXT: u64 = 4;

/// What a call's caller learns: the reply, or why there is none.
pub(crate) type Answer<R> = Result<R, Unanswered>;

pub(crate) struct Slot<R> {
    state: AtomicU64,
    /// The process whose calls use this slot (`None` outside any process): whom a callee tells
    /// when a reply handle escapes (see `call::watch`).
    caller: Option<crate::Pid>,
    /// That process's record's address: what the process compares with its own, cheaply, to
    /// keep only its own slots.
    home: usize,
    value: UnsafeCell<Option<Answer<R>>>,
    /// The slot's counted reference, parked here by the replier with the answer (see the
    /// module docs).
    owner: UnsafeCell<Option<Arc<Slot<R>>>>,
    waker: UnsafeCell<Option<Waker>>,
    /// Whether `waker` is the one the calling process published for callees to wake it with
    /// (see `call::watch`): worked out when the waker changes, so a call whose waker did not
    /// change (nearly every call) pays nothing to know it. The caller's alone.
    told: AtomicBool,
}

// SAFETY: `value` and `waker` are only touched by the side that holds the slot (see the state
// protocol above): the value moves from the replier's thread to the caller's, so `R: Send`.
unsafe impl<R: Send> Send for Slot<R> {}
// SAFETY: as above; shared access never reads `value` and writes it at the same time.
unsafe impl<R: Send> Sync for Slot<R> {}

impl<R> Slot<R> {
    /// The address of the record of the process whose calls use this slot (0: none).
    #[inline]
    pub(crate) fn home(&self) -> usize {
        self.home
    }

    pub(crate) fn new(caller: Option<crate::Pid>, home: usize) -> Self {
        Slot {
            state: AtomicU64::new(EMPTY),
            caller,
            home,
            value: UnsafeCell::new(None),
            owner: UnsafeCell::new(None),
            waker: UnsafeCell::new(None),
            told: AtomicBool::new(false),
        }
    }
}

/// Starts one call on `slot` (idle, as the cache hands it out): the replier's end, which takes
/// the slot's reference, and the caller's.
pub(crate) fn open<R: Send + 'static>(slot: Arc<Slot<R>>) -> (SlotSender<R>, SlotReceiver<R>) {
    let gen = slot.state.load(Ordering::Relaxed) & !TAG;
    debug_assert_eq!(slot.state.load(Ordering::Relaxed) & TAG, EMPTY);
    let at = NonNull::from(&*slot);
    (
        SlotSender { slot, gen },
        SlotReceiver {
            slot: Some(at),
            gen,
        },
    )
}

thread_local! {
    /// The slot whose caller this thread is waking, under BUSY (0: none), and whether the
    /// caller's end was dropped from inside that wake-up.
    static WAKING: std::cell::Cell<(usize, bool)> = const { std::cell::Cell::new((0, false)) };
}

/// The replier's end of one call.
pub(crate) struct SlotSender<R> {
    slot: Arc<Slot<R>>,
    gen: u64,
}

impl<R> SlotSender<R> {
    /// Delivers the answer, unless the caller has given up on this call (then it is dropped).
    pub(crate) fn send(self, answer: Answer<R>) {
        let (owner, gen) = (self.slot, self.gen);
        // SAFETY: `owner` keeps the slot alive until it is parked in the slot below; from then
        // on the slot holds its own reference until the caller takes it out, after FULL, which
        // is this function's last touch of the slot.
        let slot: &Slot<R> = unsafe { &*Arc::as_ptr(&owner) };
        let (waiting, busy) = (self.gen | EMPTY, self.gen | BUSY);
        let mut spins = 0u32;
        loop {
            match slot.state.compare_exchange_weak(
                waiting,
                busy,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) if now == waiting => {}
                // The caller is swapping its waker in: a few instructions.
                Err(now) if now == busy => {
                    spins += 1;
                    if spins < 64 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
                // Timed out or dropped: the slot has moved on.
                Err(_) => return,
            }
        }
        // SAFETY: BUSY gives this side the value, the owner and the waker; the caller writes
        // the waker only while it holds BUSY itself, so nobody writes any of them now.
        unsafe { *slot.value.get() = Some(answer) };
        // Woken before FULL is published: once FULL, the caller may reuse the slot and swap
        // its waker, so the waker may be read only while BUSY. A caller polled in between
        // sees BUSY and polls again (see `SlotReceiver::poll`).
        if let Some(w) = unsafe { &*slot.waker.get() } {
            // A wake-up may drop the caller's task right here, on this thread (a scheduler
            // that is shutting down does): its end then cannot wait for FULL, which only this
            // frame would publish, and says so through `WAKING` instead (see its `Drop`).
            let outer = WAKING.replace((slot as *const Slot<R> as usize, false));
            w.wake_by_ref();
            let (_, abandoned) = WAKING.replace(outer);
            if abandoned {
                // Nobody will take the answer: the slot goes with its last reference, and the
                // answer with it.
                drop(owner);
                return;
            }
        }
        // The reference goes back with the answer; after FULL the slot is the caller's.
        // SAFETY: still BUSY, as above.
        unsafe { *slot.owner.get() = Some(owner) };
        slot.state.store(gen | FULL, Ordering::Release);
    }

    /// The call's identity: the slot's address and the calling process (`None` outside any
    /// process).
    #[inline]
    pub(crate) fn identity(&self) -> Option<crate::call::watch::CallId> {
        let caller = self.slot.caller?;
        Some(crate::call::watch::CallId {
            slot: std::num::NonZeroUsize::new(Arc::as_ptr(&self.slot) as usize)?,
            caller: caller.id(),
        })
    }

    /// The call's slot address, as `identity` gives it.
    pub(crate) fn slot_id(&self) -> usize {
        Arc::as_ptr(&self.slot) as usize
    }

    /// True once the caller no longer waits for this call.
    pub(crate) fn is_closed(&self) -> bool {
        self.slot.state.load(Ordering::Acquire) & !TAG != self.gen
    }
}

/// The caller's end of one call: a future of the answer. Dropped before the answer came (a
/// timeout), it moves the slot to the next generation so a late reply is dropped. Once the
/// answer is in, it gives the slot back to the process for its next call.
pub(crate) struct SlotReceiver<R: Send + 'static> {
    /// Not counted: see the module docs for why the slot outlives this. `None` once the
    /// answer is taken.
    slot: Option<NonNull<Slot<R>>>,
    gen: u64,
}

// SAFETY: the pointer is used as the `Arc<Slot<R>>` it stands for would be, and `Slot<R>` is
// `Send + Sync` for `R: Send`.
unsafe impl<R: Send + 'static> Send for SlotReceiver<R> {}
// SAFETY: a shared `&SlotReceiver` gives access to nothing.
unsafe impl<R: Send + 'static> Sync for SlotReceiver<R> {}

impl<R: Send + 'static> SlotReceiver<R> {
    /// The call's identity, as [`SlotSender::identity`] gives it (while the answer is not
    /// taken).
    pub(crate) fn identity(&self) -> (usize, u64) {
        (self.slot.map_or(0, |s| s.as_ptr() as usize), self.gen)
    }

    /// Takes the answer and the slot's reference out of a FULL slot, moves the slot on, and
    /// hands the reference back to the process.
    ///
    /// A pointer, not a `&Slot`: the reference taken out may be the slot's last, and a
    /// reference argument must stay valid for the whole call (Miri's protectors catch it).
    ///
    /// # Safety
    ///
    /// The slot is alive and its state is `gen | FULL`.
    #[inline]
    unsafe fn take_full(at: NonNull<Slot<R>>, gen: u64) -> Answer<R> {
        let (answer, owner) = {
            // SAFETY: alive (the caller's promise), and its own reference is parked inside.
            let slot = unsafe { at.as_ref() };
            // SAFETY: FULL hands the value and the owner to the caller; the replier is done.
            let taken = unsafe { ((*slot.value.get()).take(), (*slot.owner.get()).take()) };
            slot.state.store((gen + NEXT) | EMPTY, Ordering::Release);
            taken
        };
        // No borrow of the slot lives past here: giving the reference back may free it.
        if let Some(owner) = owner {
            crate::process::local::give_back_slot(owner);
        }
        answer.expect("a full slot")
    }
}

impl<R: Send + 'static> SlotReceiver<R> {
    /// Polls for the answer. When the waker differs from the one the slot holds (rare: a
    /// process's waker does not change), the new one is stored and `told(waker)` says whether
    /// callees wake it (see [`told`](Self::told)).
    #[inline]
    pub(crate) fn poll_answer(
        &mut self,
        cx: &mut Context<'_>,
        told: impl FnOnce(&Waker) -> bool,
    ) -> Poll<Answer<R>> {
        let gen = self.gen;
        let at = self.slot.expect("polled after completion");
        // SAFETY: alive until this end has taken the answer or given up (module docs).
        let slot = unsafe { at.as_ref() };
        let mut told = Some(told);
        loop {
            let now = slot.state.load(Ordering::Acquire);
            if now == gen | FULL {
                self.slot = None;
                // SAFETY: checked just above; only this end moves the slot on from FULL.
                return Poll::Ready(unsafe { Self::take_full(at, gen) });
            }
            if now == gen | BUSY {
                // The replier is writing: it has woken (or is about to wake) the old waker,
                // which may not be this one. Look again soon.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            debug_assert_eq!(now, gen | EMPTY, "a receiver's generation is current");
            // SAFETY: reading the waker races only with the replier's read (under its BUSY);
            // writes happen under the caller's own BUSY, below.
            let known = unsafe { &*slot.waker.get() }
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()));
            if known {
                return Poll::Pending;
            }
            if slot
                .state
                .compare_exchange(now, gen | BUSY, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue; // the reply came meanwhile
            }
            // SAFETY: BUSY held by the caller.
            unsafe { *slot.waker.get() = Some(cx.waker().clone()) };
            slot.state.store(gen | EMPTY, Ordering::Release);
            if let Some(told) = told.take() {
                slot.told.store(told(cx.waker()), Ordering::Relaxed);
            }
            return Poll::Pending;
        }
    }

    /// True while the replier is writing the answer (it will be in at once).
    pub(crate) fn writing(&self) -> bool {
        // SAFETY: alive until this end has taken the answer or given up (module docs).
        self.slot.is_some_and(|at| {
            unsafe { at.as_ref() }.state.load(Ordering::Acquire) == self.gen | BUSY
        })
    }

    /// Whether the waker the slot holds is the one callees wake (as `told` last said).
    #[inline]
    pub(crate) fn told(&self) -> bool {
        // SAFETY: alive until this end has taken the answer or given up (module docs).
        self.slot
            .is_some_and(|at| unsafe { at.as_ref() }.told.load(Ordering::Relaxed))
    }
}

impl<R: Send + 'static> Future for SlotReceiver<R> {
    type Output = Answer<R>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer<R>> {
        self.poll_answer(cx, |_| false)
    }
}

impl<R: Send + 'static> Drop for SlotReceiver<R> {
    fn drop(&mut self) {
        // Nothing to do once the answer was taken.
        let Some(at) = self.slot.take() else { return };
        // SAFETY: alive until this end has taken the answer or given up (module docs).
        let slot = unsafe { at.as_ref() };
        let gen = self.gen;
        let mut spins = 0u32;
        loop {
            match slot.state.compare_exchange(
                gen | EMPTY,
                (gen + NEXT) | EMPTY,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                // Given up: the replier will find the slot moved on and free it.
                Ok(_) => return,
                Err(now) if now == gen | FULL => {
                    // SAFETY: FULL, checked just above. The late answer is dropped here.
                    drop(unsafe { Self::take_full(at, gen) });
                    return;
                }
                // Dropped from inside the replier's wake-up, on its thread: FULL would never
                // come. The replier learns it gave up when the wake-up returns, and frees the
                // slot.
                Err(_) if WAKING.with(|w| w.get().0 == at.as_ptr() as usize) => {
                    WAKING.with(|w| w.set((at.as_ptr() as usize, true)));
                    return;
                }
                // The replier is writing the answer: a few instructions, then FULL. Waiting for
                // it is how the slot's reference gets back rather than stay parked in the slot.
                Err(_) => {
                    spins += 1;
                    if spins < 64 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The slot protocol on its own, outside any process (so a slot given back is dropped):
    //! each test checks through a `Weak` that the slot is freed exactly when its last user is
    //! done. Small enough for Miri: `cargo +nightly miri test -p girder --lib server::slot`.

    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Weak;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll<R: Send + 'static>(rx: &mut SlotReceiver<R>, waker: &Waker) -> Poll<Answer<R>> {
        Pin::new(rx).poll(&mut Context::from_waker(waker))
    }

    fn new_call() -> (SlotSender<u32>, SlotReceiver<u32>, Weak<Slot<u32>>) {
        let slot = Arc::new(Slot::new(None, 0));
        let weak = Arc::downgrade(&slot);
        let (tx, rx) = open(slot);
        (tx, rx, weak)
    }

    #[test]
    fn a_reply_wakes_the_waiting_caller_and_the_slot_comes_back() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let (tx, mut rx, weak) = new_call();
        assert!(poll(&mut rx, &waker).is_pending());
        assert!(!tx.is_closed());
        tx.send(Ok(7));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        // Alive while the answer waits in it, parked with its own reference.
        assert!(weak.upgrade().is_some());
        assert!(matches!(poll(&mut rx, &waker), Poll::Ready(Ok(7))));
        // Given back outside a process: dropped.
        assert!(weak.upgrade().is_none());
    }

    /// A waker whose wake-up drops the caller's end, as a scheduler that is shutting down drops
    /// a woken task's future on the waking thread.
    struct DropOnWake(std::sync::Mutex<Option<SlotReceiver<Arc<()>>>>);

    impl Wake for DropOnWake {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            drop(self.0.lock().unwrap().take());
        }
    }

    #[test]
    fn a_caller_dropped_inside_the_reply_wake_up_does_not_hang_the_replier() {
        let answer = Arc::new(());
        let slot = Arc::new(Slot::<Arc<()>>::new(None, 0));
        let weak = Arc::downgrade(&slot);
        let (tx, rx) = open(slot);
        let waker = Arc::new(DropOnWake(std::sync::Mutex::new(None)));
        let mut rx = rx;
        assert!(Pin::new(&mut rx)
            .poll(&mut Context::from_waker(&Waker::from(waker.clone())))
            .is_pending());
        *waker.0.lock().unwrap() = Some(rx);
        // Before, the caller's end spun forever waiting for the FULL that only this send,
        // further up the same stack, would publish.
        let (done_tx, done) = std::sync::mpsc::channel();
        let replier = {
            let answer = answer.clone();
            std::thread::spawn(move || {
                tx.send(Ok(answer));
                let _ = done_tx.send(());
            })
        };
        done.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the replier returned");
        replier.join().unwrap();
        assert!(
            waker.0.lock().unwrap().is_none(),
            "the caller's end was dropped"
        );
        assert_eq!(Arc::strong_count(&answer), 1, "the answer is dropped");
        assert!(weak.upgrade().is_none(), "and the slot freed");
    }

    #[test]
    fn a_caller_that_gave_up_leaves_the_slot_to_the_replier() {
        let (tx, rx, weak) = new_call();
        drop(rx);
        assert!(tx.is_closed());
        assert!(weak.upgrade().is_some(), "the replier still holds it");
        tx.send(Ok(1));
        assert!(weak.upgrade().is_none(), "freed by the replier");
    }

    #[test]
    fn an_answer_nobody_waits_for_is_dropped_with_the_slot() {
        let answer = Arc::new(());
        let slot = Arc::new(Slot::<Arc<()>>::new(None, 0));
        let weak = Arc::downgrade(&slot);
        let (tx, rx) = open(slot);
        tx.send(Ok(answer.clone()));
        drop(rx); // gave up after the answer came, before looking
        assert_eq!(Arc::strong_count(&answer), 1, "the late answer is dropped");
        assert!(weak.upgrade().is_none());
    }

    #[test]
    fn a_dropped_unanswered_handle_is_an_answer_too() {
        let (tx, mut rx, _) = new_call();
        tx.send(Err(Unanswered::Dropped));
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        assert!(matches!(
            poll(&mut rx, &waker),
            Poll::Ready(Err(Unanswered::Dropped))
        ));
    }

    #[test]
    fn replies_racing_a_caller_giving_up_free_the_slot_once() {
        let rounds = if cfg!(miri) { 20 } else { 2_000 };
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        for round in 0..rounds {
            let (tx, mut rx, weak) = new_call();
            let replier = std::thread::spawn(move || tx.send(Ok(round)));
            // Look once (sometimes the answer is in, sometimes not), then give up.
            let answered = match poll(&mut rx, &waker) {
                Poll::Ready(answer) => {
                    assert_eq!(answer.ok(), Some(round));
                    true
                }
                Poll::Pending => false,
            };
            drop(rx);
            replier.join().unwrap();
            assert!(
                weak.upgrade().is_none(),
                "round {round}, answered {answered}"
            );
        }
    }
}
