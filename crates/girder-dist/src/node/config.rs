//! How a [`DistNode`](super::DistNode) runs, and what it reports: its configuration, connect
//! errors, node events and peers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::connection::ConnectionConfig;
use crate::tls::TlsConfig;
use crate::{Cookie, NodeName};

/// How a [`DistNode`](crate::DistNode) runs.
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
    /// How long an incoming connection may take to authenticate (TLS and the handshake, each):
    /// a peer that sends nothing, or never a TLS ClientHello, is closed after it.
    pub handshake_timeout: Duration,
    /// Incoming connections that may be authenticating at once; more are closed on arrival
    /// (counted in [`ListenerStatus::turned_away`]), so unauthenticated peers cannot hold
    /// unbounded memory and descriptors.
    pub max_pending_handshakes: usize,
    /// The same bound per source address, so one host cannot take all of them.
    pub max_pending_handshakes_per_source: usize,
}

impl DistConfig {
    /// Defaults: no TLS, default connection settings, 5 s dials, 50 µs busy polling, 5 s to
    /// authenticate, at most 256 incoming connections authenticating at once (16 per source
    /// address).
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
            handshake_timeout: Duration::from_secs(5),
            max_pending_handshakes: 256,
            max_pending_handshakes_per_source: 16,
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
///
/// A connection ends in one of two ways: [`Down`](NodeEvent::Down), a failure (the peer
/// crashed, was partitioned or stopped answering, or the connection was closed on purpose by
/// [`DistNode::disconnect`](crate::DistNode::disconnect)), or [`Left`](NodeEvent::Left), a
/// departure (one of the two nodes shut its distribution down and said goodbye first). Links
/// and monitors across the connection fire `noconnection` either way; what differs is whether
/// an operator should be told something is wrong (girder-ops raises a `node_down` alarm for
/// `Down` only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// An address became known for a node (it can be dialled now).
    Discovered(NodeName),
    /// A connection to the node is up.
    Up(NodeName),
    /// The connection to the node is gone without a goodbye: a failure. Links and monitors
    /// across it have fired.
    Down {
        /// The node.
        node: NodeName,
        /// Why, in words.
        reason: String,
    },
    /// The connection to the node ended because a node left on purpose: the node said goodbye
    /// before it closed (its distribution shut down, as `girder node` does on SIGTERM), or this
    /// node shut its own down ([`DistNode::shutdown`](crate::DistNode::shutdown)). Links and
    /// monitors across it have fired, as for [`Down`](NodeEvent::Down). A node that left is
    /// not dialled again until an address is given for it again (membership does when it
    /// rejoins).
    Left {
        /// The node.
        node: NodeName,
        /// Which side left, in words.
        reason: String,
    },
    /// This node forgot the node ([`DistNode::forget`](crate::DistNode::forget)): it is not
    /// expected back. Sent when membership gives up on a member that has been down for
    /// [`MembershipConfig::forget_after`](crate::MembershipConfig::forget_after), or when an
    /// operator forgets it.
    Forgotten(NodeName),
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

/// A known node as [`DistNode::peers`](crate::DistNode::peers) reports it.
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
    /// Messages from it waiting on this node for full mailboxes (decision 014).
    pub parked: usize,
    /// Their bytes (as the bound [`ConnectionConfig::max_parked`](crate::ConnectionConfig::max_parked) counts them).
    pub parked_bytes: usize,
    /// Times this node asked it to pause sending to one of this node's processes.
    pub pauses_sent: u64,
    /// Times parked messages passed the bound and its connection's delivery waited: nonzero
    /// only for a peer that does not pause.
    pub parked_stalls: u64,
    /// Its processes that asked this node to pause sending to them, now.
    pub paused: usize,
    /// Pauses it asked for, in all.
    pub pauses_received: u64,
}

/// The distribution listener's state and the handshakes' counts, as
/// [`DistNode::listener_status`](crate::DistNode::listener_status) reports them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListenerStatus {
    /// False while `accept` keeps failing (none has succeeded since the last error).
    pub accepting: bool,
    /// Failed `accept` calls since the node started.
    pub errors: u64,
    /// The error of the current failing run, if any.
    pub last_error: Option<String>,
    /// Incoming connections authenticating right now.
    pub pending_handshakes: usize,
    /// Incoming connections refused since the node started: a failed TLS handshake or cookie
    /// proof, a timeout, bad bytes, or an admission refusal.
    pub refused: u64,
    /// Incoming connections closed on arrival because too many were authenticating already
    /// (in all, or from their source address).
    pub turned_away: u64,
    /// Dials of this node refused since it started because of the cookie: the peer closed the
    /// connection after this node's proof (its cookie differs, or, rarely, it refused to admit
    /// this node), or the peer's own proof was wrong. The accepting side counts its own in
    /// [`refused`](Self::refused).
    pub dials_refused: u64,
}
