//! The wheels behind [`send_after`](super::send_after): one per thread that arms timers, each
//! turned by a task of its own on that thread's runtime (so on a node's schedulers, a wheel per
//! scheduler, as the BEAM keeps one per scheduler), instead of a tokio task per timer.
//!
//! A wheel is shared (behind a lock) with the [`TimerRef`](super::TimerRef)s into it, so a timer
//! is cancelled from any thread; the lock is uncontended but for that. Its task sleeps until
//! the wheel's next expiration and is woken early only when a sooner timer is armed. Due timers
//! are taken out under the lock and delivered after it is released.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::wheel::{Key, Wheel};

/// What fires: delivers the timer's message.
pub(super) type Fire = Box<dyn FnOnce() + Send>;

const IDLE: u64 = u64::MAX;

pub(super) struct Shared {
    inner: Mutex<Inner>,
    /// The wheel's time zero: its times are whole milliseconds since.
    start: Instant,
    /// The runtime the wheel's task runs on; a thread that has moved to another runtime gets a
    /// new wheel (the old one's task may never run again while this thread is elsewhere).
    runtime: tokio::runtime::Id,
    /// Cleared when the task is dropped (its runtime shut down).
    alive: AtomicBool,
    wake: Notify,
}

struct Inner {
    wheel: Wheel<Fire>,
    /// When the task will next look at the wheel (wheel time); `IDLE` if not before a wake.
    wake_at: u64,
}

thread_local! {
    static WHEEL: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
}

/// This thread's wheel on the current runtime, started if need be.
///
/// # Panics
///
/// Outside a tokio runtime (as `tokio::spawn` does).
pub(super) fn current() -> Arc<Shared> {
    let handle = tokio::runtime::Handle::try_current()
        .expect("girder::send_after must be called from within a tokio runtime");
    let runtime = handle.id();
    WHEEL.with(|slot| {
        let mut slot = slot.borrow_mut();
        if let Some(shared) = &*slot {
            if shared.runtime == runtime && shared.alive.load(Ordering::Acquire) {
                return shared.clone();
            }
        }
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                wheel: Wheel::new(),
                wake_at: IDLE,
            }),
            start: Instant::now(),
            runtime,
            alive: AtomicBool::new(true),
            wake: Notify::new(),
        });
        handle.spawn(turn(shared.clone()));
        *slot = Some(shared.clone());
        shared
    })
}

impl Shared {
    /// Arms `fire` for `delay` from now. Never early: the deadline is rounded up to the
    /// wheel's millisecond.
    pub(super) fn arm(&self, delay: Duration, fire: Fire) -> Key {
        let at = self.start.elapsed().saturating_add(delay);
        let nanos = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX);
        let deadline = nanos.div_ceil(1_000_000);
        let mut inner = self.inner.lock();
        let key = inner.wheel.insert(deadline, fire);
        if deadline < inner.wake_at {
            inner.wake_at = deadline;
            drop(inner);
            self.wake.notify_one();
        }
        key
    }

    /// Takes the timer out, if it has neither fired nor been cancelled.
    pub(super) fn cancel(&self, key: Key) -> bool {
        // The message is dropped after the lock is released.
        let fire = self.inner.lock().wheel.remove(key);
        fire.is_some()
    }

    /// Whole milliseconds left until it fires, if it is armed: never more than its delay
    /// (both the deadline and now are rounded up to the millisecond).
    pub(super) fn remaining(&self, key: Key) -> Option<Duration> {
        let deadline = self.inner.lock().wheel.deadline(key)?;
        let now =
            u64::try_from(self.start.elapsed().as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        Some(Duration::from_millis(deadline.saturating_sub(now)))
    }

    pub(super) fn is_armed(&self, key: Key) -> bool {
        self.inner.lock().wheel.deadline(key).is_some()
    }

    /// Whole milliseconds elapsed: everything due by then may fire.
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Marks the wheel's task gone when its runtime drops it.
struct Alive(Arc<Shared>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::Release);
    }
}

/// The wheel's task: fire what is due, sleep until the next expiration or a sooner arm.
async fn turn(shared: Arc<Shared>) {
    let _alive = Alive(shared.clone());
    let mut due: Vec<Fire> = Vec::new();
    let sleep = tokio::time::sleep_until(shared.start);
    tokio::pin!(sleep);
    loop {
        let next = {
            let mut inner = shared.inner.lock();
            let now = shared.now();
            inner.wheel.take_due(now, |fire| due.push(fire));
            let next = inner.wheel.next_expiration();
            inner.wake_at = next.unwrap_or(IDLE);
            next
        };
        for fire in due.drain(..) {
            fire();
        }
        if due.capacity() > 1024 {
            due.shrink_to(1024);
        }
        match next {
            Some(at) => {
                sleep
                    .as_mut()
                    .reset(shared.start + Duration::from_millis(at));
                tokio::select! {
                    biased;
                    () = &mut sleep => {}
                    () = shared.wake.notified() => {}
                }
            }
            None => shared.wake.notified().await,
        }
    }
}

/// The timers armed for one process, cancelled when it exits (as the BEAM cancels a dead
/// process's timers): kept in the process's rarely used state, a key per timer, grouped by
/// wheel. Keys of timers that have fired or been cancelled are dropped whenever the list has
/// doubled since it was last pruned, so a process that arms a timer a second for a year keeps
/// only the ones still armed.
///
/// A process arms its timers on the wheel of the scheduler it runs on, and rarely moves: the
/// first wheel and its keys are kept apart from the rest, so an MQTT client with its keep
/// alive pays one small allocation for its list rather than a list of lists.
#[derive(Default)]
pub(crate) struct Owned {
    home: Option<(Arc<Shared>, Vec<Key>)>,
    away: Vec<(Arc<Shared>, Vec<Key>)>,
    len: usize,
    prune_at: usize,
}

/// Keys a wheel's list starts with room for (most processes have one or two timers armed).
const FIRST_KEYS: usize = 2;

impl Owned {
    pub(super) fn push(&mut self, wheel: &Arc<Shared>, key: Key) {
        if self.len >= self.prune_at {
            self.prune();
        }
        self.len += 1;
        let keys = match &mut self.home {
            None => &mut self.home.insert((wheel.clone(), Vec::new())).1,
            Some((w, keys)) if Arc::ptr_eq(w, wheel) => keys,
            Some(_) => match self.away.iter().position(|(w, _)| Arc::ptr_eq(w, wheel)) {
                Some(i) => &mut self.away[i].1,
                None => {
                    self.away.push((wheel.clone(), Vec::new()));
                    &mut self.away.last_mut().expect("just pushed").1
                }
            },
        };
        if keys.capacity() == 0 {
            keys.reserve_exact(FIRST_KEYS);
        }
        keys.push(key);
    }

    fn prune(&mut self) {
        let mut len = 0;
        for (wheel, keys) in self.home.iter_mut().chain(self.away.iter_mut()) {
            let inner = wheel.inner.lock();
            keys.retain(|&k| inner.wheel.deadline(k).is_some());
            len += keys.len();
        }
        self.away.retain(|(_, keys)| !keys.is_empty());
        self.len = len;
        self.prune_at = (self.len * 2).max(16);
    }

    /// Cancels every timer still armed (at the process's exit). Their messages are dropped
    /// after each wheel's lock is released.
    pub(crate) fn cancel_all(self) {
        for (wheel, keys) in self.home.into_iter().chain(self.away) {
            let cancelled: Vec<Fire> = {
                let mut inner = wheel.inner.lock();
                keys.into_iter()
                    .filter_map(|k| inner.wheel.remove(k))
                    .collect()
            };
            drop(cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_process_timer_list_keeps_only_armed_timers() {
        let wheel = current();
        let mut owned = Owned::default();
        let mut armed = Vec::new();
        for i in 0..100_000u64 {
            let key = wheel.arm(Duration::from_secs(3600), Box::new(|| {}));
            owned.push(&wheel, key);
            // One in a thousand stays armed; the rest are cancelled (as if fired).
            if i % 1_000 == 0 {
                armed.push(key);
            } else {
                assert!(wheel.cancel(key));
            }
            assert!(owned.len <= 2 * armed.len() + 16, "{} kept", owned.len);
        }
        owned.cancel_all();
        assert!(armed.iter().all(|&k| !wheel.is_armed(k)));
    }

    /// A process that moved between schedulers armed timers on several wheels: each is
    /// listed with its own wheel, and every one is cancelled at its exit.
    #[test]
    fn a_process_that_moved_has_its_timers_on_every_wheel_cancelled() {
        let wheel_of_a_thread = || {
            std::thread::spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async { current() })
            })
            .join()
            .unwrap()
        };
        let wheels = [
            wheel_of_a_thread(),
            wheel_of_a_thread(),
            wheel_of_a_thread(),
        ];
        let mut owned = Owned::default();
        let mut keys = Vec::new();
        for _ in 0..3 {
            for w in &wheels {
                let k = w.arm(Duration::from_secs(3600), Box::new(|| {}));
                owned.push(w, k);
                keys.push((w.clone(), k));
            }
        }
        assert_eq!(owned.len, 9);
        assert!(Arc::ptr_eq(&owned.home.as_ref().unwrap().0, &wheels[0]));
        assert_eq!(owned.away.len(), 2);
        owned.cancel_all();
        assert!(keys.iter().all(|(w, k)| !w.is_armed(*k)));
    }
}
