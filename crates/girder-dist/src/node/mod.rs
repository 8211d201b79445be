//! [`DistNode`]: a girder [`Node`] made reachable from other nodes (Erlang's `net_kernel`).
//!
//! It listens for peers, dials them on demand (the first send, link or monitor to one of their
//! processes), keeps one connection per pair of nodes, and turns the core's remote signals into
//! packets and back. When a connection is lost, every link and monitor that crossed it fires
//! with `noconnection` and every call waiting on it fails at once.
//!
//! By job: `config` (how a node runs and what it reports), this module (the public handle),
//! `connections` (each peer's connection life: admission, establishment, loss, redial),
//! `listen` (accepting and dialling sockets through the handshake), `leave` (shutting down with
//! a goodbye, forgetting a node) and `hooks` (the core's link, monitor and exit signals as
//! packets).

mod config;
mod connections;
mod follow;
mod hooks;
mod leave;
mod listen;

pub use config::{ConnectError, DistConfig, ListenerStatus, NodeEvent, PeerInfo};
pub use leave::GOODBYE_WAIT;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use dashmap::DashMap;
use girder::remote::PidTranslation;
use girder::supervisor::{RestartStrategy, Supervisor, SupervisorRef};
use girder::{Node, Pid};

use crate::handshake::HandshakeConfig;
use crate::peer::{NodeTable, State};
use crate::remote::Inbox;
use crate::wire::{self, Packet};
use crate::NodeName;
use hooks::Hooks;
use listen::accept_loop;

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
    /// Whether the accept loop is accepting, and the errors it met.
    listener_health: parking_lot::Mutex<listen::ListenerHealth>,
    events: tokio::sync::broadcast::Sender<NodeEvent>,
    /// The supervisor of Girder's own services on this node ([`KERNEL_SUP`]).
    services: SupervisorRef,
}

/// The registered name of every distributed node's supervisor of Girder's own services
/// ([`DistNode::services`]), OTP's `kernel_sup`.
pub const KERNEL_SUP: &str = "girder.kernel_sup";

/// How many restarts [`KERNEL_SUP`] allows in [`SERVICES_PERIOD`] before it gives up: a
/// service that crashes now and then comes back each time, one caught in a crash loop (a
/// poisonous peer, say) is not restarted forever.
pub const SERVICES_MAX_RESTARTS: u32 = 5;

/// The period of [`SERVICES_MAX_RESTARTS`].
pub const SERVICES_PERIOD: std::time::Duration = std::time::Duration::from_secs(10);

impl DistNode {
    /// Starts listening and installs itself as `node`'s distribution layer.
    ///
    /// It also starts the node's supervisor of Girder's own services ([`services`](Self::services)).
    pub async fn start(node: Node, cfg: DistConfig) -> std::io::Result<DistNode> {
        let listener = cfg.network.listen(cfg.listen).await?;
        let local_addr = listener.local_addr()?;
        let services = Supervisor::builder()
            .strategy(RestartStrategy::OneForOne)
            .intensity(SERVICES_MAX_RESTARTS, SERVICES_PERIOD)
            .name(KERNEL_SUP)
            .start(&node)
            .await
            .map_err(|e| {
                std::io::Error::other(format!(
                    "node {}: cannot start {KERNEL_SUP}: {e}",
                    node.name()
                ))
            })?;
        let table = Arc::new(NodeTable::new(cfg.name.clone(), node.clone()));
        let inner = Arc::new(Inner {
            hs: {
                let mut hs =
                    HandshakeConfig::new(cfg.name.clone(), node.creation(), cfg.cookie.clone());
                hs.timeout = cfg.handshake_timeout;
                hs.capabilities = crate::wire::CAPABILITIES;
                hs
            },
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
            listener_health: Default::default(),
            events: tokio::sync::broadcast::channel(1024).0,
            services,
        });
        let hooks = Arc::new(Hooks(Arc::downgrade(&inner)));
        if node.set_distribution(hooks).is_err() {
            inner.services.stop(girder::ExitReason::Shutdown).await;
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

    /// The node's supervisor of Girder's own services, registered as [`KERNEL_SUP`] (OTP's
    /// `kernel_sup`): the global registry ([`crate::global`]), each scope of process groups
    /// ([`crate::groups`]) and girder-ops's alarm service run under it once started, each
    /// registered under its name. It restarts a service that exits abnormally (a crash, a
    /// kill through the ops API) on its own (`one_for_one`), at most
    /// [`SERVICES_MAX_RESTARTS`] times in [`SERVICES_PERIOD`]; past that it gives up (and
    /// says so as a `SupervisorGaveUp` lifecycle event) and the services stay down. A restarted
    /// service registers its name again and rebuilds its state from its peers.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use girder_dist::{global::Global, node::KERNEL_SUP, Cookie, DistConfig, DistNode, NodeName};
    /// let cfg = DistConfig::new(
    ///     NodeName::new("a@localhost").unwrap(),
    ///     Cookie::new("a-cookie-of-decent-length").unwrap(),
    ///     "127.0.0.1:0".parse().unwrap(),
    /// );
    /// let dist = DistNode::start(girder::Node::new("a"), cfg).await.unwrap();
    /// let _global = Global::start(&dist).await.unwrap();
    /// assert_eq!(dist.node().whereis(KERNEL_SUP), Some(dist.services().pid()));
    /// let children = dist.services().which_children().await.unwrap();
    /// assert_eq!(children[0].id, "girder.global");
    /// # }
    /// ```
    pub fn services(&self) -> &SupervisorRef {
        &self.inner.services
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

    /// Connects to `name` now (sends connect on demand anyway), waiting until the connection is
    /// up on this side. Erlang's `net_kernel:connect_node/1`. The peer records the connection a
    /// moment later (when it accepted, only after sending its last proof), so its
    /// [`peers`](Self::peers) may not show this node yet when this returns; messages sent now
    /// are delivered in order all the same.
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

    /// Whether the distribution listener is accepting connections. A failed `accept` (say, out
    /// of file descriptors) does not stop it: it retries with a growing pause (10 ms to 1 s)
    /// and is accepting again once the cause is gone. Readiness reports it while it fails.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use girder_dist::{Cookie, DistConfig, DistNode, NodeName};
    /// let cfg = DistConfig::new(
    ///     NodeName::new("status@127.0.0.1").unwrap(),
    ///     Cookie::new("a-cookie-of-decent-length").unwrap(),
    ///     "127.0.0.1:0".parse().unwrap(),
    /// );
    /// let node = DistNode::start(girder::Node::new("status@127.0.0.1"), cfg).await.unwrap();
    /// let status = node.listener_status();
    /// assert!(status.accepting);
    /// assert_eq!((status.errors, status.last_error), (0, None));
    /// # }
    /// ```
    pub fn listener_status(&self) -> ListenerStatus {
        self.inner.listener_health.lock().status()
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
                let parking = p.parking.stats();
                let (paused, pauses_received) = p.paused.stats();
                PeerInfo {
                    name: p.name.clone(),
                    connected,
                    creation,
                    address: self.inner.addresses.get(&p.name).map(|a| *a),
                    bytes_out,
                    bytes_in,
                    messages_out,
                    messages_in,
                    parked: parking.messages,
                    parked_bytes: parking.bytes,
                    pauses_sent: parking.pauses_sent,
                    parked_stalls: parking.stalls,
                    paused,
                    pauses_received,
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
        if self.inner.send_control(&peer, 0, bytes).is_err() {
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
}
