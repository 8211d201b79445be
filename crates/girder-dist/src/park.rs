//! Back pressure per destination across nodes (decision 014): a message from a peer for a
//! local process whose bounded mailbox is full waits here, in a queue of its own destination,
//! instead of holding up the connection. The peer is told to pause sending to that process
//! (`Pause`) and to go on when its queue has drained (`Resume`), so a slow receiver slows only
//! its own senders and every other process, call, reply and signal between the two nodes flows.
//!
//! The receiving side ([`Parking`]) keeps, per peer, one ordered queue per destination and one
//! task per queue that hands the messages in as the mailbox makes room. The sending side
//! ([`Paused`]) keeps the set of the peer's processes that asked for a pause: `send` to one of
//! them is `Full`, `send_wait` waits for its `Resume`.
//!
//! What is parked is bounded per peer by [`ConnectionConfig::max_parked`]: messages the peer
//! sent before its pause arrived land here, so the bound is a safety net for a peer that does
//! not pause (an older build, or a bug), not the regulator. Past it the connection's dispatch
//! waits, as it did before parking existed: nothing accepted is lost and memory stays bounded.
//!
//! [`ConnectionConfig::max_parked`]: crate::ConnectionConfig::max_parked

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use girder::remote::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::peer::Peer;
use crate::wire::{self, Packet, WirePid};

/// What a parked message costs beyond its bytes (its future and queue entry), for the bound.
const OVERHEAD: usize = 128;

/// The receiving side: messages from one peer waiting for full local mailboxes.
#[derive(Default)]
pub(crate) struct Parking {
    dests: Mutex<HashMap<u64, Dest>>,
    /// `dests.len()`, read without the lock: the dispatch fast path checks only this.
    active: AtomicUsize,
    bytes: AtomicUsize,
    messages: AtomicUsize,
    /// Woken whenever parked messages are handed in, for a dispatch waiting under the bound.
    room: Notify,
    pauses_sent: AtomicU64,
    stalls: AtomicU64,
    stall_log: Mutex<girder::log::LogBudget>,
}

/// One destination's queue. The first message is being handed in by the destination's task
/// and is no longer in `queue`; the entry lives until that task finds the queue empty.
struct Dest {
    queue: VecDeque<(BoxFuture<'static, ()>, usize)>,
    to: WirePid,
    /// The connection generation a `Pause` went out on (0: none yet).
    paused_on: u64,
}

/// How many messages and bytes wait, and what the parking has done, for [`PeerInfo`].
///
/// [`PeerInfo`]: crate::PeerInfo
pub(crate) struct ParkingStats {
    pub(crate) messages: usize,
    pub(crate) bytes: usize,
    pub(crate) pauses_sent: u64,
    pub(crate) stalls: u64,
}

impl Parking {
    /// True if messages for `id` are waiting: a new one must queue behind them.
    pub(crate) fn is_parked(&self, id: u64) -> bool {
        self.active.load(Ordering::Acquire) != 0 && self.dests.lock().contains_key(&id)
    }

    /// Parks `wait` (a future that hands one message in) behind `to`'s queue, starting the
    /// queue's task and telling the peer to pause if it is new.
    pub(crate) fn park(
        &self,
        peer: &Arc<Peer>,
        to: WirePid,
        wait: BoxFuture<'static, ()>,
        size: usize,
        limit: usize,
    ) {
        let cost = size + OVERHEAD;
        self.bytes.fetch_add(cost, Ordering::Relaxed);
        self.messages.fetch_add(1, Ordering::Relaxed);
        let gen = peer.connection_gen().unwrap_or(0);
        let (start, pause) = {
            let mut dests = self.dests.lock();
            match dests.get_mut(&to.id) {
                Some(d) => {
                    d.queue.push_back((wait, cost));
                    // A new connection since the pause: the peer forgot it.
                    let pause = d.paused_on != gen;
                    d.paused_on = gen;
                    (false, pause)
                }
                None => {
                    let mut queue = VecDeque::new();
                    queue.push_back((wait, cost));
                    dests.insert(
                        to.id,
                        Dest {
                            queue,
                            to,
                            paused_on: gen,
                        },
                    );
                    self.active.store(dests.len(), Ordering::Release);
                    (true, true)
                }
            }
        };
        if pause && gen != 0 && peer.has(crate::wire::caps::PAUSE) {
            self.pauses_sent.fetch_add(1, Ordering::Relaxed);
            peer.send_reliable(to.id, wire::packet(&Packet::Pause { to }), limit);
        }
        if start {
            let peer = peer.clone();
            peer.node()
                .clone()
                .spawn_task(async move { hand_in(peer, to.id, limit).await });
        }
    }

    /// Waits while more than `max` bytes are parked: the safety net for a peer that does not
    /// pause. Holds up the connection's dispatch, as a full mailbox did before parking.
    pub(crate) async fn under(&self, peer: &Peer, max: usize) {
        if self.bytes.load(Ordering::Relaxed) <= max {
            return;
        }
        self.stalls.fetch_add(1, Ordering::Relaxed);
        if let Some(missed) = self.stall_log.lock().spend() {
            tracing::warn!(
                peer = %peer.name,
                missed,
                parked = self.bytes.load(Ordering::Relaxed),
                max,
                "messages parked for full mailboxes passed the bound: this connection waits for them (does the peer ignore pauses?)"
            );
        }
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if self.bytes.load(Ordering::Relaxed) <= max {
                return;
            }
            room.await;
        }
    }

    pub(crate) fn stats(&self) -> ParkingStats {
        ParkingStats {
            messages: self.messages.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            pauses_sent: self.pauses_sent.load(Ordering::Relaxed),
            stalls: self.stalls.load(Ordering::Relaxed),
        }
    }
}

/// Hands `id`'s parked messages in, in order, as its mailbox makes room; when none is left,
/// ends the queue and tells the peer to resume.
async fn hand_in(peer: Arc<Peer>, id: u64, limit: usize) {
    let parking = &peer.parking;
    loop {
        let next = {
            let mut dests = parking.dests.lock();
            let d = dests
                .get_mut(&id)
                .expect("a parked destination lives until its task ends");
            match d.queue.pop_front() {
                Some(next) => next,
                None => {
                    let d = dests.remove(&id).expect("just seen");
                    parking.active.store(dests.len(), Ordering::Release);
                    drop(dests);
                    if d.paused_on != 0
                        && peer.connection_gen() == Some(d.paused_on)
                        && peer.has(crate::wire::caps::PAUSE)
                    {
                        peer.send_reliable(id, wire::packet(&Packet::Resume { to: d.to }), limit);
                    }
                    return;
                }
            }
        };
        let (wait, cost) = next;
        // Ends when the message is queued or the process has gone (then it is dropped, as any
        // message to a dead process).
        wait.await;
        parking.bytes.fetch_sub(cost, Ordering::Relaxed);
        parking.messages.fetch_sub(1, Ordering::Relaxed);
        parking.room.notify_waiters();
    }
}

/// The sending side: the peer's processes that asked this node to pause sending to them.
#[derive(Default)]
pub(crate) struct Paused {
    set: Mutex<HashSet<WirePid>>,
    /// `set.len()`, read without the lock: the send fast path checks only this.
    len: AtomicUsize,
    /// Woken on every resume and when the connection changes.
    resumed: Notify,
    pauses: AtomicU64,
}

/// Pauses kept per peer at most: a peer that names more processes than this is misbehaving,
/// and its extra pauses are ignored (the parking's bound still holds on its side).
const MAX_PAUSED: usize = 65_536;

impl Paused {
    /// True if `to` asked for a pause. One atomic load when nothing is paused.
    #[inline]
    pub(crate) fn is_paused(&self, to: WirePid) -> bool {
        self.len.load(Ordering::Acquire) != 0 && self.set.lock().contains(&to)
    }

    pub(crate) fn pause(&self, to: WirePid) {
        self.pauses.fetch_add(1, Ordering::Relaxed);
        let mut set = self.set.lock();
        if set.len() < MAX_PAUSED {
            set.insert(to);
            self.len.store(set.len(), Ordering::Release);
        }
    }

    pub(crate) fn resume(&self, to: WirePid) {
        let mut set = self.set.lock();
        set.remove(&to);
        self.len.store(set.len(), Ordering::Release);
        drop(set);
        self.resumed.notify_waiters();
    }

    /// Forgets every pause: the connection they came on is gone.
    pub(crate) fn clear(&self) {
        let mut set = self.set.lock();
        set.clear();
        self.len.store(0, Ordering::Release);
        drop(set);
        self.resumed.notify_waiters();
    }

    /// Waits until `to` is not paused.
    pub(crate) async fn until_resumed(&self, to: WirePid) {
        loop {
            let resumed = self.resumed.notified();
            tokio::pin!(resumed);
            resumed.as_mut().enable();
            if !self.is_paused(to) {
                return;
            }
            resumed.await;
        }
    }

    /// Processes paused now, and pauses received in all.
    pub(crate) fn stats(&self) -> (usize, u64) {
        (
            self.len.load(Ordering::Relaxed),
            self.pauses.load(Ordering::Relaxed),
        )
    }
}
