//! The nodes this node knows: their numbering in local pids, their connection state, and what
//! is waiting on each (calls, name lookups, exit waiters).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use girder::remote::PidTranslation;
use girder::{ExitReason, Pid};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{oneshot, Notify};

use crate::connection::{self, ConnectionHandle};
use crate::NodeName;

/// A call waiting for its reply from a peer.
pub(crate) trait PendingReply: Send {
    /// Delivers the reply (its wire name and bytes) or the failure.
    fn complete(self: Box<Self>, outcome: Completion<'_>);
    /// True if the caller gave up (timed out), so the entry can be dropped.
    fn abandoned(&self) -> bool;
    /// For taking the caller's reply handle back when the call could not be sent.
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any>;
}

pub(crate) enum Completion<'a> {
    Reply {
        body: &'a [u8],
    },
    Failed(Option<ExitReason>),
    /// Refused unhandled by an overloaded callee.
    Refused,
}

/// What is waiting on one peer.
#[derive(Default)]
pub(crate) struct Waiting {
    pub(crate) calls: HashMap<u64, Box<dyn PendingReply>>,
    /// Call count after the last sweep of abandoned calls.
    swept_at: usize,
    pub(crate) lookups: HashMap<u64, oneshot::Sender<Option<Pid>>>,
    pub(crate) exits: HashMap<u64, oneshot::Sender<ExitReason>>,
}

impl Waiting {
    /// Adds a call, first dropping calls whose callers gave up when the table has doubled since
    /// the last sweep, so timed-out calls to a peer that never answers do not pile up.
    pub(crate) fn add_call(&mut self, reff: u64, pending: Box<dyn PendingReply>) {
        if self.calls.len() >= (2 * self.swept_at).max(64) {
            self.calls.retain(|_, c| !c.abandoned());
            self.swept_at = self.calls.len();
        }
        self.calls.insert(reff, pending);
    }
}

pub(crate) enum State {
    /// Not connected; the next send dials if an address is known.
    Idle,
    /// A dial (or an accepted handshake) is under way; sends queue here, bounded.
    Connecting {
        gen: u64,
        dialing: bool,
        queued: Vec<(u64, Bytes)>,
    },
    Up {
        gen: u64,
        handle: ConnectionHandle,
        creation: u32,
    },
}

/// One known node.
pub(crate) struct Peer {
    /// Its index in local pids.
    pub(crate) idx: u32,
    pub(crate) name: NodeName,
    pub(crate) state: Mutex<State>,
    pub(crate) waiting: Mutex<Waiting>,
    /// Woken on every state change.
    pub(crate) changed: Notify,
    /// The generation of the connection on which the peer said goodbye (0: none): its loss is
    /// a departure, not a failure.
    pub(crate) goodbye: std::sync::atomic::AtomicU64,
    /// Traffic of connections that have ended: bytes out, bytes in, messages out, in.
    pub(crate) past: [std::sync::atomic::AtomicU64; 4],
    /// Signals and replies that found the connection's queue full (see `send_reliable`).
    overflow: Mutex<Overflow>,
    /// The local node, whose tasks drain `overflow`.
    node: girder::Node,
    /// Messages from this peer waiting for full local mailboxes.
    pub(crate) parking: crate::park::Parking,
    /// This peer's processes that asked this node to pause sending to them.
    pub(crate) paused: crate::park::Paused,
    /// The capabilities of the live connection (`wire::caps`), read without the state lock.
    pub(crate) caps: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Overflow {
    queue: std::collections::VecDeque<(u64, Bytes)>,
    draining: bool,
}

/// Control packets that may wait for a full connection before it is taken to be stuck.
pub(crate) const MAX_OVERFLOW: usize = 65_536;

/// Why a packet could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unsent {
    Full,
    Unreachable,
}

impl Peer {
    /// The local node.
    pub(crate) fn node(&self) -> &girder::Node {
        &self.node
    }

    /// Queues a packet on a live or starting connection; never dials.
    pub(crate) fn send_now(&self, stream: u64, bytes: Bytes, limit: usize) -> Result<(), Unsent> {
        let mut st = self.state.lock();
        match &mut *st {
            State::Up { handle, .. } => handle.send(stream, bytes).map_err(|e| match e {
                connection::SendError::Full => Unsent::Full,
                connection::SendError::Lost => Unsent::Unreachable,
            }),
            State::Connecting { queued, .. } if queued.len() < limit => {
                queued.push((stream, bytes));
                Ok(())
            }
            State::Connecting { .. } => Err(Unsent::Full),
            State::Idle => Err(Unsent::Unreachable),
        }
    }

    /// The live connection, if any.
    pub(crate) fn handle(&self) -> Option<ConnectionHandle> {
        match &*self.state.lock() {
            State::Up { handle, .. } => Some(handle.clone()),
            _ => None,
        }
    }

    /// The generation of the live connection, if any: what a reply sent later checks, so it
    /// never goes out on a newer connection (a restarted peer reuses call references).
    pub(crate) fn connection_gen(&self) -> Option<u64> {
        match &*self.state.lock() {
            State::Up { gen, .. } => Some(*gen),
            _ => None,
        }
    }

    /// True if the live connection has all of `caps` (`wire::caps`).
    #[inline]
    pub(crate) fn has(&self, caps: u64) -> bool {
        self.caps.load(std::sync::atomic::Ordering::Relaxed) & caps == caps
    }

    pub(crate) fn is_up(&self) -> bool {
        matches!(&*self.state.lock(), State::Up { .. })
    }

    /// Queues a packet, waiting for room: on a live connection, or for a connection under way
    /// to come up. Gives up if the peer becomes unreachable.
    pub(crate) async fn send_wait(
        &self,
        stream: u64,
        bytes: Bytes,
        limit: usize,
    ) -> Result<(), Unsent> {
        loop {
            match self.send_now(stream, bytes.clone(), limit) {
                Err(Unsent::Full) => {}
                other => return other,
            }
            match self.handle() {
                Some(h) => {
                    return h
                        .send_wait(stream, bytes)
                        .await
                        .map_err(|_| Unsent::Unreachable)
                }
                // Still connecting with a full queue: wait for the connection to come up.
                None => self.room().await,
            }
        }
    }

    /// Waits until a packet could be queued: room on the live connection, or a connection under
    /// way coming up. Returns at once when the peer is idle (a send then dials or fails).
    pub(crate) async fn room(&self) {
        let changed = self.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let handle = match &*self.state.lock() {
            State::Up { handle, .. } => Some(handle.clone()),
            State::Connecting { .. } => None,
            State::Idle => return,
        };
        match handle {
            Some(h) => h.ready().await,
            None => changed.await,
        }
    }

    /// Queues a packet that must not be lost while the connection lives (signals, replies): on
    /// a full queue it is handed to a task that waits for room.
    ///
    /// Those packets wait, in order, in one bounded overflow queue drained by one task. Past
    /// [`MAX_OVERFLOW`] the connection is taken to be stuck and closed: its links and monitors
    /// fire `noconnection`, which is the truth about a peer that reads nothing.
    pub(crate) fn send_reliable(self: &Arc<Self>, stream: u64, bytes: Bytes, limit: usize) {
        let mut overflow = self.overflow.lock();
        // Behind packets already waiting, so signals keep their order.
        if overflow.queue.is_empty() {
            match self.send_now(stream, bytes.clone(), limit) {
                Err(Unsent::Full) => {}
                _ => return,
            }
        }
        if overflow.queue.len() >= MAX_OVERFLOW {
            drop(overflow);
            tracing::warn!(peer = %self.name, "control packets backed up past {MAX_OVERFLOW}: closing the connection");
            if let Some(h) = self.handle() {
                h.close();
            }
            return;
        }
        overflow.queue.push_back((stream, bytes));
        if !overflow.draining {
            overflow.draining = true;
            let me = self.clone();
            self.node
                .spawn_task(async move { me.drain_overflow(limit).await });
        }
    }

    async fn drain_overflow(self: Arc<Self>, limit: usize) {
        loop {
            let next = {
                let mut o = self.overflow.lock();
                match o.queue.pop_front() {
                    Some(p) => p,
                    None => {
                        o.draining = false;
                        return;
                    }
                }
            };
            // Waits for a connection under way to come up; gives up only when there is none.
            if self.send_wait(next.0, next.1, limit).await.is_err() {
                // The connection is gone; what waited for it goes too (its links and monitors
                // have fired `noconnection`).
                let mut o = self.overflow.lock();
                o.queue.clear();
                o.draining = false;
                return;
            }
        }
    }

    /// Adds an ended connection's traffic to the totals.
    pub(crate) fn retire(&self, handle: &ConnectionHandle) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = handle.stats();
        for (i, v) in [&s.bytes_out, &s.bytes_in, &s.messages_out, &s.messages_in]
            .into_iter()
            .enumerate()
        {
            self.past[i].fetch_add(v.load(Relaxed), Relaxed);
        }
    }

    /// Traffic so far: `[bytes out, bytes in, messages out, messages in]`, ended connections and
    /// the live one.
    pub(crate) fn traffic(&self) -> [u64; 4] {
        use std::sync::atomic::Ordering::Relaxed;
        let mut t = [0; 4];
        for (i, v) in self.past.iter().enumerate() {
            t[i] = v.load(Relaxed);
        }
        if let Some(h) = self.handle() {
            let s = h.stats();
            for (i, v) in [&s.bytes_out, &s.bytes_in, &s.messages_out, &s.messages_in]
                .into_iter()
                .enumerate()
            {
                t[i] += v.load(Relaxed);
            }
        }
        t
    }

    /// Fails everything waiting on this peer: the connection is gone.
    pub(crate) fn fail_waiting(&self) {
        let w = std::mem::take(&mut *self.waiting.lock());
        for (_, call) in w.calls {
            call.complete(Completion::Failed(Some(ExitReason::NoConnection)));
        }
        for (_, l) in w.lookups {
            let _ = l.send(None);
        }
        for (_, e) in w.exits {
            let _ = e.send(ExitReason::NoConnection);
        }
    }
}

/// Every node this node knows, numbered for local pids (index 0 is this node).
pub(crate) struct NodeTable {
    pub(crate) me: NodeName,
    node: girder::Node,
    me_str: Arc<str>,
    by_name: RwLock<HashMap<NodeName, Arc<Peer>>>,
    /// Peer with index `i` is at `i - 1`; indices are never reused.
    by_idx: RwLock<Vec<Arc<Peer>>>,
}

impl NodeTable {
    pub(crate) fn new(me: NodeName, node: girder::Node) -> Self {
        NodeTable {
            me_str: Arc::from(me.as_str()),
            me,
            node,
            by_name: RwLock::new(HashMap::new()),
            by_idx: RwLock::new(Vec::new()),
        }
    }

    /// The peer called `name`, added if new.
    pub(crate) fn peer(&self, name: &NodeName) -> Arc<Peer> {
        if let Some(p) = self.by_name.read().get(name) {
            return p.clone();
        }
        let mut by_name = self.by_name.write();
        if let Some(p) = by_name.get(name) {
            return p.clone();
        }
        let mut by_idx = self.by_idx.write();
        let peer = Arc::new(Peer {
            idx: by_idx.len() as u32 + 1,
            name: name.clone(),
            state: Mutex::new(State::Idle),
            waiting: Mutex::new(Waiting::default()),
            changed: Notify::new(),
            goodbye: Default::default(),
            past: Default::default(),
            overflow: Default::default(),
            node: self.node.clone(),
            parking: Default::default(),
            paused: Default::default(),
            caps: Default::default(),
        });
        by_idx.push(peer.clone());
        by_name.insert(name.clone(), peer.clone());
        peer
    }

    pub(crate) fn get(&self, name: &NodeName) -> Option<Arc<Peer>> {
        self.by_name.read().get(name).cloned()
    }

    pub(crate) fn by_index(&self, idx: u32) -> Option<Arc<Peer>> {
        let i = idx.checked_sub(1)? as usize;
        self.by_idx.read().get(i).cloned()
    }

    pub(crate) fn all(&self) -> Vec<Arc<Peer>> {
        self.by_idx.read().clone()
    }
}

impl PidTranslation for NodeTable {
    fn node_name(&self, node: u32) -> Option<Arc<str>> {
        if node == 0 {
            return Some(self.me_str.clone());
        }
        self.by_index(node).map(|p| Arc::from(p.name.as_str()))
    }

    fn node_index(&self, name: &str) -> u32 {
        if name == self.me.as_str() {
            return 0;
        }
        match NodeName::new(name) {
            Ok(n) => self.peer(&n).idx,
            // A malformed name cannot be dialled: such a pid stays unreachable.
            Err(_) => u32::MAX,
        }
    }
}
