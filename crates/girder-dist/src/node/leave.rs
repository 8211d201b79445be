//! How a node leaves and forgets: [`DistNode::shutdown`] says goodbye on every connection, so
//! the peers report a departure ([`NodeEvent::Left`]) rather than a failure, and
//! [`DistNode::forget`] gives up on a node that is gone for good ([`NodeEvent::Forgotten`]).

use std::sync::atomic::Ordering;

use super::{DistNode, Inner, NodeEvent};
use crate::peer::State;
use crate::wire::{self, Packet};
use crate::NodeName;

impl DistNode {
    /// Leaves the cluster's connections for good, gracefully: stops listening, gives up the
    /// handshakes under way, and says goodbye on every connection that is up. Each peer closes
    /// its end when it hears the goodbye and reports [`NodeEvent::Left`], a departure, rather
    /// than [`NodeEvent::Down`], a failure (so no `node_down` alarm); this node closes each
    /// connection then, or after [`GOODBYE_WAIT`] if the peer does not answer (an older build,
    /// a frozen node). Links and monitors across the connections fire `noconnection` as they
    /// close. Returns at once; the goodbyes finish as tasks of the node
    /// ([`shutdown_and_wait`](Self::shutdown_and_wait) waits for them).
    ///
    /// Like Erlang's `net_kernel:stop/0`, it is for good: the node dials and admits nobody
    /// afterwards, and sends to other nodes fail as unreachable.
    pub fn shutdown(&self) {
        for farewell in self.inner.begin_shutdown() {
            self.inner.node.spawn_task(farewell);
        }
    }

    /// [`shutdown`](Self::shutdown), then waits until every connection has closed (at most
    /// about [`GOODBYE_WAIT`]): for a program about to exit, so its goodbyes are out before
    /// it goes. `girder node` calls it on SIGTERM, before it leaves the membership, so the
    /// peers hear the goodbye before membership tells them the node is gone.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use girder_dist::{Cookie, DistConfig, DistNode, NodeEvent, NodeName};
    /// let cookie = Cookie::new("a-cookie-of-decent-length").unwrap();
    /// let start = |name: &str| {
    ///     let cfg = DistConfig::new(NodeName::new(name).unwrap(), cookie.clone(), "127.0.0.1:0".parse().unwrap());
    ///     DistNode::start(girder::Node::new(name), cfg)
    /// };
    /// let (a, b) = (start("a@localhost").await.unwrap(), start("b@localhost").await.unwrap());
    /// a.add_address(b.name().clone(), b.local_addr());
    /// a.connect(b.name()).await.unwrap();
    /// let mut events = a.subscribe();
    ///
    /// b.shutdown_and_wait().await;
    /// // a hears a departure, not a failure.
    /// let event = loop {
    ///     match events.recv().await.unwrap() {
    ///         NodeEvent::Discovered(_) | NodeEvent::Up(_) => continue,
    ///         other => break other,
    ///     }
    /// };
    /// assert!(matches!(&event, NodeEvent::Left { node, .. } if node == b.name()), "{event:?}");
    /// # }
    /// ```
    pub async fn shutdown_and_wait(&self) {
        futures_util::future::join_all(self.inner.begin_shutdown()).await;
    }

    /// Forgets `name`: drops its address, so it is not dialled again until one is given, and
    /// tells subscribers [`NodeEvent::Forgotten`], so what waits for the node to come back
    /// stops waiting (girder-ops clears its `node_down` alarm). For a node that is gone for
    /// good: decommissioned, or replaced by one with another name. A node that is connected
    /// is not forgotten (false); nor is this node itself.
    ///
    /// [`follow`](Self::follow) forgets a member that membership gave up on
    /// ([`MemberEvent::Forgotten`](crate::MemberEvent::Forgotten)).
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use girder_dist::{Cookie, DistConfig, DistNode, NodeEvent, NodeName};
    /// let cfg = DistConfig::new(
    ///     NodeName::new("a@localhost").unwrap(),
    ///     Cookie::new("a-cookie-of-decent-length").unwrap(),
    ///     "127.0.0.1:0".parse().unwrap(),
    /// );
    /// let a = DistNode::start(girder::Node::new("a"), cfg).await.unwrap();
    /// let gone = NodeName::new("retired@localhost").unwrap();
    /// a.add_address(gone.clone(), "127.0.0.1:9".parse().unwrap());
    /// let mut events = a.subscribe();
    /// assert!(a.forget(&gone));
    /// assert!(a.known().is_empty());
    /// assert_eq!(events.recv().await.unwrap(), NodeEvent::Forgotten(gone));
    /// # }
    /// ```
    pub fn forget(&self, name: &NodeName) -> bool {
        if name == &self.inner.cfg.name {
            return false;
        }
        if self.inner.table.get(name).is_some_and(|p| p.is_up()) {
            return false;
        }
        self.inner.addresses.remove(name);
        tracing::info!(node = %self.inner.cfg.name, forgotten = %name, "node forgotten");
        let _ = self.inner.events.send(NodeEvent::Forgotten(name.clone()));
        true
    }
}

/// How long [`DistNode::shutdown`] waits for a peer to close its end after the goodbye before
/// it closes the connection itself.
pub const GOODBYE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl Inner {
    /// The first, immediate part of a shutdown: no dial, admission or new connection from now
    /// on, the listener stopped, handshakes under way given up. Returns a farewell per
    /// connection up: it says goodbye, waits for the peer to close (at most [`GOODBYE_WAIT`]),
    /// and closes.
    fn begin_shutdown(&self) -> Vec<impl std::future::Future<Output = ()> + Send + 'static> {
        // Before any peer is looked at: a handshake finishing from now on sees the flag under
        // its peer's lock (see `established`), so no connection comes up behind this loop.
        self.stopped.store(true, Ordering::SeqCst);
        drop(self.listener.lock().take());
        let mut farewells = Vec::new();
        for p in self.table.all() {
            // A handshake under way is given up like a failed one (it cannot come up since
            // `stopped` is set, so its generation is still current below).
            let connecting = match &*p.state.lock() {
                State::Connecting { gen, .. } => Some(*gen),
                _ => None,
            };
            if let Some(gen) = connecting {
                self.attempt_failed(&p, gen);
            }
            if let Some(h) = p.handle() {
                farewells.push(async move {
                    let bye = wire::packet(&Packet::Goodbye);
                    let heard = async {
                        if h.send_wait(0, bye).await.is_ok() {
                            h.lost().await;
                        }
                    };
                    let _ = tokio::time::timeout(GOODBYE_WAIT, heard).await;
                    h.close();
                });
            }
        }
        farewells
    }
}
