//! # girder-dist: nodes that find, trust and talk to each other
//!
//! Girder's distribution: processes on different nodes send, call, link and monitor as if they
//! were local; nodes find each other and notice each other's death; names and groups span the
//! cluster.
//!
//! | module | what it is | Erlang anchor |
//! |---|---|---|
//! | [`node`] | [`DistNode`]: a girder `Node` reachable from others; on-demand connections, [`NodeEvent`]s, a graceful shutdown (goodbyes), the supervisor of Girder's own services | `net_kernel`, `kernel_sup` |
//! | [`remote`] | remote `Addr`/`ServerRef` handles, exports of local processes; back pressure per destination (a full mailbox parks its messages and pauses only its senders) | remote pids, `gen_server:call({Name, Node}, ..)` |
//! | [`wire`] | [`Wire`]: a message type's stable name; the packet format | the external term format, dist protocol |
//! | [`global`] | [`global::Global`]: cluster-wide unique names, conflicts resolved after partitions | `global` |
//! | [`groups`] | [`groups::Groups`]: scoped process groups, local-first selection | `pg` |
//! | [`membership`] | [`Membership`]: SWIM failure detection and gossip (by `foca`), roles, graceful leave | `net_kernel` monitoring, `nodes()` |
//! | [`identity`] | [`NodeName`] (`name@host`), [`Cookie`] (the shared secret) | node names, the cookie |
//! | [`handshake`] | [`handshake::initiate`] / [`handshake::accept`]: versions, capabilities, mutual HMAC proof | the distribution handshake |
//! | [`connection`] | batched writes, fragments that interleave, ticks and loss detection | the distribution connection |
//! | [`frame`] | [`FrameCodec`]: length-prefixed, typed, size-limited frames | the distribution packet |
//! | [`tls`] | optional rustls under the handshake, mutual certificates | TLS distribution (`inet_tls`) |
//! | [`transport`] | the network under it all: real sockets, or a simulated one in tests | the carrier (`inet_tcp`) |
//!
//! See `docs/architecture.md` for how a message crosses nodes, and decisions 004–006 and 014.

#![warn(missing_docs)]

pub mod connection;
mod dispatch;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod global;
pub mod groups;
pub mod handshake;
pub mod identity;
pub mod membership;
pub mod node;
mod park;
mod peer;
pub mod remote;
mod replica;
pub mod tls;
pub mod transport;
pub mod wire;

pub use connection::{ConnectionConfig, ConnectionHandle, Lost, Received};
pub use frame::{Frame, FrameCodec, FrameError, FrameKind};
pub use handshake::{Established, HandshakeConfig, HandshakeError};
pub use identity::{read_secret_file, write_secret_file, Cookie, IdentityError, NodeName};
pub use membership::{Member, MemberEvent, Membership, MembershipConfig};
pub use node::{ConnectError, DistConfig, DistNode, ListenerStatus, NodeEvent, PeerInfo};
pub use wire::Wire;
