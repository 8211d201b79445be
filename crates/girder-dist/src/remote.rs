//! Processes across nodes: handles to remote processes and servers (the sending side), and
//! exports that make local ones reachable (the receiving side).
//!
//! A message type says how it travels by implementing [`Wire`]. A remote handle is an ordinary
//! [`Addr`] or [`ServerRef`], so code that sends or calls does not know where the process is.

use std::marker::PhantomData;
use std::sync::Arc;

use girder::remote::{BoxFuture, RemoteSink};
use girder::server::{Outcome, ServerMsg};
use girder::{Addr, ExitReason, Pid, ReplyTo, SendError, Server, ServerRef};

use crate::node::{DistNode, Inner};
use crate::peer::{Completion, Peer, PendingReply, State, Unsent};
use crate::wire::{self, Packet, Wire, WirePid};
use crate::NodeName;

/// How a packet for a local process came.
#[derive(Clone, Copy)]
pub(crate) enum Inbound {
    Send,
    Call { reff: u64, stream: u64 },
}

pub(crate) enum Delivery {
    Done,
    Wait(BoxFuture<'static, ()>),
}

/// A local process reachable from other nodes: decodes what it takes and delivers it.
pub(crate) trait Inbox: Send + Sync + 'static {
    fn deliver(
        &self,
        inner: &Arc<Inner>,
        peer: &Arc<Peer>,
        name: &str,
        body: &[u8],
        how: Inbound,
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
    /// messages stay local.
    pub fn export_server<S>(&self, server: &ServerRef<S>)
    where
        S: Server,
        S::Call: Wire,
        S::Reply: Wire,
        S::Cast: Wire,
    {
        let addr = server.addr().clone();
        self.add_export(
            server.pid(),
            Arc::new(ExportedServer::<S> {
                addr: addr.clone(),
                inflight: Arc::default(),
                limit: self.inner.cfg.connection.send_queue,
            }),
            addr,
        );
    }

    fn add_export<M: Send + 'static>(&self, pid: Pid, inbox: Arc<dyn Inbox>, addr: Addr<M>) {
        if !pid.is_local() {
            return;
        }
        self.inner.exports.insert(pid.id(), inbox);
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
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
        Addr::remote(Arc::new(RemoteProcess::<M> {
            target: self.target(pid),
            _m: PhantomData,
        }))
    }

    /// A handle to the server `pid` (in this node's numbering), local or remote.
    pub fn server<S>(&self, pid: Pid) -> ServerRef<S>
    where
        S: Server,
        S::Call: Wire,
        S::Reply: Wire,
        S::Cast: Wire,
    {
        match self.node_of(pid) {
            Some(node) => self.remote_server(&node, pid),
            None => ServerRef::from_addr(Addr::remote(Arc::new(RemoteServer::<S> {
                target: self.target(pid),
                _s: PhantomData,
            }))),
        }
    }

    /// A handle to the server `pid` on `node`; calls and casts travel under the wire names of
    /// its types.
    pub fn remote_server<S>(&self, node: &NodeName, pid: Pid) -> ServerRef<S>
    where
        S: Server,
        S::Call: Wire,
        S::Reply: Wire,
        S::Cast: Wire,
    {
        let pid = self.pid_on(node, pid);
        if pid.is_local() {
            if let Ok(s) = ServerRef::from_pid(self.node(), pid) {
                return s;
            }
        }
        ServerRef::from_addr(Addr::remote(Arc::new(RemoteServer::<S> {
            target: self.target(pid),
            _s: PhantomData,
        })))
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
struct Target {
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

    fn send(&self, bytes: bytes::Bytes) -> Result<(), Unsent> {
        match &self.peer {
            Some(peer) => self.inner.send_to(peer, Self::stream(), bytes),
            None => Err(Unsent::Unreachable),
        }
    }

    async fn send_wait(&self, bytes: bytes::Bytes) -> Result<(), Unsent> {
        match self.send(bytes.clone()) {
            Err(Unsent::Full) => match &self.peer {
                Some(peer) => {
                    let limit = self.inner.cfg.connection.send_queue;
                    peer.send_wait(Self::stream(), bytes, limit).await
                }
                None => Err(Unsent::Unreachable),
            },
            other => other,
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
            if inner.send_to(&peer, 0, wire::packet(&p)).is_err() {
                peer.waiting.lock().exits.remove(&id);
                return ExitReason::NoConnection;
            }
            rx.await.unwrap_or(ExitReason::NoConnection)
        })
    }
}

fn unsent<M>(e: Unsent, msg: M) -> SendError<M> {
    match e {
        Unsent::Full => SendError::Full(msg),
        Unsent::Unreachable => SendError::NoProc(msg),
    }
}

/// The sending side of an [`Addr`] to a process on another node.
struct RemoteProcess<M> {
    target: Target,
    _m: PhantomData<fn(M)>,
}

impl<M: Wire> RemoteProcess<M> {
    fn encode(&self, msg: &M) -> Option<bytes::Bytes> {
        let p = Packet::Send {
            to: self.target.wire(),
            name: M::NAME,
        };
        match wire::packet_with(&p, msg, &self.target.inner.translation) {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::warn!(to = %self.target.pid, error = %e, "message not sent");
                None
            }
        }
    }
}

impl<M: Wire> RemoteSink<M> for RemoteProcess<M> {
    fn pid(&self) -> Pid {
        self.target.pid
    }

    fn send(&self, msg: M) -> Result<(), SendError<M>> {
        // A message that cannot be encoded is lost like one to a dead process: logged.
        let Some(bytes) = self.encode(&msg) else {
            return Ok(());
        };
        self.target.send(bytes).map_err(|e| unsent(e, msg))
    }

    fn send_wait(&self, msg: M) -> BoxFuture<'_, Result<(), SendError<M>>> {
        Box::pin(async move {
            let Some(bytes) = self.encode(&msg) else {
                return Ok(());
            };
            self.target
                .send_wait(bytes)
                .await
                .map_err(|e| unsent(e, msg))
        })
    }

    fn stop(&self, reason: ExitReason) -> bool {
        self.target.stop(reason)
    }

    fn exit_reason(&self) -> Option<ExitReason> {
        self.target.exit_reason()
    }

    fn wait_exit(&self) -> BoxFuture<'static, ExitReason> {
        self.target.wait_exit()
    }
}

/// The sending side of a [`ServerRef`] to a server on another node.
struct RemoteServer<S> {
    target: Target,
    _s: PhantomData<fn(S)>,
}

/// The caller's end of a remote call: the local reply handle, fed when the reply packet comes.
struct CallReply<R: Wire> {
    from: ReplyTo<R>,
    translation: Arc<dyn girder::remote::PidTranslation>,
}

impl<R: Wire> PendingReply for CallReply<R> {
    fn complete(self: Box<Self>, outcome: Completion<'_>) {
        match outcome {
            Completion::Reply { name, body } => {
                match wire::decode::<R>(name, body, &self.translation) {
                    Ok(r) => self.from.reply(r),
                    Err(why) => self
                        .from
                        .fail(ExitReason::error(format!("bad reply: {why}"))),
                }
            }
            Completion::Failed(Some(reason)) => self.from.fail(reason),
            // Dropped without a reply: the local handle's drop says so to the caller.
            Completion::Failed(None) => drop(self.from),
        }
    }

    fn abandoned(&self) -> bool {
        self.from.is_closed()
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}

impl<S> RemoteSink<ServerMsg<S>> for RemoteServer<S>
where
    S: Server,
    S::Call: Wire,
    S::Reply: Wire,
    S::Cast: Wire,
{
    fn pid(&self) -> Pid {
        self.target.pid
    }

    fn send(&self, msg: ServerMsg<S>) -> Result<(), SendError<ServerMsg<S>>> {
        let inner = &self.target.inner;
        match msg {
            ServerMsg::Call(req, from) => {
                let reff = inner.next_ref();
                let p = Packet::Call {
                    to: self.target.wire(),
                    reff,
                    name: <S::Call as Wire>::NAME,
                };
                let bytes = match wire::packet_with(&p, &req, &inner.translation) {
                    Ok(b) => b,
                    Err(e) => {
                        from.fail(ExitReason::error(e.to_string()));
                        return Ok(());
                    }
                };
                let Some(peer) = &self.target.peer else {
                    return Err(SendError::NoProc(ServerMsg::Call(req, from)));
                };
                // Registered first: the reply may come before `send` returns.
                peer.waiting.lock().add_call(
                    reff,
                    Box::new(CallReply {
                        from,
                        translation: inner.translation.clone(),
                    }),
                );
                match self.target.send(bytes) {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        let pending = peer.waiting.lock().calls.remove(&reff);
                        match pending {
                            Some(p) => {
                                // Hand the request back, as a local full or dead mailbox does.
                                let from = take_reply::<S::Reply>(p);
                                Err(unsent(e, ServerMsg::Call(req, from)))
                            }
                            // The connection failed meanwhile and already ended the call.
                            None => Ok(()),
                        }
                    }
                }
            }
            ServerMsg::Cast(c) => {
                let p = Packet::Send {
                    to: self.target.wire(),
                    name: <S::Cast as Wire>::NAME,
                };
                match wire::packet_with(&p, &c, &inner.translation) {
                    Ok(bytes) => self
                        .target
                        .send(bytes)
                        .map_err(|e| unsent(e, ServerMsg::Cast(c))),
                    Err(e) => {
                        tracing::warn!(to = %self.target.pid, error = %e, "cast not sent");
                        Ok(())
                    }
                }
            }
            // Info messages are the server's own business (timers, monitors): local only.
            info @ ServerMsg::Info(_) => Err(SendError::NoProc(info)),
        }
    }

    fn send_wait(&self, msg: ServerMsg<S>) -> BoxFuture<'_, Result<(), SendError<ServerMsg<S>>>> {
        Box::pin(async move {
            let mut msg = msg;
            loop {
                match self.send(msg) {
                    // Full: nothing was queued and the message came back; wait for room.
                    Err(SendError::Full(m)) => match &self.target.peer {
                        Some(peer) => {
                            msg = m;
                            peer.room().await;
                        }
                        None => return Err(SendError::NoProc(m)),
                    },
                    other => return other,
                }
            }
        })
    }

    fn stop(&self, reason: ExitReason) -> bool {
        self.target.stop(reason)
    }

    fn exit_reason(&self) -> Option<ExitReason> {
        self.target.exit_reason()
    }

    fn wait_exit(&self) -> BoxFuture<'static, ExitReason> {
        self.target.wait_exit()
    }
}

/// Recovers the reply handle from a pending call that was never sent.
fn take_reply<R: Wire>(p: Box<dyn PendingReply>) -> ReplyTo<R> {
    match p.into_any().downcast::<CallReply<R>>() {
        Ok(c) => c.from,
        Err(_) => unreachable!("a server's pending calls are its own CallReply type"),
    }
}

/// An exported plain process.
struct ExportedProcess<M: Wire> {
    addr: Addr<M>,
}

impl<M: Wire> Inbox for ExportedProcess<M> {
    fn deliver(
        &self,
        inner: &Arc<Inner>,
        _: &Arc<Peer>,
        name: &str,
        body: &[u8],
        how: Inbound,
    ) -> Result<Delivery, String> {
        if let Inbound::Call { .. } = how {
            return Err(format!("{} takes messages, not calls", self.addr.pid()));
        }
        let msg = wire::decode::<M>(name, body, &inner.translation)?;
        Ok(push(&self.addr, msg))
    }
}

/// Queues without waiting if there is room; otherwise a future that waits for room.
fn push<M: Send + 'static>(addr: &Addr<M>, msg: M) -> Delivery {
    match addr.send(msg) {
        Ok(()) | Err(SendError::NoProc(_)) => Delivery::Done,
        Err(SendError::Full(m)) => {
            let addr = addr.clone();
            Delivery::Wait(Box::pin(async move {
                let _ = addr.send_wait(m).await;
            }))
        }
    }
}

/// An exported server.
struct ExportedServer<S: Server> {
    addr: Addr<ServerMsg<S>>,
    /// Calls from other nodes not answered yet: when the server exits, the ones whose reply
    /// handle is held elsewhere (handed to a worker, say) fail with its exit reason, as a
    /// local caller's would (a remote caller's own node cannot watch the callee's exit).
    inflight: Arc<Inflight>,
    /// The connection's send queue limit, for the failures sent at exit.
    limit: usize,
}

/// Remote calls under way, by (peer, reference): where each one's failure goes.
type Inflight = parking_lot::Mutex<std::collections::HashMap<(usize, u64), (Arc<Peer>, u64)>>;

impl<S> Inbox for ExportedServer<S>
where
    S: Server,
    S::Call: Wire,
    S::Reply: Wire,
    S::Cast: Wire,
{
    fn deliver(
        &self,
        inner: &Arc<Inner>,
        peer: &Arc<Peer>,
        name: &str,
        body: &[u8],
        how: Inbound,
    ) -> Result<Delivery, String> {
        match how {
            Inbound::Send => {
                let cast = wire::decode::<S::Cast>(name, body, &inner.translation)?;
                Ok(push(&self.addr, ServerMsg::Cast(cast)))
            }
            Inbound::Call { reff, stream } => {
                let req = wire::decode::<S::Call>(name, body, &inner.translation)?;
                let key = (Arc::as_ptr(peer) as usize, reff);
                self.inflight.lock().insert(key, (peer.clone(), stream));
                let from =
                    forward_reply::<S>(inner, peer, &self.addr, reff, stream, &self.inflight);
                Ok(push(&self.addr, ServerMsg::Call(req, from)))
            }
        }
    }

    fn exited(&self, reason: &ExitReason) {
        let left: Vec<_> = self.inflight.lock().drain().collect();
        for ((_, reff), (peer, stream)) in left {
            let failed = wire::packet(&Packet::CallFailed {
                reff,
                reason: Some(reason.clone()),
            });
            peer.send_reliable(stream, failed, self.limit);
        }
    }
}

/// The callee's end of a remote call: a reply handle that sends the outcome back.
fn forward_reply<S>(
    inner: &Arc<Inner>,
    peer: &Arc<Peer>,
    server: &Addr<ServerMsg<S>>,
    reff: u64,
    stream: u64,
    inflight: &Arc<Inflight>,
) -> ReplyTo<S::Reply>
where
    S: Server,
    S::Reply: Wire,
{
    let peer = peer.clone();
    let translation = inner.translation.clone();
    let limit = inner.cfg.connection.send_queue;
    let server = server.clone();
    let inflight = Arc::downgrade(inflight);
    ReplyTo::forward(move |outcome| {
        // Already failed when the server exited (or the export is gone): nothing to send.
        let key = (Arc::as_ptr(&peer) as usize, reff);
        if inflight
            .upgrade()
            .and_then(|f| f.lock().remove(&key))
            .is_none()
        {
            return;
        }
        let failed =
            move |reason: Option<ExitReason>| wire::packet(&Packet::CallFailed { reff, reason });
        let bytes = match outcome {
            Outcome::Replied(r) => {
                let p = Packet::Reply {
                    reff,
                    name: <S::Reply as Wire>::NAME,
                };
                match wire::packet_with(&p, &r, &translation) {
                    Ok(b) => b,
                    Err(e) => failed(Some(ExitReason::error(e.to_string()))),
                }
            }
            Outcome::Failed(reason) => failed(Some(reason)),
            Outcome::Dropped => failed(server.exit_reason()),
            // The handler panicked; the server's exit reason is known once it has exited.
            Outcome::Panicking => {
                tokio::spawn(async move {
                    let reason = server.wait_exit().await;
                    peer.send_reliable(stream, failed(Some(reason)), limit);
                });
                return;
            }
        };
        peer.send_reliable(stream, bytes, limit);
    })
}
