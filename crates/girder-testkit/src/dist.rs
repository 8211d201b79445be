//! Distribution nodes on loopback for tests (feature `dist`): started on a free port with the
//! test cookie, and told each other's addresses as membership would.
//!
//! ```
//! use girder_testkit::dist;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let (a, b) = dist::pair("a@localhost", "b@localhost").await;
//! a.connect(b.name()).await.unwrap();
//! assert_eq!(b.connected(), vec![a.name().clone()]);
//! # }
//! ```

use std::time::Duration;

use girder::{Addr, Node};
use girder_dist::{Cookie, DistConfig, DistNode, NodeName, Wire};
use tokio::sync::mpsc;

/// The cookie test nodes share (long enough to be accepted).
pub const COOKIE: &str = "a-cookie-of-decent-length";

/// How long a test node's dial (TCP and handshake) may take: shorter than the default, so a
/// dial that cannot succeed fails well within a test's [`WAIT`](crate::WAIT).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The configuration [`start_with`] uses: `name`, `cookie`, a free loopback port and
/// [`CONNECT_TIMEOUT`]. For a test that changes something more before it starts the node
/// (`DistNode::start(Node::new(name), cfg)`).
pub fn config(name: &str, cookie: &str) -> DistConfig {
    let mut cfg = DistConfig::new(
        NodeName::new(name).expect("a valid node name"),
        Cookie::new(cookie).expect("a valid cookie"),
        "127.0.0.1:0".parse().unwrap(),
    );
    cfg.connect_timeout = CONNECT_TIMEOUT;
    cfg
}

/// A node called `name` with the test [`COOKIE`] on a free loopback port; it knows no other
/// node yet.
pub async fn start(name: &str) -> DistNode {
    start_with(name, COOKIE).await
}

/// A node like [`start`]'s with another cookie (a node the others must keep out).
pub async fn start_with(name: &str, cookie: &str) -> DistNode {
    DistNode::start(Node::new(name), config(name, cookie))
        .await
        .expect("the test node starts")
}

/// Two nodes that know each other's address (and not yet connected: the first send or
/// `connect` dials).
pub async fn pair(a: &str, b: &str) -> (DistNode, DistNode) {
    let (a, b) = (start(a).await, start(b).await);
    a.add_address(b.name().clone(), b.local_addr());
    b.add_address(a.name().clone(), a.local_addr());
    (a, b)
}

/// Tells every node every node's address (its own too), as membership would: after a
/// partition, this is the heal.
pub fn introduce(nodes: &[&DistNode]) {
    for a in nodes {
        for b in nodes {
            a.add_address(b.name().clone(), b.local_addr());
        }
    }
}

/// A [`forward_to`](crate::procs::forward_to) process on `node`, exported, so remote senders
/// reach the test through it.
pub fn forwarder<M: Wire>(node: &DistNode, to: mpsc::UnboundedSender<M>) -> Addr<M> {
    let addr = crate::procs::forward_to(node.node(), to);
    node.export(&addr);
    addr
}

/// The real network, except that its listeners fail every `accept` with EMFILE ("Too many open
/// files") while [`exhaust`](Self::exhaust) is on: a process out of file descriptors, without
/// taking the test process's descriptors away from the other tests. Give it to a node through
/// [`DistConfig::network`](girder_dist::DistConfig::network).
///
/// ```
/// use girder_testkit::dist::Exhaustible;
/// let network = Exhaustible::default();
/// network.exhaust(true);
/// let mut cfg = girder_testkit::dist::config("b@127.0.0.1", girder_testkit::dist::COOKIE);
/// cfg.network = std::sync::Arc::new(network.clone());
/// ```
#[derive(Debug, Default, Clone)]
pub struct Exhaustible {
    exhausted: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

impl Exhaustible {
    /// Turns the failure on or off (for every listener of this network and its clones).
    pub fn exhaust(&self, on: bool) {
        self.exhausted
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

struct ExhaustibleListener {
    inner: Box<dyn girder_dist::transport::Listener>,
    exhausted: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl girder_dist::transport::Listener for ExhaustibleListener {
    fn accept(
        &mut self,
    ) -> Boxed<'_, std::io::Result<(girder_dist::transport::BoxStream, std::net::SocketAddr)>> {
        if self.exhausted.load(std::sync::atomic::Ordering::SeqCst) {
            // EMFILE, as accept(2) fails when the process has no descriptor left.
            return Box::pin(async { Err(std::io::Error::from_raw_os_error(24)) });
        }
        self.inner.accept()
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }
}

impl girder_dist::transport::Network for Exhaustible {
    fn listen(
        &self,
        addr: std::net::SocketAddr,
    ) -> Boxed<'_, std::io::Result<Box<dyn girder_dist::transport::Listener>>> {
        Box::pin(async move {
            let inner = girder_dist::transport::Tokio.listen(addr).await?;
            Ok(Box::new(ExhaustibleListener {
                inner,
                exhausted: self.exhausted.clone(),
            }) as Box<dyn girder_dist::transport::Listener>)
        })
    }

    fn connect(
        &self,
        addr: std::net::SocketAddr,
    ) -> Boxed<'_, std::io::Result<girder_dist::transport::BoxStream>> {
        girder_dist::transport::Tokio.connect(addr)
    }

    fn bind_datagrams(
        &self,
        addr: std::net::SocketAddr,
    ) -> Boxed<'_, std::io::Result<std::sync::Arc<dyn girder_dist::transport::Datagrams>>> {
        girder_dist::transport::Tokio.bind_datagrams(addr)
    }
}

/// Waits until `membership` sees `n` other members (up to [`WAIT`](crate::WAIT)).
pub async fn until_members(membership: &mut girder_dist::Membership, n: usize) {
    let what = format!("{} to see {n} members", membership.me().name);
    crate::eventually_async(what, async || {
        if membership.members().len() == n {
            return true;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), membership.changed()).await;
        false
    })
    .await;
}
