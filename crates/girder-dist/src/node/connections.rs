//! Each peer's connection life, as the node's `Inner` runs it: queueing to a peer and dialling
//! it on demand, the acceptor's admission rule, an established connection replacing what was
//! there, a failed attempt, a lost connection and the node going down with it.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use girder::Pid;
use tokio::io::{AsyncRead, AsyncWrite};

use super::listen::dial;
use super::{Inner, NodeEvent};
use crate::connection;
use crate::handshake::{self, Established, Refusal};
use crate::peer::{Peer, State, Unsent};
use crate::wire::{self, Packet};
use crate::NodeName;

impl Inner {
    pub(crate) fn has_address(&self, name: &NodeName) -> bool {
        self.addresses.contains_key(name)
    }

    pub(crate) fn next_ref(&self) -> u64 {
        self.next_ref.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues a packet to `peer`, dialling it if it is idle.
    pub(crate) fn send_to(
        self: &Arc<Self>,
        peer: &Arc<Peer>,
        stream: u64,
        bytes: Bytes,
    ) -> Result<(), Unsent> {
        let limit = self.cfg.connection.send_queue;
        match peer.send_now(stream, bytes.clone(), limit) {
            Err(Unsent::Unreachable) => {}
            other => return other,
        }
        if self.dial_if_idle(peer).is_none() {
            return Err(Unsent::Unreachable);
        }
        peer.send_now(stream, bytes, limit)
    }

    /// Starts a dial if the peer is idle and its address is known. `None` if it cannot be
    /// dialled.
    pub(super) fn dial_if_idle(self: &Arc<Self>, peer: &Arc<Peer>) -> Option<()> {
        if self.stopped.load(Ordering::SeqCst) {
            return None;
        }
        let addr = *self.addresses.get(&peer.name)?;
        let mut st = peer.state.lock();
        if matches!(&*st, State::Idle) {
            let gen = self.next_gen.fetch_add(1, Ordering::Relaxed);
            *st = State::Connecting {
                gen,
                dialing: true,
                queued: Vec::new(),
            };
            // Dialled where the node's processes run, so the socket's I/O is driven there.
            self.node
                .spawn_task(dial(self.clone(), peer.clone(), addr, gen));
        }
        Some(())
    }

    /// Sends a signal packet; if the peer cannot be reached, `unreachable` runs instead.
    pub(super) fn signal(
        self: &Arc<Self>,
        remote: Pid,
        stream: u64,
        p: &Packet<'_>,
        unreachable: impl FnOnce(),
    ) {
        let Some(peer) = self.table.by_index(remote.node()) else {
            return unreachable();
        };
        if self.send_control(&peer, stream, wire::packet(p)).is_err() {
            unreachable()
        }
    }

    /// Queues a control packet (a signal, a name lookup), dialling the peer if it is idle. A
    /// full connection does not refuse it: it waits its turn behind the messages already on
    /// the way, in the peer's overflow queue, so a flood of messages never makes a lookup or a
    /// monitor fail as if the node were unreachable. The only error is `Unreachable`.
    pub(crate) fn send_control(
        self: &Arc<Self>,
        peer: &Arc<Peer>,
        stream: u64,
        bytes: Bytes,
    ) -> Result<(), Unsent> {
        match self.send_to(peer, stream, bytes.clone()) {
            Ok(()) => Ok(()),
            Err(Unsent::Full) => {
                peer.send_reliable(stream, bytes, self.cfg.connection.send_queue);
                Ok(())
            }
            Err(Unsent::Unreachable) => Err(Unsent::Unreachable),
        }
    }

    /// An incoming connection failed to authenticate or was refused admission: counted, logged
    /// at most once a second (with how many were not), and told to subscribers.
    pub(super) fn refused(&self, from: SocketAddr, reason: String) {
        let suppressed = self.listener_health.lock().refused();
        if let Some(suppressed) = suppressed {
            tracing::warn!(node = %self.cfg.name, %from, %reason, suppressed, "connection refused");
        }
        let _ = self.events.send(NodeEvent::Refused { from, reason });
    }

    /// The acceptor's admission rule: one connection per pair, the dial from the smaller name
    /// wins when both dial at once, a newcomer with the name of a live peer is refused, and a
    /// restarted peer replaces its old incarnation once the old connection is lost.
    pub(super) fn admit(&self, name: &NodeName, creation: u32) -> Result<u64, Refusal> {
        if name == &self.cfg.name {
            return Err(Refusal::SameName(name.clone()));
        }
        if self.stopped.load(Ordering::SeqCst) {
            return Err(Refusal::ShutDown);
        }
        let peer = self.table.peer(name);
        let mut st = peer.state.lock();
        match &*st {
            State::Up {
                creation: known, ..
            } if *known == creation => return Err(Refusal::DuplicateName(name.clone())),
            State::Up {
                creation: known, ..
            } if girder::Node::is_newer_creation(*known, creation) => {
                return Err(Refusal::StaleCreation {
                    name: name.clone(),
                    known: *known,
                    offered: creation,
                })
            }
            // A live connection means a live node: the newcomer with its name is refused, not
            // the node that was there first. One that restarted after a crash gets in once
            // the old connection is seen lost (silent for `dead_after`, or closed).
            State::Up {
                creation: known,
                handle,
                ..
            } if !handle.is_lost() => {
                return Err(Refusal::NameInUse {
                    name: name.clone(),
                    live: *known,
                    offered: creation,
                })
            }
            State::Connecting { dialing: true, .. } if self.cfg.name < *name => {
                return Err(Refusal::Simultaneous(name.clone()))
            }
            State::Connecting { dialing: false, .. } => {
                return Err(Refusal::DuplicateName(name.clone()))
            }
            _ => {}
        }
        let gen = self.next_gen.fetch_add(1, Ordering::Relaxed);
        // Packets queued for our own dial carry over to this connection.
        let queued = match &mut *st {
            State::Connecting { queued, .. } => std::mem::take(queued),
            _ => Vec::new(),
        };
        let previous = std::mem::replace(
            &mut *st,
            State::Connecting {
                gen,
                dialing: false,
                queued,
            },
        );
        drop(st);
        match previous {
            // The peer restarted: the old connection is lost, though not yet cleaned up.
            State::Up {
                handle,
                gen: old_gen,
                ..
            } => {
                handle.close();
                peer.retire(&handle);
                self.unreachable(&peer);
                self.ended(&peer, old_gen, "the node restarted".into());
            }
            State::Connecting { .. } | State::Idle => {}
        }
        Ok(gen)
    }

    /// Tells subscribers that connection `gen` to `peer` has ended: a departure
    /// ([`NodeEvent::Left`]) if the peer said goodbye on it or this node is shutting down, a
    /// failure ([`NodeEvent::Down`]) otherwise.
    fn ended(&self, peer: &Peer, gen: u64, why: String) {
        let event = if peer.goodbye.load(Ordering::SeqCst) == gen {
            tracing::info!(node = %self.cfg.name, peer = %peer.name, "peer left");
            NodeEvent::Left {
                node: peer.name.clone(),
                reason: "it shut down".into(),
            }
        } else if self.stopped.load(Ordering::SeqCst) {
            NodeEvent::Left {
                node: peer.name.clone(),
                reason: "this node shut down".into(),
            }
        } else {
            tracing::info!(node = %self.cfg.name, peer = %peer.name, %why, "connection lost");
            NodeEvent::Down {
                node: peer.name.clone(),
                reason: why,
            }
        };
        let _ = self.events.send(event);
    }

    /// The peer said goodbye on connection `gen`: it is leaving. The connection is closed from
    /// this side, which tells the peer it was heard, and its end is a departure. The peer's
    /// address is dropped, so nothing here dials a node that is going away (an address given
    /// again, as membership does when the node rejoins, makes it dialable again).
    pub(crate) fn goodbye(&self, peer: &Peer, gen: u64) {
        peer.goodbye.store(gen, Ordering::SeqCst);
        self.addresses.remove(&peer.name);
        if let State::Up { gen: g, handle, .. } = &*peer.state.lock() {
            if *g == gen {
                handle.close();
            }
        }
    }

    /// A handshake finished: the connection becomes the peer's, unless another one won.
    pub(super) fn established<S>(
        self: &Arc<Self>,
        peer: Arc<Peer>,
        gen: u64,
        est: Established,
        conn: handshake::Connection<S>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (handle, rx) = connection::start(&self.node, conn, self.cfg.connection.clone());
        let old = {
            let mut st = peer.state.lock();
            let queued = match &mut *st {
                State::Connecting { gen: g, queued, .. }
                    if *g == gen && !self.stopped.load(Ordering::SeqCst) =>
                {
                    std::mem::take(queued)
                }
                _ => {
                    // Another connection won the race, the attempt was given up, or the node
                    // shut its distribution down during the handshake.
                    handle.close();
                    drop(st);
                    self.attempt_failed(&peer, gen);
                    return;
                }
            };
            for (stream, bytes) in queued {
                if handle.send(stream, bytes.clone()).is_err() {
                    let h = handle.clone();
                    self.node.spawn_task(async move {
                        let _ = h.send_wait(stream, bytes).await;
                    });
                }
            }
            std::mem::replace(
                &mut *st,
                State::Up {
                    gen,
                    handle: handle.clone(),
                    creation: est.peer_creation,
                },
            )
        };
        drop(old);
        peer.caps
            .store(est.capabilities, std::sync::atomic::Ordering::Relaxed);
        // Pauses belong to the connection they came on.
        peer.paused.clear();
        peer.changed.notify_waiters();
        tracing::info!(node = %self.cfg.name, peer = %peer.name, creation = est.peer_creation, "connected");
        let _ = self.events.send(NodeEvent::Up(peer.name.clone()));
        self.node.spawn_task(crate::dispatch::run(
            Arc::downgrade(self),
            peer,
            gen,
            handle,
            rx,
        ));
    }

    /// A dial or an accepted handshake failed.
    pub(super) fn attempt_failed(&self, peer: &Arc<Peer>, gen: u64) {
        let failed = {
            let mut st = peer.state.lock();
            match &*st {
                State::Connecting { gen: g, .. } if *g == gen => {
                    *st = State::Idle;
                    true
                }
                _ => false,
            }
        };
        if failed {
            peer.changed.notify_waiters();
            self.unreachable(peer);
        }
    }

    /// The connection of generation `gen` ended.
    pub(crate) fn lost(&self, peer: &Arc<Peer>, gen: u64, why: &connection::Lost) {
        let was_up = {
            let mut st = peer.state.lock();
            match &*st {
                State::Up { gen: g, handle, .. } if *g == gen => {
                    peer.retire(handle);
                    *st = State::Idle;
                    true
                }
                _ => false,
            }
        };
        if was_up {
            peer.paused.clear();
            peer.changed.notify_waiters();
            self.unreachable(peer);
            self.ended(peer, gen, why.to_string());
        }
    }

    /// Everything that crossed to `peer` fails: links and monitors fire `noconnection`, calls,
    /// lookups and exit waits end.
    pub(super) fn unreachable(&self, peer: &Arc<Peer>) {
        self.node.node_down(peer.idx);
        peer.fail_waiting();
    }
}
