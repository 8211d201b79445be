//! A bounded mailbox's room, its overflow policy and its counts; the capacity can change while
//! the process runs.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::Serialize;
use tokio::sync::Semaphore;

/// What a bounded mailbox does with a message that finds it full (see the [module
/// docs](crate::mailbox) for a table). Set with
/// [`SpawnOptions::overflow`](crate::SpawnOptions::overflow).
///
/// ```
/// use girder::{Node, Overflow, SpawnOptions};
/// # #[tokio::main] async fn main() {
/// let node = Node::new("docs");
/// // Keeps the latest 2 readings; older ones make way.
/// let gauge = node.spawn_opts(
///     SpawnOptions::new().capacity(2).overflow(Overflow::DropOldest),
///     |_: girder::Context<u32>| std::future::pending(),
/// );
/// for reading in 0..5 {
///     gauge.send(reading).unwrap();
/// }
/// let stats = gauge.mailbox_stats().unwrap();
/// assert_eq!((stats.dropped, gauge.mailbox_len()), (3, 2));
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// `send` is refused with [`SendError::Full`](crate::SendError::Full) (the message is
    /// handed back) and `send_wait` waits for room: the sender chooses. The default.
    #[default]
    Wait,
    /// Both `send` and `send_wait` are refused at once: nobody waits on this process.
    FailFast,
    /// The new message is dropped (and counted); the send succeeds.
    DropNewest,
    /// The oldest message not yet taken by the process is dropped (and counted) to make room;
    /// the send succeeds. A dropped call's caller learns its request was dropped.
    DropOldest,
}

/// A bounded mailbox's capacity, policy and what its policy did, from
/// [`Addr::mailbox_stats`](crate::Addr::mailbox_stats).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MailboxStats {
    /// Messages it may hold now.
    pub capacity: usize,
    /// What it does when full.
    pub overflow: Overflow,
    /// Messages dropped by [`Overflow::DropNewest`] or [`Overflow::DropOldest`].
    pub dropped: u64,
    /// Sends refused with `Full` ([`Overflow::Wait`]'s `send`, [`Overflow::FailFast`]).
    pub refused: u64,
}

pub(crate) struct Bound {
    /// One permit per message that may still be queued.
    pub(super) permits: Semaphore,
    pub(super) policy: Overflow,
    capacity: AtomicUsize,
    /// Permits still to withdraw after the capacity shrank below what was queued: taken from
    /// the next ones the receiver returns.
    owed: AtomicUsize,
    pub(super) dropped: AtomicU64,
    pub(super) refused: AtomicU64,
}

impl Bound {
    pub(super) fn new(capacity: usize, policy: Overflow) -> Self {
        let capacity = capacity.max(1);
        Bound {
            permits: Semaphore::new(capacity),
            policy,
            capacity: AtomicUsize::new(capacity),
            owed: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// `n` messages left the mailbox: their room comes back, less what a shrink still owes.
    #[inline]
    pub(super) fn returned(&self, n: usize) {
        if self.owed.load(Ordering::Relaxed) == 0 {
            self.permits.add_permits(n);
            return;
        }
        let back = n - self.pay(n);
        if back > 0 {
            self.permits.add_permits(back);
        }
    }

    /// Grows or shrinks the capacity (at least 1). Shrinking below what is queued drops
    /// nothing: the room comes back more slowly until the queue is under the new bound.
    pub(super) fn set_capacity(&self, n: usize) {
        let n = n.max(1);
        let old = self.capacity.swap(n, Ordering::AcqRel);
        if n > old {
            // Pay what an earlier shrink still owes first.
            let grow = (n - old) - self.pay(n - old);
            if grow > 0 {
                self.permits.add_permits(grow);
            }
        } else if n < old {
            let shrink = old - n;
            let taken = self.permits.forget_permits(shrink);
            if taken < shrink {
                self.owed.fetch_add(shrink - taken, Ordering::Relaxed);
            }
        }
    }

    /// Takes up to `n` off what is owed; returns how much.
    fn pay(&self, n: usize) -> usize {
        let mut owed = self.owed.load(Ordering::Relaxed);
        loop {
            let paid = owed.min(n);
            if paid == 0 {
                return 0;
            }
            match self.owed.compare_exchange_weak(
                owed,
                owed - paid,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return paid,
                Err(now) => owed = now,
            }
        }
    }

    pub(super) fn stats(&self) -> MailboxStats {
        MailboxStats {
            capacity: self.capacity.load(Ordering::Relaxed),
            overflow: self.policy,
            dropped: self.dropped.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinking_below_the_queue_withdraws_room_as_messages_leave() {
        let b = Bound::new(4, Overflow::Wait);
        for _ in 0..4 {
            b.permits.try_acquire().unwrap().forget();
        }
        // Four queued; shrink to 2: two permits owed.
        b.set_capacity(2);
        b.returned(1);
        b.returned(1);
        assert_eq!(
            b.permits.available_permits(),
            0,
            "the first two returns pay the debt"
        );
        b.returned(1);
        assert_eq!(b.permits.available_permits(), 1);
        // Growing back pays nothing owed (none) and adds room.
        b.set_capacity(5);
        assert_eq!(b.permits.available_permits(), 4);
        assert_eq!(b.stats().capacity, 5);
    }

    #[test]
    fn growing_pays_an_earlier_shrink_first() {
        let b = Bound::new(2, Overflow::Wait);
        b.permits.try_acquire().unwrap().forget();
        b.permits.try_acquire().unwrap().forget();
        b.set_capacity(1); // owes 1
        b.set_capacity(3); // +2, of which 1 pays the debt
        assert_eq!(b.permits.available_permits(), 1);
        b.returned(2);
        assert_eq!(
            b.permits.available_permits(),
            3,
            "2 queued were taken: 3 of 3 free"
        );
    }
}
