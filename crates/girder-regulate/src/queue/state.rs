//! The queue's state behind its one lock: the regulators, the waiters, and the dispatch that
//! hands capacity to waiters in order.

use std::collections::HashMap;
use std::task::Waker;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use super::fair::Fair;
use super::limit::{Limiter, Outcome};
use super::rate::Bucket;
use super::Ask;
use crate::error::REASONS;
use crate::Rejected;

/// What never changes after `build`.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) max_queue_len: usize,
    pub(crate) max_client_queue_len: Option<usize>,
    pub(crate) max_queue_time: Option<Duration>,
    /// Whether grants are timed for the adaptive regulator.
    pub(crate) timed: bool,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) limiter: Option<Limiter>,
    pub(crate) bucket: Option<Bucket>,
    pub(crate) in_use: usize,
    fair: Fair,
    waiters: HashMap<u64, Waiter>,
    next_id: u64,
    /// The waiter whose timer stands for the bucket's next token, while waiters wait for one.
    timekeeper: Option<u64>,
    pub(crate) granted: u64,
    pub(crate) rejected: [u64; REASONS.len()],
    /// Time from ask to grant, in microseconds (0 for a grant on arrival).
    pub(crate) waits: Histogram<u64>,
}

#[derive(Debug)]
struct Waiter {
    status: Status,
    waker: Option<Waker>,
    level: usize,
    client: u64,
    enqueued: Instant,
    /// When it stops waiting, and why.
    expires: Option<(Instant, Expiry)>,
    /// When the bucket's next token is due, if this waiter keeps that time.
    tick: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
enum Expiry {
    MaxQueueTime,
    Deadline,
}

#[derive(Debug)]
enum Status {
    Waiting,
    Granted,
    Rejected(Rejected),
}

/// What an arriving ask gets.
pub(crate) enum Arrival {
    Granted,
    Queued(u64),
    Rejected(Rejected),
}

/// What a waiting ask sees when it looks.
pub(crate) enum Look {
    Granted,
    Rejected(Rejected),
    /// Still waiting; wake me at this time if nobody does before.
    Waiting(Option<Instant>),
}

/// Wakers collected under the lock, woken after it is released.
pub(crate) type Wakers = Vec<Waker>;

impl State {
    pub(crate) fn new(limiter: Option<Limiter>, bucket: Option<Bucket>, levels: usize) -> State {
        State {
            limiter,
            bucket,
            in_use: 0,
            fair: Fair::new(levels),
            waiters: HashMap::new(),
            next_id: 0,
            timekeeper: None,
            granted: 0,
            rejected: [0; REASONS.len()],
            waits: Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid bounds"),
        }
    }

    pub(crate) fn queued(&self) -> usize {
        self.fair.len()
    }

    pub(crate) fn limit(&self) -> Option<usize> {
        self.limiter.as_ref().map(Limiter::current)
    }

    fn shedding(&self) -> bool {
        self.limit() == Some(0)
    }

    /// Whether a grant could be made now; reads the clock only for a rate regulator.
    fn has_capacity(&mut self, now: &mut Option<Instant>) -> bool {
        if let Some(l) = &self.limiter {
            if self.in_use >= l.current() {
                return false;
            }
        }
        match &mut self.bucket {
            Some(b) => b.ready(*now.get_or_insert_with(Instant::now)),
            None => true,
        }
    }

    fn take_capacity(&mut self) {
        self.in_use += 1;
        self.granted += 1;
        if let Some(b) = &mut self.bucket {
            b.take();
        }
    }

    pub(crate) fn count(&mut self, r: Rejected) -> Rejected {
        self.rejected[r.index()] += 1;
        r
    }

    /// The fast path: a grant now if nobody waits and there is capacity.
    pub(crate) fn try_now(&mut self) -> Result<(), Rejected> {
        let mut now = None;
        if self.fair.len() == 0 && self.has_capacity(&mut now) {
            self.take_capacity();
            let _ = self.waits.record(0);
            Ok(())
        } else {
            Err(self.count(Rejected::Overloaded))
        }
    }

    /// An ask arrives: granted at once, queued, or rejected.
    pub(crate) fn arrive(&mut self, cfg: &Config, ask: &Ask, wakers: &mut Wakers) -> Arrival {
        // The clock is read only for a deadline or a rate regulator.
        let mut now = ask.deadline.map(|_| Instant::now());
        let late = matches!((ask.deadline, now), (Some(d), Some(n)) if d <= n);
        if !late && self.fair.len() == 0 && self.has_capacity(&mut now) {
            self.take_capacity();
            let _ = self.waits.record(0);
            return Arrival::Granted;
        }
        let now = *now.get_or_insert_with(Instant::now);
        if let Err(r) = self.admit(cfg, ask, now) {
            return Arrival::Rejected(self.count(r));
        }
        let id = self.next_id;
        self.next_id += 1;
        let level = self.fair.level(ask.priority);
        let by_time = cfg.max_queue_time.map(|t| (now + t, Expiry::MaxQueueTime));
        let by_deadline = ask.deadline.map(|d| (d, Expiry::Deadline));
        let expires = match (by_time, by_deadline) {
            (Some(a), Some(b)) => Some(if b.0 <= a.0 { b } else { a }),
            (a, b) => a.or(b),
        };
        self.fair.push(level, ask.client, id);
        let waiter = Waiter {
            status: Status::Waiting,
            waker: None,
            level,
            client: ask.client,
            enqueued: now,
            expires,
            tick: None,
        };
        self.waiters.insert(id, waiter);
        self.dispatch(now, wakers);
        match self.waiters.get(&id).map(|w| &w.status) {
            Some(Status::Granted) => {
                self.waiters.remove(&id);
                Arrival::Granted
            }
            Some(Status::Rejected(_)) => match self.waiters.remove(&id).map(|w| w.status) {
                Some(Status::Rejected(r)) => Arrival::Rejected(r),
                _ => unreachable!("just seen rejected"),
            },
            _ => Arrival::Queued(id),
        }
    }

    /// Whether an ask that cannot be granted at once may wait.
    fn admit(&self, cfg: &Config, ask: &Ask, now: Instant) -> Result<(), Rejected> {
        if self.shedding() {
            return Err(Rejected::Overloaded);
        }
        if ask.deadline.is_some_and(|d| d <= now) {
            return Err(Rejected::DeadlinePassed);
        }
        if self.fair.len() >= cfg.max_queue_len {
            return Err(Rejected::QueueFull {
                max: cfg.max_queue_len,
            });
        }
        if let Some(max) = cfg.max_client_queue_len {
            if self.fair.client_len(ask.client) >= max {
                return Err(Rejected::ClientQueueFull { max });
            }
        }
        // With a rate regulator, even the most favourable order serves this ask no sooner
        // than the tokens for everything surely ahead of it and for itself have come.
        if let (Some(deadline), Some(b)) = (ask.deadline, &self.bucket) {
            let ahead = self
                .fair
                .surely_ahead(self.fair.level(ask.priority), ask.client);
            if now + b.time_for(ahead as f64 + 1.0) > deadline {
                return Err(Rejected::DeadlinePassed);
            }
        }
        Ok(())
    }

    /// Hands capacity to waiters, in order, while there is some; rejects the expired ones met
    /// on the way; keeps a timekeeper for the bucket's next token.
    pub(crate) fn dispatch(&mut self, now: Instant, wakers: &mut Wakers) {
        if self.shedding() {
            while let Some((_, id)) = self.fair.pop() {
                self.settle(id, Status::Rejected(Rejected::Overloaded), wakers);
            }
            return;
        }
        let mut clock = Some(now);
        while let Some(id) = self.fair.peek() {
            let expired = self.waiters[&id].expires.filter(|(at, _)| *at <= now);
            if let Some((_, why)) = expired {
                let w = &self.waiters[&id];
                self.fair.remove(w.level, w.client, id);
                let r = self.expiry(id, why, now);
                self.settle(id, Status::Rejected(r), wakers);
                continue;
            }
            if !self.has_capacity(&mut clock) {
                self.keep_time(id, wakers);
                return;
            }
            self.fair.pop();
            self.take_capacity();
            let waited = now.saturating_duration_since(self.waiters[&id].enqueued);
            let _ = self
                .waits
                .record(waited.as_micros().min(u128::from(u64::MAX)) as u64);
            self.settle(id, Status::Granted, wakers);
        }
    }

    /// With waiters held back by the bucket only, the one served next keeps the time of the
    /// next token (its own timer runs `dispatch` then).
    fn keep_time(&mut self, next: u64, wakers: &mut Wakers) {
        let held_by_limit = self
            .limiter
            .as_ref()
            .is_some_and(|l| self.in_use >= l.current());
        let Some(b) = self.bucket.as_ref().filter(|_| !held_by_limit) else {
            return;
        };
        let at = b.next_at();
        if self.timekeeper == Some(next) && self.waiters[&next].tick == Some(at) {
            return;
        }
        if let Some(old) = self.timekeeper.replace(next) {
            if let Some(w) = self.waiters.get_mut(&old) {
                w.tick = None;
            }
        }
        let w = self.waiters.get_mut(&next).expect("peeked waiter");
        w.tick = Some(at);
        if let Some(waker) = w.waker.take() {
            wakers.push(waker);
        }
    }

    fn expiry(&mut self, id: u64, why: Expiry, now: Instant) -> Rejected {
        let r = match why {
            Expiry::MaxQueueTime => Rejected::QueueTimeout {
                waited: now.saturating_duration_since(self.waiters[&id].enqueued),
            },
            Expiry::Deadline => Rejected::DeadlinePassed,
        };
        self.count(r)
    }

    /// A waiter leaves the queue (already taken out of `fair`): granted or rejected; its task
    /// is woken to see it.
    fn settle(&mut self, id: u64, status: Status, wakers: &mut Wakers) {
        if self.timekeeper == Some(id) {
            self.timekeeper = None;
        }
        if let Some(w) = self.waiters.get_mut(&id) {
            w.status = status;
            w.tick = None;
            if let Some(waker) = w.waker.take() {
                wakers.push(waker);
            }
        }
    }

    /// A waiting ask looks at its entry (from its poll), leaving its waker if still waiting.
    pub(crate) fn look(&mut self, id: u64, waker: &Waker) -> Look {
        let Some(w) = self.waiters.get_mut(&id) else {
            unreachable!("a waiter's entry lives until its ask sees the outcome")
        };
        match w.status {
            Status::Waiting => {
                if !w.waker.as_ref().is_some_and(|old| old.will_wake(waker)) {
                    w.waker = Some(waker.clone());
                }
                let expires = w.expires.map(|(at, _)| at);
                Look::Waiting(match (expires, w.tick) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                })
            }
            Status::Granted => {
                self.waiters.remove(&id);
                Look::Granted
            }
            Status::Rejected(_) => match self.waiters.remove(&id).map(|w| w.status) {
                Some(Status::Rejected(r)) => Look::Rejected(r),
                _ => unreachable!("just seen rejected"),
            },
        }
    }

    /// A waiting ask's timer fired: it expires, or (as timekeeper) the bucket is looked at.
    pub(crate) fn on_timer(&mut self, id: u64, now: Instant, wakers: &mut Wakers) {
        let Some(w) = self.waiters.get_mut(&id) else {
            return;
        };
        if !matches!(w.status, Status::Waiting) {
            return;
        }
        if let Some((at, why)) = w.expires.filter(|(at, _)| *at <= now) {
            let _ = at;
            let (level, client) = (w.level, w.client);
            self.fair.remove(level, client, id);
            let r = self.expiry(id, why, now);
            self.settle(id, Status::Rejected(r), wakers);
        } else if w.tick.take().is_some() && self.timekeeper == Some(id) {
            self.timekeeper = None;
        }
        self.dispatch(now, wakers);
    }

    /// A waiting ask was dropped before it saw its outcome: it leaves no trace, and a grant it
    /// was handed goes to the next waiter.
    pub(crate) fn cancel(&mut self, id: u64, wakers: &mut Wakers) {
        let Some(w) = self.waiters.remove(&id) else {
            return;
        };
        if self.timekeeper == Some(id) {
            self.timekeeper = None;
        }
        match w.status {
            Status::Waiting => {
                self.fair.remove(w.level, w.client, id);
            }
            Status::Granted => {
                // Handed over but never seen: not a grant after all.
                self.in_use -= 1;
                self.granted -= 1;
                if let Some(b) = &mut self.bucket {
                    b.give_back();
                }
            }
            Status::Rejected(_) => return,
        }
        if self.fair.len() > 0 {
            self.dispatch(Instant::now(), wakers);
        }
    }

    /// A permit is released, with what it says about the resource.
    pub(crate) fn release(
        &mut self,
        latency: Option<Duration>,
        outcome: Outcome,
        wakers: &mut Wakers,
    ) {
        if let (Some(l), Some(latency)) = (&mut self.limiter, latency) {
            l.sample(latency, outcome, self.in_use);
        }
        self.in_use -= 1;
        if self.fair.len() > 0 {
            self.dispatch(Instant::now(), wakers);
        }
    }
}
