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

use std::cell::UnsafeCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
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
    value: UnsafeCell<Option<Answer<R>>>,
    waker: UnsafeCell<Option<Waker>>,
}

// SAFETY: `value` and `waker` are only touched by the side that holds the slot (see the state
// protocol above): the value moves from the replier's thread to the caller's, so `R: Send`.
unsafe impl<R: Send> Send for Slot<R> {}
// SAFETY: as above; shared access never reads `value` and writes it at the same time.
unsafe impl<R: Send> Sync for Slot<R> {}

impl<R> Slot<R> {
    pub(crate) fn new() -> Self {
        Slot {
            state: AtomicU64::new(EMPTY),
            value: UnsafeCell::new(None),
            waker: UnsafeCell::new(None),
        }
    }
}

/// Starts one call on `slot` (idle, as the cache hands it out): the replier's end and the
/// caller's.
pub(crate) fn open<R: Send + 'static>(slot: Arc<Slot<R>>) -> (SlotSender<R>, SlotReceiver<R>) {
    let gen = slot.state.load(Ordering::Relaxed) & !TAG;
    debug_assert_eq!(slot.state.load(Ordering::Relaxed) & TAG, EMPTY);
    (
        SlotSender {
            slot: slot.clone(),
            gen,
        },
        SlotReceiver {
            slot: Some(slot),
            gen,
            done: false,
        },
    )
}

/// The replier's end of one call.
pub(crate) struct SlotSender<R> {
    slot: Arc<Slot<R>>,
    gen: u64,
}

impl<R> SlotSender<R> {
    /// Delivers the answer, unless the caller has given up on this call (then it is dropped).
    pub(crate) fn send(self, answer: Answer<R>) {
        let slot = &*self.slot;
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
        // SAFETY: BUSY gives this side the value and the waker; the caller writes the waker
        // only while it holds BUSY itself, so nobody writes either now.
        unsafe { *slot.value.get() = Some(answer) };
        // Woken before FULL is published: once FULL, the caller may reuse the slot and swap
        // its waker, so the waker may be read only while BUSY. A caller polled in between
        // sees BUSY and polls again (see `SlotReceiver::poll`).
        if let Some(w) = unsafe { &*slot.waker.get() } {
            w.wake_by_ref();
        }
        slot.state.store(self.gen | FULL, Ordering::Release);
    }

    /// True once the caller no longer waits for this call.
    pub(crate) fn is_closed(&self) -> bool {
        self.slot.state.load(Ordering::Acquire) & !TAG != self.gen
    }
}

/// The caller's end of one call: a future of the answer. Dropped before the answer came (a
/// timeout), it moves the slot to the next generation so a late reply is dropped, and gives
/// the slot back to the process for its next call.
pub(crate) struct SlotReceiver<R: Send + 'static> {
    slot: Option<Arc<Slot<R>>>,
    gen: u64,
    done: bool,
}

impl<R: Send + 'static> Future for SlotReceiver<R> {
    type Output = Answer<R>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer<R>> {
        let gen = self.gen;
        let slot = self.slot.as_ref().expect("polled after completion");
        loop {
            let now = slot.state.load(Ordering::Acquire);
            if now == gen | FULL {
                // SAFETY: FULL hands the value to the caller; the replier is done with it.
                let answer = unsafe { (*slot.value.get()).take() }.expect("a full slot");
                slot.state.store((gen + NEXT) | EMPTY, Ordering::Release);
                self.done = true;
                return Poll::Ready(answer);
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
            return Poll::Pending;
        }
    }
}

impl<R: Send + 'static> Drop for SlotReceiver<R> {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else { return };
        if !self.done {
            let gen = self.gen;
            match slot.state.compare_exchange(
                gen | EMPTY,
                (gen + NEXT) | EMPTY,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {}
                Err(now) if now == gen | FULL => {
                    // SAFETY: FULL hands the value to the caller.
                    let late = unsafe { (*slot.value.get()).take() };
                    slot.state.store((gen + NEXT) | EMPTY, Ordering::Release);
                    drop(late);
                }
                // A reply is being written right now: leave the slot to it rather than wait;
                // it is freed when the replier lets go.
                Err(_) => return,
            }
        }
        crate::process::local::give_back_slot(slot);
    }
}
