//! [`DistNode`]: a girder [`Node`] made reachable from other nodes (Erlang's `net_kernel`).
//!
//! It listens for peers, dials them on demand (the first send, link or monitor to one of their
//! processes), keeps one connection per pair of nodes, and turns the core's remote signals into
//! packets and back. When a connection is lost, every link and monitor that crossed it fires
//! with `noconnection` and every call waiting on it fails at once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use girder::remote::{Distribution, PidTranslation};
use girder::{ExitReason, Node, Pid};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::connection::{self, ConnectionConfig};
use crate::handshake::{self, Established, HandshakeConfig, Refusal};
use crate::peer::{NodeTable, Peer, State, Unsent};
use crate::remote::Inbox;
use crate::tls::{self, TlsConfig};
use crate::wire::{self, Packet, WirePid};
use crate::{Cookie, NodeName};

/// How a [`DistNode`] runs.
#[derive(Clone)]
pub struct DistConfig {
    /// This node's name.
    pub name: NodeName,
    /// The cluster's shared secret.
    pub cookie: Cookie,
    /// Where to listen for peers (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Mutual TLS under the handshake, if set.
    pub tls: Option<Arc<TlsConfig>>,
    /// Per-connection limits and liveness.
    pub connection: ConnectionConfig,
    /// How long a dial (TCP, TLS and handshake) may take.
    pub connect_timeout: Duration,
    /// Where connections go: real TCP by default.
    pub network: Arc<dyn crate::transport::Network>,
    /// How long a connection's receiver stays busy waiting for more after traffic before it
    /// sleeps (zero: never). Trades a little CPU for request-reply latency, like the BEAM's
    /// scheduler busy-wait.
    pub busy_poll: Duration,
}

impl DistConfig {
    /// Defaults: no TLS, default connection settings, 5 s dials, 50 µs busy polling.
    pub fn new(name: NodeName, cookie: Cookie, listen: SocketAddr) -> Self {
        DistConfig {
            name,
            cookie,
            listen,
            tls: None,
            connection: ConnectionConfig::default(),
            connect_timeout: Duration::from_secs(5),
            network: crate::transport::tokio_network(),
            // Measured on 2 cores (docs/benchmarks.md): 50 µs turns a 64 µs remote call into
            // 15 µs; longer spins steal the CPU the other side needs.
            busy_poll: Duration::from_micros(50),
        }
    }
}

/// Why a node could not be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// No address is known for the node (add one, or follow a membership).
    #[error("no address known for {0}")]
    NoAddress(NodeName),
    /// The dial failed or the peer refused it.
    #[error("could not connect to {0}")]
    Failed(NodeName),
    /// The dial did not finish in time.
    #[error("connecting to {0} timed out")]
    Timeout(NodeName),
}

/// A change in this node's connections (Erlang's `net_kernel:monitor_nodes/1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// An address became known for a node (it can be dialled now).
    Discovered(NodeName),
    /// A connection to the node is up.
    Up(NodeName),
    /// The connection to the node is gone; links and monitors across it have fired.
    Down {
        /// The node.
        node: NodeName,
        /// Why, in words.
        reason: String,
    },
    /// A dial to the node failed (unreachable, TLS or handshake refused).
    DialFailed {
        /// The node.
        node: NodeName,
        /// Why, in words.
        reason: String,
    },
    /// An incoming connection was refused (TLS, wrong cookie, duplicate or stale name).
    Refused {
        /// Where it came from.
        from: SocketAddr,
        /// Why, in words.
        reason: String,
    },
}

/// A known node as [`DistNode::peers`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerInfo {
    /// Its name.
    pub name: NodeName,
    /// True while a connection is up.
    pub connected: bool,
    /// Its incarnation, while connected.
    pub creation: Option<u32>,
    /// Where it is dialled, if known.
    pub address: Option<SocketAddr>,
    /// Bytes sent to it, over all connections so far.
    pub bytes_out: u64,
    /// Bytes received from it.
    pub bytes_in: u64,
    /// Messages (packets) sent to it.
    pub messages_out: u64,
    /// Messages received from it.
    pub messages_in: u64,
}

/// A girder [`Node`] reachable from other nodes.
///
/// ```
/// # #[tokio::main] async fn main() {
/// use girder::{Event, ExitReason, Node};
/// use girder_dist::{Cookie, DistConfig, DistNode, NodeName};
///
/// let cookie = Cookie::new("a-cookie-of-decent-length").unwrap();
/// let start = |name: &str| {
///     let cfg = DistConfig::new(NodeName::new(name).unwrap(), cookie.clone(), "127.0.0.1:0".parse().unwrap());
///     DistNode::start(Node::new(name), cfg)
/// };
/// let (a, b) = (start("a@localhost").await.unwrap(), start("b@localhost").await.unwrap());
/// a.add_address(b.name().clone(), b.local_addr());
///
/// // A process on b that takes strings, exported so other nodes can reach it.
/// let echo = b.node().spawn(|mut ctx: girder::Context<String>| async move {
///     match ctx.recv().await {
///         Event::Message(text) => ExitReason::error(text),
///         _ => ExitReason::Normal,
///     }
/// });
/// b.export(&echo);
///
/// // a sends to it through a remote handle made from its pid.
/// let pid = a.whereis(b.name(), "nobody").await.unwrap();
/// assert_eq!(pid, None);
/// let remote = a.remote::<String>(b.name(), echo.pid());
/// remote.send("hello".to_string()).unwrap();
/// assert_eq!(echo.wait_exit().await, ExitReason::error("hello"));
/// # }
/// ```
#[derive(Clone)]
pub struct DistNode {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) node: Node,
    pub(crate) cfg: DistConfig,
    hs: HandshakeConfig,
    local_addr: SocketAddr,
    pub(crate) table: Arc<NodeTable>,
    pub(crate) translation: Arc<dyn PidTranslation>,
    addresses: DashMap<NodeName, SocketAddr>,
    pub(crate) exports: DashMap<u64, Arc<dyn Inbox>>,
    next_ref: AtomicU64,
    next_gen: AtomicU64,
    /// Dropped to stop the accept loop.
    listener: parking_lot::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// Set by `shutdown`: no connection is dialled, admitted or established from then on.
    stopped: AtomicBool,
    events: tokio::sync::broadcast::Sender<NodeEvent>,
}

impl DistNode {
    /// Starts listening and installs itself as `node`'s distribution layer.
    pub async fn start(node: Node, cfg: DistConfig) -> std::io::Result<DistNode> {
        let listener = cfg.network.listen(cfg.listen).await?;
        let local_addr = listener.local_addr()?;
        let table = Arc::new(NodeTable::new(cfg.name.clone()));
        let inner = Arc::new(Inner {
            hs: HandshakeConfig::new(cfg.name.clone(), node.creation(), cfg.cookie.clone()),
            node: node.clone(),
            cfg,
            local_addr,
            translation: table.clone(),
            table,
            addresses: DashMap::new(),
            exports: DashMap::new(),
            next_ref: AtomicU64::new(1),
            next_gen: AtomicU64::new(1),
            listener: parking_lot::Mutex::new(None),
            stopped: AtomicBool::new(false),
            events: tokio::sync::broadcast::channel(1024).0,
        });
        let hooks = Arc::new(Hooks(Arc::downgrade(&inner)));
        if node.set_distribution(hooks).is_err() {
            return Err(std::io::Error::other(format!(
                "node {} already has a distribution layer",
                node.name()
            )));
        }
        let weak = Arc::downgrade(&inner);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        *inner.listener.lock() = Some(stop);
        // Accepted where the node's processes run, so each socket's I/O is driven there.
        inner.node.spawn_task(accept_loop(weak, listener, stopped));
        Ok(DistNode { inner })
    }

    /// The local node.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// This node's name.
    pub fn name(&self) -> &NodeName {
        &self.inner.cfg.name
    }

    /// The address peers reach this node at.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Records where `name` listens, so it can be dialled on demand.
    pub fn add_address(&self, name: NodeName, addr: SocketAddr) {
        if name == self.inner.cfg.name {
            return;
        }
        if self.inner.addresses.insert(name.clone(), addr) != Some(addr) {
            let _ = self.inner.events.send(NodeEvent::Discovered(name));
        }
    }

    /// The nodes with a known address (connected or not).
    pub fn known(&self) -> Vec<NodeName> {
        self.inner
            .addresses
            .iter()
            .map(|e| e.key().clone())
            .collect()
    }

    /// Connection events from now on. A slow subscriber that falls more than 1024 events
    /// behind misses the oldest (and is told so by the receiver); [`connected`](Self::connected)
    /// gives the current state.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }

    /// Takes node addresses and failures from a membership: members' addresses become
    /// dialable (a member's TCP listener shares its membership address), and a member that
    /// membership declares down is disconnected at once, even if its TCP connection still looks
    /// alive (a frozen or partitioned node). Connections stay on demand.
    pub fn follow(&self, membership: &crate::Membership) {
        for m in membership.members() {
            self.add_address(m.name.clone(), m.addr);
        }
        let mut events = membership.subscribe();
        let me = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let event = match events.recv().await {
                    Ok(e) => e,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                let Some(inner) = me.upgrade() else { return };
                let dist = DistNode { inner };
                match event {
                    crate::MemberEvent::Up(m) => dist.add_address(m.name, m.addr),
                    crate::MemberEvent::Down(m) => {
                        dist.inner.addresses.remove(&m.name);
                        dist.disconnect(&m.name);
                    }
                    crate::MemberEvent::Replaced { new, .. } => {
                        dist.disconnect(&new.name);
                        dist.add_address(new.name, new.addr);
                    }
                }
            }
        });
    }

    /// Connects to `name` now (sends connect on demand anyway), waiting until the connection is
    /// up. Erlang's `net_kernel:connect_node/1`.
    pub async fn connect(&self, name: &NodeName) -> Result<(), ConnectError> {
        let peer = self.inner.table.peer(name);
        let deadline = tokio::time::Instant::now() + self.inner.cfg.connect_timeout;
        loop {
            let changed = peer.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let idle = match &*peer.state.lock() {
                State::Up { .. } => return Ok(()),
                State::Connecting { .. } => false,
                State::Idle => true,
            };
            if idle {
                if !self.inner.addresses.contains_key(name) {
                    return Err(ConnectError::NoAddress(name.clone()));
                }
                if self.inner.dial_if_idle(&peer).is_none() {
                    return Err(ConnectError::Failed(name.clone()));
                }
                continue;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(ConnectError::Timeout(name.clone()));
            }
            if matches!(&*peer.state.lock(), State::Idle) {
                return Err(ConnectError::Failed(name.clone()));
            }
        }
    }

    /// Closes the connection to `name`, as if it were lost: links and monitors across it fire
    /// with `noconnection`. Erlang's `erlang:disconnect_node/1`. False if not connected.
    pub fn disconnect(&self, name: &NodeName) -> bool {
        match self.inner.table.get(name).and_then(|p| p.handle()) {
            Some(h) => {
                h.close();
                true
            }
            None => false,
        }
    }

    /// The nodes connected now (Erlang's `nodes()`).
    pub fn connected(&self) -> Vec<NodeName> {
        self.inner
            .table
            .all()
            .into_iter()
            .filter(|p| p.is_up())
            .map(|p| p.name.clone())
            .collect()
    }

    /// Every node this node has known, with its connection state and traffic.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.inner
            .table
            .all()
            .into_iter()
            .map(|p| {
                let (connected, creation) = match &*p.state.lock() {
                    State::Up { creation, .. } => (true, Some(*creation)),
                    _ => (false, None),
                };
                let [bytes_out, bytes_in, messages_out, messages_in] = p.traffic();
                PeerInfo {
                    name: p.name.clone(),
                    connected,
                    creation,
                    address: self.inner.addresses.get(&p.name).map(|a| *a),
                    bytes_out,
                    bytes_in,
                    messages_out,
                    messages_in,
                }
            })
            .collect()
    }

    /// The node a pid lives on.
    pub fn node_of(&self, pid: Pid) -> Option<NodeName> {
        if pid.is_local() {
            return Some(self.inner.cfg.name.clone());
        }
        self.inner
            .table
            .by_index(pid.node())
            .map(|p| p.name.clone())
    }

    /// Turns a pid as another node numbers it (`node`'s own pid, with index 0 there) into this
    /// node's numbering.
    pub fn pid_on(&self, node: &NodeName, pid: Pid) -> Pid {
        if node == &self.inner.cfg.name {
            return Pid::new(0, pid.creation(), pid.id());
        }
        let peer = self.inner.table.peer(node);
        Pid::new(peer.idx, pid.creation(), pid.id())
    }

    /// Asks `node` which pid is registered there as `name` (`None` if none, or if the node is
    /// unreachable). The pid comes back in this node's numbering.
    pub async fn whereis(&self, node: &NodeName, name: &str) -> Result<Option<Pid>, ConnectError> {
        if node == &self.inner.cfg.name {
            return Ok(self.inner.node.whereis(name));
        }
        let peer = self.inner.table.peer(node);
        let reff = self.inner.next_ref();
        let (tx, rx) = tokio::sync::oneshot::channel();
        peer.waiting.lock().lookups.insert(reff, tx);
        let bytes = wire::packet(&Packet::WhereIs { reff, name });
        if self.inner.send_to(&peer, 0, bytes).is_err() {
            peer.waiting.lock().lookups.remove(&reff);
            return Err(ConnectError::Failed(node.clone()));
        }
        match tokio::time::timeout(self.inner.cfg.connect_timeout, rx).await {
            Ok(Ok(pid)) => Ok(pid),
            Ok(Err(_)) => Err(ConnectError::Failed(node.clone())),
            Err(_) => {
                peer.waiting.lock().lookups.remove(&reff);
                Err(ConnectError::Timeout(node.clone()))
            }
        }
    }

    /// Stops listening and closes every connection, including those still in their handshake;
    /// links and monitors across them fire with `noconnection`. Like Erlang's
    /// `net_kernel:stop/0`, it is for good: the node dials and admits nobody afterwards, and
    /// sends to other nodes fail as unreachable.
    pub fn shutdown(&self) {
        // Before any peer is looked at: a handshake finishing from now on sees the flag under
        // its peer's lock (see `established`), so no connection comes up behind this loop.
        self.inner.stopped.store(true, Ordering::SeqCst);
        drop(self.inner.listener.lock().take());
        for p in self.inner.table.all() {
            // A handshake under way is given up like a failed one (it cannot come up since
            // `stopped` is set, so its generation is still current below).
            let connecting = match &*p.state.lock() {
                State::Connecting { gen, .. } => Some(*gen),
                _ => None,
            };
            if let Some(gen) = connecting {
                self.inner.attempt_failed(&p, gen);
            }
            if let Some(h) = p.handle() {
                h.close();
            }
        }
    }
}

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
    fn dial_if_idle(self: &Arc<Self>, peer: &Arc<Peer>) -> Option<()> {
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
    fn signal(
        self: &Arc<Self>,
        remote: Pid,
        stream: u64,
        p: &Packet<'_>,
        unreachable: impl FnOnce(),
    ) {
        let Some(peer) = self.table.by_index(remote.node()) else {
            return unreachable();
        };
        let bytes = wire::packet(p);
        match self.send_to(&peer, stream, bytes.clone()) {
            Ok(()) => {}
            Err(Unsent::Full) => peer.send_reliable(stream, bytes, self.cfg.connection.send_queue),
            Err(Unsent::Unreachable) => unreachable(),
        }
    }

    fn refused(&self, from: SocketAddr, reason: String) {
        tracing::warn!(node = %self.cfg.name, %from, %reason, "connection refused");
        let _ = self.events.send(NodeEvent::Refused { from, reason });
    }

    /// The acceptor's admission rule: one connection per pair, the dial from the smaller name
    /// wins when both dial at once, and a restarted peer replaces its old incarnation.
    fn admit(&self, name: &NodeName, creation: u32) -> Result<u64, Refusal> {
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
            } if *known > creation => {
                return Err(Refusal::StaleCreation {
                    name: name.clone(),
                    known: *known,
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
            // The peer restarted: its old incarnation is gone, whatever the old connection says.
            State::Up { handle, .. } => {
                handle.close();
                peer.retire(&handle);
                self.unreachable(&peer);
                let _ = self.events.send(NodeEvent::Down {
                    node: name.clone(),
                    reason: "the node restarted".into(),
                });
            }
            State::Connecting { .. } | State::Idle => {}
        }
        Ok(gen)
    }

    /// A handshake finished: the connection becomes the peer's, unless another one won.
    fn established<S>(
        self: &Arc<Self>,
        peer: Arc<Peer>,
        gen: u64,
        est: Established,
        conn: handshake::Connection<S>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let node = self.node.clone();
        let (handle, rx) = connection::start_with(conn, self.cfg.connection.clone(), move |task| {
            node.spawn_task(task)
        });
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
                    tokio::spawn(async move {
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
    fn attempt_failed(&self, peer: &Arc<Peer>, gen: u64) {
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
            tracing::info!(node = %self.cfg.name, peer = %peer.name, %why, "connection lost");
            peer.changed.notify_waiters();
            self.unreachable(peer);
            let _ = self.events.send(NodeEvent::Down {
                node: peer.name.clone(),
                reason: why.to_string(),
            });
        }
    }

    /// Everything that crossed to `peer` fails: links and monitors fire `noconnection`, calls,
    /// lookups and exit waits end.
    fn unreachable(&self, peer: &Arc<Peer>) {
        self.node.node_down(peer.idx);
        peer.fail_waiting();
    }
}

async fn accept_loop(
    inner: Weak<Inner>,
    mut listener: Box<dyn crate::transport::Listener>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut stopped => return,
        };
        let Ok((stream, from)) = accepted else {
            return;
        };
        let Some(inner) = inner.upgrade() else { return };
        let node = inner.node.clone();
        node.spawn_task(async move {
            let tls_cfg = inner.cfg.tls.clone();
            match tls_cfg {
                Some(t) => match tls::accept(stream, &t).await {
                    Ok(s) => accept(inner, s, from).await,
                    Err(e) => inner.refused(from, format!("TLS: {e}")),
                },
                None => accept(inner, stream, from).await,
            }
        });
    }
}

async fn accept<S>(inner: Arc<Inner>, stream: S, from: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let admitted = parking_lot::Mutex::new(None);
    let result = handshake::accept(stream, &inner.hs, |name, creation| {
        let gen = inner.admit(name, creation)?;
        *admitted.lock() = Some((name.clone(), gen));
        Ok(())
    })
    .await;
    let admitted = admitted.into_inner();
    match (result, admitted) {
        (Ok((est, conn)), Some((_, gen))) => {
            let peer = inner.table.peer(&est.peer);
            inner.established(peer, gen, est, conn);
        }
        (Err(e), Some((name, gen))) => {
            inner.refused(from, format!("{name}: {e}"));
            inner.attempt_failed(&inner.table.peer(&name), gen);
        }
        (Err(e), None) => inner.refused(from, e.to_string()),
        (Ok(_), None) => unreachable!("a handshake completes only after admission"),
    }
}

async fn dial(inner: Arc<Inner>, peer: Arc<Peer>, addr: SocketAddr, gen: u64) {
    let attempt = async {
        let tcp = inner
            .cfg
            .network
            .connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        match &inner.cfg.tls {
            Some(t) => {
                let s = tls::connect(tcp, peer.name.host(), t)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                // Under TLS 1.3 a refused client certificate shows up on the first read, here.
                let (est, conn) = handshake::initiate(s, &inner.hs)
                    .await
                    .map_err(|e| format!("handshake over TLS: {e}"))?;
                check_peer(&peer, &est)?;
                inner.established(peer.clone(), gen, est, conn);
            }
            None => {
                let (est, conn) = handshake::initiate(tcp, &inner.hs)
                    .await
                    .map_err(|e| e.to_string())?;
                check_peer(&peer, &est)?;
                inner.established(peer.clone(), gen, est, conn);
            }
        }
        Ok::<(), String>(())
    };
    let outcome = tokio::time::timeout(inner.cfg.connect_timeout, attempt).await;
    let error = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e,
        Err(_) => "timed out".to_string(),
    };
    // If the peer (with the smaller name) is dialling us at the same time it refused our dial;
    // its own dial is about to arrive, so give it a moment before calling the peer unreachable.
    if peer.name < inner.cfg.name {
        for _ in 0..20 {
            let still_ours =
                matches!(&*peer.state.lock(), State::Connecting { gen: g, .. } if *g == gen);
            if !still_ours {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tracing::warn!(node = %inner.cfg.name, peer = %peer.name, %addr, %error, "dial failed");
    let _ = inner.events.send(NodeEvent::DialFailed {
        node: peer.name.clone(),
        reason: error,
    });
    inner.attempt_failed(&peer, gen);
}

fn check_peer(peer: &Peer, est: &Established) -> Result<(), String> {
    if est.peer != peer.name {
        return Err(format!("dialled {} but reached {}", peer.name, est.peer));
    }
    Ok(())
}

/// The core's remote signals, turned into packets.
struct Hooks(Weak<Inner>);

impl Distribution for Hooks {
    fn link(&self, local: Pid, remote: Pid) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let p = Packet::Link {
            from: WirePid::of(local),
            to: WirePid::of(remote),
        };
        inner.signal(remote, local.id(), &p, || {
            inner
                .node
                .remote_exit(remote, local, ExitReason::NoConnection, true)
        });
    }

    fn unlink(&self, local: Pid, remote: Pid) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let p = Packet::Unlink {
            from: WirePid::of(local),
            to: WirePid::of(remote),
        };
        inner.signal(remote, local.id(), &p, || {});
    }

    fn exit(&self, from: Pid, to: Pid, reason: ExitReason, via_link: bool) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let p = Packet::Exit {
            from: WirePid::of(from),
            to: WirePid::of(to),
            reason,
            via_link,
        };
        inner.signal(to, from.id(), &p, || {});
    }

    fn monitor(&self, watcher: Pid, target: Pid, id: u64) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let p = Packet::Monitor {
            watcher: WirePid::of(watcher),
            target: WirePid::of(target),
            id,
        };
        inner.signal(target, watcher.id(), &p, || {
            inner
                .node
                .remote_down(target, watcher, id, ExitReason::NoConnection)
        });
    }

    fn demonitor(&self, watcher: Pid, target: Pid, id: u64) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let p = Packet::Demonitor {
            watcher: WirePid::of(watcher),
            target: WirePid::of(target),
            id,
        };
        inner.signal(target, watcher.id(), &p, || {});
    }

    fn down(&self, target: Pid, watcher: Pid, id: u64, reason: ExitReason) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let p = Packet::Down {
            target: WirePid::of(target),
            watcher: WirePid::of(watcher),
            id,
            reason,
        };
        inner.signal(watcher, target.id(), &p, || {});
    }
}
