//! Processes across nodes: handles to remote processes and behaviours (the sending side), and
//! exports that make local ones reachable (the receiving side).
//!
//! A message type says how it travels by implementing [`Wire`]. A remote handle is an ordinary
//! [`Addr`], [`ServerRef`], [`StateMachineRef`] or [`EventManager`], so code that sends or
//! calls does not know where the process is. A call's request carries its reply handle across
//! (`girder::call::wire`): the caller's node keeps the handle, the callee's gets one that sends
//! the outcome back.

mod behaviour;
mod process;

use std::sync::Arc;

use girder::behaviour::Msg;
use girder::event::EventManager;
use girder::remote::BoxFuture;
use girder::statem::{StateMachine, StateMachineRef};
use girder::{Addr, ExitReason, Pid, Server, ServerRef};

use crate::node::{DistNode, Inner};
use crate::peer::{Peer, State, Unsent};
use crate::wire::{self, Packet, Wire, WirePid};
use crate::NodeName;
use behaviour::{ExportedBehaviour, RemoteBehaviour};
use process::{ExportedProcess, RemoteProcess};

/// How a packet for a local process came.
#[derive(Clone, Copy)]
pub(crate) enum Inbound {
    Send,
    Call {
        reff: u64,
        stream: u64,
        /// When the caller stops waiting, on this node's clock.
        deadline: Option<std::time::Instant>,
    },
}

pub(crate) enum Delivery {
    Done,
    /// The mailbox is full (or messages for it are parked): a future that queues the message
    /// when there is room.
    Wait(BoxFuture<'static, ()>),
}

/// A local process reachable from other nodes: decodes what it takes and delivers it. With
/// `behind`, messages for it are parked already: the new one must not pass them, so it is
/// handed back to wait in line without trying the mailbox.
pub(crate) trait Inbox: Send + Sync + 'static {
    fn deliver(
        &self,
        inner: &Arc<Inner>,
        peer: &Arc<Peer>,
        name: &str,
        body: &[u8],
        how: Inbound,
        behind: bool,
    ) -> Result<Delivery, String>;

    /// The exported process has exited with `reason`.
    fn exited(&self, reason: &ExitReason) {
        let _ = reason;
    }
}

impl DistNode {
    /// Makes a process reachable from other nodes with messages of type `M` (checked by wire
    /// name). The export ends when the process exits.
    pub fn export<M: Wire>(&self, addr: &Addr<M>) {
        self.add_export(
            addr.pid(),
            Arc::new(ExportedProcess { addr: addr.clone() }),
            addr.clone(),
        );
    }

    /// Makes a server reachable from other nodes: its calls and casts, by wire name. Info
    /// messages stay local. A call's reply travels as its request's reply handle says.
    pub fn export_server<S>(&self, server: &ServerRef<S>)
    where
        S: Server,
        S::Call: Wire,
        S::Cast: Wire,
    {
        self.export_behaviour(server.addr());
    }

    /// Makes a state machine reachable from other nodes, as [`export_server`](Self::export_server)
    /// does a server.
    pub fn export_state_machine<S>(&self, machine: &StateMachineRef<S>)
    where
        S: StateMachine,
        S::Call: Wire,
        S::Cast: Wire,
    {
        self.export_behaviour(machine.addr());
    }

    /// Makes an event manager reachable from other nodes: `notify` and `sync_notify` of events
    /// of type `E` (its handlers are added on its own node).
    pub fn export_event_manager<E>(&self, manager: &EventManager<E>)
    where
        E: Wire + Sync,
    {
        self.export_behaviour(manager.addr());
    }

    fn export_behaviour<C, K, I>(&self, addr: &Addr<Msg<C, K, I>>)
    where
        C: Wire,
        K: Wire,
        I: Send + 'static,
    {
        self.add_export(
            addr.pid(),
            Arc::new(ExportedBehaviour::<C, K, I> {
                addr: addr.clone(),
                inflight: Arc::default(),
                limit: self.inner.cfg.connection.send_queue,
            }),
            addr.clone(),
        );
    }

    fn add_export<M: Send + 'static>(&self, pid: Pid, inbox: Arc<dyn Inbox>, addr: Addr<M>) {
        if !pid.is_local() {
            return;
        }
        self.inner.exports.insert(pid.id(), inbox);
        let inner = Arc::downgrade(&self.inner);
        self.inner.node.spawn_task(async move {
            let reason = addr.wait_exit().await;
            if let Some(inner) = inner.upgrade() {
                if let Some((_, inbox)) = inner.exports.remove(&pid.id()) {
                    inbox.exited(&reason);
                }
            }
        });
    }

    /// A handle to the process `pid` on `node` (`pid` as `node` numbers it, or in this node's
    /// numbering; both work). Messages travel under `M`'s wire name.
    pub fn remote<M: Wire>(&self, node: &NodeName, pid: Pid) -> Addr<M> {
        let pid = self.pid_on(node, pid);
        self.addr(pid)
    }

    /// A handle to `pid` (in this node's numbering): local pids give a local handle if the
    /// process takes `M`, remote ones a remote handle.
    pub fn addr<M: Wire>(&self, pid: Pid) -> Addr<M> {
        if pid.is_local() {
            if let Ok(a) = self.node().addr::<M>(pid) {
                return a;
            }
        }
        Addr::remote(Arc::new(RemoteProcess::<M>::new(self.target(pid))))
    }

    /// A handle to the server `pid` (in this node's numbering), local or remote.
    pub fn server<S>(&self, pid: Pid) -> ServerRef<S>
    where
        S: Server,
        S::Call: Wire,
        S::Cast: Wire,
    {
        ServerRef::from_addr(self.behaviour_addr(pid))
    }

    /// A handle to the server `pid` on `node` (`pid` in either node's numbering); calls and casts
    /// travel under the wire names of its types.
    pub fn remote_server<S>(&self, node: &NodeName, pid: Pid) -> ServerRef<S>
    where
        S: Server,
        S::Call: Wire,
        S::Cast: Wire,
    {
        self.server(self.pid_on(node, pid))
    }

    /// A handle to the state machine `pid` (in this node's numbering), local or remote.
    pub fn state_machine<S>(&self, pid: Pid) -> StateMachineRef<S>
    where
        S: StateMachine,
        S::Call: Wire,
        S::Cast: Wire,
    {
        StateMachineRef::from_addr(self.behaviour_addr(pid))
    }

    /// A handle to the event manager `pid` (in this node's numbering), local or remote. Across
    /// nodes it takes `notify` and `sync_notify`; handlers are managed on its own node.
    pub fn event_manager<E>(&self, pid: Pid) -> EventManager<E>
    where
        E: Wire + Sync,
    {
        EventManager::from_addr(self.behaviour_addr(pid))
    }

    /// A local handle if `pid` is a local process taking `Msg<C, K, I>`, else a remote one.
    fn behaviour_addr<C, K, I>(&self, pid: Pid) -> Addr<Msg<C, K, I>>
    where
        C: Wire,
        K: Wire,
        I: Send + 'static,
    {
        if pid.is_local() {
            if let Ok(a) = self.node().addr::<Msg<C, K, I>>(pid) {
                return a;
            }
        }
        Addr::remote(Arc::new(RemoteBehaviour::<C, K, I>::new(self.target(pid))))
    }

    fn target(&self, pid: Pid) -> Target {
        Target {
            inner: self.inner.clone(),
            peer: self.inner.table.by_index(pid.node()),
            pid,
        }
    }
}

/// Where a remote handle sends.
pub(crate) struct Target {
    inner: Arc<Inner>,
    peer: Option<Arc<Peer>>,
    pid: Pid,
}

impl Target {
    fn wire(&self) -> WirePid {
        WirePid::of(self.pid)
    }

    /// Messages from one process keep their order: the stream is the sending process.
    fn stream() -> u64 {
        girder::process::current().map_or(0, |p| p.id())
    }

    /// Queues a signal for the process (waiting its turn if the connection is full).
    fn send(&self, bytes: bytes::Bytes) -> Result<(), Unsent> {
        match &self.peer {
            Some(peer) => self.inner.send_control(peer, Self::stream(), bytes),
            None => Err(Unsent::Unreachable),
        }
    }

    /// Queues a message or call for the process: `Full` while it asked for a pause (its
    /// mailbox is full and messages for it wait on its node; decision 014).
    fn send_msg(&self, bytes: bytes::Bytes) -> Result<(), Unsent> {
        match &self.peer {
            Some(peer) if peer.paused.is_paused(self.wire()) => Err(Unsent::Full),
            Some(peer) => self.inner.send_to(peer, Self::stream(), bytes),
            None => Err(Unsent::Unreachable),
        }
    }

    /// Queues a message or call, waiting while the process is paused and while the connection
    /// has no room.
    async fn send_wait(&self, bytes: bytes::Bytes) -> Result<(), Unsent> {
        let Some(peer) = &self.peer else {
            return Err(Unsent::Unreachable);
        };
        loop {
            match self.send_msg(bytes.clone()) {
                Err(Unsent::Full) => {}
                other => return other,
            }
            if peer.paused.is_paused(self.wire()) {
                peer.paused.until_resumed(self.wire()).await;
                continue;
            }
            let limit = self.inner.cfg.connection.send_queue;
            return peer.send_wait(Self::stream(), bytes, limit).await;
        }
    }

    /// Waits until a message to the process might be queued: it is not paused and the
    /// connection has room (or the peer is idle, when a send dials or fails).
    async fn room(&self) {
        if let Some(peer) = &self.peer {
            if peer.paused.is_paused(self.wire()) {
                peer.paused.until_resumed(self.wire()).await;
            } else {
                peer.room().await;
            }
        }
    }

    fn stop(&self, reason: ExitReason) -> bool {
        let p = Packet::Stop {
            to: self.wire(),
            reason,
        };
        self.send(wire::packet(&p)).is_ok()
    }

    fn exit_reason(&self) -> Option<ExitReason> {
        let reachable = self.peer.as_ref().is_some_and(|p| {
            !matches!(&*p.state.lock(), State::Idle) || self.inner.has_address(&p.name)
        });
        (!reachable).then_some(ExitReason::NoConnection)
    }

    /// Monitors the process from no process at all (watcher id 0) and waits for its `Down`.
    fn wait_exit(&self) -> BoxFuture<'static, ExitReason> {
        let Some(peer) = self.peer.clone() else {
            return Box::pin(async { ExitReason::NoConnection });
        };
        let inner = self.inner.clone();
        let target = self.wire();
        Box::pin(async move {
            let id = inner.next_ref();
            let (tx, rx) = tokio::sync::oneshot::channel();
            {
                let mut w = peer.waiting.lock();
                // Waits given up (their futures dropped) go, so the table does not grow.
                if w.exits.len() >= 64 {
                    w.exits.retain(|_, tx| !tx.is_closed());
                }
                w.exits.insert(id, tx);
            }
            let watcher = WirePid {
                creation: inner.node.creation(),
                id: 0,
            };
            let p = Packet::Monitor {
                watcher,
                target,
                id,
            };
            if inner.send_control(&peer, 0, wire::packet(&p)).is_err() {
                peer.waiting.lock().exits.remove(&id);
                return ExitReason::NoConnection;
            }
            rx.await.unwrap_or(ExitReason::NoConnection)
        })
    }
}
